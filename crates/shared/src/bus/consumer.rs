//! The consume loops. Handlers decide ([`Outcome`]); the loop owns every ack, reject and
//! dead-letter, so a handler can be tested without a broker.
//!
//! For each delivery:
//! 1. decode, in either CloudEvents content mode (structured: the event is the body; binary:
//!    its attributes are `cloudEvents:*` application properties, see [`Received`]): a message
//!    that is not a valid CloudEvent of the expected type goes to the dead-letter queue with the
//!    reason in a header, and is never retried;
//! 2. handle, inside a `process` span whose parent is the publisher's trace;
//! 3. [`Outcome::Retry`] is retried in-process with exponential backoff and jitter, then given
//!    back with `basic.reject(requeue)`, which (unlike `nack` on RabbitMQ ≥ 4.3) counts toward
//!    the queue's delivery limit; on the last delivery the loop dead-letters the message itself,
//!    so the dead-letter queue holds the reason;
//! 4. a handler that panics is treated as a retry: nothing is lost.
//!
//! Shutdown: stop consuming, let in-flight handlers finish within the drain timeout, close the
//! channel (the broker requeues whatever was not acknowledged).

use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use super::BusError;
use super::connection::closing;
use super::dead_letter;
use super::handle::Bus;
use super::metrics::{self, Handled};
use super::propagation;
use super::publisher::{Publisher, header_i64};
use super::topology::{TraceJoin, WorkQueue};
use crate::backoff::Backoff;
use crate::telemetry::{self, DeliveredFrom};
use domain::message::{
    AnyEvent, CloudEvent, Event, Received, decode_any_received, decode_received,
    is_cloudevents_property,
};

/// What a handler decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or nothing to do): acknowledge.
    Ack,
    /// A transient failure: try again later.
    Retry { reason: String },
    /// A permanent failure: move it to the dead-letter queue with this reason.
    DeadLetter { reason: String },
}

/// A decoded message and what the broker says about its deliveries.
#[derive(Debug, Clone)]
pub struct Delivered<T> {
    pub event: T,
    /// 1 for the first delivery; counts redeliveries (the queue's `x-delivery-count` + 1).
    pub delivery: u32,
    /// The queue's delivery limit: on delivery `limit + 1` a failure is final.
    pub delivery_limit: u32,
}

impl<T> Delivered<T> {
    /// Whether a failure now would be final (the message goes to the dead-letter queue).
    pub fn is_last_delivery(&self) -> bool {
        self.delivery > self.delivery_limit
    }
}

/// Handles one message at a time (several in parallel, up to the concurrency).
pub trait Handler: Send + Sync + 'static {
    type Event: Event;

    fn handle(
        &self,
        message: &Delivered<CloudEvent<Self::Event>>,
    ) -> impl Future<Output = Outcome> + Send;
}

/// Handles batches of valid events of any type (the auditor).
pub trait BatchHandler: Send + Sync + 'static {
    /// `Ok` once every event is durably handled (then the batch is acknowledged); `Err(reason)`
    /// for a transient failure: the batch is kept, unacknowledged, and retried.
    fn handle_batch(
        &self,
        events: &[Delivered<AnyEvent>],
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// How a consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Messages handled at once; also the prefetch, so the broker never sends more than can be
    /// worked on.
    pub concurrency: u16,
    /// Attempts of a transient failure within one delivery, before it is given back.
    pub attempts_per_delivery: u32,
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    /// How long in-flight work may take to finish on shutdown.
    pub drain_timeout: Duration,
    /// Batch consumers: largest batch, and how long to wait for it to fill.
    pub batch_size: usize,
    pub batch_linger: Duration,
    /// Set to `true` while the consumer is registered with the broker (readiness).
    pub ready: Option<watch::Sender<bool>>,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            concurrency: 8,
            attempts_per_delivery: 3,
            retry_min_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(20),
            batch_size: 500,
            batch_linger: Duration::from_millis(20),
            ready: None,
        }
    }
}

impl ConsumerOptions {
    fn backoff(&self) -> Backoff {
        Backoff::new(self.retry_min_delay, self.retry_max_delay)
    }

    fn set_ready(&self, ready: bool) {
        if let Some(sender) = &self.ready {
            sender.send_replace(ready);
        }
    }
}

