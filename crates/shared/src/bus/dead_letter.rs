//! Dead letters: moving a message to its dead-letter queue with the reason, and the operator's
//! tools to list, replay and purge a dead-letter queue.
//!
//! A message reaches `<queue>.dlq` in one of two ways:
//! - the consumer moves it (invalid message, permanent failure, last delivery failed), adding
//!   the `x-tenancy-*` headers below (reason, original destination, deliveries, first failure);
//! - the broker moves it when the delivery limit is exceeded without the consumer deciding
//!   (a consumer that kept crashing); the broker's `x-death` header then tells where it came
//!   from and why (`delivery_limit`).
//!
//! Listing never shows a message body (it may hold personal data): type, tenant, reason,
//! deliveries and times only.

use std::collections::HashSet;
use std::future::Future;

use chrono::{DateTime, TimeZone, Utc};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};

use super::BusError;
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

/// Which dead letters a replay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    MessageId(String),
    Tenant(String),
}

impl Selection {
    fn matches(&self, info: &DeadLetterInfo) -> bool {
        match self {
            Selection::All => true,
            Selection::MessageId(id) => info.message_id.as_deref() == Some(id.as_str()),
            Selection::Tenant(tenant) => info.tenant_id.as_deref() == Some(tenant.as_str()),
        }
    }
}

/// A durable record of replayed dead letters, so that a replay run again after an
/// interruption never publishes twice what an earlier run already replayed.
pub trait ReplayLog: Sync {
    fn already_replayed(&self, key: &str) -> impl Future<Output = Result<bool, String>> + Send;
    fn record_replay(
        &self,
        key: &str,
        queue: WorkQueue,
        info: &DeadLetterInfo,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Republished and removed from the dead-letter queue (or, with `dry_run`, would be).
    pub replayed: Vec<DeadLetterInfo>,
    /// Removed without republishing: an earlier, interrupted run had already replayed them.
    pub already_replayed: usize,
    /// Left in the dead-letter queue: not selected, or with no known destination.
    pub left: usize,
    pub unroutable: Vec<DeadLetterInfo>,
}

/// The dead-letter queue of one work queue.
pub struct DeadLetterQueue<'a> {
    bus: &'a Bus,
    queue: WorkQueue,
}

impl<'a> DeadLetterQueue<'a> {
    pub fn new(bus: &'a Bus, queue: WorkQueue) -> Self {
        DeadLetterQueue { bus, queue }
    }

    pub fn name(&self) -> String {
        self.bus.topology().dead_letter_queue(self.queue)
    }

    /// How many messages wait in the queue.
    ///
    /// # Errors
    /// A broker error.
    pub async fn count(&self) -> Result<u32, BusError> {
        let channel = self.bus.channel().await?;
        let count = count_on(&channel, &self.name()).await;
        let _ = channel.close(200, "counted".into()).await;
        count
    }

    /// Up to `limit` dead letters, oldest first. Each is taken and given back (the queue's
    /// delivery limit is high enough for inspection never to matter).
    ///
    /// # Errors
    /// A broker error.
    pub async fn list(&self, limit: usize) -> Result<(u32, Vec<DeadLetterInfo>), BusError> {
        let channel = self.bus.channel().await?;
        let name = self.name();
        let total = count_on(&channel, &name).await?;
        let mut listed = Vec::new();
        while listed.len() < limit {
            let Some(message) = get(&channel, &name).await? else {
                break;
            };
            listed.push(DeadLetterInfo::of(&message.delivery));
        }
        // Closing the channel gives every unacknowledged message back to the queue.
        let _ = channel.close(200, "listed".into()).await;
        Ok((total, listed))
    }

