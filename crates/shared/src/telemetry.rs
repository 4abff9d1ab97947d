//! Telemetry: the one place where logs, traces and metrics are set up (STYLE rule 8), plus the
//! span constructors every service uses for RabbitMQ messages.
//!
//! It owns the global `tracing` subscriber, the global OpenTelemetry tracer and meter providers,
//! the global W3C propagator and the OTLP/HTTP export. It must not read configuration beyond
//! `RUST_LOG` and the standard `OTEL_*` variables (those arrive in [`OtelConfig`] or are read by
//! the OpenTelemetry SDK itself), and it must not move trace context across the queue: that is
//! [`bus::propagation`](crate::bus::propagation). Field names and levels follow
//! `docs/LOGGING.md`.
//!
//! # Layout
//!
//! ```text
//!  service code ── spans, events ──▶ tracing Registry
//!                                     ├─ fmt layer ── EnvFilter(RUST_LOG) ──▶ stderr (human | JSON)
//!                                     └─ OpenTelemetry layer ── INFO and above, whatever RUST_LOG says
//!                                          │
//!                                          ▼
//!                                  SdkTracerProvider (always: spans get valid contexts,
//!                                          │           so trace ids cross the queue)
//!                                          └─ batch span processor thread ─┐  only with
//!  meter() instruments ──▶ SdkMeterProvider                               │  OTEL_EXPORTER_
//!                           └─ periodic reader thread (15 s) ─────────────┤  OTLP_ENDPOINT
//!                                                                         ▼
//!                         OtlpHttpClient: HTTP/1.1 POST, Connection: close, on its own
//!                         current-thread Tokio runtime ──▶ {endpoint}/v1/traces, /v1/metrics
//!
//!  TelemetryGuard holds both providers; shutdown() (or Drop) flushes them, last thing on exit.
//! ```
//!
//! The export threads belong to the OpenTelemetry SDK and poll the exporter with a plain
//! executor, outside any Tokio runtime. That is why the HTTP client carries its own small
//! runtime instead of borrowing the service's: export keeps working while the service's runtime
//! shuts down, and a flush at exit never waits on a runtime that is gone.

