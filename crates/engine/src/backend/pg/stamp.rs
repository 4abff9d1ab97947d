//! Catalog stamps read from the PostgreSQL catalogs: many schemas of one database in one query,
//! counting and hashing catalog rows' identities and `xmin`s, never deparsing a definition. A
//! stamp is what lets a drift check skip reading a fingerprint again: see
//! [`crate::fingerprint::CatalogStamp`] for what it covers and what it does not.

use std::collections::BTreeMap;

use sqlx::Row as _;
use sqlx::postgres::PgConnection;

use crate::backend::BackendError;
use crate::fingerprint::CatalogStamp;
use crate::history::HISTORY_TABLE;

/// Per schema of `$1`: how many catalog rows make up what its fingerprint reads, and the sum of
/// a hash of each row's identity and `xmin`. Every DDL statement and every GRANT writes a new
/// version of the rows it changes (a new `xmin`), a dropped object takes its rows away, a new
/// one adds some. `VACUUM` and `ANALYZE` update `pg_class` rows in place (`relpages`,
/// `reltuples`, `relhasindex`...), keeping their `xmin`: checked on PostgreSQL 15, a
/// `VACUUM ANALYZE` of a table with 10,000 new rows left its and its indexes' `xmin`
/// unchanged, as did `VACUUM FREEZE pg_class` (the raw `xmin` stays readable once frozen);
/// `VACUUM FULL`, `CLUSTER` and `REINDEX` write new rows (a new relfilenode), so they cost a
/// full read, never a missed change. The history table and what hangs off it are left out, as
/// in the fingerprint: applying a migration writes its rows, not the schema's shape (though
/// the migration's own DDL does).
const STAMPS: &str = "
WITH ns AS (
  SELECT n.oid, n.nspname
    FROM unnest($1::text[]) AS wanted(name)
    JOIN pg_namespace n ON n.nspname = wanted.name
),
rel AS (
  SELECT c.oid, ns.nspname, c.xmin
    FROM ns JOIN pg_class c ON c.relnamespace = ns.oid
   WHERE left(c.relname, length($2)) <> $2
),
enum_type AS (
  SELECT t.oid, ns.nspname, t.xmin
    FROM ns JOIN pg_type t ON t.typnamespace = ns.oid
   WHERE t.typrelid = 0
),
row_version (schema, id, row_xmin) AS (
  SELECT n.nspname, 'n' || n.oid, n.xmin::text FROM ns JOIN pg_namespace n ON n.oid = ns.oid
  UNION ALL
  SELECT nspname, 'c' || oid, xmin::text FROM rel
  UNION ALL
  SELECT r.nspname, 'a' || a.attrelid || '.' || a.attnum, a.xmin::text
    FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0
  UNION ALL
  SELECT r.nspname, 'd' || d.oid, d.xmin::text FROM rel r JOIN pg_attrdef d ON d.adrelid = r.oid
  UNION ALL
  SELECT r.nspname, 'k' || k.oid, k.xmin::text FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
  UNION ALL
  SELECT r.nspname, 'i' || i.indexrelid, i.xmin::text FROM rel r JOIN pg_index i ON i.indexrelid = r.oid
  UNION ALL
  SELECT r.nspname, 't' || t.oid, t.xmin::text FROM rel r JOIN pg_trigger t ON t.tgrelid = r.oid
  UNION ALL
  SELECT r.nspname, 'w' || w.oid, w.xmin::text FROM rel r JOIN pg_rewrite w ON w.ev_class = r.oid
  UNION ALL
  SELECT r.nspname, 's' || s.seqrelid, s.xmin::text FROM rel r JOIN pg_sequence s ON s.seqrelid = r.oid
  UNION ALL
  SELECT ns.nspname, 'p' || p.oid, p.xmin::text FROM ns JOIN pg_proc p ON p.pronamespace = ns.oid
  UNION ALL
  SELECT nspname, 'y' || oid, xmin::text FROM enum_type
  UNION ALL
  SELECT e.nspname, 'e' || v.oid, v.xmin::text FROM enum_type e JOIN pg_enum v ON v.enumtypid = e.oid
)
SELECT schema, count(*)::text || ':' || sum(hashtextextended(row_xmin || ':' || id, 0))::text
  FROM row_version
 GROUP BY schema";

/// The stamps of `schemas`, of the database `conn` is connected to. A schema that does not
/// exist has none.
///
/// # Errors
/// A database error.
pub async fn read_stamps(
    conn: &mut PgConnection,
    schemas: &[String],
) -> Result<BTreeMap<String, CatalogStamp>, BackendError> {
    // On a large catalog the estimated cost passes `jit_above_cost`, and compiling would cost
    // more than running it, as for the fingerprints; a session setting, since the caller may or
    // may not be in a transaction. Nothing here opens a tenant's relation (no deparsing), so no
    // lock timeout either.
    sqlx::raw_sql("SET jit = off").execute(&mut *conn).await?;
    let rows = sqlx::query(STAMPS)
        .bind(schemas)
        .bind(HISTORY_TABLE)
        .fetch_all(&mut *conn)
        .await;
    let reset = sqlx::raw_sql("RESET jit").execute(&mut *conn).await;
    let rows = rows?;
    reset?;
    rows.into_iter()
        .map(|row| {
            let schema: String = row.try_get(0)?;
            let stamp: String = row.try_get(1)?;
            Ok((schema, CatalogStamp::new(stamp)))
        })
        .collect()
}
