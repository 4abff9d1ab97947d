//! The spans every service uses: an operator command's root span, and the producer and consumer
//! spans of a RabbitMQ message, named and attributed per the OpenTelemetry messaging semantic
//! conventions (`docs/LOGGING.md`).

use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::field;

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

/// Where a delivery came from, as the broker reports it: the (namespaced) exchange it was
/// published to, its routing key, and the (namespaced) queue it was consumed from.
#[derive(Debug, Clone, Copy)]
pub struct DeliveredFrom<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub queue: &'a str,
}

/// The consumer span around handling one delivery: span name `process {queue}`, kind consumer,
/// with the destination the semantic conventions define for RabbitMQ (the exchange and the
/// routing key) and the queue as the subscription. Call
/// [`bus::propagation::set_parent_from`](crate::bus::propagation::set_parent_from) before
/// entering it. `tenant.id` and `otel.status_code` are declared empty so the handler can
/// `record` them once known; [`record_error`] marks a failure.
pub fn process_span(from: DeliveredFrom<'_>, message_id: &str, event_type: &str) -> Span {
    let name = span_name("process", from.queue);
    let span = tracing::info_span!(
        "process",
        otel.name = name.as_str(),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        { field::MESSAGING_DESTINATION_NAME } = from.exchange,
        { field::MESSAGING_RABBITMQ_ROUTING_KEY } = from.routing_key,
        { field::MESSAGING_MESSAGE_ID } = message_id,
        { field::CLOUDEVENTS_EVENT_TYPE } = event_type,
        { field::TENANT_ID } = tracing::field::Empty,
    );
    span.set_attribute(field::MESSAGING_SUBSCRIPTION_NAME, from.queue.to_owned());
    set_messaging_constants(&span, "process", "process");
    span
}

/// Marks a messaging span failed: status `error`, and `error.type` (a short, bounded name such
/// as `dead_letter`, `retry`, `unroutable`) as the semantic conventions ask.
pub fn record_error(span: &Span, error_type: &'static str) {
    span.record("otel.status_code", "error");
    span.set_attribute(field::ERROR_TYPE, error_type);
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

#[cfg(test)]
mod tests {
    use opentelemetry::trace::SpanKind;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::SpanData;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::telemetry::export::tracer_provider_builder;
    use crate::telemetry::layers::otel_layer;

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
            let from = DeliveredFrom {
                exchange: "acme.tenancy.commands",
                routing_key: "migrate.tenant",
                queue: "acme.migrator.migrate-tenant",
            };
            let process = process_span(from, "m-9", "migrate.tenant");
            process.record(field::TENANT_ID, "t-42");
            process.in_scope(|| {});
            record_error(&process, "dead_letter");
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

        assert_eq!(process.name, "process acme.migrator.migrate-tenant");
        assert_eq!(process.span_kind, SpanKind::Consumer);
        for (key, value) in [
            ("messaging.system", "rabbitmq"),
            ("messaging.operation.type", "process"),
            ("messaging.operation.name", "process"),
            ("messaging.destination.name", "acme.tenancy.commands"),
            (
                "messaging.rabbitmq.destination.routing_key",
                "migrate.tenant",
            ),
            (
                "messaging.destination.subscription.name",
                "acme.migrator.migrate-tenant",
            ),
            ("messaging.message.id", "m-9"),
            ("cloudevents.event_type", "migrate.tenant"),
            ("tenant.id", "t-42"),
            ("error.type", "dead_letter"),
        ] {
            assert_eq!(attribute(process, key).as_deref(), Some(value), "{key}");
        }
        assert!(
            matches!(process.status, opentelemetry::trace::Status::Error { .. }),
            "{:?}",
            process.status
        );
        assert!(matches!(
            publish.status,
            opentelemetry::trace::Status::Unset
        ));
    }

    #[test]
    fn span_names_name_the_destination() {
        assert_eq!(span_name("publish", ""), "publish");
        assert_eq!(span_name("process", "q"), "process q");
    }
}