/// Consumes `queue` with `handler` until `shutdown`.
///
/// # Errors
/// The channel could not be opened or the connection could not be recovered.
pub async fn consume<H: Handler>(
    bus: &Bus,
    queue: WorkQueue,
    handler: Arc<H>,
    options: ConsumerOptions,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let permits = Arc::new(Semaphore::new(usize::from(options.concurrency.max(1))));
    let tasks = TaskTracker::new();
    let options = Arc::new(options);
    let mut subscription = None;
    let result = 'subscribe: loop {
        let (channel, mut consumer) =
            match subscribe(bus, queue, options.concurrency, &options, &shutdown).await {
                Ok(Some(subscribed)) => subscribed,
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            };
        subscription = Some((channel.clone(), consumer.tag()));
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break 'subscribe Ok(()),
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break 'subscribe Ok(());
                    };
                    let (handler, publisher, options, shutdown) = (
                        handler.clone(),
                        bus.publisher().clone(),
                        options.clone(),
                        shutdown.clone(),
                    );
                    tasks.spawn(async move {
                        process(
                            &*handler,
                            &publisher,
                            queue,
                            &name_of(&delivery),
                            delivery,
                            &options,
                            &shutdown,
                        )
                        .await;
                        drop(permit);
                    });
                }
                // The channel or the connection went away: subscribe again (the broker
                // redelivers what was not acknowledged).
                Some(Err(error)) => {
                    options.set_ready(false);
                    tracing::warn!(queue = queue.base_name(), %error, "lost the consumer's channel; subscribing again");
                    continue 'subscribe;
                }
                None => {
                    options.set_ready(false);
                    tracing::warn!(
                        queue = queue.base_name(),
                        "the broker cancelled the consumer; subscribing again"
                    );
                    continue 'subscribe;
                }
            }
        }
    };
    options.set_ready(false);
    if let Some((channel, tag)) = &subscription {
        closing(channel.basic_cancel(tag.clone(), BasicCancelOptions::default())).await;
    }
    tasks.close();
    if tokio::time::timeout(options.drain_timeout, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            queue = queue.base_name(),
            "in-flight messages did not finish in time; the broker will redeliver them"
        );
    }
    if let Some((channel, _)) = subscription {
        closing(channel.close(200, "consumer stopped".into())).await;
    }
    result
}

/// Opens a channel on the live connection, sets the prefetch and starts consuming `queue`.
/// Retries with backoff while the broker is unreachable; `None` on shutdown.
async fn subscribe(
    bus: &Bus,
    queue: WorkQueue,
    prefetch: u16,
    options: &ConsumerOptions,
    shutdown: &CancellationToken,
) -> Result<Option<(lapin::Channel, lapin::Consumer)>, BusError> {
    let name = bus.topology().queue(queue);
    let mut delays = options.backoff();
    loop {
        let attempt = async {
            let channel = bus.channel().await?;
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| BusError::Broker {
                    context: format!("setting the prefetch on {name}"),
                    source: e,
                })?;
            let consumer = channel
                .basic_consume(
                    name.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| BusError::Broker {
                    context: format!("consuming {name}"),
                    source: e,
                })?;
            Ok::<_, BusError>((channel, consumer))
        }
        .await;
        match attempt {
            Ok(subscribed) => {
                options.set_ready(true);
                tracing::info!(queue = %name, prefetch, "consuming");
                return Ok(Some(subscribed));
            }
            Err(BusError::Cancelled) => return Ok(None),
            Err(error) if error.is_transient() => {
                let delay = delays.next_delay();
                tracing::warn!(queue = %name, %error, retry_in_ms = delay.as_millis() as u64, "could not subscribe; trying again");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
}

fn name_of(delivery: &Delivery) -> String {
    delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_default()
}

/// Puts a delivery's `process` span in (or beside) its publisher's trace, as its queue says.
fn join_trace(span: &tracing::Span, queue: WorkQueue, headers: &lapin::types::FieldTable) {
    match queue.trace_join() {
        TraceJoin::Child => propagation::set_parent_from(span, headers),
        TraceJoin::Link => propagation::link_from(span, headers),
    }
}

/// What the message module decodes: the content type, the CloudEvents application properties
/// (binary mode) as text, and the body.
///
/// Text properties are taken as they are (invalid UTF-8 replaced, so a bad value fails its
/// attribute's rule rather than looking absent); an AMQP timestamp becomes RFC 3339 (the
/// binding maps `time` to one); numbers and booleans their decimal or `true`/`false` form.
/// Arrays, tables and byte arrays are left out: no CloudEvents attribute has that shape.
pub(super) fn received(delivery: &Delivery) -> Received<'_> {
    let properties = delivery
        .properties
        .headers()
        .as_ref()
        .map(|headers| {
            headers
                .inner()
                .iter()
                .filter(|(name, _)| is_cloudevents_property(name.as_str()))
                .filter_map(|(name, value)| Some((name.as_str(), property_text(value)?)))
                .collect()
        })
        .unwrap_or_default();
    Received {
        content_type: delivery
            .properties
            .content_type()
            .as_ref()
            .map(|t| t.as_str()),
        properties,
        body: &delivery.data,
    }
}

fn property_text(value: &AMQPValue) -> Option<Cow<'_, str>> {
    Some(match value {
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()),
        AMQPValue::ShortString(text) => Cow::Borrowed(text.as_str()),
        AMQPValue::Timestamp(seconds) => Cow::Owned(
            i64::try_from(*seconds)
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))?,
        ),
        AMQPValue::Boolean(b) => Cow::Owned(b.to_string()),
        AMQPValue::ShortShortInt(n) => Cow::Owned(n.to_string()),
        AMQPValue::ShortShortUInt(n) => Cow::Owned(n.to_string()),
        AMQPValue::ShortInt(n) => Cow::Owned(n.to_string()),
        AMQPValue::ShortUInt(n) => Cow::Owned(n.to_string()),
        AMQPValue::LongInt(n) => Cow::Owned(n.to_string()),
        AMQPValue::LongUInt(n) => Cow::Owned(n.to_string()),
        AMQPValue::LongLongInt(n) => Cow::Owned(n.to_string()),
        AMQPValue::Float(n) => Cow::Owned(n.to_string()),
        AMQPValue::Double(n) => Cow::Owned(n.to_string()),
        AMQPValue::DecimalValue(_)
        | AMQPValue::FieldArray(_)
        | AMQPValue::FieldTable(_)
        | AMQPValue::ByteArray(_)
        | AMQPValue::Void => return None,
    })
}

