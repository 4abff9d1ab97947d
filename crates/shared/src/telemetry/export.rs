//! Where traces and metrics go: the OTLP exporters (http/protobuf through a reqwest blocking
//! client, or gRPC through tonic), the runtime gRPC needs, the resource that names the service,
//! and the one warning a failing export gets.
//!
//! The exporters read the standard variables themselves (endpoints, headers, compression,
//! timeout); [`OtelConfig`] only says which signals are exported and over which protocol.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Once};

use opentelemetry::{Key, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, Temporality};
use opentelemetry_sdk::resource::{EnvResourceDetector, ResourceDetector as _};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, TracerProviderBuilder};

use super::{EXPORT_REQUEST_TIMEOUT, METRIC_EXPORT_INTERVAL, TelemetryError};
use crate::config::{OtelConfig, OtlpProtocol, OtlpTarget};

/// One signal's exporter over its target's protocol. A macro, because the span and the metric
/// builders are distinct types with the same methods; `$http` is evaluated only for HTTP.
macro_rules! exporter {
    ($builder:expr, $signal:literal, $target:expr, $http:expr) => {{
        let built = match $target.protocol {
            OtlpProtocol::Grpc => $builder
                .with_tonic()
                .with_tls_config(tls_config($target))
                .build(),
            OtlpProtocol::HttpProtobuf => $builder.with_http().with_http_client($http).build(),
        };
        built.map_err(|source| TelemetryError::Exporter {
            signal: $signal,
            source,
        })?
    }};
}

/// The exporters a process needs, built off any Tokio runtime (see [`Exporters::build`]).
#[derive(Debug)]
pub(super) struct Exporters {
    pub(super) spans: Option<Watched<SpanExporter>>,
    pub(super) metrics: Option<PeriodicReader<Watched<MetricExporter>>>,
    /// Drives the gRPC connections; `None` without a gRPC signal. Dropped after the providers
    /// have shut down, on a plain thread.
    pub(super) runtime: Option<tokio::runtime::Runtime>,
}

impl Exporters {
    /// Builds the exporters `otel` asks for.
    ///
    /// Runs on a thread of its own: a reqwest blocking client panics when it is built or
    /// dropped inside a Tokio runtime, and `init` may be called from one. tonic needs a runtime
    /// when its channel is created and while it runs: telemetry gets its own (one worker
    /// thread), so exports and the final flush go on while the service's runtime shuts down.
    pub(super) fn build(otel: &OtelConfig) -> Result<Self, TelemetryError> {
        if otel.traces.is_none() && otel.metrics.is_none() {
            return Ok(Exporters {
                spans: None,
                metrics: None,
                runtime: None,
            });
        }
        let otel = otel.clone();
        std::thread::Builder::new()
            .name("telemetry-setup".to_owned())
            .spawn(move || Self::build_here(&otel))
            .map_err(TelemetryError::ExportRuntime)?
            .join()
            .map_err(|_| TelemetryError::SetupPanicked)?
    }

    fn build_here(otel: &OtelConfig) -> Result<Self, TelemetryError> {
        let grpc = [&otel.traces, &otel.metrics]
            .iter()
            .any(|t| t.as_ref().is_some_and(|t| t.protocol == OtlpProtocol::Grpc));
        let runtime = grpc
            .then(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("telemetry-grpc")
                    .enable_all()
                    .build()
                    .map_err(TelemetryError::ExportRuntime)
            })
            .transpose()?;
        let entered = runtime.as_ref().map(tokio::runtime::Runtime::enter);
        let health = Arc::new(ExportHealth::default());
        // One client (one connection pool and I/O thread) for both signals.
        let mut http = None;
        let mut next_http_client = || -> Result<Reporting, TelemetryError> {
            let client = match &http {
                Some(client) => Clone::clone(client),
                None => http.insert(http_client()?).clone(),
            };
            Ok(Reporting::new(client, &health))
        };

        let spans = match &otel.traces {
            None => None,
            Some(target) => {
                let exporter = exporter!(
                    SpanExporter::builder(),
                    "traces",
                    target,
                    next_http_client()?
                );
                Some(Watched::new(exporter, "traces", target, &health))
            }
        };
        let metrics = match &otel.metrics {
            None => None,
            Some(target) => {
                let exporter = exporter!(
                    MetricExporter::builder(),
                    "metrics",
                    target,
                    next_http_client()?
                );
                let mut reader =
                    PeriodicReader::builder(Watched::new(exporter, "metrics", target, &health));
                if std::env::var_os(opentelemetry_sdk::metrics::OTEL_METRIC_EXPORT_INTERVAL)
                    .is_none()
                {
                    reader = reader.with_interval(METRIC_EXPORT_INTERVAL);
                }
                Some(reader.build())
            }
        };
        drop(entered);
        Ok(Exporters {
            spans,
            metrics,
            runtime,
        })
    }
}

/// gRPC over `https://` checks the collector against the system's roots (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` override them); tonic trusts nothing unless told.
fn tls_config(target: &OtlpTarget) -> ClientTlsConfig {
    match target.is_tls() {
        true => ClientTlsConfig::new().with_native_roots(),
        // Never used on a plain connection; no roots to load.
        false => ClientTlsConfig::new(),
    }
}

