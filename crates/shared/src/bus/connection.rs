//! Connecting to RabbitMQ, and keeping connected: the live link that the [`Bus`](super::Bus)
//! and its [`Publisher`](super::Publisher) share.
//!
//! Reconnection is ours, not lapin's automatic recovery (whose recovery can stall when frames
//! of the old connection are still buffered while it starts over). The bus holds one *live
//! link*: a connection with the topology checked (and what was missing declared) and a publisher channel in confirm mode. Any
//! transport error marks the link broken; the next user rebuilds it (one rebuild at a time,
//! everyone else waits for it), waiting with backoff while the broker is down. Publishers then
//! publish again on the new link and consumers subscribe again on a new channel; deliveries of
//! the old channel are redelivered by the broker.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::BusError;
use super::topology::Topology;
use crate::backoff::Backoff;
use crate::config::SecretUrl;

/// How long a broker that accepted the connection may take to answer the set-up (topology
/// check, publisher channel) before the link starts over: a broker that is booting or stopping
/// can accept a connection and then never answer.
const SET_UP_DEADLINE: Duration = Duration::from_secs(30);

/// How long closing a channel or connection, or cancelling a consumer, waits for the broker's
/// answer: lapin waits for ever when the connection died under it.
const CLOSING_DEADLINE: Duration = Duration::from_secs(5);

/// Awaits a closing operation (close, cancel, the last confirms) for at most
/// [`CLOSING_DEADLINE`], ignoring its outcome: whatever it leaves open, the broker reclaims
/// with the connection.
pub(crate) async fn closing<T>(operation: impl Future<Output = T>) {
    let _ = tokio::time::timeout(CLOSING_DEADLINE, operation).await;
}

/// One connection's worth of state.
pub(crate) struct Live {
    pub(crate) generation: u64,
    /// The node connected to, redacted, for the logs.
    node: String,
    pub(crate) connection: Connection,
    /// The confirm channel publishes go through; replaced by [`Link::renew_publisher`].
    publisher: std::sync::Mutex<Channel>,
    broken: AtomicBool,
}

impl Live {
    fn usable(&self) -> bool {
        !self.broken.load(Ordering::Acquire)
            && self.connection.status().connected()
            && self.publisher().status().connected()
    }

