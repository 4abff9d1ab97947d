//! The RabbitMQ bus: the only code in the workspace that touches lapin.
//!
//! ```text
//!                    ┌──────────── Bus (one connection, auto-recovering) ────────────┐
//!  services ──publish──► Publisher (confirm channel) ──► tenancy.events / tenancy.commands
//!                    │                                                              │
//!  tenancy.* ──► work queue (quorum, delivery limit, DLX) ──► consume / consume_batches
//!                    │        │                                 │ decode ─ invalid ──► tenancy.dlx ──► <queue>.dlq
//!                    │        │                                 │ handler ─ Ack / Retry / DeadLetter
//!                    │        └── delivery limit reached ──────────────────────────► <queue>.dlq
//!                    └──────────────────────────────────────────────────────────────┘
//! ```
//!
//! - [`topology`]: the contract's exchanges and queues, behind the namespace prefix.
//! - [`connection`]: connecting (waiting for a broker that is down) and the live link that is
//!   rebuilt after a lost connection.
//! - [`Bus`]: the handle services share: the link, its publisher, channels for consumers.
//! - [`publisher`]: confirmed, persistent, mandatory publishes that survive reconnections, and
//!   [`EventPublisher`], the seam handlers publish through (tests use an in-memory recorder).
//! - [`consumer`]: the consume loops; handlers decide, the loop acks.
//! - [`dead_letter`]: the dead-letter headers, and a session on a dead-letter queue for the
//!   operator's tools (which live in `tenantctl`).
//! - [`propagation`]: W3C trace context in AMQP headers.
//! - `metrics`: messages handled per queue and outcome, connection state and reconnects.

pub mod connection;
pub mod consumer;
pub mod dead_letter;
mod handle;
mod metrics;
pub mod propagation;
pub mod publisher;
pub mod topology;

pub use consumer::{BatchHandler, ConsumerOptions, Delivered, Handler, Outcome};
pub use handle::{Bus, QueueDepth};
pub use publisher::{EventPublisher, Publisher};
pub use topology::{Exchange, Topology, TraceJoin, WorkQueue};

/// A failure of the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    #[error("AMQP_URL {url} is not a valid AMQP URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("RabbitMQ at {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: lapin::Error,
    },
    /// The broker answered and said no: credentials, vhost, permissions. Never retried.
    #[error(
        "RabbitMQ at {broker} refused user `{user}` on vhost `{vhost}`: {reason}. Check AMQP_URL (amqp://USER:PASSWORD@HOST:PORT/VHOST, the vhost percent-encoded: `/` is %2f)"
    )]
    Refused {
        broker: String,
        user: String,
        vhost: String,
        reason: String,
    },
    /// Part of the topology is missing and this broker user may not declare it.
    #[error(
        "the RabbitMQ topology is incomplete ({} missing) and this user may not declare {name}: run `tenantctl setup` with a user that may configure the namespace, or import deploy/rabbitmq/definitions.json (docs/DEPLOYMENT.md)", missing.join(", ")
    )]
    TopologyMissing { name: String, missing: Vec<String> },
    #[error("{context}: {source}")]
    Broker {
        context: String,
        #[source]
        source: lapin::Error,
    },
    #[error(
        "the broker refused the message published to {exchange} with routing key {routing_key} (nack) for a minute: a queue it routes to may be full (x-max-length) or without a leader (a quorum queue that lost its majority)"
    )]
    Nacked {
        exchange: String,
        routing_key: String,
    },
    #[error(
        "no queue is bound to {exchange} with routing key {routing_key}: the broker returned the message"
    )]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    #[error("publishing to {exchange} with routing key {routing_key} did not complete within {}s (last error: {last})", waited.as_secs())]
    PublishTimeout {
        exchange: String,
        routing_key: String,
        waited: std::time::Duration,
        last: String,
    },
    #[error("refusing to publish an invalid {event_type} event: {reason}")]
    InvalidEvent {
        event_type: &'static str,
        reason: String,
    },
    #[error("the bus is shutting down")]
    Cancelled,
}

impl BusError {
    pub(crate) fn topology(context: String, source: lapin::Error) -> Self {
        BusError::Broker { context, source }
    }

    /// Whether trying again later may succeed: a broker that is down or restarting, a full
    /// queue, a connection being recovered. An unroutable message or a topology conflict is a
    /// configuration problem, not a transient one.
    /// A short, bounded name of the failure: the `error.type` of the messaging span.
    pub fn error_type(&self) -> &'static str {
        match self {
            BusError::InvalidUrl { .. } => "invalid_url",
            BusError::Unreachable { .. } => "unreachable",
            BusError::Refused { .. } => "refused",
            BusError::TopologyMissing { .. } => "topology_missing",
            BusError::Broker { .. } => "broker_error",
            BusError::Nacked { .. } => "nacked",
            BusError::Unroutable { .. } => "unroutable",
            BusError::PublishTimeout { .. } => "publish_timeout",
            BusError::InvalidEvent { .. } => "invalid_event",
            BusError::Cancelled => "cancelled",
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            BusError::Unreachable { .. }
            | BusError::Nacked { .. }
            | BusError::PublishTimeout { .. } => true,
            BusError::Broker { source, .. } => source.can_be_recovered() || source.is_io_error(),
            BusError::Unroutable { .. }
            | BusError::Refused { .. }
            | BusError::TopologyMissing { .. }
            | BusError::InvalidUrl { .. }
            | BusError::InvalidEvent { .. }
            | BusError::Cancelled => false,
        }
    }
}
