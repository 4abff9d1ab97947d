//! `tenants` and `provisioning_steps`: the tenant registry and provisioning progress.
//!
//! The services run on PostgreSQL; on an SQLite platform database these return
//! [`StoreError::Unsupported`].

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::servers::PlacementError;
use super::{PlatformDb, StoreError};
use domain::Isolation;
use domain::Version;
use domain::provisioning::{Progress, Step, StepOutcome, StepStatus, TenantStatus};
use domain::server::ServerName;
use domain::tenant::TenantSlug;

/// What registering a tenant found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// The row exists (just created, or from an earlier delivery) with this id and slug.
    Registered {
        status: TenantStatus,
        isolation: Isolation,
        /// Where it lives.
        server: ServerName,
    },
    /// Another tenant owns the slug.
    SlugTaken { owner: Uuid },
    /// This tenant id is registered with another slug.
    IdTaken { slug: String },
}

/// A row of `provisioning_steps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    pub step: Step,
    /// As stored: [`StepStatus`]'s names, or `pending` / `running`, which the table allows
    /// and no code writes.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
}

/// A tenant with its timestamps, for `tenantctl tenant show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDetail {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub isolation: String,
    pub plan: Option<String>,
    pub schema_version: i64,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub steps: Vec<StepRow>,
}

/// The tenant rows holding `id` or `slug`, locked until the registering transaction ends (a
/// concurrent change to them waits, so the registration's answer holds when it is given).
async fn existing(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    slug: &TenantSlug,
) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
    sqlx::query(
        "SELECT id, slug, status, isolation, coalesce(server, 'default') AS server
           FROM tenants WHERE id = $1 OR slug = $2 FOR SHARE",
    )
    .bind(id)
    .bind(slug.as_str())
    .fetch_all(&mut *tx)
    .await
    .map_err(super::not_migrated("tenants"))
}

impl PlatformDb {
    pub(super) fn postgres(&self) -> Result<&PgPool, StoreError> {
        match self {
            PlatformDb::Postgres(pool) => Ok(pool),
            PlatformDb::Sqlite(_) => Err(StoreError::Unsupported(
                "provisioning and deploys need a PostgreSQL platform database (DATABASE_URL=postgres://…)",
            )),
        }
    }

