//! The platform database: connecting (and creating it on first start), the tenant registry and
//! the audit trail ([`audit`]). (`dlq_replays`, the dead-letter replay log, is `tenantctl`'s.)

pub mod audit;
pub mod deploys;
pub mod fingerprints;
pub mod fleet;
mod grants;
mod releases;
pub mod servers;
pub mod tenants;

#[cfg(test)]
mod tests;

pub use audit::{AuditConflict, AuditFilter, AuditInsert, AuditRecord, AuditRow, conflict_id};
pub use releases::ReleaseRecorder;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

use crate::config::DatabaseUrl;
use domain::Isolation;
use domain::Version;
use domain::provisioning::TenantStatus;
use domain::server::ServerName;
use domain::tenant::TenantSlug;
use engine::sql::quote_ident;

/// Why the platform database could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Only a service's start creates the platform database: anything else that finds it
    /// missing is most likely pointed at the wrong one, and must not start an empty fleet there.
    #[error(
        "the platform database `{name}` does not exist ({url}): check DATABASE_URL. A new fleet's platform database is created by the first start of the services (`tenantctl up`, or the provisioner, migrator or auditor binaries), or by hand with `{create}`"
    )]
    DatabaseMissing {
        name: String,
        /// The URL tried, without credentials.
        url: String,
        /// The command that creates it.
        create: String,
    },
    #[error(
        "the platform database has no `{0}` table yet: apply the platform migrations (`tenantctl up` does)"
    )]
    NotMigrated(&'static str),
    #[error("the platform database holds an invalid row: {0}")]
    InvalidRow(String),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("platform database: {0}")]
    Sql(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether a retry may succeed (the database is unreachable or overloaded, not wrong).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sql(error) => engine::error::is_transient_sql_error(error),
            _ => false,
        }
    }
}

/// A connection pool on the platform database.
#[derive(Debug, Clone)]
pub enum PlatformDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// `with_pool!(platform, |pool| body)`: runs `body` with `pool` bound to the platform's pool,
/// whichever its database. For a query whose SQL and binds are the same in both dialects
/// (sqlx's `$1` placeholders work on SQLite too): it is written and bound once, and compiled
/// once per driver. A query whose SQL or column types differ keeps a `match` of its own.
/// Exported for the platform tables other crates own (`tenantctl`'s replay log).
#[macro_export]
macro_rules! with_pool {
    ($platform:expr, |$pool:ident| $body:expr) => {
        match $platform {
            $crate::platform::PlatformDb::Postgres($pool) => $body,
            $crate::platform::PlatformDb::Sqlite($pool) => $body,
        }
    };
}
pub use crate::with_pool;

/// One row of `tenants`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub id: uuid::Uuid,
    pub slug: TenantSlug,
    pub status: TenantStatus,
    pub isolation: Isolation,
    /// The server it lives on.
    pub server: ServerName,
    /// Newest applied tenant migration, as recorded by the services (0 = none).
    pub schema_version: Version,
    /// Why the tenant's last migration or rollback failed for good; `Some` = needs
    /// reprocessing.
    pub migration_error: Option<String>,
}

impl PlatformDb {
    /// Connects; with `create`, creates a missing PostgreSQL database or SQLite file first.
    ///
    /// # Errors
    /// An unreachable server, or a missing database when `create` is false.
    pub async fn connect(
        url: &DatabaseUrl,
        create: bool,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        match url {
            DatabaseUrl::Postgres { options, .. } => {
                let options = options.clone().disable_statement_logging();
                if create {
                    create_pg_database_if_missing(&options).await?;
                }
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .connect_with(options.clone())
                    .await
                    .map_err(|e| missing_database(e, &options, url))?;
                Ok(PlatformDb::Postgres(pool))
            }
            DatabaseUrl::Sqlite { path } => {
                if !create && !path.exists() {
                    return Err(StoreError::DatabaseMissing {
                        name: path.display().to_string(),
                        url: url.redacted(),
                        create: format!("sqlite3 {} 'SELECT 1'", path.display()),
                    });
                }
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| StoreError::Sql(sqlx::Error::Io(e)))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(create)
                    .foreign_keys(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .disable_statement_logging();
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .connect_with(options)
                    .await?;
                Ok(PlatformDb::Sqlite(pool))
            }
        }
    }

