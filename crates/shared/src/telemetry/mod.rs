//! Telemetry: the one place where logs, traces and metrics are set up (STYLE rule 8), plus the
//! span constructors every service uses for RabbitMQ messages.
//!
//! It owns the global `tracing` subscriber, the global OpenTelemetry tracer and meter providers,
//! the global W3C propagator and the OTLP export. It must not read configuration beyond
//! `RUST_LOG` and the standard `OTEL_*` variables (those arrive in [`OtelConfig`] or are read by
//! the OpenTelemetry SDK and exporter themselves), and it must not move trace context across the
//! queue: that is [`bus::propagation`](crate::bus::propagation). Field names and levels follow
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
//!                                          └─ batch span processor thread ─┐  only with an
//!  meter() instruments ──▶ SdkMeterProvider                               │  OTLP endpoint
//!                           └─ periodic reader thread (15 s) ─────────────┤  (and not
//!                                                                         │  OTEL_SDK_DISABLED)
//!                                 Watched exporter: failures logged once ─┤
//!                                                                         ▼
//!        http/protobuf: opentelemetry-otlp over our reqwest blocking client (rustls on ring)
//!                       ──▶ {endpoint}/v1/traces, /v1/metrics (or the per-signal endpoints)
//!        grpc:          opentelemetry-otlp over tonic (rustls on ring), driven by telemetry's
//!                       own one-thread Tokio runtime ──▶ {endpoint} TraceService / MetricsService
//!
//!  TelemetryGuard holds both providers and that runtime; shutdown() (or Drop) flushes the
//!  providers, then stops the runtime, last thing on exit.
//! ```
//!
//! The export threads belong to the OpenTelemetry SDK and poll the exporter with a plain
//! executor, outside any Tokio runtime. The HTTP client blocks on its own I/O thread; the gRPC
//! channel runs on telemetry's own runtime instead of the service's. Either way, export keeps
//! working while the service's runtime shuts down, and a flush at exit never waits on a runtime
//! that is gone.
//!
//! # Modules
//! - this file: [`init`] and its variants, [`TelemetryGuard`], [`meter`];
//! - [`field`]: the names of log fields and span attributes;
//! - `spans`: [`command_span`], [`publish_span`], [`process_span`];
//! - `layers`: the log and OpenTelemetry layers of the `tracing` subscriber;
//! - `export`: the OTLP exporters and their clients, the resource, the sampler.

use std::sync::Once;
use std::time::Duration;

use opentelemetry::global;
use opentelemetry_otlp::{ExporterBuildError, MetricExporter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, OtelConfig};

mod export;
pub mod field;
mod layers;
pub mod prometheus;
mod spans;

use export::{Exporters, Watched, resource, tracer_provider_builder};
use layers::{SpanContexts, fmt_layer, log_filter, otel_layer};
pub use spans::{DeliveredFrom, command_span, process_span, publish_span, record_error};

/// The filter when `RUST_LOG` is unset: our own code at `info`, chatty dependencies at `warn`.
/// `opentelemetry` covers the SDK's own diagnostics. `opentelemetry-otlp` is at `error`: it warns
/// on every failed export (every batch, every metric interval), whereas `export` logs a failing
/// export once with its cause, and once more when it recovers.
///
/// lapin is off: every failure it sees reaches the bus as an error, which the bus logs once with
/// what it means (a lost connection it recovers from is a WARN, a refusal an ERROR), whereas
/// lapin logs a broker restart as several ERROR lines from its I/O loop although nothing is
/// wrong yet. `RUST_LOG=info,lapin=debug` brings its lines back.
pub const DEFAULT_LOG_FILTER: &str =
    "info,lapin=off,amq_protocol=warn,sqlx=warn,opentelemetry=warn,opentelemetry-otlp=error";

/// The filter of `tenantctl`'s commands when `RUST_LOG` is unset: what they print is their
/// output; logs are for what went wrong.
pub const CLI_LOG_FILTER: &str =
    "warn,lapin=off,amq_protocol=warn,sqlx=warn,opentelemetry=warn,opentelemetry-otlp=error";

/// The filter of [`init_for_tests`] when `RUST_LOG` is unset: this workspace's crates (and the
/// `it` e2e binary) at `debug`.
pub const TEST_LOG_FILTER: &str = "info,domain=debug,engine=debug,shared=debug,provisioner=debug,migrator=debug,\
    auditor=debug,tenantctl=debug,testkit=debug,it=debug,lapin=warn,amq_protocol=warn,sqlx=warn,\
    opentelemetry=warn,opentelemetry-otlp=error";

/// Instrumentation scope of every tracer and meter this workspace creates.
pub const SCOPE: &str = "tenancy";

/// How often metrics are exported when `OTEL_METRIC_EXPORT_INTERVAL` is unset: frequent enough
/// for a dashboard during a fleet deploy; the SDK default (60 s) hides short deploys.
pub const METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(15);

