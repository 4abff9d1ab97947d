//! `schema_fingerprints`, `tenant_drift` and `tenant_catalog_stamps`: the expected fingerprint
//! of each version of the tenant set (per isolation mode and PostgreSQL major), the tenants
//! found drifted by the last check (`crate::drift`), and the catalog stamp each tenant's last
//! full read was vouched by, with what it found.
//!
//! PostgreSQL only, like the services.

use std::collections::HashMap;
use std::str::FromStr as _;

use sqlx::Row as _;
use sqlx::types::Json;
use uuid::Uuid;

use super::{PlatformDb, StoreError, not_migrated};
use domain::Isolation;
use domain::Version;
use domain::provisioning::TenantStatus;
use domain::server::ServerName;
use domain::tenant::TenantSlug;
use engine::fingerprint::{CatalogStamp, Fingerprint, ObjectKind};

/// What an expected fingerprint is the expectation for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExpectedKey {
    pub isolation: Isolation,
    pub version: Version,
    /// The PostgreSQL major version of the server that described it.
    pub server_major: i32,
}

/// An expected fingerprint as kept: `set_checksum` names the migrations it was built from.
/// Its digest is computed once, here: a check compares it with every tenant's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    set_checksum: String,
    fingerprint: Fingerprint,
    digest: String,
}

impl Expected {
    pub fn new(set_checksum: String, fingerprint: Fingerprint) -> Self {
        let digest = fingerprint.digest();
        Expected {
            set_checksum,
            fingerprint,
            digest,
        }
    }

    pub fn set_checksum(&self) -> &str {
        &self.set_checksum
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// A tenant a drift check reads: active or suspended (a provisioning tenant's schema is still
/// being built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftCandidate {
    pub id: Uuid,
    pub slug: TenantSlug,
    pub server: ServerName,
    pub isolation: Isolation,
    /// As the services recorded it.
    pub schema_version: Version,
}

/// A drifted tenant, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRecord {
    pub tenant_id: Uuid,
    pub schema_version: Version,
    pub expected_digest: String,
    pub digest: String,
    /// One line per difference.
    pub differences: Vec<String>,
}

/// A tenant's catalog stamp with what the full read it vouches for found: kept by a check that
/// read the tenant in full, trusted by the next while the stamp, the tenant's server, version
/// and expectation are all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptStamp {
    pub tenant_id: Uuid,
    pub server: ServerName,
    pub schema_version: Version,
    /// The expected fingerprint's digest the read was compared with.
    pub expected_digest: String,
    /// Taken just before the read.
    pub stamp: CatalogStamp,
    /// The tenant's fingerprint's digest, as read.
    pub digest: String,
}

/// A kept stamp and, when it was drifted, the tenant's `tenant_drift` row: (its digest, its
/// differences, one line each). A drifted result can be reused only with its differences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptResult {
    pub stamp: KeptStamp,
    pub drift: Option<(String, Vec<String>)>,
}

type ObjectRow = (String, String, String);

impl PlatformDb {
    /// Every expected fingerprint kept (a handful: versions times modes times majors).
    ///
    /// # Errors
    /// A database error, or a row this build cannot read.
    pub async fn expected_fingerprints(
        &self,
    ) -> Result<HashMap<ExpectedKey, Expected>, StoreError> {
        let rows = sqlx::query(
            "SELECT isolation, version, server_major, set_checksum, objects FROM schema_fingerprints",
        )
        .fetch_all(self.postgres()?)
        .await
        .map_err(not_migrated("schema_fingerprints"))?;
        rows.into_iter()
            .map(|row| {
                let isolation: String = row.try_get("isolation")?;
                let isolation = Isolation::from_str(&isolation)
                    .map_err(|e| StoreError::InvalidRow(e.to_string()))?;
                let version = Version::new(row.try_get("version")?)
                    .map_err(|e| StoreError::InvalidRow(e.to_string()))?;
                let Json(objects): Json<Vec<ObjectRow>> = row.try_get("objects")?;
                let fingerprint = objects
                    .into_iter()
                    .map(|(kind, name, definition)| {
                        ObjectKind::parse(&kind)
                            .map(|kind| (kind, name, definition))
                            .ok_or_else(|| StoreError::InvalidRow(format!("object kind {kind:?}")))
                    })
                    .collect::<Result<Fingerprint, _>>()?;
                let key = ExpectedKey {
                    isolation,
                    version,
                    server_major: row.try_get("server_major")?,
                };
                let expected = Expected::new(row.try_get("set_checksum")?, fingerprint);
                Ok((key, expected))
            })
            .collect()
    }

