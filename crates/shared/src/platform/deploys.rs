//! `deploys` and `deploy_tenants`: fleet deploys, the result of each tenant in them, and what
//! the migrator records on `tenants` (`schema_version`, `migration_error`).
//!
//! # No tenant left behind
//! A deploy lists the active tenants and a provisioning tenant activates on its own schedule, so
//! both take the *fleet lock* (a transaction-scoped advisory lock; the deploy exclusive, an
//! activation shared) around "record the deploy and list the tenants" and "activate and read the
//! latest deploy". Either the activation commits first and the deploy lists the tenant, or the
//! activation sees the deploy and enqueues the tenant into it ([`PlatformDb::activate_tenant`]).
//!
//! PostgreSQL only, like the services.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::tenants::tenant_status;
use super::{PlatformDb, StoreError, not_migrated};
use domain::Isolation;
use domain::Version;
use domain::provisioning::TenantStatus;
use domain::server::ServerName;
use domain::tenant::TenantSlug;

/// The key of the fleet lock (see the module documentation); the engine's migration locks use
/// other keys.
pub(crate) fn fleet_lock_key() -> i64 {
    super::advisory_key("tenancy/fleet")
}

/// A deploy about to be recorded.
#[derive(Debug, Clone)]
pub struct NewDeploy {
    pub id: Uuid,
    pub target_version: Version,
    pub platform_version: Version,
    pub operator: String,
    pub canary: u32,
    /// Only the tenants of this server; `None`: every server.
    pub server: Option<ServerName>,
}

/// A tenant of a deploy, as listed when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployTenant {
    pub id: Uuid,
    pub slug: TenantSlug,
    pub server: ServerName,
    pub schema_version: Version,
}

/// How a tenant's command ended, for [`PlatformDb::record_migration_results`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultStatus {
    /// At the target (whether or not anything ran).
    Succeeded,
    /// Failed, will be tried again (the message was given back).
    Retrying,
    /// Failed for good: the message went to the dead-letter queue; the tenant needs
    /// reprocessing.
    Failed,
}

impl ResultStatus {
    fn as_str(&self) -> &'static str {
        match self {
            ResultStatus::Succeeded => "succeeded",
            ResultStatus::Retrying => "retrying",
            ResultStatus::Failed => "failed",
        }
    }
}

/// What the migrator did for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationResult {
    pub tenant_id: Uuid,
    /// The deploy the command belonged to; `None` for a rollback.
    pub deploy_id: Option<Uuid>,
    pub status: ResultStatus,
    pub from_version: Option<Version>,
    /// The tenant's version afterwards, when known; recorded as `tenants.schema_version`.
    pub to_version: Option<Version>,
    pub applied: u32,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// A tenant row as the migrator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationTenant {
    pub slug: TenantSlug,
    /// The server it lives on.
    pub server: ServerName,
    pub status: TenantStatus,
    pub isolation: Isolation,
    pub schema_version: Version,
    pub migration_error: Option<String>,
}

/// One row of a deploy's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployResultRow {
    pub tenant_id: Uuid,
    pub slug: String,
    /// The server the tenant lives on.
    pub server: String,
    pub status: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub applied: i32,
    pub attempts: i32,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
}

/// A recorded deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRecord {
    pub id: Uuid,
    pub target_version: Version,
    pub operator: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

fn version(raw: i64) -> Result<Version, StoreError> {
    Version::new(raw).map_err(|e| StoreError::InvalidRow(e.to_string()))
}