use std::fmt;
use std::io::IsTerminal as _;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::{
    ExporterBuildError, MetricExporter, Protocol, SpanExporter, WithExportConfig as _,
    WithHttpConfig as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing::level_filters::LevelFilter;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

use crate::config::{OtelConfig, SecretUrl};

use self::otlp_http::OtlpHttpClient;

/// Field and attribute names, as constants so that a typo is a compile error. Use them with
/// tracing's constant-name syntax: `tracing::info!({ field::TENANT_ID } = %id, "…")`.
/// `docs/LOGGING.md` explains each one.
pub mod field {
    /// The tenant a log line or span is about (the tenant's id, never its name).
    pub const TENANT_ID: &str = "tenant.id";
    /// The tenant's slug (`^[a-z][a-z0-9_]{2,39}$`), when the id alone is not enough for a reader.
    pub const TENANT_SLUG: &str = "tenant.slug";
    /// The CloudEvent `id` of the message being handled.
    pub const EVENT_ID: &str = "event.id";
    /// The CloudEvent `type` of the message being handled, e.g. `tenant.registered`.
    pub const EVENT_TYPE: &str = "event.type";
    /// A migration version (the numeric file prefix).
    pub const MIGRATION_VERSION: &str = "migration.version";
    /// A fleet deployment's id.
    pub const DEPLOY_ID: &str = "deploy.id";
    /// Elapsed wall time in milliseconds (the unit is in the name, as for every measured field).
    pub const DURATION_MS: &str = "duration_ms";

    // The names below are OpenTelemetry's messaging semantic conventions (schema 1.42, status
    // "development"): <https://opentelemetry.io/docs/specs/semconv/messaging/rabbitmq/>. They
    // are spelled out here rather than taken from `opentelemetry-semantic-conventions`, whose
    // messaging names sit behind its `semconv_experimental` feature.

    /// Always `rabbitmq`.
    pub const MESSAGING_SYSTEM: &str = "messaging.system";
    /// Low-cardinality operation kind: `send` on publish, `process` on consume.
    pub const MESSAGING_OPERATION_TYPE: &str = "messaging.operation.type";
    /// The system-specific operation: `publish` (AMQP `basic.publish`) or `process`.
    pub const MESSAGING_OPERATION_NAME: &str = "messaging.operation.name";
    /// The exchange on publish (empty for the default exchange), the queue on consume.
    pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";
    /// The routing key a message was published with.
    pub const MESSAGING_RABBITMQ_ROUTING_KEY: &str = "messaging.rabbitmq.destination.routing_key";
    /// The AMQP `message-id` property of the message.
    pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";
    /// The CloudEvent `type` of the message.
    pub const CLOUDEVENTS_EVENT_TYPE: &str = "cloudevents.event_type";
}

/// The filter when `RUST_LOG` is unset: our own code at `info`, chatty dependencies at `warn`.
/// `opentelemetry` covers the SDK's own diagnostics (export failures are `warn`/`error`).
///
/// lapin is off: every failure it sees reaches the bus as an error, which the bus logs once with
/// what it means (a lost connection it recovers from is a WARN, a refusal an ERROR), whereas
/// lapin logs a broker restart as several ERROR lines from its I/O loop although nothing is
/// wrong yet. `RUST_LOG=info,lapin=debug` brings its lines back.
pub const DEFAULT_LOG_FILTER: &str =
    "info,lapin=off,amq_protocol=warn,sqlx=warn,opentelemetry=warn";

/// The filter of `tenantctl`'s commands when `RUST_LOG` is unset: what they print is their
/// output; logs are for what went wrong.
pub const CLI_LOG_FILTER: &str = "warn,lapin=off,amq_protocol=warn,sqlx=warn,opentelemetry=warn";

/// The filter of [`init_for_tests`] when `RUST_LOG` is unset: this workspace's crates (and the
/// `it` e2e binary) at `debug`.
pub const TEST_LOG_FILTER: &str = "info,domain=debug,engine=debug,shared=debug,provisioner=debug,migrator=debug,\
    auditor=debug,tenantctl=debug,testkit=debug,it=debug,lapin=warn,amq_protocol=warn,sqlx=warn,\
    opentelemetry=warn";

/// Instrumentation scope of every tracer and meter this workspace creates.
pub const SCOPE: &str = "tenancy";

/// How often metrics are exported when `OTEL_METRIC_EXPORT_INTERVAL` is unset: frequent enough
/// for a dashboard during a fleet deploy; the SDK default (60 s) hides short deploys.
pub const METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(15);

/// Deadline of one HTTP request to the collector (connect, send, read). Equal to the OTLP
/// default export timeout, which bounds the exporter's retries as a whole.
pub const EXPORT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on the final flush of each provider at shutdown, so a dead collector delays exit by
/// seconds, not minutes.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How log lines are written to stderr (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// Human when stderr is a terminal, JSON otherwise (containers, CI, files).
    #[default]
    Auto,
    /// One coloured line per event, with the span context, for people at a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// `Human` or `Json`: `Auto` decided by whether stderr is a terminal.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Human,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

impl FromStr for LogFormat {
    type Err = ParseLogFormatError;

    /// `auto`, `human` or `json`, ignoring case and surrounding blanks; empty means `auto`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(LogFormat::Auto),
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err(ParseLogFormatError(value.to_owned())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `LOG_FORMAT` value that is not `auto`, `human` or `json`. The message does not name the
/// variable: the caller (`config`) prefixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a log format: use `auto`, `human` or `json`")]
pub struct ParseLogFormatError(pub String);

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A global `tracing` subscriber is already installed (a second `init`, or a test harness
    /// that got there first). The existing set-up stays in place and keeps working.
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialized,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is not an `http://` or `https://` URL.
    #[error(
        "OTEL_EXPORTER_OTLP_ENDPOINT: `{endpoint}` {reason} (expected e.g. http://otel-collector:4318)"
    )]
    InvalidEndpoint {
        /// The endpoint, password hidden.
        endpoint: String,
        reason: &'static str,
    },
    /// The OTLP exporter rejected its configuration (the endpoint it builds, or an
    /// `OTEL_EXPORTER_OTLP_*` variable it reads itself).
    #[error("could not set up the OTLP {signal} exporter")]
    Exporter {
        signal: &'static str,
        #[source]
        source: ExporterBuildError,
    },
    /// The export client's runtime could not start (out of threads or file descriptors).
    #[error("could not start the OTLP export runtime")]
    ExportRuntime(#[source] std::io::Error),
}

/// Keeps telemetry running; flushes and shuts it down when consumed by
/// [`shutdown`](TelemetryGuard::shutdown) or dropped.
///
/// Hold it in `main` and let it go **last**, after the service's tasks have stopped and the
/// runtime has drained, so their final spans and metrics are exported too.
#[derive(Debug)]
#[must_use = "dropping the guard shuts telemetry down; keep it until the service exits"]
pub struct TelemetryGuard {
    providers: Option<Providers>,
}

#[derive(Debug)]
struct Providers {
    tracer: SdkTracerProvider,
    /// `None` without an exporter: the global meter provider then stays the no-op one.
    meter: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Flushes buffered spans and metrics to the collector and stops the export threads.
    ///
    /// Blocks for at most about [`SHUTDOWN_TIMEOUT`] per provider. Safe to call from async code
    /// (the work runs on a plain thread, never on a Tokio worker's executor). A failed flush is
    /// logged once, here, and otherwise ignored: nothing is left to retry it.
    pub fn shutdown(mut self) {
        if let Some(providers) = self.providers.take() {
            providers.shutdown();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(providers) = self.providers.take() {
            providers.shutdown();
        }
    }
}

impl Providers {
    fn shutdown(self) {
        let worker = std::thread::Builder::new()
            .name("telemetry-shutdown".to_owned())
            .spawn(move || {
                let traces = self.tracer.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
                let metrics = self
                    .meter
                    .map(|meter| meter.shutdown_with_timeout(SHUTDOWN_TIMEOUT));
                (traces, metrics)
            });
        let outcome = match worker {
            Ok(handle) => handle.join().map_err(|_| "the shutdown thread panicked"),
            Err(_) => Err("no thread could be started for the shutdown"),
        };
        match outcome {
            Ok((traces, metrics)) => {
                let failures: Vec<String> = [("traces", Some(traces)), ("metrics", metrics)]
                    .into_iter()
                    .filter_map(|(signal, result)| Some(format!("{signal}: {}", result?.err()?)))
                    .collect();
                if !failures.is_empty() {
                    tracing::warn!(
                        failures = %failures.join("; "),
                        "telemetry did not flush cleanly at shutdown; the last spans or metrics \
                         may be lost"
                    );
                }
            }
            Err(reason) => tracing::warn!(reason, "telemetry was not flushed at shutdown"),
        }
    }
}

/// Sets up logging, tracing and metrics for a service; call it once, first thing in `main`.
///
/// - Logs: `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]) to stderr, in `format`.
/// - Traces: spans always get valid W3C contexts (an exporter-less provider when no endpoint is
///   set), so trace ids cross RabbitMQ even without a collector. The global propagator is W3C
///   `TraceContextPropagator`.
/// - Export, only when `otel.endpoint` is set: traces (batch processor) and metrics (every
///   [`METRIC_EXPORT_INTERVAL`]) over OTLP/HTTP protobuf to `{endpoint}/v1/traces` and
///   `{endpoint}/v1/metrics`, as service `otel.service_name` (i.e. `OTEL_SERVICE_NAME`) or else
///   `service_name`, with `service.version` = this build's version. An `https://` endpoint is
///   not supported (no TLS client is compiled in): it logs one warning and exports nothing.
///
/// Works inside or outside a Tokio runtime.
///
/// # Errors
/// [`TelemetryError::AlreadyInitialized`] when a global subscriber exists (nothing changes, and
/// the existing set-up keeps working); [`TelemetryError::InvalidEndpoint`] /
/// [`TelemetryError::Exporter`] / [`TelemetryError::ExportRuntime`] when export is configured
/// but cannot be set up. No global state is changed on error.
pub fn init(
    otel: &OtelConfig,
    service_name: &str,
    format: LogFormat,
) -> Result<TelemetryGuard, TelemetryError> {
    init_with_filter(otel, service_name, format, DEFAULT_LOG_FILTER)
}

/// As [`init`], with `default_filter` where `RUST_LOG` is unset (`tenantctl`'s commands use
/// [`CLI_LOG_FILTER`]).
///
/// # Errors
/// As [`init`].
pub fn init_with_filter(
    otel: &OtelConfig,
    service_name: &str,
    format: LogFormat,
    default_filter: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    let target = ExportTarget::from_endpoint(otel.endpoint.as_deref())?;
    let service_name = otel
        .service_name
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .unwrap_or(service_name);
    let resource = resource(service_name);

    let mut tracer = tracer_provider_builder().with_resource(resource.clone());
    let mut meter = None;
    if let ExportTarget::Http { base } = &target {
        let client =
            OtlpHttpClient::new(EXPORT_REQUEST_TIMEOUT).map_err(TelemetryError::ExportRuntime)?;
        tracer = tracer.with_batch_exporter(span_exporter(base, client.clone())?);
        let mut reader = PeriodicReader::builder(metric_exporter(base, client)?);
        if std::env::var_os(opentelemetry_sdk::metrics::OTEL_METRIC_EXPORT_INTERVAL).is_none() {
            reader = reader.with_interval(METRIC_EXPORT_INTERVAL);
        }
        meter = Some(
            SdkMeterProvider::builder()
                .with_reader(reader.build())
                .with_resource(resource)
                .build(),
        );
    }
    let providers = Providers {
        tracer: tracer.build(),
        meter,
    };

    let (filter, filter_problem) = log_filter(default_filter);
    let installed = tracing_subscriber::registry()
        .with(fmt_layer(format.resolve(), filter))
        .with(otel_layer(&providers.tracer))
        .try_init();
    if installed.is_err() {
        providers.shutdown();
        return Err(TelemetryError::AlreadyInitialized);
    }

    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(providers.tracer.clone());
    if let Some(meter) = &providers.meter {
        global::set_meter_provider(meter.clone());
    }

    if let Some(problem) = filter_problem {
        tracing::warn!("{problem}");
    }
    match &target {
        ExportTarget::None => tracing::debug!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is unset: traces and metrics are not exported"
        ),
        ExportTarget::Http { base } => tracing::info!(
            endpoint = %SecretUrl::new(base.as_str()),
            service.name = service_name,
            "exporting traces and metrics over OTLP/HTTP"
        ),
        ExportTarget::TlsUnsupported { endpoint } => tracing::warn!(
            endpoint = %endpoint,
            "OTEL_EXPORTER_OTLP_ENDPOINT is https://, but this build exports over plain HTTP \
             only: run a local collector (e.g. an OpenTelemetry Collector sidecar at \
             http://127.0.0.1:4318) that forwards over TLS. Traces and metrics are NOT exported"
        ),
    }

    Ok(TelemetryGuard {
        providers: Some(providers),
    })
}

/// Logging and trace context for tests: `RUST_LOG` or [`TEST_LOG_FILTER`], captured by the test
/// harness, W3C propagation on, nothing exported. Safe to call from every test, any number of
/// times and from any thread; the first call wins and later calls do nothing.
pub fn init_for_tests() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let provider = tracer_provider_builder()
            .with_resource(resource("tests"))
            .build();
        let (filter, _) = log_filter(TEST_LOG_FILTER);
        let fmt = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_target(true)
            .with_filter(filter);
        let installed = tracing_subscriber::registry()
            .with(fmt)
            .with(otel_layer(&provider))
            .try_init();
        // Someone else's subscriber (e.g. a `telemetry::init` in the same binary) stays.
        if installed.is_ok() {
            global::set_text_map_propagator(TraceContextPropagator::new());
            global::set_tracer_provider(provider);
        }
    });
}

