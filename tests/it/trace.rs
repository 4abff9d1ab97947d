//! One trace from the publisher to the auditor's insert.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::support::{Env, registration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_publisher_to_the_auditors_insert() {
    // nextest runs each test in its own process, so this test owns the global subscriber.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")));
    let _ = tracing::subscriber::set_global_default(subscriber);

    let env = Env::new().await;
    let (stop, auditor) = env.start_auditor();
    let event = env.ctx.bus.publisher().event(registration("traced_co"));
    let id = event.id.to_string();
    env.ctx
        .bus
        .publisher()
        .publish(&event)
        .instrument(tracing::info_span!("platform-backend registers a tenant"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.wait_for_audit_count(1, Duration::from_secs(30)).await;
    testkit::stop_service((stop, auditor)).await;
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().unwrap_or_default();
    let carries = |span: &opentelemetry_sdk::trace::SpanData| {
        span.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "messaging.message.id" && kv.value.as_str() == id)
    };
    let publish = spans
        .iter()
        .find(|s| s.name.starts_with("publish") && carries(s))
        .unwrap_or_else(|| {
            panic!(
                "no publish span among {:?}",
                spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
            )
        });
    let process = spans
        .iter()
        .find(|s| s.name.starts_with("process") && carries(s))
        .unwrap_or_else(|| {
            panic!(
                "no process span among {:?}",
                spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
            )
        });
    let root = spans
        .iter()
        .find(|s| s.name == "platform-backend registers a tenant")
        .unwrap_or_else(|| panic!("no root span"));
    assert_eq!(
        publish.span_context.trace_id(),
        root.span_context.trace_id()
    );
    assert_eq!(
        process.span_context.trace_id(),
        root.span_context.trace_id(),
        "the auditor's insert is in the publisher's trace"
    );
    assert_eq!(
        process.parent_span_id,
        publish.span_context.span_id(),
        "the process span's parent is the publish span"
    );
}
