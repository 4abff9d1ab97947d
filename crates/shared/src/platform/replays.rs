//! `dlq_replays`: the replay log of the dead-letter tools.

use crate::bus::WorkQueue;
use crate::bus::dead_letter::{DeadLetterInfo, ReplayLog};

use super::PlatformDb;

impl ReplayLog for PlatformDb {
    async fn already_replayed(&self, key: &str) -> Result<bool, String> {
        let found = match self {
            PlatformDb::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM dlq_replays WHERE replay_key = $1",
                )
                .bind(key)
                .fetch_one(pool)
                .await
            }
            PlatformDb::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM dlq_replays WHERE replay_key = ?1",
                )
                .bind(key)
                .fetch_one(pool)
                .await
            }
        };
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
        let done = match self {
            PlatformDb::Postgres(pool) => sqlx::query(sql)
                .bind(key)
                .bind(queue.base_name())
                .bind(info.message_id.as_deref())
                .bind(info.event_type.as_deref())
                .bind(info.tenant_id.as_deref())
                .execute(pool)
                .await
                .map(drop),
            PlatformDb::Sqlite(pool) => sqlx::query(sql)
                .bind(key)
                .bind(queue.base_name())
                .bind(info.message_id.as_deref())
                .bind(info.event_type.as_deref())
                .bind(info.tenant_id.as_deref())
                .execute(pool)
                .await
                .map(drop),
        };
        done.map_err(|e| e.to_string())
    }
}
