//! SQLite, file per tenant: every tenant is the file `<dir>/tenant_<slug>.sqlite3`; the
//! platform target is `<dir>/platform.sqlite3` (or the file given).
//!
//! SQLite has no advisory locks, so the per-tenant lock is an OS file lock (`flock`) on
//! `<file>.migrate-lock`: held by the session, released when it drops, and by the kernel if the
//! process dies. `lock_timeout` maps to `busy_timeout` (transactions start with
//! `BEGIN IMMEDIATE`, so they wait for other writers up front), and `statement_timeout` to a
//! progress handler that interrupts each execution once its deadline passes.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

use super::{
    BackendError, BindValue, ColumnShape, MigrationBackend, SchemaSnapshot, Session, TableShape,
    Timeouts,
};
use crate::history::{AppliedMigration, HISTORY_TABLE, HistoryWrite};
use crate::sql::quote_ident;
use crate::target::Target;
use crate::{Dialect, SetKind};
use domain::tenant::TenantSlug;
use domain::version::Version;

/// File-per-tenant backend over one directory.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    dir: PathBuf,
    platform_file: PathBuf,
}

impl SqliteBackend {
    /// Tenants in `dir`, the platform database in `dir/platform.sqlite3`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        SqliteBackend {
            platform_file: dir.join("platform.sqlite3"),
            dir,
        }
    }

    /// The platform database in `file`, tenants beside it.
    pub fn beside_platform_file(file: impl Into<PathBuf>) -> Self {
        let platform_file = file.into();
        let dir = platform_file
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        SqliteBackend { dir, platform_file }
    }

    pub fn tenant_file(&self, tenant: &TenantSlug) -> PathBuf {
        self.dir.join(format!("{}.sqlite3", tenant.storage_name()))
    }

    fn file(&self, target: &Target) -> PathBuf {
        match target {
            Target::Platform => self.platform_file.clone(),
            Target::Tenant(slug) => self.tenant_file(slug),
        }
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> BackendError {
    move |source| BackendError::Io { context, source }
}

impl MigrationBackend for SqliteBackend {
    type Session = SqliteSession;

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn open(&self, target: &Target) -> Result<SqliteSession, BackendError> {
        let file = self.file(target);
        let create = matches!(target, Target::Platform);
        if !create && !file.exists() {
            return Err(BackendError::StorageMissing {
                storage: format!("file {}", file.display()),
            });
        }
        if create && let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(create)
            .foreign_keys(true)
            .disable_statement_logging();
        let conn = SqliteConnection::connect_with(&options).await?;
        let mut lock_path = file.into_os_string();
        lock_path.push(".migrate-lock");
        Ok(SqliteSession {
            conn: Some(conn),
            lock_path: lock_path.into(),
            lock: None,
            statement_timeout: Timeouts::default().statement,
        })
    }

    async fn create_storage(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io(format!("creating {}", self.dir.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(self.tenant_file(tenant))
            .create_if_missing(true)
            // WAL lets readers (status, the application) proceed while a migration writes.
            .journal_mode(SqliteJournalMode::Wal)
            .disable_statement_logging();
        let mut conn = SqliteConnection::connect_with(&options).await?;
        // The history table comes with the file, as with the PostgreSQL backends.
        sqlx::raw_sql(AssertSqlSafe(history_table_ddl()))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }

    async fn drop_storage(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        let file = self.tenant_file(tenant);
        for suffix in ["", "-wal", "-shm", ".migrate-lock"] {
            let mut path = file.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("removing {}", Path::new(&path).display()))(e)),
            }
        }
        Ok(())
    }

    async fn storage_exists(&self, tenant: &TenantSlug) -> Result<bool, BackendError> {
        Ok(self.tenant_file(tenant).exists())
    }
}

/// A session on one SQLite file.
pub struct SqliteSession {
    conn: Option<SqliteConnection>,
    lock_path: PathBuf,
    /// The open lock file while the lock is held; dropping it releases the `flock`.
    lock: Option<File>,
    statement_timeout: Duration,
}

const HISTORY: &str = "\"main\".\"_tenancy_history\"";
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

fn history_table_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {HISTORY} (
            migration_set TEXT NOT NULL,
            version INTEGER NOT NULL,
            description TEXT NOT NULL,
            checksum TEXT NOT NULL,
            success INTEGER NOT NULL,
            started_at TEXT NOT NULL DEFAULT ({NOW}),
            finished_at TEXT,
            duration_ms REAL,
            error TEXT,
            batches_done INTEGER NOT NULL DEFAULT 0,
            rows_done INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (migration_set, version)
        )"
    )
}

