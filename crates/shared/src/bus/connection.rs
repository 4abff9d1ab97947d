//! Connecting to RabbitMQ, and keeping connected: the [`Bus`] handle services share.
//!
//! Reconnection is ours, not lapin's automatic recovery (whose recovery can stall when frames
//! of the old connection are still buffered while it starts over). The bus holds one *live
//! link*: a connection with the topology declared and a publisher channel in confirm mode. Any
//! transport error marks the link broken; the next user rebuilds it (one rebuild at a time,
//! everyone else waits for it), waiting with backoff while the broker is down. Publishers then
//! publish again on the new link and consumers subscribe again on a new channel; deliveries of
//! the old channel are redelivered by the broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::BusError;
use super::publisher::Publisher;
use super::topology::Topology;
use crate::backoff::Backoff;
use crate::config::SecretUrl;

/// One connection's worth of state.
pub(crate) struct Live {
    pub(crate) generation: u64,
    pub(crate) connection: Connection,
    pub(crate) publisher: Channel,
    broken: AtomicBool,
}

impl Live {
    fn usable(&self) -> bool {
        !self.broken.load(Ordering::Acquire)
            && self.connection.status().connected()
            && self.publisher.status().connected()
    }
}

/// What the bus and its publishers share.
pub(crate) struct Link {
    url: SecretUrl,
    name: String,
    pub(crate) topology: Topology,
    shutdown: CancellationToken,
    live: Mutex<Option<Arc<Live>>>,
    generations: AtomicU64,
    closed: AtomicBool,
}

impl Link {
    /// The live link, rebuilt first if it is broken.
    pub(crate) async fn current(&self) -> Result<Arc<Live>, BusError> {
        let mut slot = self.live.lock().await;
        if let Some(live) = slot.as_ref().filter(|live| live.usable()) {
            return Ok(live.clone());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Cancelled);
        }
        if let Some(old) = slot.take() {
            tracing::warn!(
                generation = old.generation,
                "the connection to RabbitMQ was lost; reconnecting"
            );
            tokio::spawn(async move {
                let _ = old.connection.close(200, "replaced".into()).await;
            });
        }
        let live = Arc::new(self.connect().await?);
        *slot = Some(live.clone());
        Ok(live)
    }

    /// Marks `live` broken after an error on it: the next [`Link::current`] reconnects.
    pub(crate) fn invalidate(&self, live: &Live) {
        live.broken.store(true, Ordering::Release);
    }

    async fn connect(&self) -> Result<Live, BusError> {
        let connection = connect_waiting(&self.url, &self.name, &self.shutdown).await?;
        let setup = connection
            .create_channel()
            .await
            .map_err(|e| BusError::Broker {
                context: "opening a channel".into(),
                source: e,
            })?;
        self.topology.declare(&setup).await?;
        let _ = setup.close(200, "topology declared".into()).await;
        let publisher = connection
            .create_channel()
            .await
            .map_err(|e| BusError::Broker {
                context: "opening the publisher channel".into(),
                source: e,
            })?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| BusError::Broker {
                context: "enabling publisher confirms".into(),
                source: e,
            })?;
        let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
        if generation > 1 {
            tracing::info!(generation, "reconnected to RabbitMQ");
        }
        Ok(Live {
            generation,
            connection,
            publisher,
            broken: AtomicBool::new(false),
        })
    }
}

