//! The bus's instruments (docs/OBSERVABILITY.md): what consumers did with each message, and the
//! state of this process's broker connections.

use std::sync::{Arc, LazyLock, Mutex, Weak};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, ObservableGauge};

use super::connection::Link;
use super::topology::WorkQueue;

/// What a consumer did with a message, as `tenancy.messages.handled` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Acknowledged: done, or nothing to do.
    Ack,
    /// Will be tried again: in-process after a delay, or given back to the broker.
    Retry,
    /// Moved to the queue's dead-letter queue.
    DeadLetter,
}

impl Handled {
    fn as_str(self) -> &'static str {
        match self {
            Handled::Ack => "ack",
            Handled::Retry => "retry",
            Handled::DeadLetter => "dead_letter",
        }
    }
}

struct Instruments {
    handled: Counter<u64>,
    reconnects: Counter<u64>,
    _connected: ObservableGauge<i64>,
}

/// The links of this process, read when metrics are collected.
static LINKS: Mutex<Vec<Weak<Link>>> = Mutex::new(Vec::new());

// Created on first use, after telemetry is set up: instruments made from the global meter
// before that would record nowhere.
static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
    let meter = crate::telemetry::meter();
    Instruments {
        handled: meter
            .u64_counter("tenancy.messages.handled")
            .with_unit("{message}")
            .with_description("messages handled by this process's consumers, by queue and outcome")
            .build(),
        reconnects: meter
            .u64_counter("tenancy.broker.reconnects")
            .with_unit("{reconnect}")
            .with_description("connections to RabbitMQ re-established after a loss")
            .build(),
        _connected: meter
            .i64_observable_gauge("tenancy.broker.connected")
            .with_unit("{connection}")
            .with_description(
                "this process's connections to RabbitMQ that are up (0: not connected)",
            )
            .with_callback(|observer| observer.observe(connected_links(), &[]))
            .build(),
    }
});

fn connected_links() -> i64 {
    let mut links = LINKS.lock().unwrap_or_else(|e| e.into_inner());
    links.retain(|link| link.strong_count() > 0);
    let up = links
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|link| link.is_connected())
        .count();
    i64::try_from(up).unwrap_or(i64::MAX)
}

/// Counts `count` messages of `queue` handled with `outcome`.
pub(crate) fn handled(queue: WorkQueue, outcome: Handled, count: usize) {
    if count > 0 {
        INSTRUMENTS.handled.add(
            count as u64,
            &[
                KeyValue::new("queue", queue.base_name()),
                KeyValue::new("outcome", outcome.as_str()),
            ],
        );
    }
}

/// Counts one connection re-established after a loss.
pub(crate) fn reconnected() {
    INSTRUMENTS.reconnects.add(1, &[]);
}

/// Reports `link` in `tenancy.broker.connected` for as long as it lives. Also makes the
/// reconnect counter show (at 0) before the first reconnection, so a dashboard sees a series.
pub(crate) fn watch(link: &Arc<Link>) {
    LINKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(link));
    INSTRUMENTS.reconnects.add(0, &[]);
}