impl PlatformDb {
    /// Records the deploy and lists its tenants (active and suspended, ordered by slug) as
    /// `pending` results, under the fleet lock.
    ///
    /// # Errors
    /// A database error.
    pub async fn record_deploy(&self, deploy: &NewDeploy) -> Result<Vec<DeployTenant>, StoreError> {
        let pool = self.postgres()?;
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(fleet_lock_key())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO deploys (id, target_version, platform_version, operator, canary, server) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(deploy.id)
        .bind(deploy.target_version.get())
        .bind(deploy.platform_version.get())
        .bind(&deploy.operator)
        .bind(i32::try_from(deploy.canary).unwrap_or(i32::MAX))
        .bind(deploy.server.as_ref().map(ServerName::as_str))
        .execute(&mut *tx)
        .await
        .map_err(not_migrated("deploys"))?;
        // In turns across the servers (each server's first tenant, then each one's second, …),
        // so that publishing in this order keeps every server busy from the start, and a canary
        // covers every server.
        let rows = sqlx::query(
            "WITH listed AS (
                 INSERT INTO deploy_tenants (deploy_id, tenant_id, from_version)
                 SELECT $1, id, schema_version FROM tenants
                  WHERE status IN ($2, $3) AND ($4::text IS NULL OR coalesce(server, 'default') = $4)
                 RETURNING tenant_id
             )
             SELECT t.id, t.slug, t.schema_version, coalesce(t.server, 'default') AS server,
                    row_number() OVER (PARTITION BY coalesce(t.server, 'default') ORDER BY t.slug) AS turn
               FROM listed JOIN tenants t ON t.id = listed.tenant_id
             ORDER BY turn, server",
        )
        .bind(deploy.id)
        .bind(TenantStatus::Active.as_str())
        .bind(TenantStatus::Suspended.as_str())
        .bind(deploy.server.as_ref().map(ServerName::as_str))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(DeployTenant {
                    id: row.try_get("id")?,
                    slug: TenantSlug::parse(&row.try_get::<String, _>("slug")?)
                        .map_err(|e| StoreError::InvalidRow(e.to_string()))?,
                    server: ServerName::parse(&row.try_get::<String, _>("server")?)
                        .map_err(|e| StoreError::InvalidRow(e.to_string()))?,
                    schema_version: version(row.try_get("schema_version")?)?,
                })
            })
            .collect()
    }

    /// Marks these tenants' commands as published (those still `pending`).
    ///
    /// # Errors
    /// A database error.
    pub async fn mark_published(&self, deploy: Uuid, tenants: &[Uuid]) -> Result<(), StoreError> {
        // Rows locked in tenant order, the order the migrators' result writes take them in
        // (`record_migration_results`): two writers of one deploy's rows never deadlock.
        sqlx::query(
            "UPDATE deploy_tenants d SET status = 'published'
               FROM (SELECT tenant_id FROM deploy_tenants
                      WHERE deploy_id = $1 AND tenant_id = ANY($2) AND status = 'pending'
                      ORDER BY tenant_id FOR UPDATE) AS pending
              WHERE d.deploy_id = $1 AND d.tenant_id = pending.tenant_id",
        )
        .bind(deploy)
        .bind(tenants)
        .execute(self.postgres()?)
        .await?;
        Ok(())
    }

    /// Ends the publishing of a deploy: `published`, or `canary_failed` with every tenant not
    /// yet published `canceled`.
    ///
    /// # Errors
    /// A database error.
    pub async fn finish_publishing(
        &self,
        deploy: Uuid,
        canary_failed: bool,
    ) -> Result<(), StoreError> {
        let pool = self.postgres()?;
        let mut tx = pool.begin().await?;
        if canary_failed {
            sqlx::query(
                "UPDATE deploy_tenants SET status = 'canceled' WHERE deploy_id = $1 AND status = 'pending'",
            )
            .bind(deploy)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE deploys SET status = $2, published_at = now() WHERE id = $1")
            .bind(deploy)
            .bind(if canary_failed {
                "canary_failed"
            } else {
                "published"
            })
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// How many of a deploy's tenants are in each status, on each server: `(server, status)`.
    ///
    /// # Errors
    /// A database error.
    pub async fn deploy_progress(
        &self,
        deploy: Uuid,
    ) -> Result<BTreeMap<(String, String), i64>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT coalesce(t.server, 'default'), d.status, count(*)
               FROM deploy_tenants d JOIN tenants t ON t.id = d.tenant_id
              WHERE d.deploy_id = $1 GROUP BY 1, 2",
        )
        .bind(deploy)
        .fetch_all(self.postgres()?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(server, status, count)| ((server, status), count))
            .collect())
    }

    /// Every tenant of a deploy (`only` restricts to some), ordered by slug.
    ///
    /// # Errors
    /// A database error.
    pub async fn deploy_results(
        &self,
        deploy: Uuid,
        only: Option<&[Uuid]>,
    ) -> Result<Vec<DeployResultRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.tenant_id, t.slug, coalesce(t.server, 'default') AS server, d.status, d.from_version, d.to_version, d.applied,
                    d.attempts, d.error, d.duration_ms
               FROM deploy_tenants d JOIN tenants t ON t.id = d.tenant_id
              WHERE d.deploy_id = $1 AND ($2::uuid[] IS NULL OR d.tenant_id = ANY($2))
              ORDER BY t.slug",
        )
        .bind(deploy)
        .bind(only)
        .fetch_all(self.postgres()?)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeployResultRow {
                    tenant_id: row.try_get("tenant_id")?,
                    slug: row.try_get("slug")?,
                    server: row.try_get("server")?,
                    status: row.try_get("status")?,
                    from_version: row.try_get("from_version")?,
                    to_version: row.try_get("to_version")?,
                    applied: row.try_get("applied")?,
                    attempts: row.try_get("attempts")?,
                    error: row.try_get("error")?,
                    duration_ms: row.try_get("duration_ms")?,
                })
            })
            .collect()
    }

    /// A deploy by id.
    ///
    /// # Errors
    /// A database error.
    pub async fn deploy(&self, id: Uuid) -> Result<Option<DeployRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, target_version, operator, status, created_at FROM deploys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.postgres()?)
        .await
        .map_err(not_migrated("deploys"))?;
        row.map(|row| {
            Ok(DeployRecord {
                id: row.try_get("id")?,
                target_version: version(row.try_get("target_version")?)?,
                operator: row.try_get("operator")?,
                status: row.try_get("status")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// The tenants `ids` names, as the migrator needs them, in one indexed read; a tenant the
    /// platform database does not have is absent from the map.
    ///
    /// # Errors
    /// A database error.
    pub async fn migration_tenants(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, MigrationTenant>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, slug, coalesce(server, 'default') AS server, status, isolation, schema_version, migration_error
               FROM tenants WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(self.postgres()?)
        .await?;
        rows.iter()
            .map(|row| {
                let tenant = MigrationTenant {
                    slug: TenantSlug::parse(&row.try_get::<String, _>("slug")?)
                        .map_err(|e| StoreError::InvalidRow(e.to_string()))?,
                    server: ServerName::parse(&row.try_get::<String, _>("server")?)
                        .map_err(|e| StoreError::InvalidRow(e.to_string()))?,
                    status: tenant_status(row.try_get("status")?)?,
                    isolation: row
                        .try_get::<String, _>("isolation")?
                        .parse()
                        .map_err(StoreError::InvalidRow)?,
                    schema_version: version(row.try_get("schema_version")?)?,
                    migration_error: row.try_get("migration_error")?,
                };
                Ok((row.try_get("id")?, tenant))
            })
            .collect()
    }

    /// Records many results in one transaction: the deploy rows (created if the deploy exists
    /// but did not list the tenant), and on `tenants` the new schema version and
    /// `migration_error` (set on `Failed`, cleared on `Succeeded`).
    ///
    /// # Errors
    /// A database error.
    pub async fn record_migration_results(
        &self,
        results: &[MigrationResult],
    ) -> Result<(), StoreError> {
        // One row per tenant and deploy, the last one winning: an upsert cannot touch a row
        // twice in one statement, and a redelivered command may land in the same batch. The
        // rows are written in (deploy, tenant) order, the order `mark_published` locks them in.
        let mut last = BTreeMap::new();
        for result in results {
            last.insert((result.deploy_id, result.tenant_id), result);
        }
        let results: Vec<&MigrationResult> = last.into_values().collect();
        if results.is_empty() {
            return Ok(());
        }
        let mut tenant_ids = Vec::with_capacity(results.len());
        let mut deploy_ids = Vec::with_capacity(results.len());
        let mut statuses = Vec::with_capacity(results.len());
        let mut froms = Vec::with_capacity(results.len());
        let mut tos = Vec::with_capacity(results.len());
        let mut applied = Vec::with_capacity(results.len());
        let mut errors = Vec::with_capacity(results.len());
        let mut durations = Vec::with_capacity(results.len());
        for result in results {
            tenant_ids.push(result.tenant_id);
            deploy_ids.push(result.deploy_id);
            statuses.push(result.status.as_str());
            froms.push(result.from_version.map(Version::get));
            tos.push(result.to_version.map(Version::get));
            applied.push(i32::try_from(result.applied).unwrap_or(i32::MAX));
            errors.push(result.error.clone());
            durations.push(result.duration_ms);
        }
        let pool = self.postgres()?;
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO deploy_tenants AS d
                    (deploy_id, tenant_id, status, from_version, to_version, applied, attempts, error, finished_at, duration_ms)
             SELECT r.deploy_id, r.tenant_id, r.status, r.from_version, r.to_version, r.applied, 1, r.error,
                    CASE WHEN r.status = 'retrying' THEN NULL ELSE now() END, r.duration_ms
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::int8[], $6::int4[], $7::text[], $8::int8[])
                    AS r(tenant_id, deploy_id, status, from_version, to_version, applied, error, duration_ms)
              WHERE r.deploy_id IS NOT NULL AND EXISTS (SELECT 1 FROM deploys WHERE id = r.deploy_id)
                AND EXISTS (SELECT 1 FROM tenants WHERE id = r.tenant_id)
              ORDER BY r.deploy_id, r.tenant_id
             ON CONFLICT (deploy_id, tenant_id) DO UPDATE SET
                    status = EXCLUDED.status,
                    from_version = coalesce(d.from_version, EXCLUDED.from_version),
                    to_version = EXCLUDED.to_version,
                    applied = d.applied + EXCLUDED.applied,
                    attempts = d.attempts + 1,
                    error = EXCLUDED.error,
                    finished_at = EXCLUDED.finished_at,
                    duration_ms = coalesce(d.duration_ms, 0) + EXCLUDED.duration_ms",
        )
        .bind(&tenant_ids)
        .bind(&deploy_ids)
        .bind(&statuses)
        .bind(&froms)
        .bind(&tos)
        .bind(&applied)
        .bind(&errors)
        .bind(&durations)
        .execute(&mut *tx)
        .await?;
        // Only rows that change anything: a no-op success of a healthy tenant writes nothing.
        sqlx::query(
            "UPDATE tenants t SET
                    schema_version = coalesce(r.to_version, t.schema_version),
                    migration_error = CASE r.status WHEN 'succeeded' THEN NULL
                                                    WHEN 'failed' THEN r.error
                                                    ELSE t.migration_error END,
                    updated_at = now()
               FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::text[]) AS r(tenant_id, status, to_version, error)
              WHERE t.id = r.tenant_id
                AND (t.schema_version IS DISTINCT FROM coalesce(r.to_version, t.schema_version)
                     OR (r.status = 'succeeded' AND t.migration_error IS NOT NULL)
                     OR r.status = 'failed')",
        )
        .bind(&tenant_ids)
        .bind(&statuses)
        .bind(&tos)
        .bind(&errors)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
