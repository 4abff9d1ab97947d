//! Confirmed publishing: `publish` returns only once the broker has the message.
//!
//! Every message is persistent, published with the `mandatory` flag on a channel in confirm
//! mode. A returned message (no queue bound) is an error to the caller, never a silent loss. A
//! nack is published again, on a new channel, after a pause: a quorum queue nacks while it
//! elects a new leader after a cluster node died (and RabbitMQ 3.10 may keep nacking on the
//! channel that saw it), and a full queue (`reject-publish`) nacks until consumers make room;
//! only a nack that lasts a minute is an error. When the connection drops, the publish
//! waits for the bus to reconnect and is sent again. Either way the broker may hold the message
//! twice, which is why every consumer is idempotent by message id.
//!
//! Handlers publish through [`EventPublisher`], which [`Publisher`] implements: tests give them
//! an in-memory recorder instead (`testkit::publisher::RecordingPublisher`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::Confirmation;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use tracing::Instrument;

use super::BusError;
use super::connection::Link;
use super::propagation;
use super::topology::{Topology, route_of};
use crate::telemetry;
use domain::message::{AnyEvent, CloudEvent, Event, encode};

/// How long a publish keeps trying through reconnections and nacks before it reports failure.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(60);

/// The first pause before a nacked message is published again; it doubles up to
/// [`NACK_PAUSE_MAX`].
const NACK_PAUSE: Duration = Duration::from_millis(50);
const NACK_PAUSE_MAX: Duration = Duration::from_secs(2);