impl SqliteSession {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_mut()
            .expect("a SqliteSession is used only while it holds its connection")
    }

    async fn simple(&mut self, sql: &str) -> Result<(), BackendError> {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn set_busy_timeout(&mut self, timeouts: Timeouts) -> Result<(), BackendError> {
        self.statement_timeout = timeouts.statement;
        self.simple(&format!(
            "PRAGMA busy_timeout = {}",
            timeouts.lock.as_millis()
        ))
        .await
    }

    /// Runs `sql`, interrupted once the statement timeout passes.
    async fn run(&mut self, sql: &str) -> Result<u64, BackendError> {
        let deadline = Instant::now() + self.statement_timeout;
        self.conn()
            .lock_handle()
            .await?
            .set_progress_handler(1_000, move || Instant::now() < deadline);
        let result = sqlx::raw_sql(AssertSqlSafe(sql)).execute(self.conn()).await;
        self.conn().lock_handle().await?.remove_progress_handler();
        Ok(result?.rows_affected())
    }
}

fn decode_time(text: Option<String>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl Session for SqliteSession {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn read_history(&mut self, set: SetKind) -> Result<Vec<AppliedMigration>, BackendError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT version, description, checksum, success, started_at, finished_at, duration_ms, error, batches_done, rows_done \
             FROM {HISTORY} WHERE migration_set = ?1 ORDER BY version"
        )))
        .bind(set.dir_name())
        .fetch_all(self.conn())
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(db)) if db.message().starts_with("no such table") => {
                return Ok(Vec::new());
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
                    started_at: decode_time(row.try_get("started_at")?),
                    finished_at: decode_time(row.try_get("finished_at")?),
                    duration_ms: row
                        .try_get::<Option<f64>, _>("duration_ms")?
                        .map(|ms| ms.round() as i64),
                    error: row.try_get("error")?,
                    batches_done: row.try_get("batches_done")?,
                    rows_done: row.try_get("rows_done")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(BackendError::from)
    }

    async fn ensure_history_table(&mut self) -> Result<(), BackendError> {
        self.simple(&history_table_ddl()).await
    }

    async fn try_lock(&mut self) -> Result<bool, BackendError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(io(format!("opening {}", self.lock_path.display())))?;
        match file.try_lock() {
            Ok(()) => {
                self.lock = Some(file);
                Ok(true)
            }
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => {
                Err(io(format!("locking {}", self.lock_path.display()))(e))
            }
        }
    }

    async fn unlock(&mut self) -> Result<(), BackendError> {
        self.lock = None;
        Ok(())
    }

    async fn begin(&mut self, timeouts: Timeouts) -> Result<(), BackendError> {
        self.set_busy_timeout(timeouts).await?;
        self.simple("BEGIN IMMEDIATE").await
    }

    async fn commit(&mut self) -> Result<(), BackendError> {
        self.simple("COMMIT").await
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        self.simple("ROLLBACK").await
    }

    async fn begin_autocommit(&mut self, timeouts: Timeouts) -> Result<(), BackendError> {
        self.set_busy_timeout(timeouts).await
    }

    async fn end_autocommit(&mut self) -> Result<(), BackendError> {
        self.set_busy_timeout(Timeouts::default()).await
    }

    async fn execute(&mut self, sql: &str) -> Result<(), BackendError> {
        self.run(sql).await.map(drop)
    }

    async fn execute_counting(&mut self, sql: &str) -> Result<u64, BackendError> {
        self.run(sql).await
    }

    async fn execute_bound(
        &mut self,
        sql: &str,
        values: &[BindValue<'_>],
    ) -> Result<u64, BackendError> {
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for value in values {
            query = match *value {
                BindValue::Text(text) => query.bind(text.to_owned()),
                BindValue::Uuid(id) => query.bind(id.hyphenated().to_string()),
            };
        }
        let deadline = Instant::now() + self.statement_timeout;
        self.conn()
            .lock_handle()
            .await?
            .set_progress_handler(1_000, move || Instant::now() < deadline);
        let result = query.execute(self.conn()).await;
        self.conn().lock_handle().await?.remove_progress_handler();
        Ok(result?.rows_affected())
    }

    async fn row_counts(&mut self) -> Result<BTreeMap<String, i64>, BackendError> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> ?1 ORDER BY name",
        )
        .bind(HISTORY_TABLE)
        .fetch_all(self.conn())
        .await?;
        let mut counts = BTreeMap::new();
        for table in tables {
            let sql = format!("SELECT count(*) FROM \"main\".{}", quote_ident(&table));
            let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(self.conn())
                .await?;
            counts.insert(table, count);
        }
        Ok(counts)
    }

    async fn record(&mut self, set: SetKind, write: HistoryWrite<'_>) -> Result<(), BackendError> {
        let set = set.dir_name();
        let conn = self.conn();
        let query = match write {
            HistoryWrite::Applied { version, description, checksum, duration_ms } => {
                let started = Utc::now() - chrono::TimeDelta::milliseconds(duration_ms);
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {HISTORY} (migration_set, version, description, checksum, success, started_at, finished_at, duration_ms)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, {NOW}, ?6)
                     ON CONFLICT (migration_set, version) DO UPDATE SET
                       description = excluded.description, checksum = excluded.checksum, success = 1,
                       started_at = excluded.started_at, finished_at = excluded.finished_at,
                       duration_ms = excluded.duration_ms, error = NULL"
                )))
                .bind(set)
                .bind(version.get())
                .bind(description)
                .bind(checksum)
                .bind(started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .bind(duration_ms as f64)
            }
            HistoryWrite::Started { version, description, checksum } => sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {HISTORY} (migration_set, version, description, checksum, success)
                 VALUES (?1, ?2, ?3, ?4, 0)
                 ON CONFLICT (migration_set, version) DO UPDATE SET
                   description = excluded.description, checksum = excluded.checksum, success = 0,
                   started_at = {NOW}, finished_at = NULL, duration_ms = NULL, error = NULL"
            )))
            .bind(set)
            .bind(version.get())
            .bind(description)
            .bind(checksum),
            HistoryWrite::Reverting { version } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE {HISTORY} SET success = 0, error = 'revert started, not finished', started_at = {NOW},
                   finished_at = NULL, duration_ms = NULL, batches_done = 0, rows_done = 0
                 WHERE migration_set = ?1 AND version = ?2"
            )))
            .bind(set)
            .bind(version.get()),
            HistoryWrite::BatchDone { version, rows } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE {HISTORY} SET batches_done = batches_done + 1, rows_done = rows_done + ?3
                 WHERE migration_set = ?1 AND version = ?2"
            )))
            .bind(set)
            .bind(version.get())
            .bind(rows),
            HistoryWrite::Finished { version, duration_ms } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE {HISTORY} SET success = 1, finished_at = {NOW}, duration_ms = ?3, error = NULL
                 WHERE migration_set = ?1 AND version = ?2"
            )))
            .bind(set)
            .bind(version.get())
            .bind(duration_ms as f64),
            HistoryWrite::Failed { version, error } => sqlx::query(AssertSqlSafe(format!(
                "UPDATE {HISTORY} SET success = 0, finished_at = {NOW}, error = ?3
                 WHERE migration_set = ?1 AND version = ?2"
            )))
            .bind(set)
            .bind(version.get())
            .bind(error.to_owned()),
            HistoryWrite::Removed { version } => sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {HISTORY} WHERE migration_set = ?1 AND version = ?2"
            )))
            .bind(set)
            .bind(version.get()),
        };
        query.execute(conn).await?;
        Ok(())
    }

    async fn snapshot(&mut self) -> Result<SchemaSnapshot, BackendError> {
        let conn = self.conn();
        let mut snapshot = SchemaSnapshot::default();
        let columns = sqlx::query(
            "SELECT m.name AS table_name, m.sql AS definition, p.name AS column_name, p.type AS data_type,
                    p.\"notnull\" AS not_null, p.dflt_value AS default_value
             FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> ?1
             ORDER BY m.name, p.cid",
        )
        .bind(HISTORY_TABLE)
        .fetch_all(&mut *conn)
        .await?;
        for row in columns {
            let table: String = row.try_get("table_name")?;
            let entry = snapshot
                .tables
                .entry(table)
                .or_insert_with(TableShape::default);
            if entry.constraints.is_empty() {
                entry
                    .constraints
                    .insert("definition".to_owned(), row.try_get("definition")?);
            }
            entry.columns.push(ColumnShape {
                name: row.try_get("column_name")?,
                data_type: row.try_get("data_type")?,
                not_null: row.try_get("not_null")?,
                default: row.try_get("default_value")?,
            });
        }
        let indexes = sqlx::query(
            "SELECT tbl_name, name, sql FROM sqlite_master
             WHERE type = 'index' AND sql IS NOT NULL AND tbl_name <> ?1",
        )
        .bind(HISTORY_TABLE)
        .fetch_all(&mut *conn)
        .await?;
        for row in indexes {
            let table: String = row.try_get("tbl_name")?;
            snapshot
                .tables
                .entry(table)
                .or_default()
                .indexes
                .insert(row.try_get("name")?, row.try_get("sql")?);
        }
        Ok(snapshot)
    }

    async fn close(mut self) {
        self.lock = None;
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}
