//! `audit_events`: the platform's trail of lifecycle events, one row per event id and content.
//!
//! Every row carries the event's content digest (SHA-256 of its type, source, subject and data
//! as received: [`domain::message::content_digest`]). A redelivered event (same id, same digest)
//! is stored once. An event whose id is already stored with another digest (a producer reusing
//! an id for another event) is stored too, as a *conflict row*: under the id [`conflict_id`]
//! derives from (the reused id, its digest), with `conflicts_with` naming the reused id. So the
//! trail never drops an event that consumers acted on, and a redelivery of the conflicting
//! event is stored once as well.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, QueryBuilder, Row};
use uuid::Uuid;

use super::{PlatformDb, StoreError};
use domain::message::content_digest;

/// One event as the auditor stores it (personal data already removed).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The event id; on a conflict row, the id derived by [`conflict_id`].
    pub id: Uuid,
    pub event_type: String,
    pub tenant_id: Option<Uuid>,
    pub source: String,
    pub occurred_at: DateTime<Utc>,
    pub data: serde_json::Value,
    /// SHA-256 of the event's content as received (before redaction):
    /// [`AnyEvent::content_digest`](domain::message::AnyEvent::content_digest). `None` on rows
    /// stored before the digest was recorded.
    pub content_digest: Option<[u8; 32]>,
    /// On a conflict row: the event id the producer reused, already stored with other content.
    pub conflicts_with: Option<Uuid>,
}

/// A row of the trail, with the tenant's slug when the tenant is known.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// The row; `record.conflicts_with` is set on a conflict row.
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

/// What [`PlatformDb::insert_audit_events`] did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditInsert {
    /// Rows written, conflict rows included.
    pub stored: u64,
    /// Records already stored with the same content (redeliveries), including repeats within
    /// the batch.
    pub duplicates: u64,
    /// The conflict rows written by this batch.
    pub conflicts: Vec<AuditConflict>,
}

/// A conflict row just written: an event whose id was already stored with other content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConflict {
    /// The conflict row's own id ([`conflict_id`]).
    pub id: Uuid,
    /// The id the event was published under.
    pub conflicts_with: Uuid,
    pub event_type: String,
    /// As stored (redacted).
    pub source: String,
}

/// The id of the conflict row of an event published under `original` whose content digest is
/// `digest`: a UUIDv8 from the first 16 bytes of
/// SHA-256(`"tenancy/audit/conflict/"` ‖ the 16 bytes of `original` ‖ `digest`). Deterministic, so
/// a redelivery of the conflicting event finds its row and is stored once.
pub fn conflict_id(original: Uuid, digest: &[u8; 32]) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(b"tenancy/audit/conflict/");
    hasher.update(original.as_bytes());
    hasher.update(digest);
    let hash = hasher.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    Uuid::new_v8(bytes)
}

/// A record's digest; a record made without one gets the digest of what it holds (its subject
/// unknown), so that it can still be compared and given a conflict id.
fn digest_of(record: &AuditRecord) -> [u8; 32] {
    record
        .content_digest
        .unwrap_or_else(|| content_digest(&record.event_type, &record.source, None, &record.data))
}

/// What is stored under an id, as far as telling its content apart needs.
struct Stored {
    digest: Option<[u8; 32]>,
    event_type: String,
    source: String,
    /// Read only when `digest` is `None`.
    data: Option<serde_json::Value>,
}

impl Stored {
    /// Whether `record` is the stored event again. A row stored before digests were recorded
    /// is compared on what it holds: type, source and (redacted) data.
    fn holds(&self, record: &AuditRecord) -> bool {
        match self.digest {
            Some(digest) => digest == digest_of(record),
            None => {
                self.event_type == record.event_type
                    && self.source == record.source
                    && self.data.as_ref() == Some(&record.data)
            }
        }
    }
}

/// The conflict row of `record`, whose id is already stored with other content.
fn conflict_row(record: &AuditRecord) -> AuditRecord {
    let digest = digest_of(record);
    AuditRecord {
        id: conflict_id(record.id, &digest),
        content_digest: Some(digest),
        conflicts_with: Some(record.id),
        ..record.clone()
    }
}

