//! W3C trace context in AMQP headers: the only code that moves `traceparent` / `tracestate` in
//! and out of a message's [`FieldTable`].
//!
//! The publisher calls [`inject_current`] inside its [`publish_span`](crate::telemetry::publish_span);
//! the consumer builds a [`process_span`](crate::telemetry::process_span), calls
//! [`set_parent_from`] **before** entering it, and then handles the message inside it. Publisher
//! and consumer then share one trace id, with or without an exporter.
//!
//! This module must not create spans, log message bodies or touch any other header. It always
//! speaks W3C Trace Context (<https://www.w3.org/TR/trace-context/>) through its own
//! [`TraceContextPropagator`] rather than the global one: the wire format is part of the
//! contract between services, and must not depend on whether (or in which order) a process
//! installed a global propagator.
//!
//! Contexts only exist when the `tracing-opentelemetry` layer is installed
//! ([`telemetry::init`](crate::telemetry::init) / [`init_for_tests`](crate::telemetry::init_for_tests))
//! and the span is enabled. Otherwise every function here is a silent no-op: nothing is injected,
//! and [`trace_id_of`] returns `None`.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::{OpenTelemetrySpanExt, SetParentError};

/// Header carrying the W3C `traceparent` (version, trace id, parent span id, flags).
pub const TRACEPARENT: &str = "traceparent";
/// Header carrying the W3C `tracestate` (vendor-specific entries; usually empty).
pub const TRACESTATE: &str = "tracestate";

/// Writes propagation fields into AMQP headers as `LongString`s (AMQP `S`), the type every
/// client library reads back as a string.
pub struct HeaderInjector<'a>(pub &'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    /// An empty value (a `tracestate` with no vendor entries, the usual case) is left out: an
    /// empty header only costs bytes and confuses other clients.
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        self.0.insert(
            ShortString::from(key),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
}

