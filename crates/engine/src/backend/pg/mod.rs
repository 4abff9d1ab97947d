//! The PostgreSQL session shared by the schema-per-tenant and database-per-tenant backends.
//! They differ only in how the connection is obtained and which schema is the tenant's.
//!
//! This file is the session: its connection, the state that must not leak into the pool's next
//! user, and how each primitive maps onto as few round trips as possible. The SQL text of the
//! history reads and writes is in `history_sql.rs`; reading a schema's shape and row counts in
//! `introspection.rs`.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgDatabaseError, PgErrorPosition, PgRow};
use sqlx::{AssertSqlSafe, Connection, Postgres, Row};

pub(crate) mod database_template;
pub(crate) mod fingerprint;
mod history_sql;
mod introspection;
pub(crate) mod stamp;
pub(crate) mod template;

use super::slots::SlotConn;
use super::{BackendError, BindValue, SchemaSnapshot, Session, Timeouts};
use crate::history::{AppliedMigration, CommitWrite, HISTORY_TABLE, HistoryWrite};
use crate::sql::quote_ident;
use crate::{Dialect, SetKind};
use domain::version::Version;

/// A pooled connection (schema-per-tenant), one holding a server slot (schema-per-tenant, for
/// the migrator) or a connection of its own (database-per-tenant).
pub(super) enum PgConn {
    Pooled(PoolConnection<Postgres>),
    Slot(SlotConn),
    Owned(PgConnection),
}

impl Deref for PgConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            PgConn::Pooled(conn) => conn,
            PgConn::Slot(conn) => conn,
            PgConn::Owned(conn) => conn,
        }
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            PgConn::Pooled(conn) => conn,
            PgConn::Slot(conn) => conn,
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
    /// Whether the history table is known to exist (read or created on this session).
    history_exists: bool,
    /// The history table must be created by the next write: creation rides along with it (one
    /// commit and one round trip fewer for every new tenant).
    create_history: bool,
    /// The open transaction carries the history table's creation: it exists once it commits.
    create_in_transaction: bool,
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
            history_exists: false,
            create_history: false,
            create_in_transaction: false,
            locked: false,
            in_transaction: false,
            session_settings: false,
        }
    }

    fn conn(&mut self) -> &mut PgConnection {
        // `conn` is only taken by `close` (which consumes the session) and `Drop`.
        self.conn
            .as_mut()
            .expect("a PgSession is used only while it holds its connection")
    }

    /// The error of a session whose schema does not exist.
    fn storage_missing(&self) -> BackendError {
        BackendError::StorageMissing {
            storage: format!("schema {}", self.schema),
        }
    }

    fn dirty(&self) -> bool {
        self.locked || self.in_transaction || self.session_settings
    }

    async fn simple(&mut self, sql: String) -> Result<(), BackendError> {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(self.conn())
            .await?;
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
        match self.conn.take() {
            Some(PgConn::Pooled(mut conn)) => conn.close_on_drop(),
            Some(PgConn::Slot(mut conn)) => conn.close_on_drop(),
            Some(PgConn::Owned(_)) | None => {}
        }
    }
}

/// Maps a database error's character position to a line of `sql`.
fn with_line(error: sqlx::Error, sql: &str) -> BackendError {
    with_line_in(error, sql, 0, sql)
}

/// Maps a database error's character position in `message` to a line of `script`, which starts
/// `offset` characters into the message; `None` when the error is outside the script.
fn with_line_in(error: sqlx::Error, message: &str, offset: usize, script: &str) -> BackendError {
    let position = match &error {
        sqlx::Error::Database(db) => {
            db.try_downcast_ref::<PgDatabaseError>()
                .and_then(|pg| match pg.position() {
                    Some(PgErrorPosition::Original(position)) => Some(position),
                    _ => None,
                })
        }
        _ => None,
    };
    let line = position
        .and_then(|p| p.checked_sub(1 + offset))
        .filter(|p| *p <= script.chars().count())
        .map(|p| {
            message
                .chars()
                .skip(offset)
                .take(p)
                .filter(|c| *c == '\n')
                .count()
                + 1
        });
    BackendError::Sql {
        source: error,
        line,
    }
}

/// A string literal that means the same whatever `standard_conforming_strings` says.
pub(crate) fn sql_string(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// `CREATE TABLE IF NOT EXISTS` of a history table (`qualified` is `"schema"."table"`).
///
/// Bounded text columns keep the widest possible row under the TOAST threshold, so the table
/// gets no TOAST relation: two files per tenant instead of four (creating relation files is a
/// large part of what provisioning a tenant costs).
pub(super) fn history_table_ddl(qualified: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {qualified} (
            migration_set varchar(16) NOT NULL,
            version bigint NOT NULL,
            description varchar({DESCRIPTION_MAX}) NOT NULL,
            checksum varchar(64) NOT NULL,
            success boolean NOT NULL,
            started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            finished_at timestamptz,
            duration_ms double precision,
            error varchar({ERROR_MAX}),
            batches_done bigint NOT NULL DEFAULT 0,
            rows_done bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (migration_set, version)
        )"
    )
}

