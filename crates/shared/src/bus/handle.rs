//! The [`Bus`]: the handle services share. It owns the live link ([`super::connection`]) and
//! the [`Publisher`] built on it, and opens channels for consumers and dead-letter tools.
//!
//! It sits above both: the connection knows nothing of publishing, and the publisher reaches the
//! broker through the link alone.

use std::sync::Arc;

use lapin::Channel;
use tokio_util::sync::CancellationToken;

use super::BusError;
use super::connection::{Link, closing};
use super::publisher::Publisher;
use super::topology::{Topology, WorkQueue};
use crate::config::SecretUrl;

/// One queue's depth, as [`Bus::queue_depths`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// The base name (without the namespace); dead-letter queues end in `.dlq`.
    pub queue: String,
    pub messages: u32,
    pub consumers: u32,
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
            .field("url", self.link.url())
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
        let link = Arc::new(Link::new(url, name, topology, shutdown));
        link.current().await?;
        super::metrics::watch(&link);
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

    /// How many messages wait in each work queue and dead-letter queue, and how many consumers
    /// each has: one passive declare per queue, on a channel of its own.
    ///
    /// # Errors
    /// The broker is unreachable, or a queue is missing (the topology was deleted).
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, BusError> {
        let channel = self.channel().await?;
        let topology = self.topology();
        let mut depths = Vec::with_capacity(WorkQueue::ALL.len() * 2);
        for queue in WorkQueue::ALL {
            let dead_letters = format!("{}.dlq", queue.base_name());
            for (name, shown) in [
                (topology.queue(queue), queue.base_name().to_owned()),
                (topology.dead_letter_queue(queue), dead_letters),
            ] {
                let declared = super::topology::inspect_queue(&channel, &name)
                    .await
                    .map_err(|source| BusError::Broker {
                        context: format!("reading the depth of {name}"),
                        source,
                    })?;
                depths.push(QueueDepth {
                    queue: shown,
                    messages: declared.message_count(),
                    consumers: declared.consumer_count(),
                });
            }
        }
        closing(channel.close(200, "queue depths read".into())).await;
        Ok(depths)
    }

    /// Whether the connection is up right now (readiness); does not reconnect.
    pub fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    /// Closes the connection after the publisher's outstanding confirms; no reconnection after.
    pub async fn close(&self) {
        self.link.close().await;
    }
}
