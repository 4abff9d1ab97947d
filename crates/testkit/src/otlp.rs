//! A local OTLP receiver: what a collector would get from a service's exporter, decoded.
//!
//! It speaks OTLP/HTTP (`POST /v1/traces`, `/v1/metrics`, protobuf, gzip accepted) and OTLP/gRPC
//! (HTTP/2, `TraceService/Export` and `MetricsService/Export`, gRPC framing, gzip accepted), on
//! one port, plain or TLS. For TLS it generates a test CA and a certificate for `127.0.0.1` with
//! the `openssl` command-line tool (already on any machine that builds this workspace; a Rust
//! certificate generator would add a dozen crates for the tests alone). Point the service's
//! `SSL_CERT_FILE` at [`OtlpReceiver::ca_file`] to trust it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::ScratchDir;

/// Headers worth asserting on; everything else a client sends is left out.
const HEADERS_OF_INTEREST: &[&str] = &[
    "authorization",
    "content-type",
    "content-encoding",
    "grpc-encoding",
    "user-agent",
];

const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// How the receiver is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plain,
    /// TLS with a certificate signed by the receiver's own test CA.
    Tls,
}

/// The OTLP transport a request came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Grpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

/// One export request, decoded.
#[derive(Debug, Clone)]
pub struct Received {
    pub transport: Transport,
    pub signal: Signal,
    /// `HEADERS_OF_INTEREST` and every `x-…` header, names in lower case.
    pub headers: BTreeMap<String, String>,
    /// `service.name` of every resource in the request.
    pub service_names: Vec<String>,
    /// `service.instance.id` of every resource in the request.
    pub instance_ids: Vec<String>,
    pub span_names: Vec<String>,
    pub metric_names: Vec<String>,
}

/// A receiver on `127.0.0.1`, on a free port; it stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    security: Security,
    received: Arc<Mutex<Vec<Received>>>,
    certificates: Option<(ScratchDir, PathBuf)>,
    server: JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OtlpReceiver {
    /// Starts a receiver.
    ///
    /// # Panics
    /// When no port can be bound, or (TLS) the `openssl` tool is missing or fails.
    pub async fn start(security: Security) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the OTLP receiver: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("OTLP receiver address: {e}"));
        let (certificates, acceptor) = match security {
            Security::Plain => (None, None),
            Security::Tls => {
                let dir = ScratchDir::new();
                let (ca, acceptor) = tls_acceptor(dir.path());
                (Some((dir, ca)), Some(acceptor))
            }
        };
        let received = Arc::new(Mutex::new(Vec::new()));
        let server = tokio::spawn(serve(listener, acceptor, Arc::clone(&received)));
        OtlpReceiver {
            addr,
            security,
            received,
            certificates,
            server,
        }
    }

    /// `http://127.0.0.1:<port>` or `https://127.0.0.1:<port>`: the value of
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, for either protocol.
    pub fn endpoint(&self) -> String {
        let scheme = match self.security {
            Security::Plain => "http",
            Security::Tls => "https",
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The test CA's certificate (PEM) that signed the receiver's own, for `SSL_CERT_FILE`.
    ///
    /// # Panics
    /// On a plain receiver.
    pub fn ca_file(&self) -> &Path {
        match &self.certificates {
            Some((_, ca)) => ca,
            None => panic!("a plain OTLP receiver has no CA"),
        }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .map(|received| received.clone())
            .unwrap_or_default()
    }
}

/// A CA certificate of its own, unrelated to any receiver: trusting it trusts no receiver.
///
/// # Panics
/// When the `openssl` tool is missing or fails.
pub fn unrelated_ca(dir: &Path) -> PathBuf {
    let (ca, _) = certificate_authority(dir, "unrelated");
    ca
}

async fn serve(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    received: Arc<Mutex<Vec<Received>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let received = Arc::clone(&received);
                async move { Ok::<_, Infallible>(handle(request, &received).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A failed handshake (a client that does not trust the certificate) ends here.
            let _ = match acceptor {
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Err(_) => return,
                },
            };
        });
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(request: Request<Incoming>, received: &Mutex<Vec<Received>>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let (transport, signal) = match path.as_str() {
        "/v1/traces" => (Transport::Http, Signal::Traces),
        "/v1/metrics" => (Transport::Http, Signal::Metrics),
        TRACE_EXPORT => (Transport::Grpc, Signal::Traces),
        METRICS_EXPORT => (Transport::Grpc, Signal::Metrics),
        _ => return status(StatusCode::NOT_FOUND),
    };
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .filter(|(name, _)| {
            HEADERS_OF_INTEREST.contains(&name.as_str()) || name.as_str().starts_with("x-")
        })
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let Ok(body) = request.into_body().collect().await else {
        return status(StatusCode::BAD_REQUEST);
    };
    let body = body.to_bytes();
    let message = match transport {
        Transport::Http => match headers.get("content-encoding").map(String::as_str) {
            Some("gzip") => gunzip(&body),
            Some(_) => None,
            None => Some(body.to_vec()),
        },
        Transport::Grpc => grpc_message(&body, headers.get("grpc-encoding")),
    };
    let Some(record) = message.and_then(|message| decode(&message, transport, signal, headers))
    else {
        return match transport {
            Transport::Http => status(StatusCode::BAD_REQUEST),
            Transport::Grpc => grpc_reply(3), // INVALID_ARGUMENT
        };
    };
    if let Ok(mut received) = received.lock() {
        received.push(record);
    }
    match transport {
        // An empty Export…ServiceResponse encodes to no bytes.
        Transport::Http => Response::builder()
            .header("content-type", "application/x-protobuf")
            .body(Empty::new().boxed())
            .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR)),
        Transport::Grpc => grpc_reply(0),
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().boxed());
    *response.status_mut() = code;
    response
}