/// The workspace's meter (scope [`SCOPE`]): create instruments from it after [`init`], e.g.
/// `meter().u64_counter("tenancy.migrations.applied").build()`. Without an exporter, and for
/// instruments created before `init`, recording is a no-op.
pub fn meter() -> opentelemetry::metrics::Meter {
    global::meter(SCOPE)
}

/// The root span of one operator command (`tenantctl deploy`, …): what it publishes carries its
/// trace context, so the services' work joins (or, for a deploy's fan-out, links to) its trace.
pub fn command_span(name: &str) -> Span {
    tracing::info_span!("command", otel.name = name, otel.kind = "internal")
}

/// The producer span around one `basic.publish`, following the OpenTelemetry messaging
/// conventions: span name `publish {exchange}`, kind producer. Inject its context with
/// [`bus::propagation::inject_current`](crate::bus::propagation::inject_current) while inside it.
/// Record `otel.status_code = "error"` on it when the publish is not confirmed.
///
/// Fields that identify the message are tracing fields, so they also appear in log lines; the
/// constant ones (`messaging.system`, `messaging.operation.*`) go to the OpenTelemetry span only,
/// where they matter, and stay out of every log line.
pub fn publish_span(exchange: &str, routing_key: &str, message_id: &str, event_type: &str) -> Span {
    let name = span_name("publish", exchange);
    let span = tracing::info_span!(
        "publish",
        otel.name = name.as_str(),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        { field::MESSAGING_DESTINATION_NAME } = exchange,
        { field::MESSAGING_RABBITMQ_ROUTING_KEY } = routing_key,
        { field::MESSAGING_MESSAGE_ID } = message_id,
        { field::CLOUDEVENTS_EVENT_TYPE } = event_type,
    );
    set_messaging_constants(&span, "send", "publish");
    span
}

/// The consumer span around handling one delivery: span name `process {queue}`, kind consumer.
/// Call [`bus::propagation::set_parent_from`](crate::bus::propagation::set_parent_from) before
/// entering it. `tenant.id` and `otel.status_code` are declared empty so the handler can
/// `record` them once known.
pub fn process_span(queue: &str, message_id: &str, event_type: &str) -> Span {
    let name = span_name("process", queue);
    let span = tracing::info_span!(
        "process",
        otel.name = name.as_str(),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        { field::MESSAGING_DESTINATION_NAME } = queue,
        { field::MESSAGING_MESSAGE_ID } = message_id,
        { field::CLOUDEVENTS_EVENT_TYPE } = event_type,
        { field::TENANT_ID } = tracing::field::Empty,
    );
    set_messaging_constants(&span, "process", "process");
    span
}

