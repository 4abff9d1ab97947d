//! A minimal OTLP/HTTP client: one HTTP/1.1 `POST` per export over a fresh
//! `tokio::net::TcpStream`, `Connection: close`, plain `http://` only.
//!
//! It exists so the exporter needs neither hyper nor reqwest (nor a TLS stack): the OTLP payload
//! is a single small request every few seconds, for which connection reuse buys nothing.
//! Responses are read fully (Content-Length, chunked, or until EOF), up to 4 MiB, all within one
//! deadline. It does not follow redirects, and does not speak TLS or HTTP/2.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response, ResponseBodyTooLarge};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest response body accepted: the limit opentelemetry-http's own clients use. An OTLP
/// response is a few bytes (an optional partial-success message).
pub(super) const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;
/// Largest status line plus headers accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;

/// What went wrong talking to the collector. Only the exporter's debug diagnostics show the
/// text; what matters to it is the distinction between an `Err` (network) and a status.
#[derive(Debug, thiserror::Error)]
pub(super) enum HttpClientError {
    #[error("only plain http:// collector endpoints are supported, not `{0}`")]
    UnsupportedScheme(String),
    #[error("the collector endpoint has no host")]
    MissingHost,
    #[error("collector connection failed")]
    Io(#[source] io::Error),
    #[error("the collector closed the connection before the response was complete")]
    ClosedEarly,
    #[error("the collector sent a malformed response: {0}")]
    Malformed(&'static str),
    #[error("the collector's response body is larger than {MAX_RESPONSE_BODY} bytes")]
    TooLarge,
    #[error("no complete response from the collector within {0:?}")]
    Timeout(Duration),
    #[error("the export runtime has shut down")]
    RuntimeGone,
}

impl HttpClientError {
    /// `ResponseBodyTooLarge` is the type the exporter looks for to stop retrying.
    fn into_http_error(self) -> HttpError {
        match self {
            HttpClientError::TooLarge => Box::new(ResponseBodyTooLarge::new()),
            other => Box::new(other),
        }
    }
}

/// Cheap to clone: the span and metric exporters share one runtime.
#[derive(Debug, Clone)]
pub(super) struct OtlpHttpClient {
    timeout: Duration,
    runtime: Arc<ExportRuntime>,
}

/// A current-thread runtime (I/O and timers, no worker threads) on which the SDK's export
/// threads run requests. `Option` only so that `Drop` can take it.
#[derive(Debug)]
struct ExportRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        // The last exporter may be dropped inside the service's runtime, where a plain
        // `Runtime` drop panics; `shutdown_background` is allowed anywhere.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl OtlpHttpClient {
    /// `timeout` bounds each request as a whole: connect, send and read.
    pub(super) fn new(timeout: Duration) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .thread_name("otlp-export")
            .build()?;
        Ok(OtlpHttpClient {
            timeout,
            runtime: Arc::new(ExportRuntime(Some(runtime))),
        })
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpClientError> {
        let exchange = post(request, self.timeout);
        if tokio::runtime::Handle::try_current().is_ok() {
            // Already on a runtime (an async span processor): just await.
            exchange.await
        } else {
            // The SDK's export threads poll us with a plain executor: drive the request on
            // our own runtime.
            match &self.runtime.0 {
                Some(runtime) => runtime.block_on(exchange),
                None => Err(HttpClientError::RuntimeGone),
            }
        }
    }
}

// `HttpClient` is an `#[async_trait]`; this is its expansion, written out so the workspace
// needs no `async-trait` dependency of its own.
impl HttpClient for OtlpHttpClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.send(request)
                .await
                .map_err(HttpClientError::into_http_error)
        })
    }
}

/// Sends `request` and reads the whole response, all within `timeout`. A non-2xx status is
/// a successful exchange (the exporter decides about retries); only transport failures are
/// errors.
pub(super) async fn post(
    request: Request<Bytes>,
    timeout: Duration,
) -> Result<Response<Bytes>, HttpClientError> {
    tokio::time::timeout(timeout, exchange(request))
        .await
        .unwrap_or(Err(HttpClientError::Timeout(timeout)))
}

async fn exchange(request: Request<Bytes>) -> Result<Response<Bytes>, HttpClientError> {
    let target = Target::of(&request)?;
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(HttpClientError::Io)?;
    // One write of the head and one of the body: don't let Nagle hold the body back.
    stream.set_nodelay(true).map_err(HttpClientError::Io)?;
    stream
        .write_all(&request_head(&request, &target))
        .await
        .map_err(HttpClientError::Io)?;
    stream
        .write_all(request.body())
        .await
        .map_err(HttpClientError::Io)?;
    stream.flush().await.map_err(HttpClientError::Io)?;
    read_response(stream).await
}