/// A gRPC answer: an empty response message when OK, and the `grpc-status` trailer.
fn grpc_reply(code: u8) -> Response<Body> {
    let mut frames = Vec::new();
    if code == 0 {
        frames.push(Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))));
    }
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert(
        "grpc-status",
        hyper::header::HeaderValue::from(u16::from(code)),
    );
    frames.push(Ok(Frame::trailers(trailers)));
    Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))
}

/// The one message of a unary gRPC request: a compressed flag, a 4-byte big-endian length, the
/// message (gzip when flagged and `grpc-encoding: gzip`).
fn grpc_message(body: &[u8], encoding: Option<&String>) -> Option<Vec<u8>> {
    let (&flag, rest) = body.split_first()?;
    let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let message = rest.get(4..4 + length)?;
    match (flag, encoding.map(String::as_str)) {
        (0, _) => Some(message.to_vec()),
        (1, Some("gzip")) => gunzip(message),
        _ => None,
    }
}

fn gunzip(compressed: &[u8]) -> Option<Vec<u8>> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(compressed)
        .read_to_end(&mut plain)
        .ok()?;
    Some(plain)
}

fn decode(
    message: &[u8],
    transport: Transport,
    signal: Signal,
    headers: BTreeMap<String, String>,
) -> Option<Received> {
    let mut record = Received {
        transport,
        signal,
        headers,
        service_names: Vec::new(),
        instance_ids: Vec::new(),
        span_names: Vec::new(),
        metric_names: Vec::new(),
    };
    let mut resource = |resource: Option<&Resource>| {
        let attributes = resource
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        record
            .service_names
            .extend(string_attribute(attributes, "service.name"));
        record
            .instance_ids
            .extend(string_attribute(attributes, "service.instance.id"));
    };
    match signal {
        Signal::Traces => {
            let request = ExportTraceServiceRequest::decode(message).ok()?;
            for spans in &request.resource_spans {
                resource(spans.resource.as_ref());
            }
            record.span_names = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|span| span.name.clone())
                .collect();
        }
        Signal::Metrics => {
            let request = ExportMetricsServiceRequest::decode(message).ok()?;
            for metrics in &request.resource_metrics {
                resource(metrics.resource.as_ref());
            }
            record.metric_names = request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|metric| metric.name.clone())
                .collect();
        }
    }
    Some(record)
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// Generates a CA and a certificate for `127.0.0.1` in `dir`; returns the CA's file and the
/// acceptor serving the certificate (ALPN `h2` and `http/1.1`).
fn tls_acceptor(dir: &Path) -> (PathBuf, tokio_rustls::TlsAcceptor) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (ca, ca_key) = certificate_authority(dir, "ca");
    let (key, request, cert) = (
        dir.join("server.key"),
        dir.join("server.csr"),
        dir.join("server.pem"),
    );
    let extensions = dir.join("server.ext");
    std::fs::write(
        &extensions,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        p(&key),
        "-out",
        p(&request),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        p(&request),
        "-CA",
        p(&ca),
        "-CAkey",
        p(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        p(&extensions),
        "-out",
        p(&cert),
    ]);

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .and_then(Iterator::collect)
        .unwrap_or_else(|e| panic!("reading {}: {e}", cert.display()));
    let key = PrivateKeyDer::from_pem_file(&key)
        .unwrap_or_else(|e| panic!("reading {}: {e}", key.display()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
    .unwrap_or_else(|e| panic!("TLS configuration of the OTLP receiver: {e}"));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A self-signed CA named `name` in `dir`: its certificate and its key.
fn certificate_authority(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN=OTLP test {name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        p(&key),
        "-out",
        p(&cert),
    ]);
    (cert, key)
}

fn p(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("the TLS tests need the `openssl` tool (apt-get install openssl): {e}")
        });
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}