/// The attributes that are the same on every messaging span of a kind (no-op without the
/// OpenTelemetry layer).
fn set_messaging_constants(span: &Span, operation_type: &'static str, operation: &'static str) {
    span.set_attribute(field::MESSAGING_SYSTEM, "rabbitmq");
    span.set_attribute(field::MESSAGING_OPERATION_TYPE, operation_type);
    span.set_attribute(field::MESSAGING_OPERATION_NAME, operation);
}

/// `{operation} {destination}`, or just the operation for the default (nameless) exchange.
fn span_name(operation: &str, destination: &str) -> String {
    if destination.is_empty() {
        operation.to_owned()
    } else {
        format!("{operation} {destination}")
    }
}

/// Where (and whether) to export, decided from `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExportTarget {
    None,
    /// Plain HTTP; `base` has no trailing `/`.
    Http {
        base: String,
    },
    /// `https://`: needs TLS, which this build leaves out to keep the dependency tree lean.
    TlsUnsupported {
        /// Password hidden.
        endpoint: String,
    },
}

impl ExportTarget {
    fn from_endpoint(endpoint: Option<&str>) -> Result<Self, TelemetryError> {
        let Some(endpoint) = endpoint.map(str::trim).filter(|e| !e.is_empty()) else {
            return Ok(ExportTarget::None);
        };
        let invalid = |reason| TelemetryError::InvalidEndpoint {
            endpoint: SecretUrl::new(endpoint).redacted(),
            reason,
        };
        let lower = endpoint.to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &endpoint["http://".len()..]
        } else if lower.starts_with("https://") {
            return Ok(ExportTarget::TlsUnsupported {
                endpoint: SecretUrl::new(endpoint).redacted(),
            });
        } else {
            return Err(invalid("must start with http:// or https://"));
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("has no host"));
        }
        if rest.contains(['?', '#']) {
            return Err(invalid("must not have a query or fragment"));
        }
        Ok(ExportTarget::Http {
            base: endpoint.trim_end_matches('/').to_owned(),
        })
    }
}

/// `{base}{path}` where `path` starts with `/` (OTLP/HTTP signal paths: `/v1/traces`, …).
fn signal_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Every span is sampled unless an incoming `traceparent` says otherwise, so a trace is either
/// complete or absent, never cut in the middle of a service.
fn tracer_provider_builder() -> opentelemetry_sdk::trace::TracerProviderBuilder {
    SdkTracerProvider::builder().with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
}

fn span_exporter(base: &str, client: OtlpHttpClient) -> Result<SpanExporter, TelemetryError> {
    SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(signal_url(base, "/v1/traces"))
        .build()
        .map_err(|source| TelemetryError::Exporter {
            signal: "traces",
            source,
        })
}

fn metric_exporter(base: &str, client: OtlpHttpClient) -> Result<MetricExporter, TelemetryError> {
    MetricExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(signal_url(base, "/v1/metrics"))
        .build()
        .map_err(|source| TelemetryError::Exporter {
            signal: "metrics",
            source,
        })
}

/// The layer that gives spans OpenTelemetry contexts. It has its own filter, independent of
/// `RUST_LOG`, so that quieting logs (`RUST_LOG=warn`) never disables the messaging spans and
/// breaks trace propagation.
fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + use<S>
where
    S: tracing::Subscriber
        + for<'span> tracing_subscriber::registry::LookupSpan<'span>
        + Send
        + Sync,
{
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("lapin", LevelFilter::OFF)
        .with_target("amq_protocol", LevelFilter::WARN)
        .with_target("sqlx", LevelFilter::WARN)
        // The SDK's own diagnostics are about the export pipeline; never feed them back into it.
        .with_target("opentelemetry", LevelFilter::OFF);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SCOPE))
        .with_filter(filter)
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn fmt_layer(format: LogFormat, filter: EnvFilter) -> BoxedLayer {
    let stderr = std::io::stderr;
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(stderr)
            .with_target(true)
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Human | LogFormat::Auto => tracing_subscriber::fmt::layer()
            .with_writer(stderr)
            .with_target(true)
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .with_filter(filter)
            .boxed(),
    }
}

/// `RUST_LOG` when set and valid, else `default`; the second value says why `RUST_LOG` was
/// ignored, to be logged once the subscriber is up.
fn log_filter(default: &str) -> (EnvFilter, Option<String>) {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(value) if !value.trim().is_empty() => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(error) => (
                EnvFilter::new(default),
                Some(format!(
                    "RUST_LOG is not a valid filter ({error}); using `{default}` instead"
                )),
            ),
        },
        _ => (EnvFilter::new(default), None),
    }
}

/// A minimal OTLP/HTTP client: one HTTP/1.1 `POST` per export over a fresh
/// `tokio::net::TcpStream`, `Connection: close`, plain `http://` only.
///
/// It exists so the exporter needs neither hyper nor reqwest (nor a TLS stack): the OTLP payload
/// is a single small request every few seconds, for which connection reuse buys nothing.
/// Responses are read fully (Content-Length, chunked, or until EOF), up to 4 MiB, all within one
/// deadline. It does not follow redirects, and does not speak TLS or HTTP/2.
mod otlp_http {
    use std::future::Future;
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::time::Duration;

    use opentelemetry_http::{
        Bytes, HttpClient, HttpError, Request, Response, ResponseBodyTooLarge,
    };
    use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    /// Largest response body accepted: the limit opentelemetry-http's own clients use. An OTLP
    /// response is a few bytes (an optional partial-success message).
    pub(super) const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;
    /// Largest status line plus headers accepted.
    const MAX_RESPONSE_HEAD: usize = 64 * 1024;
    /// Bytes asked of the socket per read.
    const READ_CHUNK: usize = 8 * 1024;

