//! A cap on the migrations running at once on one tenant server, across every process that
//! migrates there: `slots` advisory locks on that server, and a connection *is* a slot. It takes
//! one as it opens and holds it until it closes, so
//! - every replica together holds at most `slots` connections on the server (plus, per
//!   process, the one that waits for a slot to free up), which is what protects the server's
//!   connection limit;
//! - a migration pays no round trip for its slot, and the server carries no second set of
//!   connections just to hold the locks;
//! - a process that dies frees its slots with its connections.
//!
//! A connection left idle for [`IDLE_TIMEOUT`] closes and so gives its slot back: a replica
//! whose queue ran dry does not starve a busy one.
//!
//! In schema isolation the migration runs on the slot's own connection
//! ([`super::PgSchemaBackend::with_slots`]). In database isolation, where advisory locks do not
//! reach across databases, the slot's connection (to the server's own database) is held beside
//! the tenant database's connection.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::backoff::RetryDelays;

/// The first key of the two-key advisory locks (`pg_try_advisory_lock(int4, int4)`); the second
/// is the slot number. Two-key locks never collide with the engine's one-key locks.
const SLOT_CLASS: i32 = 0x7e4a_5107;

/// How long a connection may sit unused before it closes and frees its slot.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The slots of one tenant server, as this process sees them.
#[derive(Debug, Clone)]
pub struct ServerSlots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: PgConnectOptions,
    slots: u16,
    /// This process's share, handed out in order.
    local: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
    /// Only one connection per process polls for a free slot; the others queue behind it.
    waiting: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
    /// Connections lent out right now.
    busy: AtomicUsize,
    /// Acquisitions that found every slot taken and had to wait.
    waits: AtomicU64,
}

/// How this process uses a server's slots, for its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotUsage {
    /// Slots held by a connection that is migrating.
    pub busy: usize,
    /// Slots held by an idle connection, kept for the next command.
    pub idle: usize,
    /// Acquisitions so far that found every slot taken and waited for one.
    pub waits: u64,
}

/// Reads a [`ServerSlots`]' usage without keeping it alive.
#[derive(Debug, Clone)]
pub struct SlotUsageProbe(Weak<Inner>);

impl SlotUsageProbe {
    /// The usage now; `None` once the slots are dropped.
    pub fn read(&self) -> Option<SlotUsage> {
        let inner = self.0.upgrade()?;
        Some(SlotUsage {
            busy: inner.busy.load(Ordering::Relaxed),
            idle: inner.lock_idle().len(),
            waits: inner.waits.load(Ordering::Relaxed),
        })
    }
}

#[derive(Debug)]
struct Idle {
    conn: PgConnection,
    slot: i32,
    since: Instant,
}

/// A connection to the tenant server that holds a slot. Dropped, it goes back to the idle
/// connections, unless [`SlotConn::close_on_drop`] was called: then it closes, and the server
/// frees the slot (with whatever lock or transaction the connection was left holding).
#[derive(Debug)]
pub struct SlotConn {
    conn: Option<PgConnection>,
    slot: i32,
    reusable: bool,
    home: Weak<Inner>,
    _local: OwnedSemaphorePermit,
}

impl ServerSlots {
    /// `slots` on the server `server` names, of which this process holds at most `local` at
    /// once; waiting for one stops at `shutdown`.
    pub fn new(
        server: PgConnectOptions,
        slots: u16,
        local: u16,
        shutdown: CancellationToken,
    ) -> Self {
        let inner = Arc::new(Inner {
            options: server
                .application_name("tenancy-migrator")
                .disable_statement_logging(),
            slots: slots.max(1),
            local: Arc::new(Semaphore::new(usize::from(local.max(1)))),
            idle: Mutex::new(Vec::new()),
            waiting: tokio::sync::Mutex::new(()),
            shutdown,
            busy: AtomicUsize::new(0),
            waits: AtomicU64::new(0),
        });
        tokio::spawn(close_idle_connections(Arc::downgrade(&inner)));
        ServerSlots { inner }
    }

