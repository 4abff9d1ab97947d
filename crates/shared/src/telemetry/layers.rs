//! The `tracing` layers: log lines to stderr (human or JSON, filtered by `RUST_LOG`), the
//! OpenTelemetry layer that gives spans their contexts (filtered on its own), and the layer that
//! notes each span's trace and span ids so that every JSON line inside a span carries them.

use std::io::IsTerminal as _;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::dispatcher::WeakDispatch;
use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
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

pub(super) fn fmt_layer(
    format: LogFormat,
    filter: EnvFilter,
    contexts: &SpanContexts,
) -> BoxedLayer {
    let stderr = std::io::stderr;
    match format {
        LogFormat::Json => json_layer(stderr, contexts.clone())
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

/// JSON lines (docs/LOGGING.md) to `writer`, with the trace and span ids of the innermost span.
fn json_layer<S, W>(writer: W, contexts: SpanContexts) -> impl Layer<S> + Send + Sync + use<S, W>
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
        .event_format(WithTraceIds {
            format: json,
            contexts,
        })
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

/// A span's OpenTelemetry ids, in the W3C hex form, noted the first time a line is written
/// inside it.
#[derive(Debug, Clone)]
struct TraceIds {
    trace_id: String,
    span_id: String,
}

/// The dispatch whose OpenTelemetry layer holds the spans' contexts, for [`WithTraceIds`]:
/// tracing-opentelemetry keeps its span data private and hands a context out only through the
/// dispatch, and while an event is formatted the thread's current dispatcher is not reachable
/// (the formatter runs inside it). Filled by [`DispatchTap`] when the subscriber is registered.
#[derive(Debug, Clone, Default)]
pub(super) struct SpanContexts(Arc<OnceLock<WeakDispatch>>);

impl SpanContexts {
    /// The ids of the span `id`, once it has a valid context; `None` for a span the
    /// OpenTelemetry layer does not follow. Never called before an event inside the span, so it
    /// never starts the span before its parent is set (which would cut it from its trace).
    fn ids_of(&self, id: &span::Id) -> Option<TraceIds> {
        let dispatch = self.0.get()?.upgrade()?;
        let otel = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span = otel.span();
        let context = span.span_context();
        context.is_valid().then(|| TraceIds {
            trace_id: context.trace_id().to_string(),
            span_id: context.span_id().to_string(),
        })
    }

    /// A layer that only records the dispatch it is registered with.
    pub(super) fn tap(&self) -> DispatchTap {
        DispatchTap(self.clone())
    }
}

/// See [`SpanContexts`].
#[derive(Debug)]
pub(super) struct DispatchTap(SpanContexts);

impl<S: tracing::Subscriber> Layer<S> for DispatchTap {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.0.0.set(subscriber.downgrade());
    }
}

/// The JSON format, with `trace_id` and `span_id` of the innermost span (when it has them)
/// added to the line's top level, so a log search jumps to the trace and back.
struct WithTraceIds<F> {
    format: F,
    contexts: SpanContexts,
}

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
            .and_then(|span| {
                let noted = span.extensions().get::<TraceIds>().cloned();
                noted.or_else(|| {
                    let ids = self.contexts.ids_of(&span.id())?;
                    span.extensions_mut().insert(ids.clone());
                    Some(ids)
                })
            });
        let Some(ids) = ids else {
            return self.format.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(512);
        self.format
            .format_event(ctx, Writer::new(&mut line), event)?;
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
        let contexts = SpanContexts::default();
        let subscriber = tracing_subscriber::registry()
            .with(json_layer(move || writer.clone(), contexts.clone()))
            .with(otel_layer(&provider))
            .with(contexts.tap());
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer");
            let inner = outer.in_scope(|| tracing::info_span!("inner"));
            inner.in_scope(|| tracing::info!(answer = 42, "inside"));
            tracing::info!("outside");
            // A consumer's span gets its parent from the message after it is created: the
            // ids must not be taken (and the span started) before that.
            let remote = {
                use opentelemetry::propagation::TextMapPropagator as _;
                let headers = std::collections::HashMap::from([(
                    "traceparent".to_owned(),
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
                )]);
                opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&headers)
            };
            let consumer = tracing::info_span!("consumer");
            {
                use tracing_opentelemetry::OpenTelemetrySpanExt as _;
                consumer.set_parent(remote).unwrap();
            }
            consumer.in_scope(|| tracing::info!("handled"));
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
        let handled = parsed.iter().find(|l| l["message"] == "handled").unwrap();
        assert_eq!(
            handled["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "the consumer's lines carry its publisher's trace: {handled}"
        );
        let outside = parsed.iter().find(|l| l["message"] == "outside").unwrap();
        assert!(outside.get("trace_id").is_none(), "{outside}");
    }
}