impl PlatformDb {
    /// Stores `records`: each new event id in one statement for the batch; a redelivered event
    /// (an id already stored with the same content, or repeated in the batch) is skipped; an
    /// event whose id is stored with other content is stored as a conflict row (see the module
    /// docs). Only the records the first statement did not take are looked at again, so a
    /// batch of new events costs one round trip. Safe to run again after a failure, and
    /// concurrently from several auditors.
    ///
    /// # Errors
    /// A database error; [`StoreError::is_transient`] says whether to retry.
    pub async fn insert_audit_events(
        &self,
        records: &[AuditRecord],
    ) -> Result<AuditInsert, StoreError> {
        // The first record of each id, and the others of distinct content; exact repeats
        // (the same id and digest) are dropped here.
        let mut first_ids: HashSet<Uuid> = HashSet::with_capacity(records.len());
        let mut seen: HashSet<(Uuid, [u8; 32])> = HashSet::with_capacity(records.len());
        let mut first: Vec<&AuditRecord> = Vec::with_capacity(records.len());
        let mut others: Vec<&AuditRecord> = Vec::new();
        for record in records {
            if !seen.insert((record.id, digest_of(record))) {
                continue;
            }
            if first_ids.insert(record.id) {
                first.push(record);
            } else {
                others.push(record);
            }
        }
        if first.is_empty() {
            return Ok(AuditInsert::default());
        }

        let taken = self.insert_rows(&first).await?;
        others.extend(first.iter().filter(|r| !taken.contains(&r.id)));
        let mut stored = taken.len() as u64;
        let mut conflicts = Vec::new();
        if !others.is_empty() {
            let ids: Vec<Uuid> = others
                .iter()
                .map(|r| r.id)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let existing = self.stored_contents(&ids).await?;
            let mut again: Vec<AuditRecord> = Vec::new();
            let mut again_ids: HashSet<Uuid> = HashSet::new();
            for record in others {
                let row = match existing.get(&record.id) {
                    Some(stored) if stored.holds(record) => continue,
                    Some(_) => conflict_row(record),
                    // Not stored after all (removed since the insert): store it as it is.
                    None => record.clone(),
                };
                if again_ids.insert(row.id) {
                    again.push(row);
                }
            }
            let rows: Vec<&AuditRecord> = again.iter().collect();
            let taken = self.insert_rows(&rows).await?;
            stored += taken.len() as u64;
            conflicts = again
                .iter()
                .filter(|row| taken.contains(&row.id))
                .filter_map(|row| {
                    Some(AuditConflict {
                        id: row.id,
                        conflicts_with: row.conflicts_with?,
                        event_type: row.event_type.clone(),
                        source: row.source.clone(),
                    })
                })
                .collect();
        }
        Ok(AuditInsert {
            stored,
            duplicates: (records.len() as u64).saturating_sub(stored),
            conflicts,
        })
    }

