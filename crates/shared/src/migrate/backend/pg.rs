//! The PostgreSQL session shared by the schema-per-tenant and database-per-tenant backends.
//! They differ only in how the connection is obtained and which schema is the tenant's.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgDatabaseError, PgErrorPosition};
use sqlx::{AssertSqlSafe, Connection, Postgres, Row};

use super::{BackendError, ColumnShape, SchemaSnapshot, Session, TableShape, Timeouts};
use crate::migrate::history::{AppliedMigration, HISTORY_TABLE, HistoryWrite};
use crate::migrate::kinds::{Dialect, SetKind};
use crate::migrate::version::Version;
use crate::tenant::quote_ident;

/// A pooled connection (schema-per-tenant) or a connection of its own (database-per-tenant).
pub(super) enum PgConn {
    Pooled(PoolConnection<Postgres>),
    Owned(PgConnection),
}

impl Deref for PgConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            PgConn::Pooled(conn) => conn,
            PgConn::Owned(conn) => conn,
        }
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            PgConn::Pooled(conn) => conn,
            PgConn::Owned(conn) => conn,
        }
    }
}

/// A session on one schema of one database.
pub struct PgSession {
    conn: Option<PgConn>,
    /// Unquoted schema name: `tenant_<slug>`, or `public`.
    schema: String,
    /// `"schema"."_tenancy_history"`: always qualified, never resolved through `search_path`.
    history: String,
    lock_key: i64,
    /// Session state that must not leak into the next user of a pooled connection.
    locked: bool,
    in_transaction: bool,
    session_settings: bool,
}

impl PgSession {
    pub(super) fn new(conn: PgConn, schema: String, lock_key: i64) -> Self {
        let history = format!("{}.{}", quote_ident(&schema), quote_ident(HISTORY_TABLE));
        PgSession {
            conn: Some(conn),
            schema,
            history,
            lock_key,
            locked: false,
            in_transaction: false,
            session_settings: false,
        }
    }

    fn conn(&mut self) -> &mut PgConnection {
        // `conn` is only taken by `close` (which consumes the session) and `Drop`.
        self.conn.as_mut().expect("a PgSession is used only while it holds its connection")
    }

    fn dirty(&self) -> bool {
        self.locked || self.in_transaction || self.session_settings
    }

    async fn simple(&mut self, sql: String) -> Result<(), BackendError> {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(self.conn()).await?;
        Ok(())
    }