    /// Replays the selected dead letters: each is republished to its original exchange and
    /// routing key, confirmed, recorded in `log`, and only then removed from the dead-letter
    /// queue. An interruption at any point loses nothing; a run again skips (and removes) what
    /// the log says was replayed. `on_replayed` runs for each replayed message (the audit
    /// event). With `dry_run`, nothing is published or removed. `stop` ends the replay between
    /// two messages (Ctrl-C): what was replayed stays replayed, the rest stays queued.
    ///
    /// # Errors
    /// A broker error, or the replay log failing (the message is then left in the queue).
    pub async fn replay<F, Fut>(
        &self,
        selection: &Selection,
        dry_run: bool,
        log: &impl ReplayLog,
        stop: &tokio_util::sync::CancellationToken,
        mut on_replayed: F,
    ) -> Result<ReplaySummary, BusError>
    where
        F: FnMut(DeadLetterInfo) -> Fut,
        Fut: Future<Output = ()>,
    {
        let channel = self.bus.channel().await?;
        let name = self.name();
        let publisher = self.bus.publisher();
        let mut summary = ReplaySummary::default();
        // A message replayed in this run that fails again at once comes back to this queue;
        // it is left for the operator rather than replayed in a loop.
        let mut seen: HashSet<String> = HashSet::new();
        let result = async {
            while !stop.is_cancelled() {
                let Some(message) = get(&channel, &name).await? else {
                    break;
                };
                let delivery = message.delivery;
                let info = DeadLetterInfo::of(&delivery);
                let key = info.replay_key();
                if !selection.matches(&info)
                    || !seen.insert(info.message_id.clone().unwrap_or_else(|| key.clone()))
                {
                    summary.left += 1;
                    continue; // left unacknowledged: given back when the channel closes
                }
                let (Some(exchange), Some(routing_key)) = (
                    info.original_exchange.clone(),
                    info.original_routing_key.clone(),
                ) else {
                    summary.left += 1;
                    summary.unroutable.push(info);
                    continue;
                };
                if dry_run {
                    summary.replayed.push(info);
                    continue;
                }
                let done = log.already_replayed(&key).await.map_err(replay_log_error)?;
                if done {
                    ack(&delivery).await?;
                    summary.already_replayed += 1;
                    continue;
                }
                publisher
                    .publish_raw(
                        &exchange,
                        &routing_key,
                        &delivery.data,
                        replayable(&delivery.properties),
                    )
                    .await?;
                log.record_replay(&key, self.queue, &info)
                    .await
                    .map_err(replay_log_error)?;
                ack(&delivery).await?;
                on_replayed(info.clone()).await;
                summary.replayed.push(info);
            }
            Ok::<_, BusError>(())
        }
        .await;
        let _ = channel.close(200, "replay done".into()).await;
        result.map(|()| summary)
    }

    /// Deletes every message of the dead-letter queue; returns how many.
    ///
    /// # Errors
    /// A broker error.
    pub async fn purge(&self) -> Result<u32, BusError> {
        let channel = self.bus.channel().await?;
        let name = self.name();
        let purged = channel
            .queue_purge(
                name.as_str().into(),
                lapin::options::QueuePurgeOptions::default(),
            )
            .await
            .map_err(|e| BusError::Broker {
                context: format!("purging {name}"),
                source: e,
            });
        let _ = channel.close(200, "purged".into()).await;
        purged
    }
}

async fn count_on(channel: &Channel, name: &str) -> Result<u32, BusError> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map(|q| q.message_count())
        .map_err(|e| BusError::Broker {
            context: format!("reading {name}"),
            source: e,
        })
}

async fn get(
    channel: &Channel,
    name: &str,
) -> Result<Option<lapin::message::BasicGetMessage>, BusError> {
    channel
        .basic_get(name.into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(|e| BusError::Broker {
            context: format!("reading {name}"),
            source: e,
        })
}

async fn ack(delivery: &Delivery) -> Result<(), BusError> {
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .map(drop)
        .map_err(|e| BusError::Broker {
            context: "removing a replayed message from its dead-letter queue".into(),
            source: e,
        })
}

fn replay_log_error(reason: String) -> BusError {
    BusError::ReplayLog(reason)
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
