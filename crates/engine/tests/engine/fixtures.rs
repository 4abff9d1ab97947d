//! One fixture per backend, so every case in `cases.rs` runs on all three.

use std::fs::{OpenOptions, TryLockError};
use std::sync::Mutex;

use domain::tenant::TenantSlug;
use engine::backend::{
    MigrationBackend, PgDatabaseBackend, PgSchemaBackend, Session, SqliteBackend, Timeouts,
};
use engine::{Engine, EngineOptions, Target};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use testkit::pg::{TestDatabase, drop_databases_now, server_options};
use testkit::{ScratchDir, unique_slug};

/// A backend with its own isolated storage, plus the test's own ways in.
pub trait Fixture: Sized + Send + Sync + 'static {
    type Backend: MigrationBackend + Clone + 'static;

    async fn new() -> Self;

    fn backend(&self) -> Self::Backend;

    fn engine(&self, options: EngineOptions) -> Engine<Self::Backend> {
        Engine::new(self.backend(), options)
    }

    /// A fresh tenant with its storage created.
    async fn tenant(&self) -> Target {
        let slug = unique_slug();
        self.backend()
            .create_storage(&slug)
            .await
            .unwrap_or_else(|e| panic!("creating {slug}: {e}"));
        self.track(&slug);
        Target::Tenant(slug)
    }

    /// Remembers storage to remove at the end (database-per-tenant tenants live outside the test
    /// database).
    fn track(&self, _slug: &TenantSlug) {}

    /// Holds a lock that blocks writes to `table` of `target` until released.
    async fn hold_write_lock(&self, target: &Target, table: &str) -> LockHolder;

    /// Whether `target`'s migration lock is held by anyone (looked at from outside the engine).
    async fn migration_lock_held(&self, target: &Target) -> bool;

    /// Runs SQL in `target` (search path on its schema) and returns the rows it affected.
    async fn execute(&self, target: &Target, sql: &str) -> u64 {
        let mut session = self
            .backend()
            .open(target)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        session
            .begin(Timeouts::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let rows = session
            .execute_counting(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        session.commit().await.unwrap_or_else(|e| panic!("{e}"));
        session.close().await;
        rows
    }
}

pub enum LockHolder {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

impl LockHolder {
    pub async fn release(self) {
        match self {
            LockHolder::Pg(mut conn) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
                let _ = conn.close().await;
            }
            LockHolder::Sqlite(mut conn) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
                let _ = conn.close().await;
            }
        }
    }
}

async fn pg_lock_held(conn: &mut PgConnection, database: &str, key: i64) -> bool {
    // pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits).
    let high = i64::from((key >> 32) as u32);
    let low = i64::from(key as u32);
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1
           AND l.classid::bigint = $2 AND l.objid::bigint = $3 AND l.objsubid = 1",
    )
    .bind(database)
    .bind(high)
    .bind(low)
    .fetch_one(conn)
    .await
    .unwrap_or_else(|e| panic!("reading pg_locks: {e}"));
    held > 0
}

async fn pg_hold(mut conn: PgConnection, schema: &str, table: &str) -> LockHolder {
    let sql = format!("BEGIN; LOCK TABLE \"{schema}\".\"{table}\" IN ACCESS SHARE MODE");
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("locking {table}: {e}"));
    LockHolder::Pg(conn)
}

/// PostgreSQL, schema per tenant, in a database of the test's own.
pub struct PgSchema {
    database: TestDatabase,
    backend: PgSchemaBackend,
}

impl Fixture for PgSchema {
    type Backend = PgSchemaBackend;

    async fn new() -> Self {
        let database = TestDatabase::create().await;
        let backend = PgSchemaBackend::connect(database.options(), 6)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        PgSchema { database, backend }
    }

    fn backend(&self) -> PgSchemaBackend {
        self.backend.clone()
    }

    async fn hold_write_lock(&self, target: &Target, table: &str) -> LockHolder {
        let schema = target
            .tenant()
            .map_or("public".to_owned(), TenantSlug::storage_name);
        pg_hold(self.database.connect().await, &schema, table).await
    }

    async fn migration_lock_held(&self, target: &Target) -> bool {
        let mut conn = self.database.connect().await;
        let held = pg_lock_held(&mut conn, self.database.name(), target.lock_key()).await;
        let _ = conn.close().await;
        held
    }
}

/// PostgreSQL, database per tenant: tenant databases on the test server, dropped at the end.
pub struct PgDatabase {
    database: TestDatabase,
    backend: PgDatabaseBackend,
    tenants: Mutex<Vec<String>>,
}

impl Fixture for PgDatabase {
    type Backend = PgDatabaseBackend;

    async fn new() -> Self {
        let database = TestDatabase::create().await;
        let backend = PgDatabaseBackend::connect(database.options())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        PgDatabase {
            database,
            backend,
            tenants: Mutex::new(Vec::new()),
        }
    }

    fn backend(&self) -> PgDatabaseBackend {
        self.backend.clone()
    }

    fn track(&self, slug: &TenantSlug) {
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slug.storage_name());
    }

    async fn hold_write_lock(&self, target: &Target, table: &str) -> LockHolder {
        let conn = self.connect(target).await;
        pg_hold(conn, "public", table).await
    }

    async fn migration_lock_held(&self, target: &Target) -> bool {
        let mut conn = self.database.connect().await;
        let database = match target {
            Target::Platform => self.database.name().to_owned(),
            Target::Tenant(slug) => slug.storage_name(),
        };
        let held = pg_lock_held(&mut conn, &database, target.lock_key()).await;
        let _ = conn.close().await;
        held
    }
}

impl PgDatabase {
    async fn connect(&self, target: &Target) -> PgConnection {
        let options = match target {
            Target::Platform => self.database.options(),
            Target::Tenant(slug) => server_options().database(&slug.storage_name()),
        };
        options.connect().await.unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.tenants.lock().unwrap_or_else(|e| e.into_inner()));
        drop_databases_now(names);
    }
}

/// SQLite, file per tenant, in a scratch directory.
pub struct Sqlite {
    dir: ScratchDir,
    backend: SqliteBackend,
}

impl Sqlite {
    fn file(&self, target: &Target) -> std::path::PathBuf {
        match target {
            Target::Platform => self.dir.path().join("platform.sqlite3"),
            Target::Tenant(slug) => self.backend.tenant_file(slug),
        }
    }
}

impl Fixture for Sqlite {
    type Backend = SqliteBackend;

    async fn new() -> Self {
        let dir = ScratchDir::new();
        let backend = SqliteBackend::new(dir.path());
        Sqlite { dir, backend }
    }

    fn backend(&self) -> SqliteBackend {
        self.backend.clone()
    }

    async fn hold_write_lock(&self, target: &Target, _table: &str) -> LockHolder {
        let options = SqliteConnectOptions::new().filename(self.file(target));
        let mut conn = SqliteConnection::connect_with(&options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        LockHolder::Sqlite(conn)
    }

    async fn migration_lock_held(&self, target: &Target) -> bool {
        let mut path = self.file(target).into_os_string();
        path.push(".migrate-lock");
        let Ok(file) = OpenOptions::new().write(true).open(&path) else {
            return false;
        };
        matches!(file.try_lock(), Err(TryLockError::WouldBlock))
    }
}