/// Longest migration description (the file name's part after the version) the history keeps.
const DESCRIPTION_MAX: usize = crate::source::DESCRIPTION_MAX;

/// Longest error the history keeps; the whole error is in the run's result, events and logs.
const ERROR_MAX: usize = 240;

impl PgSession {
    /// `CREATE TABLE IF NOT EXISTS` of the history table when a write must create it, else empty.
    fn pending_create(&self) -> String {
        if !self.create_history {
            return String::new();
        }
        format!("{};\n", history_table_ddl(&self.history))
    }

    /// After a write that carried `pending_create()` committed.
    fn history_created(&mut self) {
        if self.create_history {
            self.create_history = false;
            self.history_exists = true;
        }
    }
}

impl Session for PgSession {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn read_history(&mut self, set: SetKind) -> Result<Vec<AppliedMigration>, BackendError> {
        // The simple-query protocol: one round trip, and no prepared statement per schema
        // filling the statement cache (this runs once per tenant on every deploy).
        let sql = history_sql::select(&self.history, set);
        let rows = match sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(self.conn())
            .await
        {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                self.history_exists = false;
                return Ok(Vec::new());
            }
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3F000") => {
                return Err(self.storage_missing());
            }
            Err(e) => return Err(e.into()),
        };
        self.history_exists = true;
        history_sql::decode(&rows)
    }

    async fn ensure_history_table(&mut self) -> Result<(), BackendError> {
        // Deferred to the next write, which prepends `pending_create()`; see `create_history`.
        self.create_history = !self.history_exists;
        Ok(())
    }

    async fn try_lock(&mut self) -> Result<bool, BackendError> {
        let key = self.lock_key;
        // Until the answer arrives the lock may be held: if the call fails, the session is
        // treated as locked and its connection is closed rather than reused.
        self.locked = true;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(self.conn())
            .await?;
        self.locked = locked;
        Ok(locked)
    }

    async fn lock_and_read(
        &mut self,
        set: SetKind,
    ) -> Result<Option<Vec<AppliedMigration>>, BackendError> {
        if !self.history_exists {
            // One round trip: whether the schema exists (a missing history table reads like a
            // missing schema), the lock if it does, and whether the history table exists by now.
            let sql = format!(
                "SELECT to_regnamespace({schema}) IS NOT NULL AS schema_present,
                        CASE WHEN to_regnamespace({schema}) IS NOT NULL THEN pg_try_advisory_lock({key}) ELSE false END AS locked,
                        to_regclass({history}) IS NOT NULL AS present",
                schema = sql_string(&quote_ident(&self.schema)),
                key = self.lock_key,
                history = sql_string(&self.history)
            );
            self.locked = true;
            let row = sqlx::raw_sql(AssertSqlSafe(sql))
                .fetch_one(self.conn())
                .await?;
            self.locked = row.try_get("locked")?;
            if !row.try_get::<bool, _>("schema_present")? {
                return Err(self.storage_missing());
            }
            if !self.locked {
                return Ok(None);
            }
            if row.try_get("present")? {
                return self.read_history(set).await.map(Some);
            }
            self.ensure_history_table().await?;
            return Ok(Some(Vec::new()));
        }
        // One round trip: the lock, then the history as it is under the lock.
        let sql = format!(
            "SELECT pg_try_advisory_lock({}) AS locked; {}",
            self.lock_key,
            history_sql::select(&self.history, set)
        );
        self.locked = true;
        let rows = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(self.conn())
            .await?;
        let (first, history) = rows.split_first().ok_or_else(|| {
            BackendError::InvalidScript("pg_try_advisory_lock returned no row".into())
        })?;
        self.locked = first.try_get("locked")?;
        if !self.locked {
            return Ok(None);
        }
        history_sql::decode(history).map(Some)
    }

    async fn read_history_locking_if_behind(
        &mut self,
        set: SetKind,
        target: Option<Version>,
        wanted: usize,
    ) -> Result<(Vec<AppliedMigration>, bool), BackendError> {
        // One round trip. The first statement takes the lock only if SQL sees the target behind;
        // the second reads the history, under the lock when it was taken. If the history table
        // does not exist yet, analysing the first statement fails before it takes anything.
        let set_name = sql_string(set.dir_name());
        let up_to = target.map_or(i64::MAX, Version::get);
        let sql = format!(
            "SELECT pg_try_advisory_lock({key}) AS locked
             WHERE (SELECT count(*) FROM {h} WHERE migration_set = {set_name} AND success AND version <= {up_to}) < {wanted}
                OR EXISTS (SELECT 1 FROM {h} WHERE migration_set = {set_name} AND NOT success);
             {select}",
            key = self.lock_key,
            h = self.history,
            select = history_sql::select(&self.history, set),
        );
        let rows = match sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(self.conn())
            .await
        {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                self.history_exists = false;
                return Ok((Vec::new(), false));
            }
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3F000") => {
                return Err(self.storage_missing());
            }
            Err(error) => {
                // The lock may or may not have been taken: close rather than reuse.
                self.locked = true;
                return Err(error.into());
            }
        };
        self.history_exists = true;
        let (lock_rows, history): (Vec<PgRow>, Vec<PgRow>) = rows
            .into_iter()
            .partition(|row| row.try_column("locked").is_ok());
        self.locked = match lock_rows.first() {
            Some(row) => row.try_get("locked")?,
            None => false,
        };
        Ok((history_sql::decode(&history)?, self.locked))
    }

    async fn run_in_transaction(
        &mut self,
        set: SetKind,
        sql: &str,
        timeouts: Timeouts,
        write: CommitWrite<'_>,
        release_lock: bool,
    ) -> Result<(), BackendError> {
        // One message: BEGIN, the settings, the script, its history row, COMMIT. An error stops
        // the message inside the transaction (or, for a syntax error, before anything runs), so
        // the script and its row commit together or not at all.
        let prefix = format!(
            "BEGIN; {};\n{}",
            self.settings("LOCAL", timeouts),
            self.pending_create()
        );
        let record = history_sql::commit_write(&self.history, set, write);
        let release = if release_lock && self.locked {
            format!("; SELECT pg_advisory_unlock({})", self.lock_key)
        } else {
            String::new()
        };
        let message = format!("{prefix}{sql}\n;\n{record};\nCOMMIT{release}");
        self.in_transaction = true;
        match sqlx::raw_sql(AssertSqlSafe(message.as_str()))
            .execute(self.conn())
            .await
        {
            Ok(_) => {
                self.in_transaction = false;
                self.history_created();
                if !release.is_empty() {
                    self.locked = false;
                }
                Ok(())
            }
            Err(error) => {
                let error = with_line_in(error, &message, prefix.chars().count(), sql);
                if self.simple("ROLLBACK".to_owned()).await.is_ok() {
                    self.in_transaction = false;
                }
                Err(error)
            }
        }
    }

    async fn unlock(&mut self) -> Result<(), BackendError> {
        if !self.locked {
            return Ok(());
        }
        let key = self.lock_key;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(self.conn())
            .await?;
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
        if std::mem::take(&mut self.create_in_transaction) {
            self.history_created();
        }
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        self.simple("ROLLBACK".to_owned()).await?;
        self.in_transaction = false;
        self.create_in_transaction = false;
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

    async fn execute_bound(
        &mut self,
        sql: &str,
        values: &[BindValue<'_>],
    ) -> Result<u64, BackendError> {
        // Not persistent: the statement runs once per tenant, and a prepared statement per
        // connection would only fill the cache (its plan would depend on the search path).
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for value in values {
            query = match *value {
                BindValue::Text(text) => query.bind(text.to_owned()),
                BindValue::Uuid(id) => query.bind(id),
            };
        }
        query
            .execute(self.conn())
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| with_line(e, sql))
    }

    async fn record(&mut self, set: SetKind, write: HistoryWrite<'_>) -> Result<(), BackendError> {
        let sql = format!(
            "{}{}",
            self.pending_create(),
            history_sql::write(&self.history, set, &write)
        );
        let marker = matches!(
            write,
            HistoryWrite::Started { .. }
                | HistoryWrite::Finished { .. }
                | HistoryWrite::Failed { .. }
                | HistoryWrite::Reverting { .. }
        );
        let result = if marker && !self.in_transaction {
            // The markers around a no-transaction or batched script need not wait for the WAL
            // flush: such scripts are re-runnable by contract, so a marker lost in a crash only
            // means the script runs again. (Batch progress commits with its batch, durably.)
            self.simple(format!(
                "BEGIN; SET LOCAL synchronous_commit TO off; {sql}; COMMIT"
            ))
            .await
        } else {
            self.simple(sql).await
        };
        if result.is_ok() {
            if self.in_transaction {
                self.create_in_transaction |= self.create_history;
            } else {
                self.history_created();
            }
        }
        result
    }

    async fn row_counts(&mut self) -> Result<BTreeMap<String, i64>, BackendError> {
        let schema = self.schema.clone();
        introspection::row_counts(self.conn(), &schema).await
    }

    async fn snapshot(&mut self) -> Result<SchemaSnapshot, BackendError> {
        let schema = self.schema.clone();
        introspection::snapshot(self.conn(), &schema).await
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
