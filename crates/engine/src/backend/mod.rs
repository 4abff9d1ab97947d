//! Where migrations run: PostgreSQL schema-per-tenant, PostgreSQL database-per-tenant, and SQLite
//! file-per-tenant, behind one trait.
//!
//! A backend offers small primitives (read the history, lock, begin/commit, execute, record);
//! the protocol that combines them (what is recorded when, how a failure is rolled back, how
//! batches resume) lives once, in [`crate::engine`], so the three backends cannot drift
//! apart in behaviour.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::directives::Directives;
use super::history::{AppliedMigration, CommitWrite, HistoryWrite};
use super::target::Target;
use crate::{Dialect, SetKind};
use domain::tenant::TenantSlug;

pub(crate) mod pg;
pub mod pg_database;
mod pg_role;
pub mod pg_schema;
mod provisioned;
pub mod slots;
pub mod sqlite;

pub use pg::fingerprint::read_fingerprints;
pub use pg::stamp::read_stamps;
pub(crate) use pg_database::Copied;
pub use pg_database::PgDatabaseBackend;
pub use pg_schema::PgSchemaBackend;
pub use provisioned::ProvisionedStorage;
pub use slots::{ServerSlots, SlotConn, SlotUsage, SlotUsageProbe};
pub use sqlite::SqliteBackend;

/// `lock_timeout` and `statement_timeout` for one script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long one statement may wait for a table lock. Short by default: a migration queued
    /// behind a long transaction would otherwise block every query that queues behind it.
    pub lock: Duration,
    /// How long one statement may run.
    pub statement: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            lock: Duration::from_secs(5),
            statement: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    /// These defaults, overridden by a script's directives.
    pub fn for_script(self, directives: &Directives) -> Self {
        Timeouts {
            lock: directives.lock_timeout.unwrap_or(self.lock),
            statement: directives.statement_timeout.unwrap_or(self.statement),
        }
    }
}

/// A value bound to a positional parameter of a statement run by [`Session::execute_bound`].
/// `Debug` never shows text values: they may be personal data (an administrator's email).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BindValue<'a> {
    Text(&'a str),
    /// PostgreSQL gets a `uuid`; SQLite its hyphenated text.
    Uuid(uuid::Uuid),
}

impl fmt::Debug for BindValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindValue::Text(text) => write!(f, "Text(<{} bytes>)", text.len()),
            BindValue::Uuid(id) => write!(f, "Uuid({id})"),
        }
    }
}

/// A failure of a backend primitive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("{storage} does not exist: provision the tenant first (tenantctl tenant register)")]
    StorageMissing { storage: String },
    #[error("{}{}", describe_sql_error(.source), .line.map(|l| format!(" (at line {l})")).unwrap_or_default())]
    Sql {
        #[source]
        source: sqlx::Error,
        /// Line of the script the error points at, when the database says.
        line: Option<usize>,
    },
    /// A script the engine cannot run as written. Permanent.
    #[error("{0}")]
    InvalidScript(String),
    /// This process is stopping: the work was not started and is left for later. Transient.
    #[error("not started: this process is shutting down")]
    ShuttingDown,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A database error whose message quoted a bound personal value (an administrator's email
    /// or name), with the value replaced by its parameter's name.
    #[error("{message}")]
    Redacted {
        message: String,
        transient: bool,
        code: Option<String>,
    },
}

impl From<sqlx::Error> for BackendError {
    fn from(source: sqlx::Error) -> Self {
        BackendError::Sql { source, line: None }
    }
}

fn describe_sql_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

impl BackendError {
    /// Whether trying again later may succeed: lost connections, lock and statement timeouts,
    /// serialization failures, a server that is starting or shutting down, SQLite's busy file.
    /// Syntax errors, constraint violations and conflicting objects are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::StorageMissing { .. } | BackendError::InvalidScript(_) => false,
            BackendError::Io { .. } | BackendError::ShuttingDown => true,
            BackendError::Sql { source, .. } => crate::error::is_transient_sql_error(source),
            BackendError::Redacted { transient, .. } => *transient,
        }
    }

    /// This error with every occurrence of the `(value, name)` pairs' values in its message
    /// (compared ignoring ASCII case: a database may echo a lower-cased value) replaced by their
    /// names; unchanged when its message quotes none. For errors of statements that were bound
    /// personal data.
    pub fn redacting(self, personal: &[(&str, &str)]) -> BackendError {
        let message = self.to_string();
        let lowered = message.to_ascii_lowercase();
        let mut hits: Vec<(usize, usize, &str)> = Vec::new();
        for (value, name) in personal {
            let value = value.to_ascii_lowercase();
            if value.is_empty() {
                continue;
            }
            hits.extend(
                lowered
                    .match_indices(&value)
                    .map(|(at, found)| (at, at + found.len(), *name)),
            );
        }
        if hits.is_empty() {
            return self;
        }
        hits.sort_unstable();
        let mut redacted = String::with_capacity(message.len());
        let mut copied = 0;
        for (start, end, name) in hits {
            if start < copied {
                continue; // overlaps a value already replaced
            }
            redacted.push_str(&message[copied..start]);
            redacted.push_str(&format!("<{name}>"));
            copied = end;
        }
        redacted.push_str(&message[copied..]);
        BackendError::Redacted {
            message: redacted,
            transient: self.is_transient(),
            code: self.code(),
        }
    }

    /// The SQLSTATE (PostgreSQL) or extended result code (SQLite) of a database error.
    pub fn code(&self) -> Option<String> {
        match self {
            BackendError::Sql {
                source: sqlx::Error::Database(db),
                ..
            } => db.code().map(|c| c.into_owned()),
            BackendError::Redacted { code, .. } => code.clone(),
            _ => None,
        }
    }
}