/// Where to connect and what to put in the request line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Target {
    /// Host to resolve, without IPv6 brackets.
    host: String,
    port: u16,
    /// `Host` header value: the authority without credentials.
    host_header: String,
    /// Path and query, at least `/`.
    path: String,
}

impl Target {
    pub(super) fn of(request: &Request<Bytes>) -> Result<Self, HttpClientError> {
        let uri = request.uri();
        if uri.scheme_str() != Some("http") {
            return Err(HttpClientError::UnsupportedScheme(
                uri.scheme_str().unwrap_or_default().to_owned(),
            ));
        }
        let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
            return Err(HttpClientError::MissingHost);
        };
        let host_header = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, host)| host);
        Ok(Target {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(80),
            host_header: host_header.to_owned(),
            path: uri
                .path_and_query()
                .map_or("/", |path| path.as_str())
                .to_owned(),
        })
    }
}

/// Request line and headers. `Host`, `Content-Length` and `Connection` are ours; the
/// caller's headers (content type, `OTEL_EXPORTER_OTLP_HEADERS`) follow as given.
fn request_head(request: &Request<Bytes>, target: &Target) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        request.method(),
        target.path,
        target.host_header,
        request.body().len()
    )
    .into_bytes();
    for (name, value) in request.headers() {
        if matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Buffered reads from the connection.
struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes; `false` at end of stream.
    async fn fill(&mut self) -> Result<bool, HttpClientError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_CHUNK);
        let read = self
            .inner
            .read_buf(&mut self.buf)
            .await
            .map_err(HttpClientError::Io)?;
        Ok(read > 0)
    }

    /// One line without its `\r\n` (a bare `\n` is accepted too).
    async fn line(&mut self) -> Result<Vec<u8>, HttpClientError> {
        loop {
            if let Some(end) = self.buffered().iter().position(|&b| b == b'\n') {
                let mut line = self.buffered()[..end].to_vec();
                self.pos += end + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buffered().len() > MAX_RESPONSE_HEAD {
                return Err(HttpClientError::Malformed("line too long"));
            }
            if !self.fill().await? {
                return Err(HttpClientError::ClosedEarly);
            }
        }
    }

    async fn exact(&mut self, len: usize) -> Result<Vec<u8>, HttpClientError> {
        while self.buffered().len() < len {
            if !self.fill().await? {
                return Err(HttpClientError::ClosedEarly);
            }
        }
        let bytes = self.buffered()[..len].to_vec();
        self.pos += len;
        Ok(bytes)
    }

    async fn until_eof(&mut self) -> Result<Vec<u8>, HttpClientError> {
        loop {
            if self.buffered().len() > MAX_RESPONSE_BODY {
                return Err(HttpClientError::TooLarge);
            }
            if !self.fill().await? {
                let bytes = self.buffered().to_vec();
                self.pos = self.buf.len();
                return Ok(bytes);
            }
        }
    }
}

/// A response's status line and headers (names lowercased).
struct Head {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// RFC 9112 §6.3: chunked only if it is the final transfer coding.
    fn is_chunked(&self) -> bool {
        self.values("transfer-encoding")
            .flat_map(|v| v.split(|&b| b == b','))
            .last()
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
    }

    fn has_transfer_encoding(&self) -> bool {
        self.values("transfer-encoding").next().is_some()
    }

    fn content_length(&self) -> Result<Option<usize>, HttpClientError> {
        let mut length = None;
        for value in self.values("content-length") {
            let parsed = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(HttpClientError::Malformed("invalid Content-Length"))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(HttpClientError::Malformed("conflicting Content-Length"));
            }
            length = Some(parsed);
        }
        Ok(length)
    }
}

pub(super) async fn read_response<R: AsyncRead + Unpin>(
    io: R,
) -> Result<Response<Bytes>, HttpClientError> {
    let mut reader = Reader::new(io);
    let head = loop {
        let head = read_head(&mut reader).await?;
        // Interim responses (100 Continue, 103 Early Hints) precede the real one.
        if !(100..200).contains(&head.status) || head.status == 101 {
            break head;
        }
    };
    let body = if head.status == 204 || head.status == 304 {
        Vec::new()
    } else if head.is_chunked() {
        read_chunked(&mut reader).await?
    } else if head.has_transfer_encoding() {
        reader.until_eof().await?
    } else if let Some(length) = head.content_length()? {
        if length > MAX_RESPONSE_BODY {
            return Err(HttpClientError::TooLarge);
        }
        reader.exact(length).await?
    } else {
        reader.until_eof().await?
    };

    let mut response = Response::builder().status(head.status);
    for (name, value) in &head.headers {
        response = response.header(name.as_str(), value.as_slice());
    }
    response
        .body(Bytes::from(body))
        .map_err(|_| HttpClientError::Malformed("invalid status or header"))
}

