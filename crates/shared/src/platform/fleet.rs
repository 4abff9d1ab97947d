//! The fleet census behind the fleet gauges (docs/OBSERVABILITY.md): tenants by status and
//! version, those behind the latest version or needing reprocessing, the oldest tenant still
//! provisioning, the newest deploy's progress, the dead letters replayed per queue and the
//! tenants found drifted.
//!
//! Four grouped reads, each an index or a small table: cheap enough to run every export
//! interval on a fleet of tens of thousands of tenants, by one process at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::provisioning::TenantStatus;
use domain::version::Version;
use sqlx::PgConnection;

/// Tenants in one status at one schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCount {
    pub status: String,
    pub schema_version: i64,
    pub tenants: u64,
}

/// The newest deploy and how far its tenants got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployProgress {
    pub target_version: i64,
    /// Tenants per `deploy_tenants.status`, every status present (0 when none).
    pub tenants: Vec<(&'static str, u64)>,
}

/// The statuses of `deploy_tenants`, in the order a tenant goes through them.
pub const DEPLOY_TENANT_STATUSES: [&str; 6] = [
    "pending",
    "published",
    "retrying",
    "succeeded",
    "failed",
    "canceled",
];

/// One row of the grouped read of `tenants`: status, schema version, tenants, tenants with a
/// migration error, the oldest `updated_at`.
type TenantGroup = (String, i64, i64, i64, Option<DateTime<Utc>>);

/// What the fleet looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetCensus {
    pub tenants: Vec<TenantCount>,
    /// Active tenants below the latest version.
    pub behind: u64,
    /// Tenants whose last migration or rollback failed for good.
    pub needing_reprocessing: u64,
    /// Since the row of the oldest tenant still provisioning last changed; zero when none.
    pub provisioning_oldest_age: Duration,
    /// `None` before the first deploy.
    pub deploy: Option<DeployProgress>,
    /// Dead letters replayed so far, per work queue (base name).
    pub replayed: Vec<(String, u64)>,
    /// Active and suspended tenants found drifted by the last drift check of each.
    pub drifted: u64,
}

impl FleetCensus {
    /// Reads the census on `conn`, with `latest` the newest version of the tenant set.
    async fn read(conn: &mut PgConnection, latest: Version) -> Result<Self, sqlx::Error> {
        let rows: Vec<TenantGroup> = sqlx::query_as(
            "SELECT status, schema_version, count(*), count(migration_error), min(updated_at)
               FROM tenants GROUP BY status, schema_version",
        )
        .fetch_all(&mut *conn)
        .await?;
        let latest = latest.get();
        let mut census = FleetCensus {
            tenants: Vec::with_capacity(rows.len()),
            behind: 0,
            needing_reprocessing: 0,
            provisioning_oldest_age: Duration::ZERO,
            deploy: None,
            replayed: Vec::new(),
            drifted: 0,
        };
        let mut oldest_provisioning: Option<DateTime<Utc>> = None;
        for (status, schema_version, tenants, failed, since) in rows {
            let tenants = u64::try_from(tenants).unwrap_or(0);
            census.needing_reprocessing += u64::try_from(failed).unwrap_or(0);
            if status == TenantStatus::Active.as_str() && schema_version < latest {
                census.behind += tenants;
            }
            if status == TenantStatus::Provisioning.as_str() {
                oldest_provisioning = oldest_provisioning.min(since).or(since);
            }
            census.tenants.push(TenantCount {
                status,
                schema_version,
                tenants,
            });
        }
        if let Some(since) = oldest_provisioning {
            census.provisioning_oldest_age = (Utc::now() - since).to_std().unwrap_or_default();
        }

        let deploy: Vec<(i64, Option<String>, i64)> = sqlx::query_as(
            "SELECT d.target_version, dt.status, count(dt.status)
               FROM (SELECT id, target_version FROM deploys ORDER BY created_at DESC, id DESC LIMIT 1) AS d
               LEFT JOIN deploy_tenants dt ON dt.deploy_id = d.id
              GROUP BY d.target_version, dt.status",
        )
        .fetch_all(&mut *conn)
        .await?;
        census.deploy = deploy.first().map(|(target_version, _, _)| DeployProgress {
            target_version: *target_version,
            tenants: DEPLOY_TENANT_STATUSES
                .iter()
                .map(|wanted| {
                    let count = deploy
                        .iter()
                        .find(|(_, status, _)| status.as_deref() == Some(*wanted))
                        .map_or(0, |(_, _, n)| u64::try_from(*n).unwrap_or(0));
                    (*wanted, count)
                })
                .collect(),
        });

        let replayed: Vec<(String, i64)> =
            sqlx::query_as("SELECT queue, count(*) FROM dlq_replays GROUP BY queue ORDER BY queue")
                .fetch_all(&mut *conn)
                .await?;
        census.replayed = replayed
            .into_iter()
            .map(|(queue, n)| (queue, u64::try_from(n).unwrap_or(0)))
            .collect();

        let drifted: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tenant_drift d JOIN tenants t ON t.id = d.tenant_id
              WHERE t.status IN ('active', 'suspended')",
        )
        .fetch_one(&mut *conn)
        .await?;
        census.drifted = u64::try_from(drifted).unwrap_or(0);
        Ok(census)
    }
}

/// The advisory lock of the process that reports the fleet metrics (one key, apart from every
/// tenant lock's).
const REPORTER_LOCK: i64 = 0x7e4a_f1ee_7000_0001;

/// A session of its own (outside the pool) that holds the fleet-metrics lock. The census runs
/// on it, so a reporter whose session died finds out on its next read, and the lock is free for
/// another process as soon as the session ends.
#[derive(Debug)]
pub struct FleetReporter {
    conn: PgConnection,
}

impl super::PlatformDb {
    /// The reporter's session, or `None` while another process holds the lock (or the platform
    /// database is unreachable, or SQLite).
    pub async fn lead_fleet_metrics(&self) -> Option<FleetReporter> {
        use sqlx::{ConnectOptions as _, Connection as _};
        let options = self.postgres().ok()?.connect_options().as_ref().clone();
        let mut conn = options.connect().await.ok()?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(REPORTER_LOCK)
            .fetch_one(&mut conn)
            .await
            .ok()?;
        if locked {
            Some(FleetReporter { conn })
        } else {
            let _ = conn.close().await;
            None
        }
    }
}

impl FleetReporter {
    /// The census now, with `latest` the newest version of the tenant set.
    ///
    /// # Errors
    /// A database error: the session may be gone, and the lock with it.
    pub async fn census(&mut self, latest: Version) -> Result<FleetCensus, sqlx::Error> {
        FleetCensus::read(&mut self.conn, latest).await
    }

    /// Ends the session, releasing the lock.
    pub async fn close(self) {
        use sqlx::Connection as _;
        let _ = self.conn.close().await;
    }
}
