//! The operator's dead-letter tools: counting, listing, replaying and purging the dead-letter
//! queue of a work queue (`tenantctl dlq`, `tenantctl tenant retry`). Only the operator uses
//! them, so they live here rather than in the bus the services link; the bus provides the
//! primitives ([`DeadLetterSession`]: take, send back, remove) and the dead-letter headers.
//!
//! A replay loses nothing and never sends a message twice: each dead letter is sent back
//! (confirmed), recorded in the [`ReplayLog`], and only then removed; a run after an
//! interruption removes without sending what the log already has.

mod replay_log;

use std::collections::HashSet;
use std::future::Future;

use domain::message::lifecycle::DlqReplayed;
use shared::bus::dead_letter::DeadLetterSession;
use shared::bus::{Bus, BusError, WorkQueue};
use tokio_util::sync::CancellationToken;

pub use replay_log::ReplayLog;
pub use shared::bus::dead_letter::DeadLetterInfo;

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the replay log is unavailable ({0}); the message was left in its dead-letter queue")]
    ReplayLog(String),
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
        let session = DeadLetterSession::open(self.bus, self.queue).await?;
        let count = session.count().await;
        session.close("counted").await;
        count
    }

    /// Up to `limit` dead letters, oldest first, and how many wait in all. Each is taken and
    /// given back.
    ///
    /// # Errors
    /// A broker error.
    pub async fn list(&self, limit: usize) -> Result<(u32, Vec<DeadLetterInfo>), BusError> {
        let session = DeadLetterSession::open(self.bus, self.queue).await?;
        let listed = async {
            let total = session.count().await?;
            let mut listed = Vec::new();
            while listed.len() < limit {
                let Some(dead_letter) = session.take().await? else {
                    break;
                };
                listed.push(dead_letter.info().clone());
            }
            Ok((total, listed))
        }
        .await;
        // Closing the session gives every message taken back to the queue.
        session.close("listed").await;
        listed
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
        stop: &CancellationToken,
        mut on_replayed: F,
    ) -> Result<ReplaySummary, ReplayError>
    where
        F: FnMut(DeadLetterInfo) -> Fut,
        Fut: Future<Output = ()>,
    {
        let session = DeadLetterSession::open(self.bus, self.queue).await?;
        let publisher = self.bus.publisher();
        let mut summary = ReplaySummary::default();
        // A message replayed in this run that fails again at once comes back to this queue;
        // it is left for the operator rather than replayed in a loop.
        let mut seen: HashSet<String> = HashSet::new();
        let result = async {
            while !stop.is_cancelled() {
                let Some(dead_letter) = session.take().await? else {
                    break;
                };
                let info = dead_letter.info().clone();
                let key = info.replay_key();
                if !selection.matches(&info)
                    || !seen.insert(info.message_id.clone().unwrap_or_else(|| key.clone()))
                {
                    summary.left += 1;
                    continue; // not removed: given back when the session closes
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
                let done = log
                    .already_replayed(&key)
                    .await
                    .map_err(ReplayError::ReplayLog)?;
                if done {
                    dead_letter.remove().await?;
                    summary.already_replayed += 1;
                    continue;
                }
                dead_letter
                    .send_back(publisher, &exchange, &routing_key)
                    .await?;
                log.record_replay(&key, self.queue, &info)
                    .await
                    .map_err(ReplayError::ReplayLog)?;
                dead_letter.remove().await?;
                on_replayed(info.clone()).await;
                summary.replayed.push(info);
            }
            Ok::<_, ReplayError>(())
        }
        .await;
        session.close("replay done").await;
        result.map(|()| summary)
    }

    /// Deletes every message of the dead-letter queue; returns how many.
    ///
    /// # Errors
    /// A broker error.
    pub async fn purge(&self) -> Result<u32, BusError> {
        let session = DeadLetterSession::open(self.bus, self.queue).await?;
        let purged = session.purge().await;
        session.close("purged").await;
        purged
    }
}

/// The audit event of a dead letter that `operator` replayed from `queue`'s dead-letter queue.
pub fn replayed_event(queue: WorkQueue, info: &DeadLetterInfo, operator: String) -> DlqReplayed {
    DlqReplayed {
        queue: queue.base_name().to_owned(),
        // A dead letter without an id (not one of ours) is still audited.
        original_message_id: info.message_id.clone().unwrap_or_else(|| "none".to_owned()),
        original_type: info.event_type.clone(),
        tenant_id: info
            .tenant_id
            .as_deref()
            .and_then(|t| uuid::Uuid::parse_str(t).ok()),
        operator,
    }
}