/// Deadline of one HTTP request to the collector (connect, send, read). Equal to the OTLP
/// default export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`), which bounds the exporter's retries
/// as a whole.
pub const EXPORT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on the final flush of each provider at shutdown, so a dead collector delays exit by
/// seconds, not minutes.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A global `tracing` subscriber is already installed (a second `init`, or a test harness
    /// that got there first). The existing set-up stays in place and keeps working.
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialized,
    /// The OTLP exporter rejected its configuration (an `OTEL_EXPORTER_OTLP_*` variable it
    /// reads itself, or no trusted roots for a gRPC `https://` endpoint); the message names it.
    #[error("could not set up the OTLP {signal} exporter: {source}")]
    Exporter {
        signal: &'static str,
        #[source]
        source: ExporterBuildError,
    },
    /// The HTTP client of the exporter could not be built (no TLS roots could be loaded).
    #[error("could not set up the OTLP/HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// A thread or the gRPC runtime could not start (out of threads or file descriptors).
    #[error("could not start the OTLP export threads")]
    ExportRuntime(#[source] std::io::Error),
    /// Building the exporters panicked (a bug in a dependency).
    #[error("setting up the OTLP exporters panicked")]
    SetupPanicked,
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
    /// `None` only in tests that build a guard by hand.
    meter: Option<SdkMeterProvider>,
    /// Drives the gRPC exporters; stopped after the providers have flushed.
    runtime: Option<tokio::runtime::Runtime>,
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
                if let Some(runtime) = self.runtime {
                    runtime.shutdown_timeout(Duration::from_secs(1));
                }
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
/// - Export, per signal, when its OTLP endpoint is set ([`OtelConfig`]: the generic or the
///   per-signal variable, and not `OTEL_SDK_DISABLED=true`): traces (batch processor) and
///   metrics (every [`METRIC_EXPORT_INTERVAL`] unless `OTEL_METRIC_EXPORT_INTERVAL` says
///   otherwise) over OTLP http/protobuf or gRPC, plain or TLS. The exporter reads the other
///   `OTEL_EXPORTER_OTLP_*` variables itself (headers, compression, timeout). The resource names
///   the service `OTEL_SERVICE_NAME`, or `service.name` from `OTEL_RESOURCE_ATTRIBUTES`, or else
///   `service_name`, with `service.version` = this build's version and a `service.instance.id`
///   of its own. A failing export is logged once as a warning, and once more when it recovers.
///
/// Works inside or outside a Tokio runtime.
///
/// # Errors
/// [`TelemetryError::AlreadyInitialized`] when a global subscriber exists (nothing changes, and
/// the existing set-up keeps working); the other variants when export is configured but cannot
/// be set up. No global state is changed on error.
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
    let resource = resource(otel, service_name);
    let exporters = Exporters::build(otel)?;
    let mut tracer = tracer_provider_builder().with_resource(resource.clone());
    if let Some(spans) = exporters.spans {
        tracer = tracer.with_batch_exporter(spans);
    }
    let providers = Providers {
        tracer: tracer.build(),
        meter: Some(meter_provider(resource, exporters.metrics)),
        runtime: exporters.runtime,
    };

    let (filter, filter_problem) = log_filter(default_filter);
    let contexts = SpanContexts::default();
    let installed = tracing_subscriber::registry()
        .with(fmt_layer(format.resolve(), filter, &contexts))
        .with(otel_layer(&providers.tracer))
        .with(contexts.tap())
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
    let exported = [("traces", &otel.traces), ("metrics", &otel.metrics)];
    for (signal, target) in exported {
        match target {
            // Never the headers: they carry the back end's token.
            Some(target) => tracing::info!(
                signal,
                endpoint = %target.endpoint,
                protocol = %target.protocol,
                "exporting over OTLP"
            ),
            None => tracing::debug!(
                signal,
                "not exported: no OTLP endpoint is set, or OTEL_SDK_DISABLED is true"
            ),
        }
    }

    Ok(TelemetryGuard {
        providers: Some(providers),
    })
}

/// The process's meter provider: always read by Prometheus (`/metrics`), and pushed over OTLP
/// when an endpoint is set.
fn meter_provider(
    resource: Resource,
    otlp: Option<PeriodicReader<Watched<MetricExporter>>>,
) -> SdkMeterProvider {
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    if let Some(reader) = prometheus::reader() {
        builder = builder.with_reader(reader);
    }
    if let Some(reader) = otlp {
        builder = builder.with_reader(reader);
    }
    builder.build()
}

/// Logging and trace context for tests: `RUST_LOG` or [`TEST_LOG_FILTER`], captured by the test
/// harness, W3C propagation on, nothing exported. Safe to call from every test, any number of
/// times and from any thread; the first call wins and later calls do nothing.
pub fn init_for_tests() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let provider = tracer_provider_builder()
            .with_resource(resource(&OtelConfig::default(), "tests"))
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

/// How often metrics are exported and fleet metrics refreshed: `OTEL_METRIC_EXPORT_INTERVAL`
/// (milliseconds) when set and valid, else [`METRIC_EXPORT_INTERVAL`].
pub fn metric_interval() -> Duration {
    std::env::var(opentelemetry_sdk::metrics::OTEL_METRIC_EXPORT_INTERVAL)
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(METRIC_EXPORT_INTERVAL, Duration::from_millis)
}

/// The workspace's meter (scope [`SCOPE`]): create instruments from it after [`init`], e.g.
/// `meter().u64_counter("tenancy.migrations.applied").build()`. Without an exporter, and for
/// instruments created before `init`, recording is a no-op.
pub fn meter() -> opentelemetry::metrics::Meter {
    global::meter(SCOPE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::propagation;

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

    #[test]
    fn the_guard_shuts_down_without_an_exporter() {
        let guard = TelemetryGuard {
            providers: Some(Providers {
                tracer: tracer_provider_builder().build(),
                meter: None,
                runtime: None,
            }),
        };
        guard.shutdown();
        drop(TelemetryGuard { providers: None });
    }
}