    /// Creates the tenant row (status `provisioning`), placed on `pinned` or on the least loaded
    /// open server with room, unless it exists; reports what exists. Nothing is written when the
    /// tenant cannot be placed.
    ///
    /// # Errors
    /// [`PlacementError`]: no server for it, or a database error.
    pub async fn register_tenant(
        &self,
        id: Uuid,
        slug: &TenantSlug,
        name: &str,
        isolation: Isolation,
        plan: Option<&str>,
        pinned: Option<&ServerName>,
    ) -> Result<Registration, PlacementError> {
        let pool = self.postgres()?;
        let mut tx = pool.begin().await.map_err(StoreError::from)?;
        let mut rows = existing(&mut tx, id, slug).await?;
        if rows.is_empty() {
            let server = PlatformDb::choose_server(&mut tx, pinned).await?;
            sqlx::query(
                "INSERT INTO tenants (id, slug, name, status, isolation, plan, server) VALUES ($1, $2, $3, $6, $4, $5, $7)
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(slug.as_str())
            .bind(name)
            .bind(isolation.as_str())
            .bind(plan)
            .bind(TenantStatus::Provisioning.as_str())
            .bind(server.as_str())
            .execute(&mut *tx)
            .await
            .map_err(super::not_migrated("tenants"))?;
            rows = existing(&mut tx, id, slug).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        for row in &rows {
            let (row_id, row_slug): (Uuid, String) = (
                row.try_get("id").map_err(StoreError::from)?,
                row.try_get("slug").map_err(StoreError::from)?,
            );
            if row_id == id && row_slug == slug.as_str() {
                let isolation: String = row.try_get("isolation").map_err(StoreError::from)?;
                let server: String = row.try_get("server").map_err(StoreError::from)?;
                return Ok(Registration::Registered {
                    status: tenant_status(row.try_get("status").map_err(StoreError::from)?)?,
                    isolation: isolation.parse().map_err(StoreError::InvalidRow)?,
                    server: ServerName::parse(&server)
                        .map_err(|e| StoreError::InvalidRow(e.to_string()))?,
                });
            }
        }
        // The id conflict is reported first: it means the message itself is inconsistent.
        let mut slug_owner = None;
        for row in &rows {
            let (row_id, row_slug): (Uuid, String) = (
                row.try_get("id").map_err(StoreError::from)?,
                row.try_get("slug").map_err(StoreError::from)?,
            );
            if row_id == id {
                return Ok(Registration::IdTaken { slug: row_slug });
            }
            slug_owner = Some(row_id);
        }
        if let Some(owner) = slug_owner {
            return Ok(Registration::SlugTaken { owner });
        }
        Err(StoreError::InvalidRow(format!("tenant {id} neither inserted nor found")).into())
    }

    /// The tenant's status and the recorded state of each step.
    ///
    /// # Errors
    /// A database error.
    pub async fn provisioning_progress(&self, id: Uuid) -> Result<Progress, StoreError> {
        let pool = self.postgres()?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(super::not_migrated("tenants"))?;
        let mut progress = Progress {
            status: status.map(tenant_status).transpose()?,
            ..Progress::default()
        };
        let rows = sqlx::query("SELECT step, status FROM provisioning_steps WHERE tenant_id = $1")
            .bind(id)
            .fetch_all(pool)
            .await?;
        for row in rows {
            let step: Step = row
                .try_get::<String, _>("step")?
                .parse()
                .map_err(StoreError::InvalidRow)?;
            // A status no code writes (`pending`, `running`: the table allows them) is a step
            // not done, as a failed one is.
            let status = row
                .try_get::<String, _>("status")?
                .parse()
                .unwrap_or(StepStatus::Failed);
            progress.steps.insert(step, status);
        }
        Ok(progress)
    }

    /// Records how a step ended, counting `attempts` more attempts (more than one when earlier
    /// attempts could not be recorded); returns how many it has had. The record of a step
    /// before the last need not wait for the WAL flush: losing it in a crash only means the
    /// (idempotent) step runs again, and the next step's durable commit flushes it anyway. The
    /// last step's record waits: after it the registration is acknowledged and nothing runs
    /// again, so a record lost then would leave an active tenant whose `activate` reads failed.
    ///
    /// # Errors
    /// A database error.
    pub async fn record_step(
        &self,
        id: Uuid,
        step: Step,
        outcome: &StepOutcome,
        started_at: DateTime<Utc>,
        duration_ms: i64,
        attempts: i32,
    ) -> Result<i32, StoreError> {
        let pool = self.postgres()?;
        let mut transaction = pool.begin().await?;
        if step != Step::Activate {
            sqlx::query("SET LOCAL synchronous_commit TO off")
                .execute(&mut *transaction)
                .await?;
        }
        let attempts: i32 = sqlx::query_scalar(
            "INSERT INTO provisioning_steps (tenant_id, step, status, attempts, last_error, started_at, finished_at, duration_ms, updated_at)
             VALUES ($1, $2, $3, $7, $4, $5, now(), $6, now())
             ON CONFLICT (tenant_id, step) DO UPDATE SET
               status = excluded.status, attempts = provisioning_steps.attempts + excluded.attempts, last_error = excluded.last_error,
               started_at = excluded.started_at, finished_at = excluded.finished_at,
               duration_ms = excluded.duration_ms, updated_at = now()
             RETURNING attempts",
        )
        .bind(id)
        .bind(step.as_str())
        .bind(outcome.status().as_str())
        .bind(outcome.error())
        .bind(started_at)
        .bind(duration_ms)
        .bind(attempts.max(1))
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(attempts)
    }

    /// Sets a provisioning tenant's status (`failed`, or back to `provisioning` to resume); a
    /// tenant in any other status is left as it is.
    ///
    /// # Errors
    /// A database error.
    pub async fn set_tenant_status(
        &self,
        id: Uuid,
        status: TenantStatus,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tenants SET status = $2, updated_at = now() WHERE id = $1 AND status IN ($3, $4)",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(TenantStatus::Provisioning.as_str())
        .bind(TenantStatus::Failed.as_str())
        .execute(self.postgres()?)
        .await?;
        Ok(())
    }

    /// Marks the tenant active at `schema_version` and, when the latest deploy targets a newer
    /// version, enqueues the tenant into it (see [`super::deploys`]): returns that deploy and its
    /// target while the tenant's command there is still unpublished, so that the caller
    /// publishes it (again, after a crash; the migrator makes a second one a no-op).
    ///
    /// # Errors
    /// A database error.
    pub async fn activate_tenant(
        &self,
        id: Uuid,
        schema_version: Version,
    ) -> Result<Option<(Uuid, Version)>, StoreError> {
        let mut tx = self.postgres()?.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(super::deploys::fleet_lock_key())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE tenants SET status = $3, schema_version = greatest(schema_version, $2),
                    activated_at = coalesce(activated_at, now()), updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(schema_version.get())
        .bind(TenantStatus::Active.as_str())
        .execute(&mut *tx)
        .await?;
        // The latest deploy that covers the tenant's server (a deploy may be limited to one).
        let latest: Option<(Uuid, i64)> = sqlx::query_as(
            "SELECT id, target_version FROM deploys
              WHERE status <> 'canary_failed'
                AND (server IS NULL
                     OR server = (SELECT coalesce(server, 'default') FROM tenants WHERE id = $1))
              ORDER BY created_at DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut enqueued = None;
        if let Some((deploy, target)) = latest
            && target > schema_version.get()
        {
            sqlx::query(
                "INSERT INTO deploy_tenants (deploy_id, tenant_id, from_version) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(deploy)
            .bind(id)
            .bind(schema_version.get())
            .execute(&mut *tx)
            .await?;
            let status: String = sqlx::query_scalar(
                "SELECT status FROM deploy_tenants WHERE deploy_id = $1 AND tenant_id = $2",
            )
            .bind(deploy)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if status == "pending" {
                enqueued = Some((
                    deploy,
                    Version::new(target).map_err(|e| StoreError::InvalidRow(e.to_string()))?,
                ));
            }
        }
        tx.commit().await?;
        Ok(enqueued)
    }

    /// Milliseconds since the tenant row was created (how long provisioning took, once active).
    ///
    /// # Errors
    /// A database error.
    pub async fn tenant_age_ms(&self, id: Uuid) -> Result<i64, StoreError> {
        let age: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM coalesce(activated_at, now()) - created_at)::float8 * 1000 FROM tenants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.postgres()?)
        .await?;
        Ok(age.map_or(0, |ms| ms.round() as i64))
    }

    /// One tenant with its steps.
    ///
    /// # Errors
    /// A database error.
    pub async fn tenant_detail(
        &self,
        slug: &TenantSlug,
    ) -> Result<Option<TenantDetail>, StoreError> {
        let pool = self.postgres()?;
        let Some(row) = sqlx::query(
            "SELECT id, slug, name, status, isolation, plan, schema_version, created_at, activated_at FROM tenants WHERE slug = $1",
        )
        .bind(slug.as_str())
        .fetch_optional(pool)
        .await
        .map_err(super::not_migrated("tenants"))?
        else {
            return Ok(None);
        };
        let id: Uuid = row.try_get("id")?;
        let steps = sqlx::query(
            "SELECT step, status, attempts, last_error, started_at, finished_at, duration_ms FROM provisioning_steps WHERE tenant_id = $1",
        )
        .bind(id)
        .fetch_all(pool)
        .await?;
        let mut steps = steps
            .iter()
            .map(|s| {
                Ok(StepRow {
                    step: s
                        .try_get::<String, _>("step")?
                        .parse()
                        .map_err(StoreError::InvalidRow)?,
                    status: s.try_get("status")?,
                    attempts: s.try_get("attempts")?,
                    last_error: s.try_get("last_error")?,
                    started_at: s.try_get("started_at")?,
                    finished_at: s.try_get("finished_at")?,
                    duration_ms: s.try_get("duration_ms")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        steps.sort_by_key(|s| s.step);
        Ok(Some(TenantDetail {
            id,
            slug: row.try_get("slug")?,
            name: row.try_get("name")?,
            status: tenant_status(row.try_get("status")?)?,
            isolation: row.try_get("isolation")?,
            plan: row.try_get("plan")?,
            schema_version: row.try_get("schema_version")?,
            created_at: row.try_get("created_at")?,
            activated_at: row.try_get("activated_at")?,
            steps,
        }))
    }
}

/// A `tenants.status` value.
pub(super) fn tenant_status(status: String) -> Result<TenantStatus, StoreError> {
    status.parse().map_err(StoreError::InvalidRow)
}

/// A per-tenant advisory lock on the platform database (a session lock on a connection of its
/// own: no transaction stays open, which would make a tenant migration's
/// `CREATE INDEX CONCURRENTLY` in the same database wait for it).
pub struct TenantLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    key: i64,
}

impl PlatformDb {
    /// A pool for [`TenantLock`]s, apart from the platform pool: a lock holds its connection
    /// for the whole of the work it protects, and must never starve that work of connections.
    /// `size` bounds how many tenants can be locked at once.
    ///
    /// # Errors
    /// [`StoreError::Unsupported`] on SQLite.
    pub fn lock_pool(&self, size: u32) -> Result<PgPool, StoreError> {
        let options = self.postgres()?.connect_options().as_ref().clone();
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(size)
            .connect_lazy_with(options))
    }
}

impl TenantLock {
    /// Takes the `scope` lock of tenant `id` on a connection of `pool` (see
    /// [`PlatformDb::lock_pool`]) if it is free; never waits for it.
    ///
    /// # Errors
    /// A database error.
    pub async fn try_acquire(
        pool: &PgPool,
        scope: &str,
        id: Uuid,
    ) -> Result<Option<TenantLock>, StoreError> {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("tenancy/{scope}/{id}").as_bytes());
        let mut bytes = [0_u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        let key = i64::from_be_bytes(bytes);
        let mut conn = pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then(|| TenantLock {
            conn: Some(conn),
            key,
        }))
    }
}

impl TenantLock {
    /// Releases the lock and returns the connection to the pool.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let released = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut *conn)
                .await;
            if released.is_err() {
                conn.close_on_drop();
            }
        }
    }
}

impl Drop for TenantLock {
    fn drop(&mut self) {
        // Not released (a panic, a cancelled task): close the connection, which releases the
        // lock, rather than hand a locked session to the pool.
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}