/// The shape of a schema, for `migrations check` (parity, up → down → up) and for printing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaSnapshot {
    pub tables: BTreeMap<String, TableShape>,
}

/// How big a schema is: what the summary of `migrations check` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchemaSize {
    pub tables: usize,
    pub columns: usize,
    pub indexes: usize,
    /// Named constraints (PostgreSQL; SQLite keeps them inside each table's definition, so 0).
    pub constraints: usize,
}

impl SchemaSnapshot {
    pub fn size(&self) -> SchemaSize {
        let mut size = SchemaSize {
            tables: self.tables.len(),
            ..SchemaSize::default()
        };
        for table in self.tables.values() {
            size.columns += table.columns.len();
            size.indexes += table.indexes.len();
            size.constraints += table
                .constraints
                .keys()
                .filter(|name| *name != "definition")
                .count();
        }
        size
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableShape {
    /// In declaration order.
    pub columns: Vec<ColumnShape>,
    /// Index name → definition.
    pub indexes: BTreeMap<String, String>,
    /// Constraint name → definition (SQLite: the table's `CREATE TABLE` text under `definition`).
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnShape {
    pub name: String,
    pub data_type: String,
    pub not_null: bool,
    pub default: Option<String>,
}

impl fmt::Display for SchemaSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, table) in &self.tables {
            writeln!(f, "{name}")?;
            let width = table
                .columns
                .iter()
                .map(|c| c.name.len())
                .max()
                .unwrap_or(0);
            for column in &table.columns {
                write!(f, "  {:width$}  {}", column.name, column.data_type)?;
                if column.not_null {
                    f.write_str(" not null")?;
                }
                if let Some(default) = &column.default {
                    write!(f, " default {default}")?;
                }
                writeln!(f)?;
            }
            for definition in table.indexes.values() {
                writeln!(f, "  {definition}")?;
            }
            for (name, definition) in &table.constraints {
                if name != "definition" {
                    writeln!(f, "  constraint {name} {definition}")?;
                }
            }
        }
        Ok(())
    }
}

/// A place where tenants live. Implementations: [`PgSchemaBackend`], [`PgDatabaseBackend`],
/// [`SqliteBackend`].
pub trait MigrationBackend: Send + Sync {
    type Session: Session;

    fn dialect(&self) -> Dialect;