/// The handle services share: reconnecting on demand, with the topology declared and a
/// publisher. Cheap to share by reference (or `Arc`).
pub struct Bus {
    link: Arc<Link>,
    publisher: Publisher,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("url", &self.link.url)
            .field("topology", &self.link.topology)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Connects, waiting (with backoff and a log line per attempt) for a broker that is not up
    /// yet, declares the topology and opens the publisher's confirm channel.
    ///
    /// `name` shows in the management UI (`connection_name`); `source` is the CloudEvents
    /// `source` of what this process publishes. `shutdown` ends any wait for the broker, now
    /// or on a later reconnection.
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
        let link = Arc::new(Link {
            url: url.clone(),
            name: name.to_owned(),
            topology,
            shutdown: shutdown.clone(),
            live: Mutex::new(None),
            generations: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        link.current().await?;
        Ok(Bus {
            publisher: Publisher::new(link.clone(), source),
            link,
        })
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn topology(&self) -> &Topology {
        &self.link.topology
    }

    /// A new channel on the live connection (consumers and dead-letter tools each use their
    /// own), reconnecting first if needed.
    ///
    /// # Errors
    /// Shutdown while waiting for the broker, or the broker refusing.
    pub async fn channel(&self) -> Result<Channel, BusError> {
        loop {
            let live = self.link.current().await?;
            match live.connection.create_channel().await {
                Ok(channel) => return Ok(channel),
                Err(error) if error.is_io_error() || error.can_be_recovered() => {
                    self.link.invalidate(&live)
                }
                Err(source) => {
                    return Err(BusError::Broker {
                        context: "opening a channel".into(),
                        source,
                    });
                }
            }
        }
    }

    /// Whether the connection is up right now (readiness); does not reconnect.
    pub fn is_connected(&self) -> bool {
        self.link
            .live
            .try_lock()
            .map(|slot| slot.as_ref().is_some_and(|live| live.usable()))
            .unwrap_or(false)
    }

    /// Closes the connection after the publisher's outstanding confirms; no reconnection after.
    pub async fn close(&self) {
        self.link.closed.store(true, Ordering::Release);
        let live = self.link.live.lock().await.take();
        if let Some(live) = live {
            let _ = live.publisher.wait_for_confirms().await;
            let _ = live.connection.close(200, "shutting down".into()).await;
        }
    }
}

/// Waits until the broker accepts a connection, logging each failed attempt.
async fn connect_waiting(
    url: &SecretUrl,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<Connection, BusError> {
    let shown = url.redacted();
    let uri = url
        .expose()
        .parse::<AMQPUri>()
        .map_err(|reason| BusError::InvalidUrl {
            url: shown.clone(),
            reason,
        })?;
    let address = (uri.authority.host, uri.authority.port);
    let login = (uri.authority.userinfo.username, uri.vhost);
    let mut delays = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 0_u32;
    loop {
        if shutdown.is_cancelled() {
            return Err(BusError::Cancelled);
        }
        attempt += 1;
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        // A closed port answers at once; a half-started broker may accept TCP and then hang, so
        // the AMQP handshake has a deadline too.
        let outcome = match tokio::net::TcpStream::connect((address.0.as_str(), address.1)).await {
            Ok(_) => match tokio::time::timeout(
                Duration::from_secs(15),
                Connection::connect(url.expose(), properties),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(lapin::ErrorKind::IOError(
                    std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
                )
                .into()),
            },
            Err(error) => Err(lapin::ErrorKind::IOError(error.into()).into()),
        };
        match outcome {
            Ok(connection) => {
                if attempt > 1 {
                    tracing::info!(broker = %shown, attempt, "connected to RabbitMQ");
                }
                return Ok(connection);
            }
            Err(error) if retryable(&error) => {
                let delay = delays.next_delay();
                tracing::warn!(broker = %shown, attempt, retry_in_ms = delay.as_millis() as u64, %error, "RabbitMQ is not reachable yet; waiting for it");
                tokio::select! {
                    () = shutdown.cancelled() => return Err(BusError::Cancelled),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(source) => {
                let reason = refusal(&source).unwrap_or_else(|| source.to_string());
                return Err(BusError::Refused {
                    broker: format!("{}:{}", address.0, address.1),
                    user: login.0.clone(),
                    vhost: login.1.clone(),
                    reason,
                });
            }
        }
    }
}

/// Broker unreachable, refusing connections while it starts, or closing them while it stops:
/// worth waiting for. A broker that answers and refuses the login (ACCESS_REFUSED: user or
/// password), the vhost (NOT_ALLOWED: it does not exist, or the user has no permission on it) or
/// our protocol is not: no wait will change its answer.
fn retryable(error: &lapin::Error) -> bool {
    refusal(error).is_none()
}

/// Why the broker refused us for good, if it did.
fn refusal(error: &lapin::Error) -> Option<String> {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => Some(format!(
                "{} (wrong user name or password, or the user may not log in from this host)",
                broker_says(amqp)
            )),
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => Some(format!(
                "{} (the vhost does not exist, or the user has no permission on it: `rabbitmqctl add_vhost`, `rabbitmqctl set_permissions -p <vhost> <user> ...`)",
                broker_says(amqp)
            )),
            _ => None,
        },
        lapin::ErrorKind::AuthProviderError(reason) => {
            Some(format!("authentication failed: {reason}"))
        }
        lapin::ErrorKind::InvalidProtocolVersion(version) => Some(format!(
            "the server speaks AMQP {version:?}, not 0-9-1: is AMQP_URL pointing at RabbitMQ?"
        )),
        _ => None,
    }
}

/// The broker's own words, without the trailing full stop (our message goes on after them).
fn broker_says(error: &lapin::protocol::AMQPError) -> String {
    error
        .get_message()
        .as_str()
        .trim_end_matches('.')
        .to_owned()
}
