//! The `tracing` layers: log lines to stderr (human or JSON, filtered by `RUST_LOG`) and the
//! OpenTelemetry layer that gives spans their contexts (filtered on its own).

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::{Layer, Registry};

use super::SCOPE;
use crate::config::LogFormat;

/// The layer that gives spans OpenTelemetry contexts. It has its own filter, independent of
/// `RUST_LOG`, so that quieting logs (`RUST_LOG=warn`) never disables the messaging spans and
/// breaks trace propagation.
pub(super) fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + use<S>
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

pub(super) fn fmt_layer(format: LogFormat, filter: EnvFilter) -> BoxedLayer {
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
pub(super) fn log_filter(default: &str) -> (EnvFilter, Option<String>) {
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