    /// What went wrong talking to the collector. Only the exporter's debug diagnostics show the
    /// text; what matters to it is the distinction between an `Err` (network) and a status.
    #[derive(Debug, thiserror::Error)]
    pub(super) enum HttpClientError {
        #[error("only plain http:// collector endpoints are supported, not `{0}`")]
        UnsupportedScheme(String),
        #[error("the collector endpoint has no host")]
        MissingHost,
        #[error("collector connection failed")]
        Io(#[source] io::Error),
        #[error("the collector closed the connection before the response was complete")]
        ClosedEarly,
        #[error("the collector sent a malformed response: {0}")]
        Malformed(&'static str),
        #[error("the collector's response body is larger than {MAX_RESPONSE_BODY} bytes")]
        TooLarge,
        #[error("no complete response from the collector within {0:?}")]
        Timeout(Duration),
        #[error("the export runtime has shut down")]
        RuntimeGone,
    }

    impl HttpClientError {
        /// `ResponseBodyTooLarge` is the type the exporter looks for to stop retrying.
        fn into_http_error(self) -> HttpError {
            match self {
                HttpClientError::TooLarge => Box::new(ResponseBodyTooLarge::new()),
                other => Box::new(other),
            }
        }
    }

    /// Cheap to clone: the span and metric exporters share one runtime.
    #[derive(Debug, Clone)]
    pub(super) struct OtlpHttpClient {
        timeout: Duration,
        runtime: Arc<ExportRuntime>,
    }

    /// A current-thread runtime (I/O and timers, no worker threads) on which the SDK's export
    /// threads run requests. `Option` only so that `Drop` can take it.
    #[derive(Debug)]
    struct ExportRuntime(Option<tokio::runtime::Runtime>);

    impl Drop for ExportRuntime {
        fn drop(&mut self) {
            // The last exporter may be dropped inside the service's runtime, where a plain
            // `Runtime` drop panics; `shutdown_background` is allowed anywhere.
            if let Some(runtime) = self.0.take() {
                runtime.shutdown_background();
            }
        }
    }

    impl OtlpHttpClient {
        /// `timeout` bounds each request as a whole: connect, send and read.
        pub(super) fn new(timeout: Duration) -> io::Result<Self> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .thread_name("otlp-export")
                .build()?;
            Ok(OtlpHttpClient {
                timeout,
                runtime: Arc::new(ExportRuntime(Some(runtime))),
            })
        }

        async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpClientError> {
            let exchange = post(request, self.timeout);
            if tokio::runtime::Handle::try_current().is_ok() {
                // Already on a runtime (an async span processor): just await.
                exchange.await
            } else {
                // The SDK's export threads poll us with a plain executor: drive the request on
                // our own runtime.
                match &self.runtime.0 {
                    Some(runtime) => runtime.block_on(exchange),
                    None => Err(HttpClientError::RuntimeGone),
                }
            }
        }
    }