    /// Opens a session on `target`: a connection, no lock, no transaction.
    fn open(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Self::Session, BackendError>> + Send;

    /// Creates the tenant's schema, database or file if it does not exist, with its history
    /// table. Idempotent and safe to call concurrently. (A provisioned tenant's PostgreSQL role
    /// comes with the PostgreSQL backends' `create_storage_with_role`.)
    fn create_storage(
        &self,
        tenant: &TenantSlug,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Drops the tenant's schema, database or file and everything in it, if it exists.
    fn drop_storage(
        &self,
        tenant: &TenantSlug,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    fn storage_exists(
        &self,
        tenant: &TenantSlug,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;
}

/// A connection to one target. Dropping a session that holds its lock or is inside a
/// transaction closes the connection instead of reusing it, so a panic or a cancelled task
/// never leaves a lock or a transaction behind.
pub trait Session: Send {
    fn dialect(&self) -> Dialect;

    /// Rows of `set` in the history table, by version; empty when the table does not exist yet.
    fn read_history(
        &mut self,
        set: SetKind,
    ) -> impl Future<Output = Result<Vec<AppliedMigration>, BackendError>> + Send;

    /// Creates the history table if needed. Called under the lock.
    fn ensure_history_table(&mut self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Takes the target's lock if it is free; never waits.
    fn try_lock(&mut self) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Takes the lock if it is free (never waits) and, when taken, makes sure the history table
    /// exists and returns the history as read under the lock; `None` when the lock is held
    /// elsewhere. Backends may do this in fewer round trips.
    fn lock_and_read(
        &mut self,
        set: SetKind,
    ) -> impl Future<Output = Result<Option<Vec<AppliedMigration>>, BackendError>> + Send
    where
        Self: Sized,
    {
        async move {
            if !self.try_lock().await? {
                return Ok(None);
            }
            self.ensure_history_table().await?;
            self.read_history(set).await.map(Some)
        }
    }

    /// Reads the history and, in the same step, takes the lock if the history looks behind: fewer
    /// than `wanted` successful rows at or below `target`, or an unfinished row. Returns the
    /// history (read under the lock when it was taken) and whether the lock is now held. A
    /// target that is up to date costs one read and no lock. Backends may do this in one round
    /// trip; the default only reads.
    fn read_history_locking_if_behind(
        &mut self,
        set: SetKind,
        target: Option<domain::version::Version>,
        wanted: usize,
    ) -> impl Future<Output = Result<(Vec<AppliedMigration>, bool), BackendError>> + Send
    where
        Self: Sized,
    {
        let _ = (target, wanted);
        async move { Ok((self.read_history(set).await?, false)) }
    }

    /// Runs `sql` and the history write `write` in one transaction with `timeouts`: both commit,
    /// or neither does. With `release_lock`, the target's lock is released once it committed
    /// (the last script of a run). Backends may do this in fewer round trips.
    fn run_in_transaction(
        &mut self,
        set: SetKind,
        sql: &str,
        timeouts: Timeouts,
        write: CommitWrite<'_>,
        release_lock: bool,
    ) -> impl Future<Output = Result<(), BackendError>> + Send
    where
        Self: Sized,
    {
        async move {
            self.begin(timeouts).await?;
            let started = std::time::Instant::now();
            let work = async {
                self.execute(sql).await?;
                let elapsed = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
                self.record(set, write.with_duration(elapsed)).await?;
                self.commit().await
            }
            .await;
            if work.is_err() {
                // If the rollback fails too, the session stays marked in-transaction and its
                // connection is closed rather than reused; the server rolls back on disconnect.
                let _ = self.rollback().await;
            } else if release_lock {
                self.unlock().await?;
            }
            work
        }
    }

    /// Releases the lock; does nothing when it is not held.
    fn unlock(&mut self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Starts a transaction scoped to the target, with `timeouts`.
    fn begin(
        &mut self,
        timeouts: Timeouts,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    fn commit(&mut self) -> impl Future<Output = Result<(), BackendError>> + Send;

    fn rollback(&mut self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Scopes the session to the target with `timeouts` for statements run outside a transaction.
    fn begin_autocommit(
        &mut self,
        timeouts: Timeouts,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Undoes [`Session::begin_autocommit`].
    fn end_autocommit(&mut self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Runs one or more statements.
    fn execute(&mut self, sql: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Runs one statement and returns the number of rows it affected.
    fn execute_counting(
        &mut self,
        sql: &str,
    ) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// Runs one statement with `values` bound to its positional parameters (`$1`, … in
    /// PostgreSQL, `?1`, … in SQLite) and returns the number of rows it affected. The values
    /// travel as bind parameters, never inside the SQL; the statement is not kept prepared.
    fn execute_bound(
        &mut self,
        sql: &str,
        values: &[BindValue<'_>],
    ) -> impl Future<Output = Result<u64, BackendError>> + Send;

    /// Writes the history table.
    fn record(
        &mut self,
        set: SetKind,
        write: HistoryWrite<'_>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The tables, columns, indexes and constraints of the target (history table excluded).
    fn snapshot(&mut self) -> impl Future<Output = Result<SchemaSnapshot, BackendError>> + Send;

    /// The number of rows of every table of the target (history table excluded).
    fn row_counts(
        &mut self,
    ) -> impl Future<Output = Result<BTreeMap<String, i64>, BackendError>> + Send;

    /// Releases the connection.
    fn close(self) -> impl Future<Output = ()> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacting_replaces_personal_values_whatever_their_case_and_keeps_the_class() {
        let error = BackendError::InvalidScript(
            "invalid input syntax for type integer: \"ana.lima@acme.example\" (Ana Lima, ANA.LIMA@ACME.EXAMPLE)"
                .to_owned(),
        );
        let redacted = error.redacting(&[
            ("Ana.Lima@Acme.Example", "admin_email"),
            ("Ana Lima", "admin_name"),
            ("", "tenant_name"),
        ]);
        assert_eq!(
            redacted.to_string(),
            "invalid input syntax for type integer: \"<admin_email>\" (<admin_name>, <admin_email>)"
        );
        assert!(!redacted.is_transient());

        let untouched = BackendError::ShuttingDown.redacting(&[("ana", "admin_name")]);
        assert!(matches!(untouched, BackendError::ShuttingDown));
    }
}
