//! An in-memory [`EventPublisher`]: a handler under test publishes into a list instead of to
//! RabbitMQ, and the test reads back what was published, or makes the next publishes fail.
//!
//! Events are checked as [`shared::bus::Publisher`] checks them (an invalid event is refused),
//! and recorded as their consumers would decode them, so a test reads the same JSON.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain::message::{AnyEvent, CloudEvent, Event, decode_any, encode};
use shared::bus::{BusError, EventPublisher, Topology, topology::route_of};

/// How a publish made to fail fails, as the broker would make it fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFailure {
    /// The broker refused the message for now (a full queue's nack): worth trying again.
    Transient,
    /// No queue is bound for it (the broker returned it): trying again will not help.
    Permanent,
}

#[derive(Debug, Default)]
struct State {
    published: Vec<AnyEvent>,
    failures: VecDeque<PublishFailure>,
}

/// Records what is published. Clones share the record, as clones of a `Publisher` share the
/// connection.
#[derive(Debug, Clone)]
pub struct RecordingPublisher {
    source: Arc<str>,
    topology: Topology,
    state: Arc<Mutex<State>>,
}

impl RecordingPublisher {
    /// A publisher whose events carry `source`.
    pub fn new(source: &str) -> Self {
        RecordingPublisher {
            source: source.into(),
            topology: Topology::new(String::new()),
            state: Arc::default(),
        }
    }

    /// The next `count` publishes fail with `failure`, and are not recorded.
    pub fn fail_next(&self, count: usize, failure: PublishFailure) {
        self.state()
            .failures
            .extend(std::iter::repeat_n(failure, count));
    }

    /// Everything published so far, in order.
    pub fn published(&self) -> Vec<AnyEvent> {
        self.state().published.clone()
    }

    /// The events of one CloudEvents type published so far, in order.
    pub fn of_type(&self, event_type: &str) -> Vec<AnyEvent> {
        self.state()
            .published
            .iter()
            .filter(|event| event.type_ == event_type)
            .cloned()
            .collect()
    }

    /// The types published so far, in order.
    pub fn types(&self) -> Vec<String> {
        self.state()
            .published
            .iter()
            .map(|event| event.type_.clone())
            .collect()
    }

    /// A test that panicked while holding the lock leaves a record still worth reading.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record<T: Event>(&self, event: &CloudEvent<T>) -> Result<(), BusError> {
        event.validate().map_err(|e| BusError::InvalidEvent {
            event_type: T::TYPE,
            reason: e.to_string(),
        })?;
        let mut state = self.state();
        let exchange = || self.topology.exchange(route_of(T::TYPE));
        match state.failures.pop_front() {
            Some(PublishFailure::Transient) => Err(BusError::Nacked {
                exchange: exchange(),
                routing_key: T::TYPE.to_owned(),
            }),
            Some(PublishFailure::Permanent) => Err(BusError::Unroutable {
                exchange: exchange(),
                routing_key: T::TYPE.to_owned(),
            }),
            None => {
                let decoded = decode_any(&encode(event))
                    .unwrap_or_else(|e| panic!("a valid {} event must decode: {e}", T::TYPE));
                state.published.push(decoded);
                Ok(())
            }
        }
    }
}

impl EventPublisher for RecordingPublisher {
    fn source(&self) -> &str {
        &self.source
    }

    fn publish<T: Event>(
        &self,
        event: &CloudEvent<T>,
    ) -> impl Future<Output = Result<(), BusError>> + Send {
        std::future::ready(self.record(event))
    }
}

#[cfg(test)]
mod tests {
    use domain::Version;
    use domain::message::{MigrationCompleted, MigrationFailed};
    use uuid::Uuid;

    use super::*;

    fn completed() -> MigrationCompleted {
        MigrationCompleted {
            tenant_id: Uuid::new_v4(),
            deploy_id: None,
            from_version: Version::ZERO,
            to_version: Version::ZERO,
            applied: Vec::new(),
            duration_ms: 1,
        }
    }

    #[tokio::test]
    async fn records_what_is_published_in_order_with_its_source() {
        let publisher = RecordingPublisher::new("migrator");
        let first = publisher.event(completed());
        publisher
            .publish(&first)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let failed = MigrationFailed::new(Uuid::new_v4(), None, None, "boom", false, 1);
        let clone = publisher.clone();
        clone
            .publish(&clone.event(failed))
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        assert_eq!(
            publisher.types(),
            ["migration.completed", "migration.failed"]
        );
        let recorded = publisher.of_type("migration.completed");
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].id, first.id);
        assert_eq!(recorded[0].source, "migrator");
        assert_eq!(recorded[0].data["duration_ms"], 1);
    }

    #[tokio::test]
    async fn fails_the_next_publishes_as_asked_then_publishes_again() {
        let publisher = RecordingPublisher::new("migrator");
        publisher.fail_next(2, PublishFailure::Transient);
        publisher.fail_next(1, PublishFailure::Permanent);
        let event = publisher.event(completed());
        let mut results = Vec::new();
        for _ in 0..4 {
            results.push(
                publisher
                    .publish(&event)
                    .await
                    .map_err(|e| e.is_transient()),
            );
        }
        assert_eq!(results, [Err(true), Err(true), Err(false), Ok(())]);
        assert_eq!(
            publisher.published().len(),
            1,
            "failed publishes are not recorded"
        );
    }

    #[tokio::test]
    async fn refuses_an_invalid_event_like_the_real_publisher() {
        let publisher = RecordingPublisher::new("migrator");
        let mut event = publisher.event(completed());
        event.data.tenant_id = Uuid::nil();
        let refused = publisher.publish(&event).await;
        assert!(
            matches!(refused, Err(BusError::InvalidEvent { .. })),
            "{refused:?}"
        );
        assert!(publisher.published().is_empty());
    }
}
