//! PostgreSQL, database per tenant: every tenant is the database `tenant_<slug>` on one server,
//! its objects in that database's `public` schema; the platform target is the database the
//! backend was configured with.
//!
//! Each session opens its own connection to the tenant's database (a pool per database would
//! multiply idle connections by the number of tenants).

use std::collections::BTreeMap;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::pg::fingerprint::read_fingerprints;
use super::pg::stamp::read_stamps;
use super::pg::{PgConn, PgSession, history_table_ddl};
use super::pg_role::{self, CLOSE_SERVER_DATABASE};
use super::{BackendError, MigrationBackend, ProvisionedStorage};
use crate::Dialect;
use crate::fingerprint::{CatalogStamp, Fingerprint};
use crate::history::HISTORY_TABLE;
use crate::sql::quote_ident;
use crate::target::Target;
use domain::tenant::TenantSlug;

/// Database-per-tenant backend over one server.
#[derive(Debug, Clone)]
pub struct PgDatabaseBackend {
    /// Connection options of the server's administrative database, as the connecting user:
    /// creating roles and databases, and granting.
    server: PgConnectOptions,
    /// The same as the tenants' owner when there is one ([`PgDatabaseBackend::owned_by`]):
    /// tenant sessions reuse them with another database name.
    sessions: PgConnectOptions,
    /// The role that owns every tenant database; `None`: the connecting user.
    owner: Option<String>,
    /// Small pool on the administrative database for CREATE/DROP DATABASE.
    admin: PgPool,
}

impl PgDatabaseBackend {
    /// # Errors
    /// When the server cannot be reached.
    pub async fn connect(server: PgConnectOptions) -> Result<Self, BackendError> {
        let server = server
            .application_name("tenancy-migrations")
            .disable_statement_logging();
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(server.clone())
            .await?;
        Ok(PgDatabaseBackend {
            sessions: server.clone(),
            server,
            owner: None,
            admin,
        })
    }

    /// Tenant databases are created owned by `owner`, and tenant sessions run as it (`SET ROLE`
    /// at connection start), so that what one service creates another can change: the
    /// provisioner creates and first migrates a tenant, the migrator migrates it later, both
    /// members of `owner`. Roles and grants still come from the connecting user, whose
    /// `CREATEROLE` and `CREATEDB` `owner` does not need.
    pub fn owned_by(self, owner: &str) -> Self {
        PgDatabaseBackend {
            sessions: self.server.clone().options([("role", owner)]),
            owner: Some(owner.to_owned()),
            ..self
        }
    }

    /// The small pool on the server's administrative database.
    pub fn admin_pool(&self) -> &PgPool {
        &self.admin
    }

    /// A session's options on the tenant's database.
    fn tenant_options(&self, tenant: &TenantSlug) -> PgConnectOptions {
        self.sessions.clone().database(&tenant.storage_name())
    }
}

impl MigrationBackend for PgDatabaseBackend {
    type Session = PgSession;

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn open(&self, target: &Target) -> Result<PgSession, BackendError> {
        let options = match target {
            Target::Platform => self.sessions.clone(),
            Target::Tenant(slug) => self.sessions.clone().database(&slug.storage_name()),
        };
        let conn = match PgConnection::connect_with(&options).await {
            Ok(conn) => conn,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3D000") => {
                return Err(BackendError::StorageMissing {
                    storage: format!("database {}", options.get_database().unwrap_or_default()),
                });
            }
            Err(e) => return Err(e.into()),
        };
        Ok(PgSession::new(
            PgConn::Owned(conn),
            "public".to_owned(),
            target.lock_key(),
        ))
    }

    async fn create_storage(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        if !self.storage_exists(tenant).await? {
            // CREATE DATABASE has no IF NOT EXISTS and cannot run in a transaction.
            let owner = self
                .owner
                .as_deref()
                .map(|owner| format!(" OWNER {}", quote_ident(owner)))
                .unwrap_or_default();
            let sql = format!(
                "CREATE DATABASE {}{owner}",
                quote_ident(&tenant.storage_name())
            );
            match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.admin).await {
                Ok(_) => {}
                // Created concurrently by another runner: 42P04 duplicate_database, or the unique
                // index on pg_database.
                Err(sqlx::Error::Database(db))
                    if matches!(db.code().as_deref(), Some("42P04" | "23505")) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The history table comes with the database, so the engine's first read of the new
        // tenant finds an empty history rather than a missing table.
        let mut conn =
            PgConnection::connect_with(&self.sessions.clone().database(&tenant.storage_name()))
                .await?;
        let ddl = history_table_ddl(&format!("\"public\".{}", quote_ident(HISTORY_TABLE)));
        let created = sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut conn).await;
        let _ = conn.close().await;
        match created {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("23505" | "42P07")) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn drop_storage(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&tenant.storage_name())
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&self.admin)
            .await?;
        Ok(())
    }

    async fn storage_exists(&self, tenant: &TenantSlug) -> Result<bool, BackendError> {
        let exists =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(tenant.storage_name())
                .fetch_one(&self.admin)
                .await?;
        Ok(exists)
    }
}