    /// Keeps `expected` for `key`, replacing one built from other migrations.
    ///
    /// # Errors
    /// A database error.
    pub async fn record_expected_fingerprint(
        &self,
        key: ExpectedKey,
        expected: &Expected,
    ) -> Result<(), StoreError> {
        let objects: Vec<(&str, &str, &str)> = expected
            .fingerprint
            .objects()
            .map(|(kind, name, definition)| (kind.as_str(), name, definition))
            .collect();
        sqlx::query(
            "INSERT INTO schema_fingerprints (isolation, version, server_major, set_checksum, digest, objects)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (isolation, version, server_major) DO UPDATE
                SET set_checksum = EXCLUDED.set_checksum, digest = EXCLUDED.digest,
                    objects = EXCLUDED.objects, computed_at = now()",
        )
        .bind(key.isolation.as_str())
        .bind(key.version.get())
        .bind(key.server_major)
        .bind(&expected.set_checksum)
        .bind(expected.digest())
        .bind(Json(objects))
        .execute(self.postgres()?)
        .await
        .map_err(not_migrated("schema_fingerprints"))?;
        Ok(())
    }

    /// The tenants a drift check reads: active and suspended ones, of `server` and `slug` when
    /// given, by slug.
    ///
    /// # Errors
    /// A database error, or a row this build cannot read.
    pub async fn drift_candidates(
        &self,
        server: Option<&ServerName>,
        slug: Option<&TenantSlug>,
    ) -> Result<Vec<DriftCandidate>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, slug, coalesce(server, 'default') AS server, isolation, schema_version
               FROM tenants
              WHERE status IN ($1, $2)
                AND ($3::text IS NULL OR coalesce(server, 'default') = $3)
                AND ($4::text IS NULL OR slug = $4)
              ORDER BY slug",
        )
        .bind(TenantStatus::Active.as_str())
        .bind(TenantStatus::Suspended.as_str())
        .bind(server.map(ServerName::as_str))
        .bind(slug.map(TenantSlug::as_str))
        .fetch_all(self.postgres()?)
        .await?;
        rows.into_iter()
            .map(|row| {
                let invalid = |e: &dyn std::fmt::Display| StoreError::InvalidRow(e.to_string());
                let slug: String = row.try_get("slug")?;
                let server: String = row.try_get("server")?;
                let isolation: String = row.try_get("isolation")?;
                Ok(DriftCandidate {
                    id: row.try_get("id")?,
                    slug: TenantSlug::parse(&slug).map_err(|e| invalid(&e))?,
                    server: ServerName::parse(&server).map_err(|e| invalid(&e))?,
                    isolation: Isolation::from_str(&isolation).map_err(|e| invalid(&e))?,
                    schema_version: Version::new(row.try_get("schema_version")?)
                        .map_err(|e| invalid(&e))?,
                })
            })
            .collect()
    }

    /// The kept stamps of `tenants` (those that have one), each with its `tenant_drift` row if
    /// any. One query however many tenants.
    ///
    /// # Errors
    /// A database error, or a row this build cannot read.
    pub async fn kept_results(
        &self,
        tenants: &[Uuid],
    ) -> Result<HashMap<Uuid, KeptResult>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.tenant_id, s.server, s.schema_version, s.expected_digest, s.stamp, s.digest,
                    d.digest AS drift_digest, d.differences
               FROM tenant_catalog_stamps s
               LEFT JOIN tenant_drift d
                 ON d.tenant_id = s.tenant_id AND d.schema_version = s.schema_version
                AND d.expected_digest = s.expected_digest
              WHERE s.tenant_id = ANY($1)",
        )
        .bind(tenants)
        .fetch_all(self.postgres()?)
        .await
        .map_err(not_migrated("tenant_catalog_stamps"))?;
        rows.into_iter()
            .map(|row| {
                let invalid = |e: &dyn std::fmt::Display| StoreError::InvalidRow(e.to_string());
                let server: String = row.try_get("server")?;
                let stamp = KeptStamp {
                    tenant_id: row.try_get("tenant_id")?,
                    server: ServerName::parse(&server).map_err(|e| invalid(&e))?,
                    schema_version: Version::new(row.try_get("schema_version")?)
                        .map_err(|e| invalid(&e))?,
                    expected_digest: row.try_get("expected_digest")?,
                    stamp: CatalogStamp::new(row.try_get("stamp")?),
                    digest: row.try_get("digest")?,
                };
                let drift_digest: Option<String> = row.try_get("drift_digest")?;
                let differences: Option<Json<Vec<String>>> = row.try_get("differences")?;
                let drift = drift_digest.zip(differences.map(|Json(lines)| lines));
                Ok((stamp.tenant_id, KeptResult { stamp, drift }))
            })
            .collect()
    }

    /// Records a check of the tenants `checked`: those of `drifted` are (again) drifted, the
    /// others clean; `stamps` are the stamps of the tenants read in full, replacing theirs. One
    /// transaction: the fleet gauges never see half a check, and a stamp is never kept without
    /// the result it vouches for.
    ///
    /// # Errors
    /// A database error.
    pub async fn record_drift(
        &self,
        checked: &[Uuid],
        drifted: &[DriftRecord],
        stamps: &[KeptStamp],
    ) -> Result<(), StoreError> {
        let mut tx = self.postgres()?.begin().await?;
        sqlx::query("DELETE FROM tenant_drift WHERE tenant_id = ANY($1)")
            .bind(checked)
            .execute(&mut *tx)
            .await
            .map_err(not_migrated("tenant_drift"))?;
        let ids: Vec<Uuid> = drifted.iter().map(|r| r.tenant_id).collect();
        let versions: Vec<i64> = drifted.iter().map(|r| r.schema_version.get()).collect();
        let expected: Vec<&str> = drifted.iter().map(|r| r.expected_digest.as_str()).collect();
        let digests: Vec<&str> = drifted.iter().map(|r| r.digest.as_str()).collect();
        let differences: Vec<String> = drifted
            .iter()
            .map(|r| serde_json::to_string(&r.differences).unwrap_or_else(|_| "[]".to_owned()))
            .collect();
        // One statement however many drifted: a whole fleet changed by one bad script is one
        // round trip, not ten thousand.
        sqlx::query(
            "INSERT INTO tenant_drift (tenant_id, schema_version, expected_digest, digest, differences)
             SELECT id, version, expected, digest, differences::jsonb
               FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::text[])
                 AS d(id, version, expected, digest, differences)",
        )
        .bind(&ids)
        .bind(&versions)
        .bind(&expected)
        .bind(&digests)
        .bind(&differences)
        .execute(&mut *tx)
        .await?;
        let ids: Vec<Uuid> = stamps.iter().map(|s| s.tenant_id).collect();
        let servers: Vec<&str> = stamps.iter().map(|s| s.server.as_str()).collect();
        let versions: Vec<i64> = stamps.iter().map(|s| s.schema_version.get()).collect();
        let expected: Vec<&str> = stamps.iter().map(|s| s.expected_digest.as_str()).collect();
        let taken: Vec<&str> = stamps.iter().map(|s| s.stamp.as_str()).collect();
        let digests: Vec<&str> = stamps.iter().map(|s| s.digest.as_str()).collect();
        // One statement too: a first check of ten thousand tenants keeps ten thousand stamps.
        sqlx::query(
            "INSERT INTO tenant_catalog_stamps
                    (tenant_id, server, schema_version, expected_digest, stamp, digest)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[])
             ON CONFLICT (tenant_id) DO UPDATE
                SET server = EXCLUDED.server, schema_version = EXCLUDED.schema_version,
                    expected_digest = EXCLUDED.expected_digest, stamp = EXCLUDED.stamp,
                    digest = EXCLUDED.digest, read_at = now()",
        )
        .bind(&ids)
        .bind(&servers)
        .bind(&versions)
        .bind(&expected)
        .bind(&taken)
        .bind(&digests)
        .execute(&mut *tx)
        .await
        .map_err(not_migrated("tenant_catalog_stamps"))?;
        tx.commit().await?;
        Ok(())
    }
}
