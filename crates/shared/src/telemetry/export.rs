//! Where traces and metrics go: the OTLP/HTTP exporters, their endpoint, the resource that
//! names the service, and the sampler.

use opentelemetry::KeyValue;
use opentelemetry_otlp::{
    MetricExporter, Protocol, SpanExporter, WithExportConfig as _, WithHttpConfig as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use super::TelemetryError;
use super::otlp_http::OtlpHttpClient;
use crate::config::SecretUrl;

/// Where (and whether) to export, decided from `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ExportTarget {
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
    pub(super) fn from_endpoint(endpoint: Option<&str>) -> Result<Self, TelemetryError> {
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

pub(super) fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Every span is sampled unless an incoming `traceparent` says otherwise, so a trace is either
/// complete or absent, never cut in the middle of a service.
pub(super) fn tracer_provider_builder() -> opentelemetry_sdk::trace::TracerProviderBuilder {
    SdkTracerProvider::builder().with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
}

pub(super) fn span_exporter(
    base: &str,
    client: OtlpHttpClient,
) -> Result<SpanExporter, TelemetryError> {
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

pub(super) fn metric_exporter(
    base: &str,
    client: OtlpHttpClient,
) -> Result<MetricExporter, TelemetryError> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_http::HttpClient as _;

    use super::*;
    use crate::telemetry::SHUTDOWN_TIMEOUT;
    use crate::telemetry::otlp_http::tests::{one_shot_server, request};

    type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

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
    }

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
}