/// Tenant databases whose fingerprints are read at once: each needs a connection of its own,
/// and a handful keeps a server busy without crowding it.
const DATABASES_AT_ONCE: usize = 8;

impl ProvisionedStorage for PgDatabaseBackend {
    /// A provisioned tenant: its database with the history table
    /// ([`MigrationBackend::create_storage`]) and its role, which can use the database's tables
    /// and nothing else: `CONNECT` on its database only (`PUBLIC` loses it there and on the
    /// server's own database, the platform database by default), and inside, `USAGE` on `public`
    /// (closed to `PUBLIC`) and default privileges on what migrations create there. Idempotent.
    ///
    /// # Errors
    /// A database error.
    async fn create_storage_with_role(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        self.create_storage(tenant).await?;
        let name = pg_role::role_name(tenant);
        let outside = format!(
            "{create_role};
             {CLOSE_SERVER_DATABASE};
             REVOKE ALL ON DATABASE {name} FROM PUBLIC;
             GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {name}",
            create_role = pg_role::create_role(tenant),
        );
        let mut admin = PgConnection::connect_with(&self.server).await?;
        let done = pg_role::run_grants(&mut admin, &outside).await;
        let _ = admin.close().await;
        done?;
        // As the owner (the session's role): default privileges apply to what their role creates.
        let inside = format!(
            "REVOKE ALL ON SCHEMA public FROM PUBLIC;
             GRANT USAGE ON SCHEMA public TO {name};
             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {name};
             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {name}"
        );
        let mut conn =
            PgConnection::connect_with(&self.sessions.clone().database(&tenant.storage_name()))
                .await?;
        let done = pg_role::run_grants(&mut conn, &inside).await;
        let _ = conn.close().await;
        done
    }

    /// Drops the tenant's database and its role (tests and teardown).
    ///
    /// # Errors
    /// A database error.
    async fn drop_storage_with_role(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        self.drop_storage(tenant).await?;
        let mut admin = PgConnection::connect_with(&self.server).await?;
        let done = pg_role::drop_role(&mut admin, tenant).await;
        let _ = admin.close().await;
        done
    }

    /// One connection per tenant database (a catalog is per database), a few at a time.
    async fn fingerprints(
        &self,
        tenants: &[TenantSlug],
    ) -> Result<BTreeMap<TenantSlug, Fingerprint>, BackendError> {
        // Owned slugs: a closure over borrowed ones is not general enough for a `Send` future.
        stream::iter(tenants.to_vec())
            .map(|tenant| async move {
                let name = tenant.storage_name();
                let mut conn = match self.tenant_options(&tenant).connect().await {
                    Ok(conn) => conn,
                    // No such database: nothing of the tenant's shape is there.
                    Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3D000") => {
                        return Ok((tenant, Fingerprint::default()));
                    }
                    Err(e) => return Err(e.into()),
                };
                let read = read_fingerprints(&mut conn, &[("public".to_owned(), name)]).await;
                let _ = conn.close().await;
                let fingerprint = read?.remove("public").unwrap_or_default();
                Ok((tenant, fingerprint))
            })
            .buffer_unordered(DATABASES_AT_ONCE)
            .try_collect()
            .await
    }

    /// One connection per tenant database, as for the fingerprints. The drift check does not
    /// use it: opening the connection costs more than the deparsing a stamp would spare, so
    /// database-isolated tenants are always read in full.
    async fn catalog_stamps(
        &self,
        tenants: &[TenantSlug],
    ) -> Result<BTreeMap<TenantSlug, CatalogStamp>, BackendError> {
        let read: Vec<Option<(TenantSlug, CatalogStamp)>> = stream::iter(tenants.to_vec())
            .map(|tenant| async move {
                let mut conn = match self.tenant_options(&tenant).connect().await {
                    Ok(conn) => conn,
                    Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3D000") => {
                        return Ok(None);
                    }
                    Err(e) => return Err(BackendError::from(e)),
                };
                let read = read_stamps(&mut conn, &["public".to_owned()]).await;
                let _ = conn.close().await;
                Ok(read?.remove("public").map(|stamp| (tenant, stamp)))
            })
            .buffer_unordered(DATABASES_AT_ONCE)
            .try_collect()
            .await?;
        Ok(read.into_iter().flatten().collect())
    }
}
