//! `audit_events`: the platform's trail of lifecycle events, one row per event id.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, QueryBuilder, Row};
use uuid::Uuid;

use super::{PlatformDb, StoreError};

/// One event as the auditor stores it (personal data already removed).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: Uuid,
    pub event_type: String,
    pub tenant_id: Option<Uuid>,
    pub source: String,
    pub occurred_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// A row of the trail, with the tenant's slug when the tenant is known.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub record: AuditRecord,
    pub tenant_slug: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// Which rows `audit` returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant_id: Option<Uuid>,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: u32,
}

impl PlatformDb {
    /// Stores `records` in one statement; an id already stored is skipped (a redelivered event
    /// is stored once). Returns how many were new.
    ///
    /// # Errors
    /// A database error; [`StoreError::is_transient`] says whether to retry.
    pub async fn insert_audit_events(&self, records: &[AuditRecord]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        match self {
            PlatformDb::Postgres(pool) => {
                // One round trip for the whole batch: the columns travel as arrays.
                let inserted = sqlx::query(
                    "INSERT INTO audit_events (id, type, tenant_id, source, occurred_at, data)
                     SELECT id, type, tenant_id, source, occurred_at, data::jsonb
                     FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[])
                          AS batch (id, type, tenant_id, source, occurred_at, data)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(records.iter().map(|r| r.id).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.event_type.clone()).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.tenant_id).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.source.clone()).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.data.to_string()).collect::<Vec<_>>())
                .execute(pool)
                .await
                .map_err(super::not_migrated("audit_events"))?;
                Ok(inserted.rows_affected())
            }
            PlatformDb::Sqlite(pool) => {
                // SQLite caps bound parameters (32766); six per row, so chunks of 1000 rows.
                let mut inserted = 0;
                let mut transaction = pool.begin().await?;
                for chunk in records.chunks(1000) {
                    let mut insert = QueryBuilder::new(
                        "INSERT OR IGNORE INTO audit_events (id, type, tenant_id, source, occurred_at, data) ",
                    );
                    insert.push_values(chunk, |mut row, r| {
                        row.push_bind(r.id.to_string())
                            .push_bind(&r.event_type)
                            .push_bind(r.tenant_id.map(|id| id.to_string()))
                            .push_bind(&r.source)
                            .push_bind(
                                r.occurred_at
                                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            )
                            .push_bind(r.data.to_string());
                    });
                    inserted += insert
                        .build()
                        .execute(&mut *transaction)
                        .await
                        .map_err(super::not_migrated("audit_events"))?
                        .rows_affected();
                }
                transaction.commit().await?;
                Ok(inserted)
            }
        }
    }

    /// The trail, newest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let limit = i64::from(filter.limit.max(1));
        match self {
            PlatformDb::Postgres(pool) => {
                let rows = sqlx::query(
                    "SELECT e.id, e.type, e.tenant_id, e.source, e.occurred_at, e.recorded_at, e.data, t.slug
                     FROM audit_events e LEFT JOIN tenants t ON t.id = e.tenant_id
                     WHERE ($1::uuid IS NULL OR e.tenant_id = $1)
                       AND ($2::text IS NULL OR e.type = $2)
                       AND ($3::timestamptz IS NULL OR e.occurred_at >= $3)
                     ORDER BY e.occurred_at DESC, e.id DESC
                     LIMIT $4",
                )
                .bind(filter.tenant_id)
                .bind(filter.event_type.as_deref())
                .bind(filter.since)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(super::not_migrated("audit_events"))?;
                rows.iter()
                    .map(|row| {
                        Ok(AuditRow {
                            record: AuditRecord {
                                id: row.try_get("id")?,
                                event_type: row.try_get("type")?,
                                tenant_id: row.try_get("tenant_id")?,
                                source: row.try_get("source")?,
                                occurred_at: row.try_get("occurred_at")?,
                                data: row.try_get("data")?,
                            },
                            tenant_slug: row.try_get("slug")?,
                            recorded_at: row.try_get("recorded_at")?,
                        })
                    })
                    .collect()
            }
            PlatformDb::Sqlite(pool) => {
                let rows = sqlx::query(AssertSqlSafe(
                    "SELECT e.id, e.type, e.tenant_id, e.source, e.occurred_at, e.recorded_at, e.data, t.slug
                     FROM audit_events e LEFT JOIN tenants t ON t.id = e.tenant_id
                     WHERE (?1 IS NULL OR e.tenant_id = ?1)
                       AND (?2 IS NULL OR e.type = ?2)
                       AND (?3 IS NULL OR e.occurred_at >= ?3)
                     ORDER BY e.occurred_at DESC, e.id DESC
                     LIMIT ?4",
                ))
                .bind(filter.tenant_id.map(|id| id.to_string()))
                .bind(filter.event_type.as_deref())
                .bind(filter.since.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)))
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(super::not_migrated("audit_events"))?;
                rows.iter()
                    .map(|row| {
                        let text = |column: &str| row.try_get::<String, _>(column);
                        let time = |column: &str| -> Result<DateTime<Utc>, StoreError> {
                            let value = text(column)?;
                            DateTime::parse_from_rfc3339(&value)
                                .map(|t| t.with_timezone(&Utc))
                                .map_err(|e| {
                                    StoreError::InvalidRow(format!("{column} {value:?}: {e}"))
                                })
                        };
                        let uuid = |value: String| {
                            Uuid::parse_str(&value)
                                .map_err(|e| StoreError::InvalidRow(format!("{value:?}: {e}")))
                        };
                        Ok(AuditRow {
                            record: AuditRecord {
                                id: uuid(text("id")?)?,
                                event_type: text("type")?,
                                tenant_id: row
                                    .try_get::<Option<String>, _>("tenant_id")?
                                    .map(uuid)
                                    .transpose()?,
                                source: text("source")?,
                                occurred_at: time("occurred_at")?,
                                data: serde_json::from_str(&text("data")?)
                                    .map_err(|e| StoreError::InvalidRow(format!("data: {e}")))?,
                            },
                            tenant_slug: row.try_get("slug")?,
                            recorded_at: time("recorded_at")?,
                        })
                    })
                    .collect()
            }
        }
    }
}