    /// A connection holding a slot: an idle one, else a new one, waiting until a slot is free.
    /// `spread` picks where the scan over the slots starts, so that concurrent callers rarely
    /// try the same slot first.
    ///
    /// # Errors
    /// The server is unreachable (transient), or shutdown came first (`None`).
    pub async fn acquire(&self, spread: u128) -> Result<Option<SlotConn>, sqlx::Error> {
        let inner = &self.inner;
        let local = tokio::select! {
            permit = inner.local.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return Ok(None),
            },
            () = inner.shutdown.cancelled() => return Ok(None),
        };
        if let Some(idle) = inner.take_idle() {
            return Ok(Some(self.lend(idle.conn, idle.slot, local)));
        }
        let _waiting = tokio::select! {
            guard = inner.waiting.lock() => guard,
            () = inner.shutdown.cancelled() => return Ok(None),
        };
        // A connection may have come back while this one queued.
        if let Some(idle) = inner.take_idle() {
            return Ok(Some(self.lend(idle.conn, idle.slot, local)));
        }
        let mut conn = inner.options.connect().await?;
        let start = i32::try_from(spread % u128::from(inner.slots)).unwrap_or(0);
        let mut delays = RetryDelays::new(Duration::from_millis(5), Duration::from_millis(250));
        let mut waited = false;
        loop {
            // Every slot in one round trip: the scan stops at the first lock it gets.
            let taken: Option<i32> = sqlx::query_scalar(
                "SELECT slot FROM (SELECT (s % $3)::int4 AS slot FROM generate_series($2, $2 + $3 - 1) AS s) AS slots
                  WHERE pg_try_advisory_lock($1, slot) LIMIT 1",
            )
            .bind(SLOT_CLASS)
            .bind(start)
            .bind(i32::from(inner.slots))
            .fetch_optional(&mut conn)
            .await?;
            if let Some(slot) = taken {
                return Ok(Some(self.lend(conn, slot, local)));
            }
            if !waited {
                waited = true;
                inner.waits.fetch_add(1, Ordering::Relaxed);
            }
            tokio::select! {
                () = tokio::time::sleep(delays.next_delay()) => {}
                () = inner.shutdown.cancelled() => {
                    let _ = conn.close().await;
                    return Ok(None);
                }
            }
            if let Some(idle) = inner.take_idle() {
                let _ = conn.close().await;
                return Ok(Some(self.lend(idle.conn, idle.slot, local)));
            }
        }
    }

    /// Closes the idle connections now, freeing their slots.
    pub async fn close_idle(&self) {
        let idle = std::mem::take(&mut *self.inner.lock_idle());
        for Idle { conn, .. } in idle {
            let _ = conn.close().await;
        }
    }

    /// A handle that reads how these slots are used (for metrics), without keeping them alive.
    pub fn usage_probe(&self) -> SlotUsageProbe {
        SlotUsageProbe(Arc::downgrade(&self.inner))
    }

    fn lend(&self, conn: PgConnection, slot: i32, local: OwnedSemaphorePermit) -> SlotConn {
        self.inner.busy.fetch_add(1, Ordering::Relaxed);
        SlotConn {
            conn: Some(conn),
            slot,
            reusable: true,
            home: Arc::downgrade(&self.inner),
            _local: local,
        }
    }
}

impl Inner {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection: the others then age out first.
    fn take_idle(&self) -> Option<Idle> {
        self.lock_idle().pop()
    }
}

/// Closes connections idle past [`IDLE_TIMEOUT`], until the slots are dropped.
async fn close_idle_connections(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 4).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let expired: Vec<Idle> = {
            let mut idle = inner.lock_idle();
            let (expired, kept) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| i.since.elapsed() >= IDLE_TIMEOUT);
            *idle = kept;
            expired
        };
        drop(inner);
        for Idle { conn, .. } in expired {
            let _ = conn.close().await;
        }
    }
}

impl SlotConn {
    /// The slot this connection holds.
    pub fn slot(&self) -> i32 {
        self.slot
    }

    /// Closes the connection when dropped instead of reusing it: it may hold state (a lock, an
    /// open transaction) that must not reach the next user.
    pub fn close_on_drop(&mut self) {
        self.reusable = false;
    }
}

impl Deref for SlotConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn
            .as_ref()
            .expect("a SlotConn holds its connection until dropped")
    }
}

impl DerefMut for SlotConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("a SlotConn holds its connection until dropped")
    }
}

impl Drop for SlotConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let home = self.home.upgrade();
        if let Some(home) = &home {
            home.busy.fetch_sub(1, Ordering::Relaxed);
        }
        match home {
            Some(home) if self.reusable && !home.shutdown.is_cancelled() => {
                home.lock_idle().push(Idle {
                    conn,
                    slot: self.slot,
                    since: Instant::now(),
                });
            }
            // Dropping the connection closes its socket; the server ends the session and with
            // it the slot's lock.
            _ => drop(conn),
        }
    }
}
