//! What `migrations check` and the summaries read of a tenant's schema: its shape (tables,
//! columns, indexes, constraints) and its row counts, from the PostgreSQL catalogs.

use std::collections::BTreeMap;

use sqlx::AssertSqlSafe;
use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::sql_string;
use crate::backend::{BackendError, ColumnShape, SchemaSnapshot, TableShape};
use crate::history::HISTORY_TABLE;
use crate::sql::quote_ident;

/// The number of rows of every table of `schema` (history table excluded).
pub(super) async fn row_counts(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<BTreeMap<String, i64>, BackendError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> $2
         ORDER BY c.relname",
    )
    .bind(schema)
    .bind(HISTORY_TABLE)
    .fetch_all(&mut *conn)
    .await?;
    if tables.is_empty() {
        return Ok(BTreeMap::new());
    }
    let counts = tables
        .iter()
        .map(|table| {
            format!(
                "SELECT {} AS name, count(*) AS n FROM {}.{}",
                sql_string(table),
                quote_ident(schema),
                quote_ident(table)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows = sqlx::raw_sql(AssertSqlSafe(counts))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("name")?, row.try_get("n")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(BackendError::from)
}

/// The tables, columns, indexes and constraints of `schema` (history table excluded), with
/// the schema's name taken out of the definitions.
pub(super) async fn snapshot(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<SchemaSnapshot, BackendError> {
    let mut snapshot = SchemaSnapshot::default();
    let columns = sqlx::query(
        "SELECT c.relname AS table_name, a.attname AS column_name,
                format_type(a.atttypid, a.atttypmod) AS data_type, a.attnotnull AS not_null,
                pg_get_expr(d.adbin, d.adrelid) AS default_value
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> $2
         ORDER BY c.relname, a.attnum",
    )
    .bind(schema)
    .bind(HISTORY_TABLE)
    .fetch_all(&mut *conn)
    .await?;
    for row in columns {
        let table: String = row.try_get("table_name")?;
        snapshot
            .tables
            .entry(table)
            .or_insert_with(TableShape::default)
            .columns
            .push(ColumnShape {
                name: row.try_get("column_name")?,
                data_type: row.try_get("data_type")?,
                not_null: row.try_get("not_null")?,
                default: row.try_get("default_value")?,
            });
    }
    let qualifier = format!("{}.", quote_ident(schema));
    let plain_qualifier = format!("{schema}.");
    let unqualify = |definition: String| {
        definition
            .replace(&qualifier, "")
            .replace(&plain_qualifier, "")
    };
    let indexes = sqlx::query(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename <> $2",
    )
    .bind(schema)
    .bind(HISTORY_TABLE)
    .fetch_all(&mut *conn)
    .await?;
    for row in indexes {
        let table: String = row.try_get("tablename")?;
        let entry: &mut TableShape = snapshot.tables.entry(table).or_default();
        entry.indexes.insert(
            row.try_get("indexname")?,
            unqualify(row.try_get("indexdef")?),
        );
    }
    let constraints = sqlx::query(
        "SELECT c.relname AS table_name, k.conname AS name, pg_get_constraintdef(k.oid) AS definition
         FROM pg_constraint k
         JOIN pg_class c ON c.oid = k.conrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname <> $2",
    )
    .bind(schema)
    .bind(HISTORY_TABLE)
    .fetch_all(&mut *conn)
    .await?;
    for row in constraints {
        let table: String = row.try_get("table_name")?;
        let entry: &mut TableShape = snapshot.tables.entry(table).or_default();
        entry
            .constraints
            .insert(row.try_get("name")?, unqualify(row.try_get("definition")?));
    }
    Ok(snapshot)
}
