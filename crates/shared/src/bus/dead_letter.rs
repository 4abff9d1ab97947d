//! Dead letters: moving a message to its dead-letter queue with the reason (the consumer loop
//! does), reading back what a dead letter says, and a [`DeadLetterSession`] on a dead-letter
//! queue: the primitives with which `tenantctl`'s operator tools (list, replay, purge, in its
//! `dead_letters` module) take, send back and remove dead letters without touching lapin.
//!
//! A message reaches `<queue>.dlq` in one of two ways:
//! - the consumer moves it (invalid message, permanent failure, last delivery failed), adding
//!   the `x-tenancy-*` headers below (reason, original destination, deliveries, first failure);
//! - the broker moves it when the delivery limit is exceeded without the consumer deciding
//!   (a consumer that kept crashing); the broker's `x-death` header then tells where it came
//!   from and why (`delivery_limit`).
//!
//! What an operator is shown ([`DeadLetterInfo`]) never includes a message body (it may hold
//! personal data): type, tenant, reason, deliveries and times only.

use chrono::{DateTime, TimeZone, Utc};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};

use super::BusError;
use super::connection::closing;
use super::consumer::received;
use super::handle::Bus;
use super::publisher::{Publisher, header_i64, header_str};
use super::topology::{Exchange, WorkQueue};
use domain::message::peek;

/// Why the message was dead-lettered (at most [`REASON_MAX`] characters).
pub const REASON: &str = "x-tenancy-reason";
/// The work queue it was dead-lettered from (base name).
pub const QUEUE: &str = "x-tenancy-queue";
pub const ORIGINAL_EXCHANGE: &str = "x-tenancy-original-exchange";
pub const ORIGINAL_ROUTING_KEY: &str = "x-tenancy-original-routing-key";
/// Deliveries it had when it was dead-lettered.
pub const DELIVERIES: &str = "x-tenancy-deliveries";
/// When it first failed (milliseconds since the epoch); kept across replays.
pub const FIRST_FAILURE: &str = "x-tenancy-first-failure";
/// When it was dead-lettered (milliseconds since the epoch); tells one dead-lettering of a
/// message from a later one.
pub const DEAD_LETTERED_AT: &str = "x-tenancy-dead-lettered-at";
/// Set on a replayed message (milliseconds since the epoch).
pub const REPLAYED_AT: &str = "x-tenancy-replayed-at";

/// Longest reason kept in a header.
pub const REASON_MAX: usize = 240;

/// Publishes `delivery` to the dead-letter exchange, routed to `queue`'s dead-letter queue,
/// with the reason and the original destination in headers, and waits for the confirm. The
/// caller acknowledges the original only after this returned `Ok`.
///
/// # Errors
/// The dead-letter publish was not confirmed.
pub(crate) async fn move_to_dead_letters(
    publisher: &Publisher,
    queue: WorkQueue,
    delivery: &Delivery,
    reason: &str,
    deliveries: u32,
) -> Result<(), BusError> {
    let now = Utc::now().timestamp_millis();
    let original = delivery.properties.headers().clone().unwrap_or_default();
    let mut headers = FieldTable::default();
    for (key, value) in original.inner() {
        headers.insert(key.clone(), value.clone());
    }
    let long = |text: &str| AMQPValue::LongString(LongString::from(text));
    headers.insert(REASON.into(), long(&truncate(reason, REASON_MAX)));
    headers.insert(QUEUE.into(), long(queue.base_name()));
    headers.insert(ORIGINAL_EXCHANGE.into(), long(delivery.exchange.as_str()));
    headers.insert(
        ORIGINAL_ROUTING_KEY.into(),
        long(delivery.routing_key.as_str()),
    );
    headers.insert(
        DELIVERIES.into(),
        AMQPValue::LongLongInt(i64::from(deliveries)),
    );
    if header_i64(Some(&original), FIRST_FAILURE).is_none() {
        headers.insert(FIRST_FAILURE.into(), AMQPValue::LongLongInt(now));
    }
    headers.insert(DEAD_LETTERED_AT.into(), AMQPValue::LongLongInt(now));
    let properties = delivery.properties.clone().with_headers(headers);
    let exchange = publisher.topology().exchange(Exchange::DeadLetters);
    publisher
        .publish_raw(&exchange, queue.base_name(), &delivery.data, properties)
        .await
}