    /// The slugs of the tenants among `ids` that have a row (the others are left out).
    ///
    /// # Errors
    /// A database error.
    pub async fn slugs_of(
        &self,
        ids: &[uuid::Uuid],
    ) -> Result<std::collections::HashMap<uuid::Uuid, String>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(uuid::Uuid, String)> = match self {
            PlatformDb::Postgres(pool) => {
                sqlx::query_as("SELECT id, slug FROM tenants WHERE id = ANY($1)")
                    .bind(ids)
                    .fetch_all(pool)
                    .await
                    .map_err(not_migrated("tenants"))?
            }
            // SQLite has no arrays: the ids travel as one JSON list.
            PlatformDb::Sqlite(pool) => {
                let ids: Vec<String> = ids.iter().map(uuid::Uuid::to_string).collect();
                let list = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned());
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, slug FROM tenants WHERE id IN (SELECT value FROM json_each(?1))",
                )
                .bind(list)
                .fetch_all(pool)
                .await
                .map_err(not_migrated("tenants"))?;
                rows.into_iter()
                    .filter_map(|(id, slug)| uuid::Uuid::parse_str(&id).ok().map(|id| (id, slug)))
                    .collect()
            }
        };
        Ok(rows.into_iter().collect())
    }

    /// Every tenant, or the one with `slug`, ordered by slug.
    ///
    /// # Errors
    /// [`StoreError::NotMigrated`] before the platform migrations ran.
    pub async fn tenants(
        &self,
        slug: Option<&TenantSlug>,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        // The id as text: a `uuid` on PostgreSQL, already text on SQLite.
        const SQL: &str = "SELECT CAST(id AS text) AS id, slug, status, isolation, coalesce(server, 'default') AS server, schema_version, migration_error
                           FROM tenants WHERE ($1 IS NULL OR slug = $1) ORDER BY slug";
        let filter = slug.map(TenantSlug::as_str);
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .bind(filter)
                .fetch_all(pool)
                .await
                .map_err(not_migrated("tenants"))?;
            rows.iter()
                .map(|row| {
                    tenant_record(
                        row.try_get("id")?,
                        row.try_get("slug")?,
                        row.try_get("status")?,
                        row.try_get("isolation")?,
                        row.try_get("server")?,
                        row.try_get("schema_version")?,
                        row.try_get("migration_error")?,
                    )
                })
                .collect()
        })
    }
}

fn tenant_record(
    id: String,
    slug: String,
    status: String,
    isolation: String,
    server: String,
    schema_version: i64,
    migration_error: Option<String>,
) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        id: uuid::Uuid::parse_str(&id)
            .map_err(|e| StoreError::InvalidRow(format!("tenant id {id:?}: {e}")))?,
        slug: TenantSlug::parse(&slug).map_err(|e| StoreError::InvalidRow(e.to_string()))?,
        status: tenants::tenant_status(status)?,
        isolation: isolation.parse().map_err(StoreError::InvalidRow)?,
        server: ServerName::parse(&server).map_err(|e| StoreError::InvalidRow(e.to_string()))?,
        schema_version: Version::new(schema_version)
            .map_err(|e| StoreError::InvalidRow(e.to_string()))?,
        migration_error,
    })
}

/// The key of the advisory lock called `name`: the first 8 bytes of its SHA-256, so that
/// locks of different purposes never share a key.
pub(crate) fn advisory_key(name: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0_u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Maps "no such table" to [`StoreError::NotMigrated`].
pub(crate) fn not_migrated(table: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| match &error {
        sqlx::Error::Database(db)
            if db.code().as_deref() == Some("42P01")
                || db.message().starts_with("no such table") =>
        {
            StoreError::NotMigrated(table)
        }
        _ => StoreError::Sql(error),
    }
}

fn missing_database(
    error: sqlx::Error,
    options: &PgConnectOptions,
    url: &DatabaseUrl,
) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => {
            let name = options.get_database().unwrap_or_default().to_owned();
            StoreError::DatabaseMissing {
                create: format!(
                    "createdb -h {} -p {} {}",
                    options.get_host(),
                    options.get_port(),
                    if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        name.clone()
                    } else {
                        format!("'{}'", name.replace('\'', "'\\''"))
                    }
                ),
                url: url.redacted(),
                name,
            }
        }
        _ => StoreError::Sql(error),
    }
}

/// Creates the database `options` names, through the server's `postgres` database, if missing.
async fn create_pg_database_if_missing(options: &PgConnectOptions) -> Result<(), StoreError> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options.clone().database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let created = sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE {}",
            quote_ident(&name)
        )))
        .execute(&mut admin)
        .await;
        match created {
            Ok(_) => tracing::info!(database = %name, "created the platform database"),
            // Another process created it in the meantime.
            Err(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let _ = admin.close().await;
    Ok(())
}