/// Publishing events, as a service's handlers need it: make an event from data, with this
/// process's `source`, and publish it with confirmation. The seam between the handlers and the
/// broker: [`Publisher`] publishes to RabbitMQ; tests record in memory.
///
/// Cheap to clone, and `'static`: handlers publish from tasks of their own.
pub trait EventPublisher: Clone + Send + Sync + 'static {
    /// The CloudEvents `source` of this process's events.
    fn source(&self) -> &str;

    /// A new event from this process.
    fn event<T: Event>(&self, data: T) -> CloudEvent<T> {
        CloudEvent::new(self.source(), data)
    }

    /// Publishes `event` and returns once the broker confirmed it.
    ///
    /// # Errors
    /// As [`Publisher::publish`]; [`BusError::is_transient`] tells whether trying again may
    /// help.
    fn publish<T: Event>(
        &self,
        event: &CloudEvent<T>,
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

impl EventPublisher for Publisher {
    fn source(&self) -> &str {
        Publisher::source(self)
    }

    fn publish<T: Event>(
        &self,
        event: &CloudEvent<T>,
    ) -> impl Future<Output = Result<(), BusError>> + Send {
        Publisher::publish(self, event)
    }
}

/// Publishes CloudEvents (and raw messages, for dead-letter tools). Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    link: Arc<Link>,
    source: Arc<str>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub(super) fn new(link: Arc<Link>, source: &str) -> Self {
        Publisher {
            link,
            source: source.into(),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.link.topology
    }

    /// The CloudEvents `source` of this process's events.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A new event from this process.
    pub fn event<T: Event>(&self, data: T) -> CloudEvent<T> {
        CloudEvent::new(&self.source, data)
    }

    /// Publishes `event` to its exchange (`tenancy.commands` for commands, `tenancy.events`
    /// otherwise) with its type as routing key, and returns once the broker confirmed it.
    ///
    /// # Errors
    /// The event breaks the contract (it would only be dead-lettered by its consumer: better to
    /// fail where it is made), the broker returned the message, or it could not be published
    /// through reconnections and nacks within a minute.
    pub async fn publish<T: Event>(&self, event: &CloudEvent<T>) -> Result<(), BusError> {
        event.validate().map_err(|e| BusError::InvalidEvent {
            event_type: T::TYPE,
            reason: e.to_string(),
        })?;
        let exchange = self.topology().exchange(route_of(T::TYPE));
        let message_id = event.id.to_string();
        let span = telemetry::publish_span(&exchange, T::TYPE, &message_id, T::TYPE);
        let published = async {
            let mut headers = FieldTable::default();
            propagation::inject_current(&mut headers);
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_message_id(message_id.as_str().into())
                .with_type(T::TYPE.into())
                .with_timestamp(u64::try_from(event.time.timestamp()).unwrap_or(0))
                .with_headers(headers);
            self.publish_raw(&exchange, T::TYPE, &encode(event), properties)
                .await
        }
        .instrument(span.clone())
        .await;
        failed_on(&span, published)
    }

    /// Publishes an event given as bytes, already decoded (and so validated) as `event`: what
    /// operators publish by hand. Routed like [`Publisher::publish`].
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    pub async fn publish_encoded(&self, event: &AnyEvent, bytes: &[u8]) -> Result<(), BusError> {
        let exchange = self.topology().exchange(route_of(&event.type_));
        let message_id = event.id.to_string();
        let span = telemetry::publish_span(&exchange, &event.type_, &message_id, &event.type_);
        let published = async {
            let mut headers = FieldTable::default();
            propagation::inject_current(&mut headers);
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_message_id(message_id.as_str().into())
                .with_type(event.type_.as_str().into())
                .with_timestamp(u64::try_from(event.time.timestamp()).unwrap_or(0))
                .with_headers(headers);
            self.publish_raw(&exchange, &event.type_, bytes, properties)
                .await
        }
        .instrument(span.clone())
        .await;
        failed_on(&span, published)
    }

    /// Publishes raw bytes with `properties` (made persistent), confirmed, mandatory.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BusError> {
        let properties = properties.with_delivery_mode(2);
        let started = Instant::now();
        let mut nack_pause = NACK_PAUSE;
        loop {
            let live = self.link.current().await?;
            let channel = live.publisher();
            let error = match channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    properties.clone(),
                )
                .await
            {
                Ok(confirm) => match confirm.await {
                    Ok(Confirmation::Ack(None)) => return Ok(()),
                    Ok(Confirmation::Ack(Some(_returned))) => {
                        return Err(BusError::Unroutable {
                            exchange: exchange.to_owned(),
                            routing_key: routing_key.to_owned(),
                        });
                    }
                    Ok(Confirmation::Nack(_)) => {
                        if started.elapsed() + nack_pause > PUBLISH_DEADLINE {
                            return Err(BusError::Nacked {
                                exchange: exchange.to_owned(),
                                routing_key: routing_key.to_owned(),
                            });
                        }
                        tracing::debug!(
                            exchange,
                            routing_key,
                            pause_ms = nack_pause.as_millis(),
                            "the broker nacked a message; publishing it again"
                        );
                        self.link.renew_publisher(&live, &channel).await;
                        tokio::time::sleep(nack_pause).await;
                        nack_pause = (nack_pause * 2).min(NACK_PAUSE_MAX);
                        continue;
                    }
                    Ok(Confirmation::NotRequested) => {
                        unreachable!(
                            "the publisher channel is put in confirm mode when the bus connects"
                        )
                    }
                    // The channel failed before the broker answered: the broker may or may not
                    // have the message. Publish it again on a new connection.
                    Err(error) => error,
                },
                Err(error) => error,
            };
            self.link.invalidate(&live);
            if started.elapsed() > PUBLISH_DEADLINE {
                return Err(BusError::PublishTimeout {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                    waited: started.elapsed(),
                    last: error.to_string(),
                });
            }
            tracing::debug!(%error, exchange, routing_key, "publish interrupted; publishing again once reconnected");
        }
    }
}

/// Marks the publish span failed (status and `error.type`) when the publish failed.
fn failed_on(span: &tracing::Span, published: Result<(), BusError>) -> Result<(), BusError> {
    if let Err(error) = &published {
        telemetry::record_error(span, error.error_type());
    }
    published
}

/// Reads a string header.
pub(crate) fn header_str<'a>(headers: Option<&'a FieldTable>, key: &str) -> Option<&'a str> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Reads an integer header.
pub(crate) fn header_i64(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    match headers?.inner().get(key)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}