fn truncate(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if out.len() < text.len() {
        out.pop();
        out.push('…');
    }
    out
}

/// What an operator is shown of a dead letter. Never the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterInfo {
    pub message_id: Option<String>,
    pub event_type: Option<String>,
    pub tenant_id: Option<String>,
    pub reason: String,
    pub deliveries: u32,
    pub first_failure: Option<DateTime<Utc>>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// Where a replay sends it.
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
}

impl DeadLetterInfo {
    /// Identifies this dead-lettering of this message: the same message dead-lettered again
    /// after a replay gets a new key, so it can be replayed again.
    pub fn replay_key(&self) -> String {
        format!(
            "{}@{}",
            self.message_id.as_deref().unwrap_or("no-id"),
            self.dead_lettered_at.map_or(0, |t| t.timestamp_millis())
        )
    }

    /// Reads a dead letter's headers (ours, else the broker's `x-death`) and, for the id, type
    /// and tenant, its CloudEvents attributes in either content mode (unvalidated: a dead
    /// letter may be anything).
    pub fn of(delivery: &Delivery) -> Self {
        let headers = delivery.properties.headers().as_ref();
        let millis =
            |key| header_i64(headers, key).and_then(|ms| Utc.timestamp_millis_opt(ms).single());
        let death = headers.and_then(first_death);
        let event = peek(&received(delivery));
        let reason = header_str(headers, REASON)
            .map(str::to_owned)
            .or_else(|| {
                death
                    .as_ref()
                    .map(|d| format!("dead-lettered by the broker: {}", d.reason))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        DeadLetterInfo {
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .or(event.id),
            event_type: delivery
                .properties
                .kind()
                .as_ref()
                .map(|t| t.to_string())
                .or(event.event_type),
            tenant_id: event.tenant_id,
            reason,
            deliveries: header_i64(headers, DELIVERIES)
                .or_else(|| death.as_ref().map(|d| d.count))
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            first_failure: millis(FIRST_FAILURE).or_else(|| death.as_ref().and_then(|d| d.time)),
            dead_lettered_at: millis(DEAD_LETTERED_AT)
                .or_else(|| death.as_ref().and_then(|d| d.time)),
            original_exchange: header_str(headers, ORIGINAL_EXCHANGE)
                .map(str::to_owned)
                .or_else(|| death.as_ref().map(|d| d.exchange.clone())),
            original_routing_key: header_str(headers, ORIGINAL_ROUTING_KEY)
                .map(str::to_owned)
                .or_else(|| death.as_ref().and_then(|d| d.routing_key.clone())),
        }
    }
}

/// The most recent entry of the broker's `x-death` header.
struct Death {
    reason: String,
    count: i64,
    time: Option<DateTime<Utc>>,
    exchange: String,
    routing_key: Option<String>,
}

fn first_death(headers: &FieldTable) -> Option<Death> {
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(death) = deaths.as_slice().first()? else {
        return None;
    };
    let text = |key: &str| header_str(Some(death), key).map(str::to_owned);
    let routing_key = match death.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => keys.as_slice().iter().find_map(|k| match k {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
            _ => None,
        }),
        _ => None,
    };
    Some(Death {
        reason: text("reason").unwrap_or_default(),
        count: header_i64(Some(death), "count").unwrap_or(0),
        time: header_i64(Some(death), "time").and_then(|s| Utc.timestamp_opt(s, 0).single()),
        exchange: text("exchange").unwrap_or_default(),
        routing_key,
    })
}

/// One look into a dead-letter queue, on a channel of its own. A message taken is held
/// (unacknowledged) until it is removed; whatever was taken and not removed goes back to the
/// queue when the session closes (the queue's delivery limit is high enough for inspection never
/// to matter).
pub struct DeadLetterSession {
    channel: Channel,
    name: String,
}

impl DeadLetterSession {
    /// Opens a session on `queue`'s dead-letter queue.
    ///
    /// # Errors
    /// A broker error.
    pub async fn open(bus: &Bus, queue: WorkQueue) -> Result<Self, BusError> {
        Ok(DeadLetterSession {
            channel: bus.channel().await?,
            name: bus.topology().dead_letter_queue(queue),
        })
    }

