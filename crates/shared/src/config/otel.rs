//! The standard OpenTelemetry variables this workspace decides on: whether each signal is
//! exported, over which protocol, and the start-up checks of their values.
//!
//! The exporter and the SDK read the variables themselves (endpoints, headers, compression,
//! timeouts, sampler, resource attributes, intervals): nothing here re-implements them. What is
//! read here is only what the exporter does not check or decide on our behalf: a malformed
//! endpoint or an unknown protocol is a start-up error naming the variable (the exporter would
//! warn and fall back to a default), export is off unless an endpoint is set (the exporter
//! would send to `localhost`), and the protocol picks the transport.

use std::fmt;
use std::str::FromStr;

use super::SecretUrl;

const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// OpenTelemetry settings (the standard variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtelConfig {
    /// Where traces go; `None`: not exported.
    pub traces: Option<OtlpTarget>,
    /// Where metrics go; `None`: not exported over OTLP.
    pub metrics: Option<OtlpTarget>,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
}

/// One signal's export: the endpoint its exporter will use, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpTarget {
    /// The per-signal endpoint, or else the generic one (to which the HTTP exporter appends
    /// `/v1/traces` or `/v1/metrics`). For messages and the choice of TLS only: the exporter
    /// reads the variable itself.
    pub endpoint: SecretUrl,
    pub protocol: OtlpProtocol,
}

impl OtlpTarget {
    /// Whether the connection is TLS (`https://`).
    pub fn is_tls(&self) -> bool {
        self.endpoint
            .expose()
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    }
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL`: the two this build exports with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf` (port 4318), the default.
    #[default]
    HttpProtobuf,
    /// `grpc` (port 4317).
    Grpc,
}

impl FromStr for OtlpProtocol {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/json" => {
                Err("`http/json` is not supported: use `http/protobuf` or `grpc`".into())
            }
            _ => Err(format!(
                "`{value}` is not an OTLP protocol: use `http/protobuf` or `grpc`"
            )),
        }
    }
}

impl fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::Grpc => "grpc",
        })
    }
}

impl OtelConfig {
    /// Reads the variables through `lookup` (an empty value counts as unset).
    ///
    /// # Errors
    /// Every problem found, each naming its variable: an endpoint that is not an `http://` or
    /// `https://` URL with a host, an unknown protocol or compression, an `OTEL_SDK_DISABLED`
    /// that is neither `true` nor `false`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Vec<String>> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();
        let disabled = match get(SDK_DISABLED).map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                problems.push(format!(
                    "{SDK_DISABLED}: `{v}` is neither `true` nor `false`"
                ));
                false
            }
        };
        // The exporter applies it; an unknown value it would only warn about and ignore.
        for variable in [
            COMPRESSION,
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
        ] {
            if let Some(value) = get(variable)
                && !["gzip", "none"].contains(&value.trim().to_ascii_lowercase().as_str())
            {
                problems.push(format!(
                    "{variable}: `{value}` is not supported: use `gzip` or `none`"
                ));
            }
        }
        let generic_protocol = get(PROTOCOL).and_then(|value| {
            value
                .parse::<OtlpProtocol>()
                .map_err(|e| problems.push(format!("{PROTOCOL}: {e}")))
                .ok()
        });
        let generic_endpoint = get(ENDPOINT).and_then(|value| {
            check_endpoint(&value)
                .map_err(|e| problems.push(format!("{ENDPOINT}: {e}")))
                .ok()
        });
        let mut target = |signal: &str| -> Option<OtlpTarget> {
            let endpoint_var = format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT");
            let protocol_var = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
            let protocol = match get(&protocol_var).map(|v| v.parse::<OtlpProtocol>()) {
                Some(Ok(protocol)) => Some(protocol),
                Some(Err(e)) => {
                    problems.push(format!("{protocol_var}: {e}"));
                    None
                }
                None => generic_protocol,
            };
            let endpoint = match get(&endpoint_var).map(|v| check_endpoint(&v)) {
                Some(Ok(endpoint)) => Some(endpoint),
                Some(Err(e)) => {
                    problems.push(format!("{endpoint_var}: {e}"));
                    None
                }
                None => generic_endpoint.clone(),
            }?;
            Some(OtlpTarget {
                endpoint,
                protocol: protocol.unwrap_or_default(),
            })
        };
        let traces = target("TRACES");
        let metrics = target("METRICS");
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(if disabled {
            OtelConfig {
                traces: None,
                metrics: None,
                service_name: get(SERVICE_NAME),
            }
        } else {
            OtelConfig {
                traces,
                metrics,
                service_name: get(SERVICE_NAME),
            }
        })
    }
}