/// The http/protobuf client: TLS with rustls on ring, trusting the platform's roots (on Linux
/// the system store, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
fn http_client() -> Result<reqwest::blocking::Client, TelemetryError> {
    install_ring_provider();
    reqwest::blocking::Client::builder()
        .timeout(EXPORT_REQUEST_TIMEOUT)
        .build()
        .map_err(TelemetryError::HttpClient)
}

/// Makes ring the process's rustls crypto provider, once. reqwest is built without a provider
/// of its own (its default one is aws-lc-rs, a C build); everything else here uses ring already.
pub(super) fn install_ring_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means another part of the process installed one first: that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The exported resource: the SDK's (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the SDK's
/// own attributes) completed with what the variables leave out: `service.name` (the binary's
/// name), `service.version` (this build) and `service.instance.id` (a UUID v4 per process, so
/// replicas never collide).
pub(super) fn resource(otel: &OtelConfig, default_service_name: &str) -> Resource {
    let given = EnvResourceDetector::new().detect();
    let given = |key: &'static str| given.get(&Key::from_static_str(key)).is_some();
    let mut resource = Resource::builder();
    match &otel.service_name {
        // OTEL_SERVICE_NAME wins over a service.name in OTEL_RESOURCE_ATTRIBUTES.
        Some(name) => resource = resource.with_service_name(name.trim().to_owned()),
        None if !given("service.name") => {
            resource = resource.with_service_name(default_service_name.to_owned());
        }
        None => {}
    }
    if !given("service.version") {
        resource =
            resource.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    }
    if !given("service.instance.id") {
        resource = resource.with_attribute(KeyValue::new(
            "service.instance.id",
            uuid::Uuid::new_v4().to_string(),
        ));
    }
    resource.build()
}

/// The sampler is the SDK's: `OTEL_TRACES_SAMPLER` / `_ARG`, parent-based always-on when unset,
/// so a trace is either complete or absent, never cut in the middle of a service.
pub(super) fn tracer_provider_builder() -> TracerProviderBuilder {
    SdkTracerProvider::builder()
}

/// Whether export works, shared by every exporter of the process: a failing export is logged
/// once when it starts failing (not once per batch, which the SDK would do every few seconds),
/// and once when it works again.
#[derive(Debug, Default)]
struct ExportHealth {
    /// The signals whose last export failed.
    failing: Mutex<BTreeSet<&'static str>>,
    /// What the HTTP transport said last time it failed: the exporter reports a bare "network
    /// error", whereas this says e.g. that the certificate is not trusted.
    transport_error: Mutex<Option<String>>,
}

impl ExportHealth {
    fn report(&self, signal: &'static str, target: &str, result: &OTelSdkResult) {
        let Ok(mut failing) = self.failing.lock() else {
            return;
        };
        match result {
            Ok(()) => {
                if failing.remove(signal) {
                    tracing::info!(signal, endpoint = target, "OTLP export works again");
                }
            }
            Err(error) => {
                let first = failing.is_empty();
                failing.insert(signal);
                if first {
                    let cause = self
                        .transport_error
                        .lock()
                        .ok()
                        .and_then(|mut cause| cause.take());
                    tracing::warn!(
                        signal,
                        endpoint = target,
                        error = %error,
                        cause = cause.as_deref().unwrap_or(""),
                        "OTLP export is failing: traces and metrics are dropped until it works \
                         again (logged once). Check the endpoint, that its certificate is trusted \
                         (system roots, or SSL_CERT_FILE) and the OTEL_EXPORTER_OTLP_HEADERS it \
                         expects"
                    );
                }
            }
        }
    }
}

/// An exporter whose failures go to [`ExportHealth`] instead of back to the SDK, which would
/// log each failed batch (the batch is dropped either way).
#[derive(Debug)]
pub(super) struct Watched<E> {
    inner: E,
    signal: &'static str,
    /// `endpoint (protocol)`, password hidden.
    target: String,
    health: Arc<ExportHealth>,
}

impl<E> Watched<E> {
    fn new(
        inner: E,
        signal: &'static str,
        target: &OtlpTarget,
        health: &Arc<ExportHealth>,
    ) -> Self {
        Watched {
            inner,
            signal,
            target: format!("{} ({})", target.endpoint.redacted(), target.protocol),
            health: Arc::clone(health),
        }
    }

    fn watch(&self, result: OTelSdkResult) -> OTelSdkResult {
        self.health.report(self.signal, &self.target, &result);
        Ok(())
    }
}

impl opentelemetry_sdk::trace::SpanExporter for Watched<SpanExporter> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.watch(self.inner.export(batch).await)
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl PushMetricExporter for Watched<MetricExporter> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        self.watch(self.inner.export(metrics).await)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// The reqwest blocking client, keeping what a failed request said for [`ExportHealth`].
#[derive(Debug)]
struct Reporting {
    client: reqwest::blocking::Client,
    health: Arc<ExportHealth>,
}

impl Reporting {
    fn new(client: reqwest::blocking::Client, health: &Arc<ExportHealth>) -> Self {
        Reporting {
            client,
            health: Arc::clone(health),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for Reporting {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let sent = self.client.send_bytes(request).await;
        if let Err(error) = &sent {
            // The causes only: the top error repeats the URL, which may carry credentials.
            let mut causes = Vec::new();
            let mut source = error.source();
            while let Some(cause) = source {
                causes.push(cause.to_string());
                source = cause.source();
            }
            if let Ok(mut last) = self.health.transport_error.lock() {
                *last = Some(causes.join(": "));
            }
        }
        sent
    }
}