async fn read_head<R: AsyncRead + Unpin>(reader: &mut Reader<R>) -> Result<Head, HttpClientError> {
    let status_line = reader.line().await?;
    let status = parse_status_line(&status_line)?;
    let mut size = status_line.len();
    let mut headers = Vec::new();
    loop {
        let line = reader.line().await?;
        if line.is_empty() {
            return Ok(Head { status, headers });
        }
        size += line.len();
        if size > MAX_RESPONSE_HEAD {
            return Err(HttpClientError::Malformed("response head too large"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HttpClientError::Malformed("header line without a colon"))?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if !is_token(name) {
            return Err(HttpClientError::Malformed("invalid header name"));
        }
        // Values the `http` crate would refuse are dropped rather than failing the export.
        if value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            headers.push((name, value.to_vec()));
        }
    }
}

/// `HTTP/1.x NNN reason`.
fn parse_status_line(line: &[u8]) -> Result<u16, HttpClientError> {
    let malformed = HttpClientError::Malformed("invalid status line");
    let line =
        std::str::from_utf8(line).map_err(|_| HttpClientError::Malformed("invalid status line"))?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed);
    }
    code.parse().map_err(|_| malformed)
}

/// RFC 9110 §5.6.2 `token`.
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

async fn read_chunked<R: AsyncRead + Unpin>(
    reader: &mut Reader<R>,
) -> Result<Vec<u8>, HttpClientError> {
    let mut body = Vec::new();
    loop {
        let line = reader.line().await?;
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or(HttpClientError::Malformed("invalid chunk size"))?;
        if size == 0 {
            // Trailer fields, up to the empty line; they are not kept.
            while !reader.line().await?.is_empty() {}
            return Ok(body);
        }
        if body.len().saturating_add(size) > MAX_RESPONSE_BODY {
            return Err(HttpClientError::TooLarge);
        }
        body.extend_from_slice(&reader.exact(size).await?);
        if !reader.line().await?.is_empty() {
            return Err(HttpClientError::Malformed("chunk not followed by CRLF"));
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::{Duration, Instant};

    use opentelemetry_http::{Bytes, Request};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    pub(in crate::telemetry) fn request(url: &str, body: &'static [u8]) -> Request<Bytes> {
        Request::builder()
            .method("POST")
            .uri(url)
            .header("content-type", "application/x-protobuf")
            .body(Bytes::from_static(body))
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// Reads one request (head + Content-Length body) the way a collector would.
    async fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
        let mut data = Vec::new();
        let mut chunk = [0_u8; 1024];
        loop {
            let read = stream.read(&mut chunk).await?;
            data.extend_from_slice(&chunk[..read]);
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|l| l.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = data[end + 4..].to_vec();
                while body.len() < length {
                    let read = stream.read(&mut chunk).await?;
                    if read == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..read]);
                }
                return Ok((head, body));
            }
            if read == 0 {
                return Ok((String::from_utf8_lossy(&data).into_owned(), Vec::new()));
            }
        }
    }

    /// A collector that accepts one connection, reads one request, sends `reply` and closes.
    pub(in crate::telemetry) async fn one_shot_server(
        reply: &'static [u8],
    ) -> std::io::Result<(
        String,
        tokio::task::JoinHandle<std::io::Result<(String, Vec<u8>)>>,
    )> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1/traces", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let received = read_request(&mut stream).await?;
            stream.write_all(reply).await?;
            stream.shutdown().await?;
            Ok(received)
        });
        Ok((url, server))
    }

    #[tokio::test]
    async fn http_client_posts_and_reads_a_content_length_body() -> TestResult {
        let (url, server) =
            one_shot_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nRetry-After: 3\r\n\r\nhello")
                .await?;
        let response = post(request(&url, b"payload"), Duration::from_secs(5)).await?;
        let (head, body) = server.await??;

        assert_eq!(response.status(), 200);
        assert_eq!(response.body().as_ref(), b"hello");
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        assert!(head.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{head}");
        for line in [
            "Content-Length: 7",
            "Connection: close",
            "content-type: application/x-protobuf",
        ] {
            assert!(head.lines().any(|l| l == line), "{line} missing in {head}");
        }
        assert!(
            head.lines().any(|l| l.starts_with("Host: 127.0.0.1:")),
            "{head}"
        );
        assert_eq!(body, b"payload");
        Ok(())
    }

    #[tokio::test]
    async fn http_client_returns_error_statuses_as_responses() -> TestResult {
        let (url, server) = one_shot_server(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nboom",
        )
        .await?;
        let response = post(request(&url, b"x"), Duration::from_secs(5)).await?;
        server.await??;
        assert_eq!(response.status(), 500);
        assert_eq!(response.body().as_ref(), b"boom", "read until EOF");
        Ok(())
    }

    #[tokio::test]
    async fn http_client_fails_when_the_connection_closes_early() -> TestResult {
        let (url, server) =
            one_shot_server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await?;
        let result = post(request(&url, b"x"), Duration::from_secs(5)).await;
        server.await??;
        assert!(
            matches!(result, Err(HttpClientError::ClosedEarly)),
            "{result:?}"
        );

        let (url, server) = one_shot_server(b"").await?;
        let result = post(request(&url, b"x"), Duration::from_secs(5)).await;
        server.await??;
        assert!(
            matches!(result, Err(HttpClientError::ClosedEarly)),
            "{result:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn http_client_gives_up_at_its_deadline() -> TestResult {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1/metrics", listener.local_addr()?);
        // Accepts, reads, and never answers.
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let _ = read_request(&mut stream).await?;
            tokio::time::sleep(Duration::from_secs(30)).await;
            std::io::Result::Ok(())
        });
        let started = Instant::now();
        let result = post(request(&url, b"x"), Duration::from_millis(300)).await;
        server.abort();
        assert!(
            matches!(result, Err(HttpClientError::Timeout(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        Ok(())
    }

    #[tokio::test]
    async fn http_client_refuses_what_it_cannot_speak() {
        for (url, expected) in [
            ("https://c:4318/v1/traces", "https"),
            ("ftp://c:21/x", "ftp"),
        ] {
            let result = post(request(url, b""), Duration::from_secs(1)).await;
            assert!(
                matches!(&result, Err(HttpClientError::UnsupportedScheme(s)) if s == expected),
                "{url}: {result:?}"
            );
        }
        let refused = TcpListener::bind("127.0.0.1:0")
            .await
            .and_then(|l| l.local_addr());
        if let Ok(addr) = refused {
            // The listener is dropped: nothing accepts on this port any more.
            let result = post(
                request(&format!("http://{addr}/"), b""),
                Duration::from_secs(5),
            )
            .await;
            assert!(matches!(result, Err(HttpClientError::Io(_))), "{result:?}");
        }
    }

    #[test]
    fn targets_strip_credentials_and_brackets() -> TestResult {
        let target = Target::of(&request("http://u:p@[::1]:4318/v1/traces?x=1", b""))?;
        let expected = Target::of(&request("http://[::1]:4318/v1/traces?x=1", b""))?;
        assert_eq!(target, expected);
        assert_eq!(
            format!("{target:?}"),
            "Target { host: \"::1\", port: 4318, host_header: \"[::1]:4318\", path: \"/v1/traces?x=1\" }"
        );
        Ok(())
    }

    async fn parse(raw: &'static [u8]) -> Result<(u16, Vec<u8>), HttpClientError> {
        read_response(raw)
            .await
            .map(|r| (r.status().as_u16(), r.body().to_vec()))
    }

    #[tokio::test]
    async fn responses_are_framed_correctly() {
        let chunked = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n",
        )
        .await;
        assert_eq!(chunked.ok(), Some((200, b"Wikipedia".to_vec())));

        let interim = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
        )
        .await;
        assert_eq!(interim.ok(), Some((204, Vec::new())));

        let bare_newlines = parse(b"HTTP/1.0 200 OK\nContent-Length: 2\n\nok").await;
        assert_eq!(bare_newlines.ok(), Some((200, b"ok".to_vec())));

        for malformed in [
            &b"SMTP 220 hello\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let result = read_response(malformed).await;
            assert!(
                matches!(result, Err(HttpClientError::Malformed(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(malformed)
            );
        }

        let too_large = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE_BODY + 1
        );
        let result = read_response(too_large.as_bytes()).await;
        assert!(
            matches!(result, Err(HttpClientError::TooLarge)),
            "{result:?}"
        );
    }
}