/// An OTLP endpoint: `http://` or `https://`, a host, no query or fragment.
fn check_endpoint(value: &str) -> Result<SecretUrl, String> {
    let value = value.trim();
    let url = SecretUrl::new(value);
    let shown = url.redacted();
    let lower = value.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://"]
        .iter()
        .find(|scheme| lower.starts_with(*scheme))
        .map(|scheme| &value[scheme.len()..])
    else {
        return Err(format!(
            "`{shown}` must start with http:// or https:// (e.g. https://otel-collector:4318)"
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{shown}` has no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("`{shown}` must not have a query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn otel(pairs: &[(&str, &str)]) -> Result<OtelConfig, Vec<String>> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        OtelConfig::from_lookup(|k| map.get(k).map(|v| (*v).to_owned()))
    }

    fn target(endpoint: &str, protocol: OtlpProtocol) -> Option<OtlpTarget> {
        Some(OtlpTarget {
            endpoint: SecretUrl::new(endpoint),
            protocol,
        })
    }

    #[test]
    fn export_is_on_per_signal_when_an_endpoint_is_set() {
        assert_eq!(otel(&[]), Ok(OtelConfig::default()));
        assert_eq!(otel(&[(ENDPOINT, "  ")]), Ok(OtelConfig::default()));
        let both = otel(&[(ENDPOINT, "https://collector:4318/")]).unwrap_or_default();
        assert_eq!(
            both.traces,
            target("https://collector:4318/", OtlpProtocol::HttpProtobuf)
        );
        assert_eq!(both.metrics, both.traces);
        assert!(both.traces.is_some_and(|t| t.is_tls()));

        let traces_only = otel(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://tempo:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            (PROTOCOL, "http/protobuf"),
        ])
        .unwrap_or_default();
        assert_eq!(
            traces_only.traces,
            target("http://tempo:4317", OtlpProtocol::Grpc)
        );
        assert_eq!(traces_only.metrics, None);

        let generic_grpc =
            otel(&[(ENDPOINT, "http://c:4317"), (PROTOCOL, " GRPC ")]).unwrap_or_default();
        assert_eq!(
            generic_grpc.metrics,
            target("http://c:4317", OtlpProtocol::Grpc)
        );
    }

    #[test]
    fn sdk_disabled_turns_every_export_off() {
        let off = otel(&[(ENDPOINT, "http://c:4318"), (SDK_DISABLED, "TRUE")]);
        assert_eq!(off, Ok(OtelConfig::default()));
        let on = otel(&[(ENDPOINT, "http://c:4318"), (SDK_DISABLED, "false")]);
        assert!(on.is_ok_and(|c| c.traces.is_some()));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (pairs, needle) in [
            (vec![(ENDPOINT, "collector:4318")], ENDPOINT),
            (vec![(ENDPOINT, "grpc://x")], ENDPOINT),
            (vec![(ENDPOINT, "http://")], ENDPOINT),
            (vec![(ENDPOINT, "http://:4318")], ENDPOINT),
            (vec![(ENDPOINT, "http://x?a=b")], ENDPOINT),
            (
                vec![("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "ftp://x")],
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            ),
            (vec![(PROTOCOL, "http/json")], PROTOCOL),
            (vec![(PROTOCOL, "thrift")], PROTOCOL),
            (
                vec![("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "h2")],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
            (vec![(SDK_DISABLED, "yes")], SDK_DISABLED),
            (vec![(COMPRESSION, "zstd")], COMPRESSION),
        ] {
            let problems = otel(&pairs).expect_err(needle);
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("{needle}: "))),
                "{problems:?}"
            );
        }
        let hidden = otel(&[(ENDPOINT, "collector://user:s3cret@x")]).expect_err("scheme");
        assert!(!hidden.concat().contains("s3cret"), "{hidden:?}");
    }
}
