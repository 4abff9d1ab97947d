//! Liveness, readiness and metrics over HTTP: `GET /healthz` (the process answers), `GET /readyz`
//! (every component ready: consumers registered, databases reachable) and `GET /metrics` (the
//! process's metrics in the Prometheus text format). A deliberately small HTTP/1.1 responder:
//! three routes do not justify a web framework in every service's build.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The readiness of a process's components.
#[derive(Debug, Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<String, watch::Receiver<bool>>>>,
}

impl Health {
    /// Registers a component, not ready until the returned sender says so.
    pub fn component(&self, name: &str) -> watch::Sender<bool> {
        let (sender, receiver) = watch::channel(false);
        self.components
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), receiver);
        sender
    }

    /// Whether every component is ready, and each one's state.
    pub fn readiness(&self) -> (bool, BTreeMap<String, bool>) {
        let components = self.components.lock().unwrap_or_else(|e| e.into_inner());
        let states: BTreeMap<String, bool> = components
            .iter()
            .map(|(name, rx)| (name.clone(), *rx.borrow()))
            .collect();
        (
            !states.is_empty() && states.values().all(|ready| *ready),
            states,
        )
    }
}

/// Binds `address` and serves `/healthz`, `/readyz` and `/metrics` on it in a task until `shutdown`.
///
/// # Errors
/// The address cannot be bound (in use, not local).
pub async fn spawn(
    address: std::net::SocketAddr,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("binding the health endpoint on {address} (HEALTH_ADDR): {e}"),
        )
    })?;
    tracing::info!(address = %listener.local_addr().unwrap_or(address), "health and metrics endpoints on /healthz, /readyz and /metrics");
    Ok(tokio::spawn(serve(listener, health, shutdown)))
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, health: Health, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let health = health.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), respond(stream, &health)).await;
        });
    }
}

async fn respond(mut stream: TcpStream, health: &Health) -> std::io::Result<()> {
    let mut buffer = vec![0_u8; 2048];
    let mut read = 0;
    while read < buffer.len() {
        let n = stream.read(&mut buffer[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
        if buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let request = String::from_utf8_lossy(&buffer[..read]);
    let target = request.split_whitespace().nth(1).unwrap_or("");
    let path = target.split('?').next().unwrap_or(target);
    let mut content_type = "application/json";
    let (status, body) = match path {
        "/healthz" | "/livez" => ("200 OK", "{\"status\":\"alive\"}".to_owned()),
        "/readyz" => {
            let (ready, components) = health.readiness();
            let components = components
                .iter()
                .map(|(name, ready)| format!("\"{name}\":{ready}"))
                .collect::<Vec<_>>()
                .join(",");
            let status = if ready {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (
                status,
                format!("{{\"ready\":{ready},\"components\":{{{components}}}}}"),
            )
        }
        "/metrics" => {
            content_type = crate::telemetry::prometheus::CONTENT_TYPE;
            ("200 OK", crate::telemetry::prometheus::render())
        }
        _ => (
            "404 Not Found",
            "{\"error\":\"not found: use /healthz, /readyz or /metrics\"}".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    async fn get(address: std::net::SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn readiness_follows_the_components() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let health = Health::default();
        let consumer = health.component("auditor.consumer");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, health.clone(), shutdown.clone()));

        assert!(get(address, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(address, "/readyz").await;
        assert!(
            not_ready.starts_with("HTTP/1.1 503")
                && not_ready.contains("\"auditor.consumer\":false"),
            "{not_ready}"
        );
        consumer.send_replace(true);
        let ready = get(address, "/readyz").await;
        assert!(
            ready.starts_with("HTTP/1.1 200") && ready.contains("\"ready\":true"),
            "{ready}"
        );
        let metrics = get(address, "/metrics?debug=1").await;
        assert!(
            metrics.starts_with("HTTP/1.1 200")
                && metrics.contains("Content-Type: text/plain; version=0.0.4"),
            "{metrics}"
        );
        assert!(get(address, "/nope").await.starts_with("HTTP/1.1 404"));

        shutdown.cancel();
        server.await.unwrap();
    }
}
