//! The Prometheus view of this process's metrics: a reader on the meter provider whose registry
//! `GET /metrics` on the health port renders, so Prometheus and Kubernetes scrape without a
//! collector. The same instruments also go out over OTLP when an endpoint is set.

use std::sync::OnceLock;

use opentelemetry::Key;
use opentelemetry_prometheus::{PrometheusExporter, ResourceSelector};
use prometheus::{Encoder as _, Registry, TextEncoder};

/// The registry of the process's meter provider, once telemetry is set up.
static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The content type of [`render`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A reader for the meter provider, and the registry it fills. `service.name` and
/// `service.instance.id` become labels (`service_name`, `service_instance_id`) on every
/// series, as the collector's Prometheus exporter writes them from OTLP: dashboards and alerts
/// then work the same on a direct scrape and behind a collector.
pub(super) fn reader() -> Option<PrometheusExporter> {
    let registry = Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .with_resource_selector(ResourceSelector::KeyAllowList(
            [Key::from("service.name"), Key::from("service.instance.id")]
                .into_iter()
                .collect(),
        ))
        .build();
    match exporter {
        Ok(exporter) => {
            // A second set-up in one process (tests) keeps the first registry, as the first
            // meter provider stays the global one.
            let _ = REGISTRY.set(registry);
            Some(exporter)
        }
        Err(error) => {
            tracing::warn!(%error, "the Prometheus exporter could not be set up; /metrics stays empty");
            None
        }
    }
}

/// This process's metrics in the Prometheus text format; empty before telemetry is set up.
pub fn render() -> String {
    let Some(registry) = REGISTRY.get() else {
        return String::new();
    };
    let mut text = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&registry.gather(), &mut text) {
        tracing::warn!(%error, "the metrics could not be encoded for /metrics");
    }
    String::from_utf8(text).unwrap_or_default()
}
