//! The `tracing` layers: log lines to stderr (human or JSON, filtered by `RUST_LOG`), the
//! OpenTelemetry layer that gives spans their contexts (filtered on its own), and the layer that
//! notes each span's trace and span ids so that every JSON line inside a span carries them.

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::dispatcher::WeakDispatch;
use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
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
        LogFormat::Json => json_layer(stderr).with_filter(filter).boxed(),
        LogFormat::Human | LogFormat::Auto => tracing_subscriber::fmt::layer()
            .with_writer(stderr)
            .with_target(true)
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .with_filter(filter)
            .boxed(),
    }
}

/// JSON lines (docs/LOGGING.md) to `writer`, with the trace and span ids of the innermost span.
fn json_layer<S, W>(writer: W) -> impl Layer<S> + Send + Sync + use<S, W>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    let json = tracing_subscriber::fmt::format()
        .json()
        .with_target(true)
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true);
    tracing_subscriber::fmt::layer()
        .json()
        .event_format(WithTraceIds(json))
        .with_writer(writer)
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

/// A span's OpenTelemetry ids, in the W3C hex form, noted when the span is created.
#[derive(Debug, Clone)]
struct TraceIds {
    trace_id: String,
    span_id: String,
}

/// Notes every span's [`TraceIds`] in its extensions, for [`WithTraceIds`]. Must sit above the
/// OpenTelemetry layer, which gives the span its context first.
///
/// The context is read through the dispatch (tracing-opentelemetry keeps its span data
/// private), held weakly from registration: a layer callback runs inside the dispatcher, where
/// the thread's current dispatcher is not reachable.
#[derive(Debug, Default)]
pub(super) struct TraceIdLayer {
    dispatch: OnceLock<WeakDispatch>,
}

impl<S> Layer<S> for TraceIdLayer
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, _: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        let Some(otel) = tracing_opentelemetry::get_otel_context(id, &dispatch) else {
            return;
        };
        let span = otel.span();
        let context = span.span_context();
        if !context.is_valid() {
            return;
        }
        let ids = TraceIds {
            trace_id: context.trace_id().to_string(),
            span_id: context.span_id().to_string(),
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(ids);
        }
    }
}

/// The JSON format, with `trace_id` and `span_id` of the innermost span (when it has them)
/// added to the line's top level, so a log search jumps to the trace and back.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    N: for<'writer> FormatFields<'writer> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx
            .event_scope()
            .and_then(|mut scope| scope.next())
            .and_then(|span| span.extensions().get::<TraceIds>().cloned());
        let Some(ids) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(512);
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_suffix("}\n") {
            Some(object) => writeln!(
                writer,
                "{object},\"trace_id\":\"{}\",\"span_id\":\"{}\"}}",
                ids.trace_id, ids.span_id
            ),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::bus::propagation::trace_id_of;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_inside_a_span_carry_its_trace_and_span_ids() {
        let lines = Lines::default();
        let writer = lines.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(json_layer(move || writer.clone()))
            .with(otel_layer(&provider))
            .with(TraceIdLayer::default());
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer");
            let inner = outer.in_scope(|| tracing::info_span!("inner"));
            inner.in_scope(|| tracing::info!(answer = 42, "inside"));
            tracing::info!("outside");
            trace_id_of(&inner).unwrap()
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let inside = parsed.iter().find(|l| l["message"] == "inside").unwrap();
        assert_eq!(inside["trace_id"], trace_id.as_str(), "{inside}");
        let span_id = inside["span_id"].as_str().unwrap();
        assert_eq!(span_id.len(), 16, "{inside}");
        assert_eq!(inside["answer"], 42, "the event's fields stay: {inside}");
        assert_eq!(inside["span"]["name"], "inner", "{inside}");
        let outside = parsed.iter().find(|l| l["message"] == "outside").unwrap();
        assert!(outside.get("trace_id").is_none(), "{outside}");
    }
}
