//! The replay log: which dead letters were replayed, so a replay run again after an
//! interruption never publishes twice what an earlier run already replayed. On the platform
//! database it is the `dlq_replays` table.

use std::future::Future;

use shared::bus::WorkQueue;
use shared::bus::dead_letter::DeadLetterInfo;
use shared::platform::{PlatformDb, with_pool};

/// A durable record of replayed dead letters, by [`DeadLetterInfo::replay_key`].
pub trait ReplayLog: Sync {
    fn already_replayed(&self, key: &str) -> impl Future<Output = Result<bool, String>> + Send;
    fn record_replay(
        &self,
        key: &str,
        queue: WorkQueue,
        info: &DeadLetterInfo,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

impl ReplayLog for PlatformDb {
    async fn already_replayed(&self, key: &str) -> Result<bool, String> {
        let found: Result<i64, sqlx::Error> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT count(*) FROM dlq_replays WHERE replay_key = $1")
                .bind(key)
                .fetch_one(pool)
                .await
        });
        found.map(|n| n > 0).map_err(|e| e.to_string())
    }

    async fn record_replay(
        &self,
        key: &str,
        queue: WorkQueue,
        info: &DeadLetterInfo,
    ) -> Result<(), String> {
        let sql = "INSERT INTO dlq_replays (replay_key, queue, message_id, event_type, tenant_id) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (replay_key) DO NOTHING";
        let done = with_pool!(self, |pool| {
            sqlx::query(sql)
                .bind(key)
                .bind(queue.base_name())
                .bind(info.message_id.as_deref())
                .bind(info.event_type.as_deref())
                .bind(info.tenant_id.as_deref())
                .execute(pool)
                .await
                .map(drop)
        });
        done.map_err(|e| e.to_string())
    }
}