    /// The publisher channel now (a cheap handle).
    pub(crate) fn publisher(&self) -> Channel {
        self.publisher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What the bus and its publishers share: one live connection at a time, rebuilt on demand.
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
    /// A link that connects on first use. `name` shows in the management UI
    /// (`connection_name`); `shutdown` ends any wait for the broker.
    pub(crate) fn new(
        url: &SecretUrl,
        name: &str,
        topology: Topology,
        shutdown: &CancellationToken,
    ) -> Self {
        Link {
            url: url.clone(),
            name: name.to_owned(),
            topology,
            shutdown: shutdown.clone(),
            live: Mutex::new(None),
            generations: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn url(&self) -> &SecretUrl {
        &self.url
    }

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
                broker = %old.node,
                "the connection to RabbitMQ was lost; reconnecting"
            );
            tokio::spawn(async move {
                closing(old.connection.close(200, "replaced".into())).await;
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

    /// Replaces `live`'s publisher channel by a new one, unless another publish already did
    /// (`nacked` is no longer the current channel). RabbitMQ 3.10 can leave a channel nacking
    /// every publish to a quorum queue whose leader moved to another node, while a new channel
    /// on the same connection publishes at once (seen on a three-node cluster). The old channel
    /// is closed once its outstanding confirms are in. A connection that cannot open a channel
    /// is marked broken: the next publish reconnects.
    pub(crate) async fn renew_publisher(&self, live: &Live, nacked: &Channel) {
        if live.publisher().id() != nacked.id() {
            return;
        }
        let renewed = match self.confirm_channel(&live.connection).await {
            Ok(channel) => channel,
            Err(error) => {
                tracing::debug!(%error, "could not open a new publisher channel; reconnecting");
                self.invalidate(live);
                return;
            }
        };
        let old = {
            let mut current = live
                .publisher
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.id() != nacked.id() {
                // Renewed meanwhile by another publish: keep that one.
                None
            } else {
                Some(std::mem::replace(&mut *current, renewed.clone()))
            }
        };
        let to_close = old.map_or(renewed, |old| {
            tracing::debug!(broker = %live.node, "publishing on a new channel after a nack");
            old
        });
        tokio::spawn(async move {
            closing(to_close.wait_for_confirms()).await;
            closing(to_close.close(200, "replaced".into())).await;
        });
    }

    /// Whether the connection is up right now; does not reconnect.
    pub(crate) fn is_connected(&self) -> bool {
        self.live
            .try_lock()
            .map(|slot| slot.as_ref().is_some_and(|live| live.usable()))
            .unwrap_or(false)
    }

    /// Closes the connection after the publisher's outstanding confirms; no reconnection after.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let live = self.live.lock().await.take();
        if let Some(live) = live {
            closing(live.publisher().wait_for_confirms()).await;
            closing(live.connection.close(200, "shutting down".into())).await;
        }
    }

    /// Connects and sets the connection up, starting over while the broker fails or stalls
    /// midway (it is restarting): callers see a working link, a refusal, or shutdown.
    async fn connect(&self) -> Result<Live, BusError> {
        let mut delays = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let (node, connection, publisher) = loop {
            let (node, connection) = connect_waiting(&self.url, &self.name, &self.shutdown).await?;
            let failure =
                match tokio::time::timeout(SET_UP_DEADLINE, self.set_up(&connection)).await {
                    Ok(Ok(publisher)) => break (node, connection, publisher),
                    Ok(Err(error)) if !went_away(&error) => return Err(error),
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => format!(
                        "no answer within {}s after connecting",
                        SET_UP_DEADLINE.as_secs()
                    ),
                };
            tokio::spawn(async move {
                closing(connection.close(200, "set-up failed".into())).await;
            });
            let delay = delays.next_delay();
            tracing::warn!(error = %failure, retry_in_ms = delay.as_millis() as u64, "RabbitMQ failed while the connection was set up; connecting again");
            tokio::select! {
                () = self.shutdown.cancelled() => return Err(BusError::Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
        };
        let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
        if generation > 1 {
            super::metrics::reconnected();
            tracing::info!(generation, "reconnected to RabbitMQ");
        }
        Ok(Live {
            generation,
            node,
            connection,
            publisher: std::sync::Mutex::new(publisher),
            broken: AtomicBool::new(false),
        })
    }

    /// The topology (checked, and what is missing declared) and the publisher's confirm channel.
    async fn set_up(&self, connection: &Connection) -> Result<Channel, BusError> {
        self.topology.ensure(connection).await?;
        self.confirm_channel(connection).await
    }

    /// A new channel in confirm mode.
    async fn confirm_channel(&self, connection: &Connection) -> Result<Channel, BusError> {
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
        Ok(publisher)
    }
}

/// Where the next connection attempt of this process starts in a list of nodes: it moves on at
/// every attempt, and starts at a different node in each process, so that replicas spread over
/// the nodes instead of all piling onto the first.
static NEXT_NODE: AtomicUsize = AtomicUsize::new(usize::MAX);

fn first_node(nodes: usize) -> usize {
    let _ = NEXT_NODE.compare_exchange(
        usize::MAX,
        std::process::id() as usize,
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    NEXT_NODE.fetch_add(1, Ordering::AcqRel) % nodes.max(1)
}

/// Waits until a broker node accepts a connection, logging each failed attempt: the nodes of
/// `url` in turn (a node that does not answer moves on to the next at once), then, after a
/// whole round without success, with backoff. A node that refuses the user or the vhost ends
/// the wait: users, permissions and vhosts are the same on every node of a cluster.
async fn connect_waiting(
    url: &SecretUrl,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<(String, Connection), BusError> {
    let nodes = url
        .nodes()
        .into_iter()
        .map(|node| {
            let uri = node
                .expose()
                .parse::<AMQPUri>()
                .map_err(|reason| BusError::InvalidUrl {
                    url: node.redacted(),
                    reason,
                })?;
            Ok((node, uri))
        })
        .collect::<Result<Vec<_>, BusError>>()?;
    let mut delays = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 0_u32;
    let mut index = first_node(nodes.len());
    let mut last = None;
    loop {
        for _ in 0..nodes.len() {
            if shutdown.is_cancelled() {
                return Err(BusError::Cancelled);
            }
            attempt += 1;
            let (node, uri) = &nodes[index % nodes.len()];
            index += 1;
            match connect_to(node, uri, name).await {
                Ok(connection) => {
                    if attempt > 1 || nodes.len() > 1 {
                        tracing::info!(broker = %node, attempt, "connected to RabbitMQ");
                    }
                    return Ok((node.redacted(), connection));
                }
                Err(error) if retryable(&error) => {
                    if nodes.len() > 1 {
                        tracing::warn!(broker = %node, attempt, %error, "RabbitMQ node not reachable; trying the next one");
                    }
                    last = Some(error);
                }
                Err(source) => {
                    let reason = refusal(&source).unwrap_or_else(|| source.to_string());
                    return Err(BusError::Refused {
                        broker: format!("{}:{}", uri.authority.host, uri.authority.port),
                        user: uri.authority.userinfo.username.clone(),
                        vhost: uri.vhost.clone(),
                        reason,
                    });
                }
            }
        }
        let delay = delays.next_delay();
        let error = last.take().map(|e| e.to_string()).unwrap_or_default();
        tracing::warn!(broker = %url, attempt, retry_in_ms = delay.as_millis() as u64, %error, "RabbitMQ is not reachable yet; waiting for it");
        tokio::select! {
            () = shutdown.cancelled() => return Err(BusError::Cancelled),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One attempt on one node. A closed port answers at once; a half-started broker may accept
/// TCP and then hang, so the AMQP handshake has a deadline too.
async fn connect_to(
    node: &SecretUrl,
    uri: &AMQPUri,
    name: &str,
) -> Result<Connection, lapin::Error> {
    let host = (uri.authority.host.as_str(), uri.authority.port);
    if let Err(error) = tokio::net::TcpStream::connect(host).await {
        return Err(lapin::ErrorKind::IOError(error.into()).into());
    }
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(
        Duration::from_secs(15),
        Connection::connect(node.expose(), properties),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(lapin::ErrorKind::IOError(
            std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
        )
        .into()),
    }
}

/// Whether a set-up step failed because the connection went away under it (the broker is
/// stopping or restarting), rather than because the broker refused the step (a queue declared
/// with other arguments, a missing permission), which no new connection changes.
fn went_away(error: &BusError) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError};
    let BusError::Broker { source, .. } = error else {
        return false;
    };
    match source.kind() {
        lapin::ErrorKind::IOError(_)
        | lapin::ErrorKind::InvalidChannel(_)
        | lapin::ErrorKind::InvalidChannelState(..)
        | lapin::ErrorKind::InvalidConnectionState(_)
        | lapin::ErrorKind::MissingHeartbeatError => true,
        lapin::ErrorKind::ProtocolError(amqp) => matches!(
            amqp.kind(),
            AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED | AMQPHardError::INTERNALERROR)
        ),
        _ => false,
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

#[cfg(test)]
mod tests {
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};

    use super::*;

    fn broker(kind: lapin::ErrorKind) -> BusError {
        BusError::Broker {
            context: "checking a queue".into(),
            source: kind.into(),
        }
    }

    fn amqp(kind: AMQPErrorKind) -> BusError {
        broker(lapin::ErrorKind::ProtocolError(AMQPError::new(
            kind,
            "said by the broker".into(),
        )))
    }

    #[test]
    fn a_connection_lost_during_set_up_is_connected_again_and_a_refusal_is_not() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(went_away(&broker(lapin::ErrorKind::IOError(reset.into()))));
        assert!(went_away(&amqp(AMQPErrorKind::Hard(
            AMQPHardError::CONNECTIONFORCED
        ))));
        assert!(!went_away(&amqp(AMQPErrorKind::Soft(
            AMQPSoftError::PRECONDITIONFAILED
        ))));
        assert!(!went_away(&amqp(AMQPErrorKind::Soft(
            AMQPSoftError::ACCESSREFUSED
        ))));
        assert!(!went_away(&BusError::TopologyMissing {
            name: "auditor.events".into(),
            missing: vec!["auditor.events".into()],
        }));
    }
}