    /// Inserts `records`, skipping ids already stored; returns the ids it stored.
    async fn insert_rows(&self, records: &[&AuditRecord]) -> Result<HashSet<Uuid>, StoreError> {
        if records.is_empty() {
            return Ok(HashSet::new());
        }
        match self {
            PlatformDb::Postgres(pool) => {
                // One round trip for the whole batch: the columns travel as arrays.
                let taken: Vec<Uuid> = sqlx::query_scalar(
                    "INSERT INTO audit_events (id, type, tenant_id, source, occurred_at, data, content_digest, conflicts_with)
                     SELECT id, type, tenant_id, source, occurred_at, data::jsonb, content_digest, conflicts_with
                     FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[], $7::bytea[], $8::uuid[])
                          AS batch (id, type, tenant_id, source, occurred_at, data, content_digest, conflicts_with)
                     ON CONFLICT (id) DO NOTHING
                     RETURNING id",
                )
                .bind(records.iter().map(|r| r.id).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.event_type.clone()).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.tenant_id).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.source.clone()).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.data.to_string()).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.content_digest.map(Vec::from)).collect::<Vec<_>>())
                .bind(records.iter().map(|r| r.conflicts_with).collect::<Vec<_>>())
                .fetch_all(pool)
                .await
                .map_err(super::not_migrated("audit_events"))?;
                Ok(taken.into_iter().collect())
            }
            PlatformDb::Sqlite(pool) => {
                // SQLite caps bound parameters (32766); eight per row, so chunks of 1000 rows.
                let mut taken = HashSet::with_capacity(records.len());
                let mut transaction = pool.begin().await?;
                for chunk in records.chunks(1000) {
                    let mut insert = QueryBuilder::new(
                        "INSERT OR IGNORE INTO audit_events (id, type, tenant_id, source, occurred_at, data, content_digest, conflicts_with) ",
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
                            .push_bind(r.data.to_string())
                            .push_bind(r.content_digest.map(Vec::from))
                            .push_bind(r.conflicts_with.map(|id| id.to_string()));
                    });
                    insert.push(" RETURNING id");
                    let ids: Vec<String> = insert
                        .build_query_scalar()
                        .fetch_all(&mut *transaction)
                        .await
                        .map_err(super::not_migrated("audit_events"))?;
                    for id in ids {
                        taken.insert(parse_uuid(id)?);
                    }
                }
                transaction.commit().await?;
                Ok(taken)
            }
        }
    }

    /// The content of the rows stored under `ids`.
    async fn stored_contents(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Stored>, StoreError> {
        let mut stored = HashMap::with_capacity(ids.len());
        match self {
            PlatformDb::Postgres(pool) => {
                // The data only of rows without a digest: a redelivery storm reads little.
                let rows = sqlx::query(
                    "SELECT id, content_digest, type, source,
                            CASE WHEN content_digest IS NULL THEN data END AS data
                     FROM audit_events WHERE id = ANY($1)",
                )
                .bind(ids)
                .fetch_all(pool)
                .await
                .map_err(super::not_migrated("audit_events"))?;
                for row in rows {
                    stored.insert(
                        row.try_get("id")?,
                        Stored {
                            digest: digest_column(row.try_get("content_digest")?)?,
                            event_type: row.try_get("type")?,
                            source: row.try_get("source")?,
                            data: row.try_get("data")?,
                        },
                    );
                }
            }
            PlatformDb::Sqlite(pool) => {
                for chunk in ids.chunks(1000) {
                    let mut select = QueryBuilder::new(
                        "SELECT id, content_digest, type, source,
                                CASE WHEN content_digest IS NULL THEN data END AS data
                         FROM audit_events WHERE id IN (",
                    );
                    let mut list = select.separated(", ");
                    for id in chunk {
                        list.push_bind(id.to_string());
                    }
                    select.push(")");
                    let rows = select
                        .build()
                        .fetch_all(pool)
                        .await
                        .map_err(super::not_migrated("audit_events"))?;
                    for row in rows {
                        let data = row
                            .try_get::<Option<String>, _>("data")?
                            .map(|text| json_column(&text))
                            .transpose()?;
                        stored.insert(
                            parse_uuid(row.try_get("id")?)?,
                            Stored {
                                digest: digest_column(row.try_get("content_digest")?)?,
                                event_type: row.try_get("type")?,
                                source: row.try_get("source")?,
                                data,
                            },
                        );
                    }
                }
            }
        }
        Ok(stored)
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
                    "SELECT e.id, e.type, e.tenant_id, e.source, e.occurred_at, e.recorded_at, e.data,
                            e.content_digest, e.conflicts_with, t.slug
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
                                content_digest: digest_column(row.try_get("content_digest")?)?,
                                conflicts_with: row.try_get("conflicts_with")?,
                            },
                            tenant_slug: row.try_get("slug")?,
                            recorded_at: row.try_get("recorded_at")?,
                        })
                    })
                    .collect()
            }
            PlatformDb::Sqlite(pool) => {
                let rows = sqlx::query(AssertSqlSafe(
                    "SELECT e.id, e.type, e.tenant_id, e.source, e.occurred_at, e.recorded_at, e.data,
                            e.content_digest, e.conflicts_with, t.slug
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
                        let optional_uuid = |column: &str| -> Result<Option<Uuid>, StoreError> {
                            row.try_get::<Option<String>, _>(column)?
                                .map(parse_uuid)
                                .transpose()
                        };
                        Ok(AuditRow {
                            record: AuditRecord {
                                id: parse_uuid(text("id")?)?,
                                event_type: text("type")?,
                                tenant_id: optional_uuid("tenant_id")?,
                                source: text("source")?,
                                occurred_at: time("occurred_at")?,
                                data: json_column(&text("data")?)?,
                                content_digest: digest_column(row.try_get("content_digest")?)?,
                                conflicts_with: optional_uuid("conflicts_with")?,
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

fn parse_uuid(value: String) -> Result<Uuid, StoreError> {
    Uuid::parse_str(&value).map_err(|e| StoreError::InvalidRow(format!("{value:?}: {e}")))
}

fn json_column(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::InvalidRow(format!("data: {e}")))
}

fn digest_column(bytes: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, StoreError> {
    bytes
        .map(|bytes| {
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                StoreError::InvalidRow(format!(
                    "content_digest: {} bytes, not a SHA-256 (32)",
                    bytes.len()
                ))
            })
        })
        .transpose()
}