    fn settings(&self, scope: &str, timeouts: Timeouts) -> String {
        // `search_path` holds only the target's schema: the migration's unqualified names land
        // there, and it cannot see another tenant's objects by accident.
        format!(
            "SET {scope} search_path TO {}; SET {scope} lock_timeout = '{}ms'; SET {scope} statement_timeout = '{}ms'",
            quote_ident(&self.schema),
            timeouts.lock.as_millis(),
            timeouts.statement.as_millis()
        )
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        if !self.dirty() {
            return;
        }
        // Dropped while locked or mid-transaction (a panic, a cancelled task, an error that
        // skipped cleanup): close the connection so the server releases the lock and rolls back,
        // instead of handing that state to the pool's next user.
        if let Some(PgConn::Pooled(mut conn)) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

/// Maps a database error's character position to a line of `sql`.
fn with_line(error: sqlx::Error, sql: &str) -> BackendError {
    let line = match &error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .and_then(|pg| match pg.position() {
                Some(PgErrorPosition::Original(position)) => Some(position),
                _ => None,
            })
            .map(|position| {
                let upto: String = sql.chars().take(position.saturating_sub(1)).collect();
                upto.matches('\n').count() + 1
            }),
        _ => None,
    };
    BackendError::Sql { source: error, line }
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Session for PgSession {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn read_history(&mut self, set: SetKind) -> Result<Vec<AppliedMigration>, BackendError> {
        // The simple-query protocol: one round trip, and no prepared statement per schema
        // filling the statement cache (this runs once per tenant on every deploy).
        let sql = format!(
            "SELECT version, description, checksum, success, started_at, finished_at, duration_ms, error, batches_done, rows_done \
             FROM {} WHERE migration_set = {} ORDER BY version",
            self.history,
            sql_string(set.dir_name())
        );
        let rows = match sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(self.conn()).await {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => return Ok(Vec::new()),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3F000") => {
                return Err(BackendError::StorageMissing {
                    storage: format!("schema {}", self.schema),
                });
            }
            Err(e) => return Err(e.into()),
        };
        rows.iter()
            .map(|row| {
                let version: i64 = row.try_get("version")?;
                Ok(AppliedMigration {
                    version: Version::new(version).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    description: row.try_get("description")?,
                    checksum: row.try_get("checksum")?,
                    success: row.try_get("success")?,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
                    duration_ms: row.try_get::<Option<f64>, _>("duration_ms")?.map(|ms| ms.round() as i64),
                    error: row.try_get("error")?,
                    batches_done: row.try_get("batches_done")?,
                    rows_done: row.try_get("rows_done")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(BackendError::from)
    }

    async fn ensure_history_table(&mut self) -> Result<(), BackendError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (
                migration_set text NOT NULL,
                version bigint NOT NULL,
                description text NOT NULL,
                checksum text NOT NULL,
                success boolean NOT NULL,
                started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                finished_at timestamptz,
                duration_ms double precision,
                error text,
                batches_done bigint NOT NULL DEFAULT 0,
                rows_done bigint NOT NULL DEFAULT 0,
                PRIMARY KEY (migration_set, version)
            )",
            self.history
        );
        match self.simple(sql).await {
            Err(BackendError::Sql { source: sqlx::Error::Database(db), .. }) if db.code().as_deref() == Some("3F000") => {
                Err(BackendError::StorageMissing {
                    storage: format!("schema {}", self.schema),
                })
            }
            other => other,
        }
    }

    async fn try_lock(&mut self) -> Result<bool, BackendError> {
        let key = self.lock_key;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(self.conn())
            .await?;
        self.locked = locked;
        Ok(locked)
    }

    async fn unlock(&mut self) -> Result<(), BackendError> {
        let key = self.lock_key;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(self.conn()).await?;
        self.locked = false;
        Ok(())
    }

    async fn begin(&mut self, timeouts: Timeouts) -> Result<(), BackendError> {
        let sql = format!("BEGIN; {}", self.settings("LOCAL", timeouts));
        self.in_transaction = true;
        self.simple(sql).await
    }

    async fn commit(&mut self) -> Result<(), BackendError> {
        self.simple("COMMIT".to_owned()).await?;
        self.in_transaction = false;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        self.simple("ROLLBACK".to_owned()).await?;
        self.in_transaction = false;
        Ok(())
    }

    async fn begin_autocommit(&mut self, timeouts: Timeouts) -> Result<(), BackendError> {
        let sql = self.settings("SESSION", timeouts);
        self.session_settings = true;
        self.simple(sql).await
    }

    async fn end_autocommit(&mut self) -> Result<(), BackendError> {
        self.simple("RESET search_path; RESET lock_timeout; RESET statement_timeout".to_owned())
            .await?;
        self.session_settings = false;
        Ok(())
    }

    async fn execute(&mut self, sql: &str) -> Result<(), BackendError> {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(self.conn())
            .await
            .map(drop)
            .map_err(|e| with_line(e, sql))
    }

    async fn execute_counting(&mut self, sql: &str) -> Result<u64, BackendError> {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(self.conn())
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| with_line(e, sql))
    }

    async fn record(&mut self, set: SetKind, write: HistoryWrite<'_>) -> Result<(), BackendError> {
        let h = self.history.clone();
        let set = set.dir_name();
        let conn = self.conn();
        match write {
            HistoryWrite::Applied { version, description, checksum, duration_ms } => {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {h} (migration_set, version, description, checksum, success, started_at, finished_at, duration_ms)
                     VALUES ($1, $2, $3, $4, true, clock_timestamp() - make_interval(secs => $5 / 1000.0), clock_timestamp(), $5)
                     ON CONFLICT (migration_set, version) DO UPDATE SET
                       description = excluded.description, checksum = excluded.checksum, success = true,
                       started_at = excluded.started_at, finished_at = excluded.finished_at,
                       duration_ms = excluded.duration_ms, error = NULL"
                )))
                .bind(set)
                .bind(version.get())
                .bind(description)
                .bind(checksum)
                .bind(duration_ms as f64)
                .execute(conn)
                .await?;
            }
            HistoryWrite::Started { version, description, checksum } => {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {h} (migration_set, version, description, checksum, success)
                     VALUES ($1, $2, $3, $4, false)
                     ON CONFLICT (migration_set, version) DO UPDATE SET
                       description = excluded.description, checksum = excluded.checksum, success = false,
                       started_at = clock_timestamp(), finished_at = NULL, duration_ms = NULL, error = NULL"
                )))
                .bind(set)
                .bind(version.get())
                .bind(description)
                .bind(checksum)
                .execute(conn)
                .await?;
            }
            HistoryWrite::Reverting { version } => {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {h} SET success = false, error = 'revert started, not finished', started_at = clock_timestamp(),
                       finished_at = NULL, duration_ms = NULL, batches_done = 0, rows_done = 0
                     WHERE migration_set = $1 AND version = $2"
                )))
                .bind(set)
                .bind(version.get())
                .execute(conn)
                .await?;
            }
            HistoryWrite::BatchDone { version, rows } => {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {h} SET batches_done = batches_done + 1, rows_done = rows_done + $3
                     WHERE migration_set = $1 AND version = $2"
                )))
                .bind(set)
                .bind(version.get())
                .bind(rows)
                .execute(conn)
                .await?;
            }
            HistoryWrite::Finished { version, duration_ms } => {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {h} SET success = true, finished_at = clock_timestamp(), duration_ms = $3, error = NULL
                     WHERE migration_set = $1 AND version = $2"
                )))
                .bind(set)
                .bind(version.get())
                .bind(duration_ms as f64)
                .execute(conn)
                .await?;
            }
            HistoryWrite::Failed { version, error } => {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {h} SET success = false, finished_at = clock_timestamp(), error = $3
                     WHERE migration_set = $1 AND version = $2"
                )))
                .bind(set)
                .bind(version.get())
                .bind(error)
                .execute(conn)
                .await?;
            }
            HistoryWrite::Removed { version } => {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {h} WHERE migration_set = $1 AND version = $2"
                )))
                .bind(set)
                .bind(version.get())
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }

    async fn snapshot(&mut self) -> Result<SchemaSnapshot, BackendError> {
        let schema = self.schema.clone();
        let conn = self.conn();
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
        .bind(&schema)
        .bind(HISTORY_TABLE)
        .fetch_all(&mut *conn)
        .await?;
        for row in columns {
            let table: String = row.try_get("table_name")?;
            snapshot.tables.entry(table).or_insert_with(TableShape::default).columns.push(ColumnShape {
                name: row.try_get("column_name")?,
                data_type: row.try_get("data_type")?,
                not_null: row.try_get("not_null")?,
                default: row.try_get("default_value")?,
            });
        }
        let qualifier = format!("{}.", quote_ident(&schema));
        let plain_qualifier = format!("{schema}.");
        let unqualify = |definition: String| definition.replace(&qualifier, "").replace(&plain_qualifier, "");
        let indexes = sqlx::query(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename <> $2",
        )
        .bind(&schema)
        .bind(HISTORY_TABLE)
        .fetch_all(&mut *conn)
        .await?;
        for row in indexes {
            let table: String = row.try_get("tablename")?;
            let entry: &mut TableShape = snapshot.tables.entry(table).or_default();
            entry.indexes.insert(row.try_get("indexname")?, unqualify(row.try_get("indexdef")?));
        }
        let constraints = sqlx::query(
            "SELECT c.relname AS table_name, k.conname AS name, pg_get_constraintdef(k.oid) AS definition
             FROM pg_constraint k
             JOIN pg_class c ON c.oid = k.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname <> $2",
        )
        .bind(&schema)
        .bind(HISTORY_TABLE)
        .fetch_all(&mut *conn)
        .await?;
        for row in constraints {
            let table: String = row.try_get("table_name")?;
            let entry: &mut TableShape = snapshot.tables.entry(table).or_default();
            entry.constraints.insert(row.try_get("name")?, unqualify(row.try_get("definition")?));
        }
        Ok(snapshot)
    }

    async fn close(mut self) {
        if self.dirty() {
            return; // `Drop` closes the connection
        }
        if let Some(PgConn::Owned(conn)) = self.conn.take() {
            // Best effort: the server cleans up a vanished client too.
            let _ = conn.close().await;
        }
    }
}
