//! A target's lock: taken by trying, backing off with jitter and trying again until the
//! engine's `lock_wait` is spent; released on every path (a session that cannot release it
//! closes its connection, and the server releases it then).

use std::time::{Duration, Instant};

use super::{Engine, backend_error};
use crate::backend::{MigrationBackend, Session};
use crate::backoff::RetryDelays;
use crate::error::EngineError;
use crate::events::{MigrationEvent, ProgressSink};
use crate::history::AppliedMigration;
use crate::source::SetKind;
use crate::target::Target;

impl<B: MigrationBackend> Engine<B> {
    /// Takes the target's lock (try, back off with jitter, retry until `lock_wait` is spent) and
    /// returns the history as read under it: another runner may have finished in the meantime.
    pub(super) async fn lock(
        &self,
        session: &mut B::Session,
        target: &Target,
        set: SetKind,
        sink: &impl ProgressSink,
    ) -> Result<Vec<AppliedMigration>, EngineError> {
        let started = Instant::now();
        let deadline = started + self.options.lock_wait;
        let mut delays = RetryDelays::new(Duration::from_millis(10), Duration::from_millis(500));
        let mut announced = false;
        loop {
            if let Some(history) = session
                .lock_and_read(set)
                .await
                .map_err(backend_error(target))?
            {
                return Ok(history);
            }
            if !announced {
                announced = true;
                sink.emit(MigrationEvent::LockWaiting {
                    target: target.clone(),
                })
                .await;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(EngineError::LockTimeout {
                    target: target.clone(),
                    waited: now - started,
                });
            }
            tokio::time::sleep(delays.next_delay().min(deadline - now)).await;
        }
    }

    pub(super) async fn unlock(&self, session: &mut B::Session, target: &Target) {
        if let Err(error) = session.unlock().await {
            // The session is still marked locked, so closing it drops the connection and the
            // server releases the lock with it.
            tracing::warn!(%target, %error, "releasing the migration lock failed; closing the connection instead");
        }
    }
}