/// Reads propagation fields from AMQP headers. Accepts long and short strings; any other value
/// type (or invalid UTF-8) counts as absent, so a malformed header starts a new trace instead
/// of failing the delivery.
pub struct HeaderExtractor<'a>(pub &'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    /// `key` itself, or else the CloudEvents distributed-tracing extension attribute of a
    /// binary-mode message (`cloudEvents:traceparent`, or `cloudEvents_traceparent` as JMS-based
    /// clients write it).
    fn get(&self, key: &str) -> Option<&str> {
        let headers = self.0.inner();
        let value = headers
            .get(key)
            .or_else(|| headers.get(format!("cloudEvents:{key}").as_str()))
            .or_else(|| headers.get(format!("cloudEvents_{key}").as_str()))?;
        match value {
            AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
            AMQPValue::ShortString(value) => Some(value.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(ShortString::as_str).collect()
    }
}

/// Writes the current tracing span's context into `headers` (`traceparent`, `tracestate`),
/// replacing any previous values. Does nothing when the current span has no valid context.
pub fn inject_current(headers: &mut FieldTable) {
    inject_from(&tracing::Span::current(), headers);
}

/// Writes `span`'s context into `headers`; see [`inject_current`].
pub fn inject_from(span: &tracing::Span, headers: &mut FieldTable) {
    let context = span.context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// The remote context carried by `headers`: empty when `traceparent` is missing or invalid.
pub fn extract(headers: &FieldTable) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Makes the context carried by `headers` the parent of `span`.
///
/// Call it right after creating the span and before entering it (or asking for its
/// [`trace_id_of`]): a started span's parent can no longer change. Headers without a valid
/// `traceparent` make `span` the root of a new trace, even if it was created inside another span:
/// a message is never attributed to whatever the consumer loop happened to be doing.
pub fn set_parent_from(span: &tracing::Span, headers: &FieldTable) {
    match span.set_parent(extract(headers)) {
        Ok(()) => {}
        // A programming error in the consumer (the span was entered first): say so once per
        // message, but never fail a delivery over telemetry.
        Err(SetParentError::AlreadyStarted) => tracing::warn!(
            "the process span was started before its parent was set; this message's trace is \
             disconnected from its publisher"
        ),
        // No OpenTelemetry layer or the span is filtered out: tracing is off, nothing to link.
        Err(_) => {}
    }
}

/// Makes `span` the root of a trace of its own, linked to the context carried by `headers`.
///
/// For messages that are one of many from a single operation (the `migrate.tenant` commands of a
/// deploy): as children, ten thousand tenants' migrations would make the deploy one trace of
/// tens of thousands of spans, more than trace back ends display or keep; linked, each tenant's
/// migration is a small trace of its own that points at the deploy's, and the deploy's trace
/// stays readable. Call it where [`set_parent_from`] would be called.
pub fn link_from(span: &tracing::Span, headers: &FieldTable) {
    let remote = extract(headers);
    if let Err(SetParentError::AlreadyStarted) = span.set_parent(Context::new()) {
        tracing::warn!(
            "the process span was started before its link was set; this message's trace is \
             not linked to its publisher"
        );
        return;
    }
    let remote_span = remote.span();
    let linked = remote_span.span_context();
    if linked.is_valid() {
        span.add_link(linked.clone());
    }
}

/// The hex trace id of `span` (32 lowercase hex digits), or `None` when it has no valid context.
///
/// This starts the span's OpenTelemetry side, so call it after [`set_parent_from`].
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    fn test_from(queue: &str) -> crate::telemetry::DeliveredFrom<'_> {
        crate::telemetry::DeliveredFrom {
            exchange: "tenancy.events",
            routing_key: "k",
            queue,
        }
    }
    use crate::telemetry::{process_span, publish_span};

    /// Runs `f` under a test-local subscriber with the OpenTelemetry layer over an exporter-less
    /// provider: what `telemetry::init` installs when no collector is configured.
    fn with_tracing<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn headers(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in pairs {
            table.insert(ShortString::from(*key), value.clone());
        }
        table
    }

    fn long(value: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(value))
    }

    fn span_id_of(span: &tracing::Span) -> String {
        span.context().span().span_context().span_id().to_string()
    }

    #[test]
    fn publisher_and_consumer_share_one_trace_id() {
        with_tracing(|| {
            let mut table = FieldTable::default();
            let publish = publish_span("tenancy.events", "tenant.registered", "m-1", "t");
            let published_trace = publish.in_scope(|| {
                inject_current(&mut table);
                trace_id_of(&tracing::Span::current())
            });
            let publish_span_id = span_id_of(&publish);

            let process = process_span(test_from("tenancy.provision"), "m-1", "t");
            set_parent_from(&process, &table);
            let consumed_trace = trace_id_of(&process);

            assert!(published_trace.is_some(), "the publish span has a context");
            assert_eq!(consumed_trace, published_trace);
            assert!(table.contains_key(TRACEPARENT));
            assert!(
                !table.contains_key(TRACESTATE),
                "an empty tracestate is not sent"
            );
            let traceparent = HeaderExtractor(&table).get(TRACEPARENT).map(str::to_owned);
            assert_eq!(
                traceparent,
                Some(format!(
                    "00-{}-{publish_span_id}-01",
                    published_trace.unwrap_or_default()
                )),
                "the consumer's parent is the publish span itself"
            );
            assert_ne!(span_id_of(&process), publish_span_id);
        });
    }

    #[test]
    fn headers_without_traceparent_start_a_new_root() {
        with_tracing(|| {
            let outer = tracing::info_span!("consumer loop");
            let outer_trace = trace_id_of(&outer);
            let process = outer.in_scope(|| process_span(test_from("q"), "m-2", "t"));
            set_parent_from(&process, &headers(&[("x-other", long("1"))]));
            let trace = trace_id_of(&process);

            assert!(trace.is_some(), "a root still gets a valid trace id");
            assert_ne!(trace, outer_trace, "not attributed to the enclosing span");
        });
    }

    #[test]
    fn garbage_traceparent_is_ignored() {
        with_tracing(|| {
            for garbage in [
                "garbage",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "",
            ] {
                let table = headers(&[(TRACEPARENT, long(garbage)), (TRACESTATE, long("x=y"))]);
                let process = process_span(test_from("q"), "m-3", "t");
                set_parent_from(&process, &table);
                let trace = trace_id_of(&process);
                assert!(trace.is_some(), "{garbage:?}: still traced");
                assert_ne!(
                    trace.as_deref(),
                    Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                    "{garbage:?}"
                );
            }
            let not_a_string = headers(&[(TRACEPARENT, AMQPValue::LongInt(7))]);
            assert!(!extract(&not_a_string).span().span_context().is_valid());
        });
    }

    #[test]
    fn short_string_traceparent_from_other_clients_is_read() {
        with_tracing(|| {
            let table = headers(&[(
                TRACEPARENT,
                AMQPValue::ShortString(ShortString::from(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )),
            )]);
            let process = process_span(test_from("q"), "m-4", "t");
            set_parent_from(&process, &table);
            assert_eq!(
                trace_id_of(&process).as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736")
            );
        });
    }

    #[test]
    fn without_the_layer_nothing_is_injected() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let mut table = FieldTable::default();
            let span = publish_span("x", "k", "m", "t");
            span.in_scope(|| inject_current(&mut table));
            assert!(table.inner().is_empty());
            assert_eq!(trace_id_of(&span), None);
        });
    }

    #[test]
    fn a_binary_mode_cloudevent_carries_its_trace_in_the_extension_attribute() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        for key in ["cloudEvents:traceparent", "cloudEvents_traceparent"] {
            let mut table = FieldTable::default();
            table.insert(
                ShortString::from(key),
                AMQPValue::LongString(LongString::from(traceparent)),
            );
            assert_eq!(HeaderExtractor(&table).get(TRACEPARENT), Some(traceparent));
            let remote = extract(&table);
            assert_eq!(
                remote.span().span_context().trace_id().to_string(),
                "0af7651916cd43dd8448eb211c80319c"
            );
        }
    }
}
