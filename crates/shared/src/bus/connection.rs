//! Connecting to RabbitMQ, and the [`Bus`] handle services share.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use super::BusError;
use super::publisher::Publisher;
use super::topology::Topology;
use crate::config::SecretUrl;

/// One connection to the broker, with automatic recovery, the topology declared, and a
/// publisher. Cheap to share by reference; channels for consumers come from [`Bus::channel`].
pub struct Bus {
    connection: Connection,
    topology: Topology,
    publisher: Publisher,
    url: SecretUrl,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("url", &self.url)
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Connects, waiting (with backoff and a log line per attempt) for a broker that is not up
    /// yet, declares the topology and opens the publisher's confirm channel.
    ///
    /// `name` shows in the management UI (`connection_name`); `source` is the CloudEvents
    /// `source` of what this process publishes.
    ///
    /// # Errors
    /// [`BusError::Cancelled`] if `shutdown` fires while waiting; a broker error when the broker
    /// answers but refuses (credentials, topology conflicts).
    pub async fn connect(
        url: &SecretUrl,
        topology: Topology,
        name: &str,
        source: &str,
        shutdown: &CancellationToken,
    ) -> Result<Self, BusError> {
        let connection = connect_waiting(url, name, shutdown).await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| BusError::Broker {
                context: "opening a channel".into(),
                source: e,
            })?;
        topology.declare(&channel).await?;
        let publisher_channel =
            connection
                .create_channel()
                .await
                .map_err(|e| BusError::Broker {
                    context: "opening the publisher channel".into(),
                    source: e,
                })?;
        publisher_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| BusError::Broker {
                context: "enabling publisher confirms".into(),
                source: e,
            })?;
        let _ = channel.close(200, "topology declared".into()).await;
        Ok(Bus {
            publisher: Publisher::new(publisher_channel, topology.clone(), source),
            connection,
            topology,
            url: url.clone(),
        })
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A new channel (consumers and dead-letter tools each use their own).
    ///
    /// # Errors
    /// When the connection is closed or being recovered.
    pub async fn channel(&self) -> Result<Channel, BusError> {
        self.connection
            .create_channel()
            .await
            .map_err(|e| BusError::Broker {
                context: "opening a channel".into(),
                source: e,
            })
    }

    /// Whether the connection is up (readiness).
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Closes the connection (after the publisher's outstanding confirms).
    pub async fn close(&self) {
        let _ = self.publisher.channel().wait_for_confirms().await;
        let _ = self.connection.close(200, "shutting down".into()).await;
    }
}

/// Waits until the broker's port accepts connections (logging each failed attempt), then
/// connects with automatic recovery enabled.
async fn connect_waiting(
    url: &SecretUrl,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<Connection, BusError> {
    let shown = url.redacted();
    let address = url
        .expose()
        .parse::<AMQPUri>()
        .map(|uri| (uri.authority.host, uri.authority.port))
        .map_err(|reason| BusError::InvalidUrl {
            url: shown.clone(),
            reason,
        })?;
    let mut delays = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build();
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        let properties = ConnectionProperties::default()
            .with_connection_name(name.into())
            // Recovery replays exchanges, queues, bindings, consumers, QoS and confirm mode on
            // a new connection; it retries for hours (a broker being replaced), not forever.
            .enable_auto_recover()
            .configure_backoff(|b| {
                b.with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_jitter()
                    .with_max_times(5_000)
            });
        let reachable = tokio::net::TcpStream::connect((address.0.as_str(), address.1))
            .await
            .is_ok();
        let outcome = if reachable {
            Connection::connect(url.expose(), properties).await
        } else {
            Err(lapin::ErrorKind::IOError(
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
            )
            .into())
        };
        match outcome {
            Ok(connection) => {
                if attempt > 1 {
                    tracing::info!(broker = %shown, attempt, "connected to RabbitMQ");
                }
                return Ok(connection);
            }
            Err(error) if error.is_io_error() || error.can_be_recovered() => {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(broker = %shown, attempt, retry_in_ms = delay.as_millis() as u64, %error, "RabbitMQ is not reachable yet; waiting for it");
                tokio::select! {
                    () = shutdown.cancelled() => return Err(BusError::Cancelled),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(source) => return Err(BusError::Unreachable { url: shown, source }),
        }
    }
}
