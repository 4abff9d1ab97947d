//! Typed progress events of the engine. Later layers turn them into bus messages, metrics and
//! progress bars; the engine only reports.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use super::source::{Direction, SetKind};
use super::target::Target;
use domain::version::Version;

/// Something the engine did or is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationEvent {
    /// The target's lock is held by another runner; this one is waiting (emitted once per run).
    LockWaiting { target: Target },
    /// A script started.
    Started {
        target: Target,
        set: SetKind,
        version: Version,
        direction: Direction,
    },
    /// A batch of a batched data migration committed; totals so far, across interruptions.
    BatchCommitted {
        target: Target,
        set: SetKind,
        version: Version,
        batches: i64,
        rows: i64,
    },
    /// An up script completed and is recorded.
    Completed {
        target: Target,
        set: SetKind,
        version: Version,
        duration: Duration,
    },
    /// A down script completed and the version is no longer recorded.
    RolledBack {
        target: Target,
        set: SetKind,
        version: Version,
        duration: Duration,
    },
    /// A script failed. A transactional script left nothing behind; a non-transactional one is
    /// recorded as unfinished with this error.
    Failed {
        target: Target,
        set: SetKind,
        version: Version,
        direction: Direction,
        duration: Duration,
        error: String,
        transient: bool,
    },
}

/// Receives the engine's events. Awaited in line, so a slow sink slows the run: sinks that do
/// I/O should hand events to a task through a channel.
pub trait ProgressSink: Send + Sync {
    fn emit(&self, event: MigrationEvent) -> impl Future<Output = ()> + Send;
}

/// Discards events.
impl ProgressSink for () {
    async fn emit(&self, _event: MigrationEvent) {}
}

/// Forwards events to a channel; a closed receiver is ignored (nobody is listening any more).
impl ProgressSink for mpsc::UnboundedSender<MigrationEvent> {
    async fn emit(&self, event: MigrationEvent) {
        let _ = self.send(event);
    }
}

impl<S: ProgressSink> ProgressSink for &S {
    fn emit(&self, event: MigrationEvent) -> impl Future<Output = ()> + Send {
        (**self).emit(event)
    }
}