fn delivery_count(delivery: &Delivery) -> u32 {
    let redeliveries =
        header_i64(delivery.properties.headers().as_ref(), "x-delivery-count").unwrap_or(0);
    u32::try_from(redeliveries)
        .unwrap_or(u32::MAX)
        .saturating_add(1)
}

async fn process<H: Handler>(
    handler: &H,
    publisher: &Publisher,
    queue: WorkQueue,
    message_id: &str,
    delivery: Delivery,
    options: &ConsumerOptions,
    shutdown: &CancellationToken,
) {
    let queue_name = publisher.topology().queue(queue);
    let from = DeliveredFrom {
        exchange: delivery.exchange.as_str(),
        routing_key: delivery.routing_key.as_str(),
        queue: &queue_name,
    };
    let span = telemetry::process_span(from, message_id, H::Event::TYPE);
    join_trace(
        &span,
        queue,
        &delivery.properties.headers().clone().unwrap_or_default(),
    );
    async {
        let event = match decode_received::<H::Event>(&received(&delivery)) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(queue = queue.base_name(), reason = %error.reason(), "message refused; moving it to the dead-letter queue");
                telemetry::record_error(&Span::current(), "invalid_message");
                dead_letter_and_ack(publisher, queue, &delivery, &error.reason(), delivery_count(&delivery)).await;
                return;
            }
        };
        let delivered = Delivered {
            event,
            delivery: delivery_count(&delivery),
            delivery_limit: queue.delivery_limit(),
        };
        let mut delays = options.backoff();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = AssertUnwindSafe(handler.handle(&delivered))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Outcome::Retry {
                    reason: format!("the handler panicked: {}", panic_message(&*panic)),
                });
            match outcome {
                Outcome::Ack => {
                    ack(&delivery).await;
                    metrics::handled(queue, Handled::Ack, 1);
                    return;
                }
                Outcome::DeadLetter { reason } => {
                    tracing::warn!(queue = queue.base_name(), %reason, "message failed permanently; moving it to the dead-letter queue");
                    telemetry::record_error(&Span::current(), "dead_letter");
                    dead_letter_and_ack(publisher, queue, &delivery, &reason, delivered.delivery).await;
                    return;
                }
                Outcome::Retry { reason } if attempt < options.attempts_per_delivery && !shutdown.is_cancelled() => {
                    metrics::handled(queue, Handled::Retry, 1);
                    let delay = delays.next_delay();
                    tracing::info!(queue = queue.base_name(), %reason, attempt, retry_in_ms = delay.as_millis() as u64, "transient failure; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Outcome::Retry { reason } if delivered.is_last_delivery() => {
                    let reason = format!("gave up after {} deliveries: {reason}", delivered.delivery);
                    tracing::warn!(queue = queue.base_name(), %reason, "moving the message to the dead-letter queue");
                    telemetry::record_error(&Span::current(), "dead_letter");
                    dead_letter_and_ack(publisher, queue, &delivery, &reason, delivered.delivery).await;
                    return;
                }
                Outcome::Retry { reason } => {
                    tracing::info!(queue = queue.base_name(), %reason, delivery = delivered.delivery, "giving the message back for a later delivery");
                    telemetry::record_error(&Span::current(), "retry");
                    reject(&delivery).await;
                    metrics::handled(queue, Handled::Retry, 1);
                    return;
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// Consumes `queue` in batches with `handler` until `shutdown`: deliveries are gathered up to
/// `batch_size` or for `batch_linger`, invalid ones are dead-lettered, the valid ones handed to
/// the handler; the whole batch is acknowledged at once (`multiple`) after the handler
/// succeeded. While the handler fails transiently the batch is retried and nothing is
/// acknowledged; on shutdown it is given back.
///
/// # Errors
/// The channel could not be opened or the connection could not be recovered.
pub async fn consume_batches<H: BatchHandler>(
    bus: &Bus,
    queue: WorkQueue,
    handler: Arc<H>,
    options: ConsumerOptions,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    // Prefetch twice the batch, so the next batch is on its way while one is written.
    let prefetch = u16::try_from(options.batch_size.saturating_mul(2)).unwrap_or(u16::MAX);
    let Some((mut channel, mut consumer)) =
        subscribe(bus, queue, prefetch, &options, &shutdown).await?
    else {
        return Ok(());
    };
    let publisher = bus.publisher();
    let queue_name = bus.topology().queue(queue);

    let result = 'consume: loop {
        // Wait for the first delivery of a batch, then gather until full or the linger ends.
        let first = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => next,
        };
        let mut batch = Vec::with_capacity(options.batch_size);
        match first {
            Some(Ok(delivery)) => batch.push(delivery),
            // The channel or the connection went away: subscribe again (the broker redelivers
            // what was not acknowledged).
            lost => {
                options.set_ready(false);
                if let Some(Err(error)) = lost {
                    tracing::warn!(queue = queue.base_name(), %error, "lost the consumer's channel; subscribing again");
                }
                match subscribe(bus, queue, prefetch, &options, &shutdown).await {
                    Ok(Some(subscribed)) => (channel, consumer) = subscribed,
                    Ok(None) => break Ok(()),
                    Err(error) => break Err(error),
                }
                continue;
            }
        }
        let linger = tokio::time::sleep(options.batch_linger);
        tokio::pin!(linger);
        while batch.len() < options.batch_size {
            tokio::select! {
                () = &mut linger => break,
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => batch.push(delivery),
                    // The channel dropped: what was gathered cannot be acknowledged any more (the
                    // broker redelivers it); subscribe again.
                    lost => {
                        options.set_ready(false);
                        if let Some(Err(error)) = lost {
                            tracing::warn!(queue = queue.base_name(), %error, "lost the consumer's channel; subscribing again");
                        }
                        match subscribe(bus, queue, prefetch, &options, &shutdown).await {
                            Ok(Some(subscribed)) => (channel, consumer) = subscribed,
                            Ok(None) => break 'consume Ok(()),
                            Err(error) => break 'consume Err(error),
                        }
                        continue 'consume;
                    }
                },
            }
        }

        // Deliveries still to acknowledge or give back: dead-lettered ones are acknowledged on
        // the spot (a tag must never be acknowledged or rejected twice).
        let mut pending: Vec<&Delivery> = Vec::with_capacity(batch.len());
        let mut valid = Vec::with_capacity(batch.len());
        for delivery in &batch {
            match decode_any_received(&received(delivery)) {
                Ok(event) => {
                    pending.push(delivery);
                    valid.push(Delivered {
                        event,
                        delivery: delivery_count(delivery),
                        delivery_limit: queue.delivery_limit(),
                    });
                }
                Err(error) => {
                    tracing::warn!(queue = queue.base_name(), reason = %error.reason(), "message refused; moving it to the dead-letter queue");
                    match dead_letter::move_to_dead_letters(
                        publisher,
                        queue,
                        delivery,
                        &error.reason(),
                        delivery_count(delivery),
                    )
                    .await
                    {
                        Ok(()) => {
                            ack(delivery).await;
                            metrics::handled(queue, Handled::DeadLetter, 1);
                        }
                        // Keep it: given back, it is tried again on a later delivery.
                        Err(publish) => {
                            tracing::warn!(error = %publish, "could not move the message to the dead-letter queue; giving it back");
                            reject(delivery).await;
                            metrics::handled(queue, Handled::Retry, 1);
                        }
                    }
                }
            }
        }

        // One `process` span per message, in the message's own trace (its publisher's), open
        // while its batch is being stored: every event's trace reaches its insert.
        let message_spans: Vec<tracing::Span> = pending
            .iter()
            .zip(&valid)
            .map(|(delivery, delivered)| {
                let from = DeliveredFrom {
                    exchange: delivery.exchange.as_str(),
                    routing_key: delivery.routing_key.as_str(),
                    queue: &queue_name,
                };
                let span = telemetry::process_span(
                    from,
                    &delivered.event.id.to_string(),
                    &delivered.event.type_,
                );
                join_trace(
                    &span,
                    queue,
                    &delivery.properties.headers().clone().unwrap_or_default(),
                );
                span
            })
            .collect();

        let mut delays = options.backoff();
        let mut failures = 0_u32;
        loop {
            let outcome = if valid.is_empty() {
                Ok(())
            } else {
                AssertUnwindSafe(handler.handle_batch(&valid))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        Err(format!("the handler panicked: {}", panic_message(&*panic)))
                    })
            };
            match outcome {
                Ok(()) => {
                    if let Some(last) = pending.last() {
                        // `multiple` acknowledges every unacknowledged delivery of the channel up
                        // to this one: the whole batch in one frame.
                        if let Err(error) = last.acker.ack(BasicAckOptions { multiple: true }).await
                        {
                            tracing::debug!(%error, "ack after a reconnection failed; the broker redelivers and the handler deduplicates");
                        }
                    }
                    metrics::handled(queue, Handled::Ack, pending.len());
                    break;
                }
                Err(reason) => {
                    failures += 1;
                    metrics::handled(queue, Handled::Retry, pending.len());
                    if shutdown.is_cancelled() {
                        drop(message_spans);
                        for delivery in &pending {
                            reject(delivery).await;
                        }
                        break 'consume Ok(());
                    }
                    let delay = delays.next_delay();
                    // Logged on the first failure and every tenth, not on every retry.
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(queue = queue.base_name(), %reason, failures, retry_in_ms = delay.as_millis() as u64, batch = pending.len(), "batch failed; keeping it and retrying");
                    }
                    options.set_ready(false);
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        options.set_ready(true);
    };
    options.set_ready(false);
    closing(channel.basic_cancel(consumer.tag(), BasicCancelOptions::default())).await;
    closing(channel.close(200, "consumer stopped".into())).await;
    result
}

async fn ack(delivery: &Delivery) {
    if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
        // After a reconnection the old delivery cannot be acknowledged; the broker redelivers
        // it, and handlers are idempotent.
        tracing::debug!(%error, "ack failed");
    }
}

async fn reject(delivery: &Delivery) {
    if let Err(error) = delivery
        .acker
        .reject(BasicRejectOptions { requeue: true })
        .await
    {
        tracing::debug!(%error, "reject failed; the broker redelivers the message when the channel closes");
    }
}

async fn dead_letter_and_ack(
    publisher: &Publisher,
    queue: WorkQueue,
    delivery: &Delivery,
    reason: &str,
    deliveries: u32,
) {
    match dead_letter::move_to_dead_letters(publisher, queue, delivery, reason, deliveries).await {
        Ok(()) => {
            ack(delivery).await;
            metrics::handled(queue, Handled::DeadLetter, 1);
        }
        Err(error) => {
            tracing::warn!(%error, "could not move the message to the dead-letter queue; giving it back");
            reject(delivery).await;
            metrics::handled(queue, Handled::Retry, 1);
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_owned())
}