    // `HttpClient` is an `#[async_trait]`; this is its expansion, written out so the workspace
    // needs no `async-trait` dependency of its own.
    impl HttpClient for OtlpHttpClient {
        fn send_bytes<'life0, 'async_trait>(
            &'life0 self,
            request: Request<Bytes>,
        ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                self.send(request)
                    .await
                    .map_err(HttpClientError::into_http_error)
            })
        }
    }

    /// Sends `request` and reads the whole response, all within `timeout`. A non-2xx status is
    /// a successful exchange (the exporter decides about retries); only transport failures are
    /// errors.
    pub(super) async fn post(
        request: Request<Bytes>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, HttpClientError> {
        tokio::time::timeout(timeout, exchange(request))
            .await
            .unwrap_or(Err(HttpClientError::Timeout(timeout)))
    }

    async fn exchange(request: Request<Bytes>) -> Result<Response<Bytes>, HttpClientError> {
        let target = Target::of(&request)?;
        let mut stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(HttpClientError::Io)?;
        // One write of the head and one of the body: don't let Nagle hold the body back.
        stream.set_nodelay(true).map_err(HttpClientError::Io)?;
        stream
            .write_all(&request_head(&request, &target))
            .await
            .map_err(HttpClientError::Io)?;
        stream
            .write_all(request.body())
            .await
            .map_err(HttpClientError::Io)?;
        stream.flush().await.map_err(HttpClientError::Io)?;
        read_response(stream).await
    }

    /// Where to connect and what to put in the request line.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Target {
        /// Host to resolve, without IPv6 brackets.
        host: String,
        port: u16,
        /// `Host` header value: the authority without credentials.
        host_header: String,
        /// Path and query, at least `/`.
        path: String,
    }

    impl Target {
        pub(super) fn of(request: &Request<Bytes>) -> Result<Self, HttpClientError> {
            let uri = request.uri();
            if uri.scheme_str() != Some("http") {
                return Err(HttpClientError::UnsupportedScheme(
                    uri.scheme_str().unwrap_or_default().to_owned(),
                ));
            }
            let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
                return Err(HttpClientError::MissingHost);
            };
            let host_header = authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, host)| host);
            Ok(Target {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port: uri.port_u16().unwrap_or(80),
                host_header: host_header.to_owned(),
                path: uri
                    .path_and_query()
                    .map_or("/", |path| path.as_str())
                    .to_owned(),
            })
        }
    }

    /// Request line and headers. `Host`, `Content-Length` and `Connection` are ours; the
    /// caller's headers (content type, `OTEL_EXPORTER_OTLP_HEADERS`) follow as given.
    fn request_head(request: &Request<Bytes>, target: &Target) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            request.method(),
            target.path,
            target.host_header,
            request.body().len()
        )
        .into_bytes();
        for (name, value) in request.headers() {
            if matches!(
                name.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding"
            ) {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    /// Buffered reads from the connection.
    struct Reader<R> {
        inner: R,
        buf: Vec<u8>,
        /// Start of the unconsumed bytes in `buf`.
        pos: usize,
    }

    impl<R: AsyncRead + Unpin> Reader<R> {
        fn new(inner: R) -> Self {
            Reader {
                inner,
                buf: Vec::with_capacity(READ_CHUNK),
                pos: 0,
            }
        }

        fn buffered(&self) -> &[u8] {
            &self.buf[self.pos..]
        }

        /// Reads more bytes; `false` at end of stream.
        async fn fill(&mut self) -> Result<bool, HttpClientError> {
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            self.buf.reserve(READ_CHUNK);
            let read = self
                .inner
                .read_buf(&mut self.buf)
                .await
                .map_err(HttpClientError::Io)?;
            Ok(read > 0)
        }

        /// One line without its `\r\n` (a bare `\n` is accepted too).
        async fn line(&mut self) -> Result<Vec<u8>, HttpClientError> {
            loop {
                if let Some(end) = self.buffered().iter().position(|&b| b == b'\n') {
                    let mut line = self.buffered()[..end].to_vec();
                    self.pos += end + 1;
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(line);
                }
                if self.buffered().len() > MAX_RESPONSE_HEAD {
                    return Err(HttpClientError::Malformed("line too long"));
                }
                if !self.fill().await? {
                    return Err(HttpClientError::ClosedEarly);
                }
            }
        }

        async fn exact(&mut self, len: usize) -> Result<Vec<u8>, HttpClientError> {
            while self.buffered().len() < len {
                if !self.fill().await? {
                    return Err(HttpClientError::ClosedEarly);
                }
            }
            let bytes = self.buffered()[..len].to_vec();
            self.pos += len;
            Ok(bytes)
        }

        async fn until_eof(&mut self) -> Result<Vec<u8>, HttpClientError> {
            loop {
                if self.buffered().len() > MAX_RESPONSE_BODY {
                    return Err(HttpClientError::TooLarge);
                }
                if !self.fill().await? {
                    let bytes = self.buffered().to_vec();
                    self.pos = self.buf.len();
                    return Ok(bytes);
                }
            }
        }
    }

    /// A response's status line and headers (names lowercased).
    struct Head {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
    }

    impl Head {
        fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
            self.headers
                .iter()
                .filter(move |(n, _)| n == name)
                .map(|(_, v)| v.as_slice())
        }

        /// RFC 9112 §6.3: chunked only if it is the final transfer coding.
        fn is_chunked(&self) -> bool {
            self.values("transfer-encoding")
                .flat_map(|v| v.split(|&b| b == b','))
                .last()
                .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        }

        fn has_transfer_encoding(&self) -> bool {
            self.values("transfer-encoding").next().is_some()
        }

        fn content_length(&self) -> Result<Option<usize>, HttpClientError> {
            let mut length = None;
            for value in self.values("content-length") {
                let parsed = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or(HttpClientError::Malformed("invalid Content-Length"))?;
                if length.is_some_and(|l| l != parsed) {
                    return Err(HttpClientError::Malformed("conflicting Content-Length"));
                }
                length = Some(parsed);
            }
            Ok(length)
        }
    }

    pub(super) async fn read_response<R: AsyncRead + Unpin>(
        io: R,
    ) -> Result<Response<Bytes>, HttpClientError> {
        let mut reader = Reader::new(io);
        let head = loop {
            let head = read_head(&mut reader).await?;
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            if !(100..200).contains(&head.status) || head.status == 101 {
                break head;
            }
        };
        let body = if head.status == 204 || head.status == 304 {
            Vec::new()
        } else if head.is_chunked() {
            read_chunked(&mut reader).await?
        } else if head.has_transfer_encoding() {
            reader.until_eof().await?
        } else if let Some(length) = head.content_length()? {
            if length > MAX_RESPONSE_BODY {
                return Err(HttpClientError::TooLarge);
            }
            reader.exact(length).await?
        } else {
            reader.until_eof().await?
        };

        let mut response = Response::builder().status(head.status);
        for (name, value) in &head.headers {
            response = response.header(name.as_str(), value.as_slice());
        }
        response
            .body(Bytes::from(body))
            .map_err(|_| HttpClientError::Malformed("invalid status or header"))
    }

    async fn read_head<R: AsyncRead + Unpin>(
        reader: &mut Reader<R>,
    ) -> Result<Head, HttpClientError> {
        let status_line = reader.line().await?;
        let status = parse_status_line(&status_line)?;
        let mut size = status_line.len();
        let mut headers = Vec::new();
        loop {
            let line = reader.line().await?;
            if line.is_empty() {
                return Ok(Head { status, headers });
            }
            size += line.len();
            if size > MAX_RESPONSE_HEAD {
                return Err(HttpClientError::Malformed("response head too large"));
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(HttpClientError::Malformed("header line without a colon"))?;
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if !is_token(name) {
                return Err(HttpClientError::Malformed("invalid header name"));
            }
            // Values the `http` crate would refuse are dropped rather than failing the export.
            if value
                .iter()
                .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
            {
                let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                headers.push((name, value.to_vec()));
            }
        }
    }

    /// `HTTP/1.x NNN reason`.
    fn parse_status_line(line: &[u8]) -> Result<u16, HttpClientError> {
        let malformed = HttpClientError::Malformed("invalid status line");
        let line = std::str::from_utf8(line)
            .map_err(|_| HttpClientError::Malformed("invalid status line"))?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.")
            || code.len() != 3
            || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(malformed);
        }
        code.parse().map_err(|_| malformed)
    }

    /// RFC 9110 §5.6.2 `token`.
    fn is_token(bytes: &[u8]) -> bool {
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }

    async fn read_chunked<R: AsyncRead + Unpin>(
        reader: &mut Reader<R>,
    ) -> Result<Vec<u8>, HttpClientError> {
        let mut body = Vec::new();
        loop {
            let line = reader.line().await?;
            let size = line.split(|&b| b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or(HttpClientError::Malformed("invalid chunk size"))?;
            if size == 0 {
                // Trailer fields, up to the empty line; they are not kept.
                while !reader.line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > MAX_RESPONSE_BODY {
                return Err(HttpClientError::TooLarge);
            }
            body.extend_from_slice(&reader.exact(size).await?);
            if !reader.line().await?.is_empty() {
                return Err(HttpClientError::Malformed("chunk not followed by CRLF"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use opentelemetry::trace::{SpanKind, Tracer as _};
    use opentelemetry_http::{Bytes, HttpClient as _, Request};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::SpanData;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::otlp_http::{HttpClientError, MAX_RESPONSE_BODY, Target, post, read_response};
    use super::*;
    use crate::bus::propagation;

    type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    #[test]
    fn log_format_parses_the_three_values() {
        for (raw, expected) in [
            ("auto", LogFormat::Auto),
            ("", LogFormat::Auto),
            (" Human ", LogFormat::Human),
            ("JSON", LogFormat::Json),
            ("json", LogFormat::Json),
        ] {
            assert_eq!(raw.parse::<LogFormat>(), Ok(expected), "{raw:?}");
        }
        let error = "yaml".parse::<LogFormat>().err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("`yaml` is not a log format: use `auto`, `human` or `json`")
        );
        assert_eq!(LogFormat::Json.resolve(), LogFormat::Json);
        assert_ne!(LogFormat::Auto.resolve(), LogFormat::Auto);
        assert_eq!(LogFormat::Human.to_string(), "human");
    }

    #[test]
    fn endpoints_are_classified() {
        let target = |e: &str| ExportTarget::from_endpoint(Some(e));
        assert!(matches!(
            ExportTarget::from_endpoint(None),
            Ok(ExportTarget::None)
        ));
        assert!(matches!(target("  "), Ok(ExportTarget::None)));
        assert!(matches!(
            target("http://collector:4318/"),
            Ok(ExportTarget::Http { base }) if base == "http://collector:4318"
        ));
        assert!(matches!(
            target("https://user:s3cret@collector.example"),
            Ok(ExportTarget::TlsUnsupported { endpoint }) if !endpoint.contains("s3cret")
        ));
        for bad in [
            "collector:4318",
            "grpc://x",
            "http://",
            "http:///v1",
            "http://x?a=b",
        ] {
            assert!(
                matches!(target(bad), Err(TelemetryError::InvalidEndpoint { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            signal_url("http://c:4318/", "/v1/traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(span_name("publish", ""), "publish");
        assert_eq!(span_name("process", "q"), "process q");
    }

    #[test]
    fn init_twice_and_init_for_tests_never_panic() {
        init_for_tests();
        init_for_tests();
        let second = init(&OtelConfig::default(), "test", LogFormat::Json);
        assert!(matches!(second, Err(TelemetryError::AlreadyInitialized)));

        // The test subscriber carries trace context into AMQP headers.
        let mut headers = lapin::types::FieldTable::default();
        let span = publish_span(
            "tenancy.events",
            "tenant.registered",
            "m-1",
            "tenant.registered",
        );
        span.in_scope(|| propagation::inject_current(&mut headers));
        assert!(headers.contains_key(propagation::TRACEPARENT));
        assert!(propagation::trace_id_of(&span).is_some());
    }

    /// Collects finished spans, like the SDK's in-memory exporter (behind its `testing` feature).
    #[derive(Debug, Clone, Default)]
    struct Collect(std::sync::Arc<std::sync::Mutex<Vec<SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            if let Ok(mut spans) = self.0.lock() {
                spans.extend(batch);
            }
            Ok(())
        }
    }

    fn attribute(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[test]
    fn messaging_spans_follow_the_semantic_conventions() {
        let spans = Collect::default();
        let provider = tracer_provider_builder()
            .with_simple_exporter(spans.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(otel_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            publish_span("tenancy.events", "migrate.tenant", "m-9", "migrate.tenant")
                .in_scope(|| {});
            let process = process_span("tenancy.migrate", "m-9", "migrate.tenant");
            process.record(field::TENANT_ID, "t-42");
            process.in_scope(|| {});
        });
        let finished = spans.0.lock().map(|s| s.clone()).unwrap_or_default();
        let [publish, process] = finished.as_slice() else {
            panic!("expected two spans, got {}", finished.len());
        };

        assert_eq!(publish.name, "publish tenancy.events");
        assert_eq!(publish.span_kind, SpanKind::Producer);
        for (key, value) in [
            ("messaging.system", "rabbitmq"),
            ("messaging.operation.type", "send"),
            ("messaging.operation.name", "publish"),
            ("messaging.destination.name", "tenancy.events"),
            (
                "messaging.rabbitmq.destination.routing_key",
                "migrate.tenant",
            ),
            ("messaging.message.id", "m-9"),
            ("cloudevents.event_type", "migrate.tenant"),
        ] {
            assert_eq!(attribute(publish, key).as_deref(), Some(value), "{key}");
        }

        assert_eq!(process.name, "process tenancy.migrate");
        assert_eq!(process.span_kind, SpanKind::Consumer);
        for (key, value) in [
            ("messaging.system", "rabbitmq"),
            ("messaging.operation.type", "process"),
            ("messaging.operation.name", "process"),
            ("messaging.destination.name", "tenancy.migrate"),
            ("messaging.message.id", "m-9"),
            ("cloudevents.event_type", "migrate.tenant"),
            ("tenant.id", "t-42"),
        ] {
            assert_eq!(attribute(process, key).as_deref(), Some(value), "{key}");
        }
    }

    fn request(url: &str, body: &'static [u8]) -> Request<Bytes> {
        Request::builder()
            .method("POST")
            .uri(url)
            .header("content-type", "application/x-protobuf")
            .body(Bytes::from_static(body))
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// Reads one request (head + Content-Length body) the way a collector would.
    async fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
        let mut data = Vec::new();
        let mut chunk = [0_u8; 1024];
        loop {
            let read = stream.read(&mut chunk).await?;
            data.extend_from_slice(&chunk[..read]);
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|l| l.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = data[end + 4..].to_vec();
                while body.len() < length {
                    let read = stream.read(&mut chunk).await?;
                    if read == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..read]);
                }
                return Ok((head, body));
            }
            if read == 0 {
                return Ok((String::from_utf8_lossy(&data).into_owned(), Vec::new()));
            }
        }
    }

    /// A collector that accepts one connection, reads one request, sends `reply` and closes.
    async fn one_shot_server(
        reply: &'static [u8],
    ) -> std::io::Result<(
        String,
        tokio::task::JoinHandle<std::io::Result<(String, Vec<u8>)>>,
    )> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1/traces", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let received = read_request(&mut stream).await?;
            stream.write_all(reply).await?;
            stream.shutdown().await?;
            Ok(received)
        });
        Ok((url, server))
    }

    #[tokio::test]
    async fn http_client_posts_and_reads_a_content_length_body() -> TestResult {
        let (url, server) =
            one_shot_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nRetry-After: 3\r\n\r\nhello")
                .await?;
        let response = post(request(&url, b"payload"), Duration::from_secs(5)).await?;
        let (head, body) = server.await??;

        assert_eq!(response.status(), 200);
        assert_eq!(response.body().as_ref(), b"hello");
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        assert!(head.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{head}");
        for line in [
            "Content-Length: 7",
            "Connection: close",
            "content-type: application/x-protobuf",
        ] {
            assert!(head.lines().any(|l| l == line), "{line} missing in {head}");
        }
        assert!(
            head.lines().any(|l| l.starts_with("Host: 127.0.0.1:")),
            "{head}"
        );
        assert_eq!(body, b"payload");
        Ok(())
    }

    #[tokio::test]
    async fn http_client_returns_error_statuses_as_responses() -> TestResult {
        let (url, server) = one_shot_server(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nboom",
        )
        .await?;
        let response = post(request(&url, b"x"), Duration::from_secs(5)).await?;
        server.await??;
        assert_eq!(response.status(), 500);
        assert_eq!(response.body().as_ref(), b"boom", "read until EOF");
        Ok(())
    }

    #[tokio::test]
    async fn http_client_fails_when_the_connection_closes_early() -> TestResult {
        let (url, server) =
            one_shot_server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await?;
        let result = post(request(&url, b"x"), Duration::from_secs(5)).await;
        server.await??;
        assert!(
            matches!(result, Err(HttpClientError::ClosedEarly)),
            "{result:?}"
        );

        let (url, server) = one_shot_server(b"").await?;
        let result = post(request(&url, b"x"), Duration::from_secs(5)).await;
        server.await??;
        assert!(
            matches!(result, Err(HttpClientError::ClosedEarly)),
            "{result:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn http_client_gives_up_at_its_deadline() -> TestResult {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1/metrics", listener.local_addr()?);
        // Accepts, reads, and never answers.
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let _ = read_request(&mut stream).await?;
            tokio::time::sleep(Duration::from_secs(30)).await;
            std::io::Result::Ok(())
        });
        let started = Instant::now();
        let result = post(request(&url, b"x"), Duration::from_millis(300)).await;
        server.abort();
        assert!(
            matches!(result, Err(HttpClientError::Timeout(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        Ok(())
    }

    #[tokio::test]
    async fn http_client_refuses_what_it_cannot_speak() {
        for (url, expected) in [
            ("https://c:4318/v1/traces", "https"),
            ("ftp://c:21/x", "ftp"),
        ] {
            let result = post(request(url, b""), Duration::from_secs(1)).await;
            assert!(
                matches!(&result, Err(HttpClientError::UnsupportedScheme(s)) if s == expected),
                "{url}: {result:?}"
            );
        }
        let refused = TcpListener::bind("127.0.0.1:0")
            .await
            .and_then(|l| l.local_addr());
        if let Ok(addr) = refused {
            // The listener is dropped: nothing accepts on this port any more.
            let result = post(
                request(&format!("http://{addr}/"), b""),
                Duration::from_secs(5),
            )
            .await;
            assert!(matches!(result, Err(HttpClientError::Io(_))), "{result:?}");
        }
    }

    #[test]
    fn targets_strip_credentials_and_brackets() -> TestResult {
        let target = Target::of(&request("http://u:p@[::1]:4318/v1/traces?x=1", b""))?;
        let expected = Target::of(&request("http://[::1]:4318/v1/traces?x=1", b""))?;
        assert_eq!(target, expected);
        assert_eq!(
            format!("{target:?}"),
            "Target { host: \"::1\", port: 4318, host_header: \"[::1]:4318\", path: \"/v1/traces?x=1\" }"
        );
        Ok(())
    }

    async fn parse(raw: &'static [u8]) -> Result<(u16, Vec<u8>), HttpClientError> {
        read_response(raw)
            .await
            .map(|r| (r.status().as_u16(), r.body().to_vec()))
    }

    #[tokio::test]
    async fn responses_are_framed_correctly() {
        let chunked = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n",
        )
        .await;
        assert_eq!(chunked.ok(), Some((200, b"Wikipedia".to_vec())));

        let interim = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
        )
        .await;
        assert_eq!(interim.ok(), Some((204, Vec::new())));

        let bare_newlines = parse(b"HTTP/1.0 200 OK\nContent-Length: 2\n\nok").await;
        assert_eq!(bare_newlines.ok(), Some((200, b"ok".to_vec())));

        for malformed in [
            &b"SMTP 220 hello\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let result = read_response(malformed).await;
            assert!(
                matches!(result, Err(HttpClientError::Malformed(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(malformed)
            );
        }

        let too_large = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE_BODY + 1
        );
        let result = read_response(too_large.as_bytes()).await;
        assert!(
            matches!(result, Err(HttpClientError::TooLarge)),
            "{result:?}"
        );
    }

    /// The whole export path: the SDK's batch thread (no Tokio context) drives our client on
    /// its private runtime, and a collector receives an OTLP/HTTP protobuf POST.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_reach_a_collector_from_the_batch_thread() -> TestResult {
        let (url, server) = one_shot_server(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        )
        .await?;
        let base = url.trim_end_matches("/v1/traces").to_owned();
        let client = OtlpHttpClient::new(Duration::from_secs(5))?;
        let provider = tracer_provider_builder()
            .with_resource(resource("telemetry-test"))
            .with_batch_exporter(span_exporter(&base, client.clone())?)
            .build();
        provider.tracer("test").in_span("exported", |_| {});
        let flushed = tokio::task::spawn_blocking(move || {
            let flushed = provider.force_flush();
            let _ = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
            flushed
        })
        .await?;
        let (head, body) = server.await??;

        assert!(flushed.is_ok(), "{flushed:?}");
        assert!(head.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("exported") && body.contains("telemetry-test"),
            "{body}"
        );

        // Called from inside a runtime, the client simply awaits (no nested runtime).
        let (url, server) =
            one_shot_server(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").await?;
        let response = client.send_bytes(request(&url, b"x")).await?;
        server.await??;
        assert_eq!(response.status(), 202);
        Ok(())
    }

    #[test]
    fn the_guard_shuts_down_without_an_exporter() {
        let guard = TelemetryGuard {
            providers: Some(Providers {
                tracer: tracer_provider_builder().build(),
                meter: None,
            }),
        };
        guard.shutdown();
        drop(TelemetryGuard { providers: None });
    }
}