    /// How many messages wait in the queue (those taken in this session included).
    ///
    /// # Errors
    /// A broker error.
    pub async fn count(&self) -> Result<u32, BusError> {
        let name = self.name.as_str();
        super::topology::inspect_queue(&self.channel, name)
            .await
            .map(|q| q.message_count())
            .map_err(|e| BusError::Broker {
                context: format!("reading {name}"),
                source: e,
            })
    }

    /// Takes the next message, oldest first; `None` when none is left to take.
    ///
    /// # Errors
    /// A broker error.
    pub async fn take(&self) -> Result<Option<DeadLetter>, BusError> {
        let name = self.name.as_str();
        let message = self
            .channel
            .basic_get(name.into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| BusError::Broker {
                context: format!("reading {name}"),
                source: e,
            })?;
        Ok(message.map(|message| {
            let delivery = message.delivery;
            DeadLetter {
                info: DeadLetterInfo::of(&delivery),
                delivery,
            }
        }))
    }

    /// Deletes every message of the queue; returns how many.
    ///
    /// # Errors
    /// A broker error.
    pub async fn purge(&self) -> Result<u32, BusError> {
        let name = self.name.as_str();
        self.channel
            .queue_purge(name.into(), QueuePurgeOptions::default())
            .await
            .map_err(|e| BusError::Broker {
                context: format!("purging {name}"),
                source: e,
            })
    }

    /// Ends the session: what was taken and not removed goes back to the queue.
    pub async fn close(self, reason: &str) {
        closing(self.channel.close(200, reason.into())).await;
    }
}

/// A dead letter taken in a [`DeadLetterSession`].
pub struct DeadLetter {
    delivery: Delivery,
    info: DeadLetterInfo,
}

impl DeadLetter {
    pub fn info(&self) -> &DeadLetterInfo {
        &self.info
    }

    /// Publishes it again to `exchange` with `routing_key` (its original destination), as a
    /// fresh message: what dead-lettering added is dropped, the first failure is kept, and the
    /// replay time is added. Waits for the confirm; the dead letter itself stays held.
    ///
    /// # Errors
    /// The publish was not confirmed.
    pub async fn send_back(
        &self,
        publisher: &Publisher,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), BusError> {
        publisher
            .publish_raw(
                exchange,
                routing_key,
                &self.delivery.data,
                replayable(&self.delivery.properties),
            )
            .await
    }

    /// Removes it from the dead-letter queue for good.
    ///
    /// # Errors
    /// A broker error (it then stays in the queue).
    pub async fn remove(self) -> Result<(), BusError> {
        self.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|e| BusError::Broker {
                context: "removing a replayed message from its dead-letter queue".into(),
                source: e,
            })
    }
}

/// The properties of a replayed message: the original ones, minus what dead-lettering added
/// (so it starts afresh), plus when it was replayed. The first failure is kept.
fn replayable(properties: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(original) = properties.headers() {
        for (key, value) in original.inner() {
            let key_str = key.as_str();
            let dropped = key_str == "x-death"
                || key_str.starts_with("x-first-death")
                || key_str.starts_with("x-last-death")
                || key_str == "x-delivery-count"
                || (key_str.starts_with("x-tenancy-") && key_str != FIRST_FAILURE);
            if !dropped {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    headers.insert(
        REPLAYED_AT.into(),
        AMQPValue::LongLongInt(Utc::now().timestamp_millis()),
    );
    properties.clone().with_headers(headers)
}
