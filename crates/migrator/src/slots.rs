//! A cap on the migrations running at once on one tenant server, across every migrator
//! replica: `MIGRATOR_SERVER_SLOTS` advisory locks on that server, one held per running
//! migration. The locks live on the server itself, so replicas need no coordination beyond it,
//! and a replica that dies frees its slots with its connections.
//!
//! A slot is held on a connection of its own (the migration's connection may be to a tenant
//! database, where advisory locks do not reach the others), so the migrators open at most twice
//! the slot count on the server whatever the number of replicas.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Postgres};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The first key of the two-key advisory locks (`pg_try_advisory_lock(int4, int4)`); the
/// second is the slot number. Two-key locks never collide with the engine's one-key locks.
const SLOT_CLASS: i32 = 0x7e4a_5107;

/// The slots of one tenant server.
#[derive(Debug, Clone)]
pub struct ServerSlots {
    pool: PgPool,
    slots: u16,
    /// This process's share, queued in order: only contention with other replicas is polled.
    local: Arc<Semaphore>,
}

/// A held slot. Dropped without [`Slot::release`] (a panic, a cancelled task), it closes its
/// connection, which frees the slot on the server.
pub struct Slot {
    conn: Option<PoolConnection<Postgres>>,
    slot: i32,
    _local: OwnedSemaphorePermit,
}

impl ServerSlots {
    /// `slots` for the server `server` names; this process holds at most `local` at once.
    pub fn new(server: PgConnectOptions, slots: u16, local: u16) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(u32::from(local.max(1)))
            .test_before_acquire(false)
            .connect_lazy_with(
                server
                    .application_name("tenancy-migrator-slots")
                    .disable_statement_logging(),
            );
        ServerSlots {
            pool,
            slots: slots.max(1),
            local: Arc::new(Semaphore::new(usize::from(local.max(1)))),
        }
    }

    /// Waits for a free slot (trying them from a point that depends on `tenant`, so that
    /// concurrent callers spread over the slots), until `shutdown`.
    ///
    /// # Errors
    /// The server is unreachable (transient), or `shutdown` (`None`).
    pub async fn acquire(
        &self,
        tenant: Uuid,
        shutdown: &CancellationToken,
    ) -> Result<Option<Slot>, sqlx::Error> {
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(5))
            .with_max_delay(Duration::from_millis(250))
            .with_jitter()
            .without_max_times()
            .build();
        let local = tokio::select! {
            permit = self.local.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return Ok(None),
            },
            () = shutdown.cancelled() => return Ok(None),
        };
        let start = i32::try_from(tenant.as_u128() % u128::from(self.slots)).unwrap_or(0);
        loop {
            let mut conn = self.pool.acquire().await?;
            // Every slot in one round trip: the scan stops at the first lock it gets.
            let taken: Option<i32> = sqlx::query_scalar(
                "SELECT slot FROM (SELECT (s % $3)::int4 AS slot FROM generate_series($2, $2 + $3 - 1) AS s) AS slots
                  WHERE pg_try_advisory_lock($1, slot) LIMIT 1",
            )
            .bind(SLOT_CLASS)
            .bind(start)
            .bind(i32::from(self.slots))
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(slot) = taken {
                return Ok(Some(Slot {
                    conn: Some(conn),
                    slot,
                    _local: local,
                }));
            }
            drop(conn);
            let delay = delays.next().unwrap_or(Duration::from_millis(250));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return Ok(None),
            }
        }
    }
}

impl Slot {
    /// Frees the slot and returns the connection to the pool.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let released = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(SLOT_CLASS)
                .bind(self.slot)
                .execute(&mut *conn)
                .await;
            if released.is_err() {
                conn.close_on_drop();
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}
