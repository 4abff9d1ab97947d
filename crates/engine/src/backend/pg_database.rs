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

use super::pg::database_template;
use super::pg::fingerprint::read_fingerprints;
use super::pg::stamp::read_stamps;
use super::pg::{PgConn, PgSession, history_table_ddl};
use super::pg_role::{self, CLOSE_SERVER_DATABASE};
use super::{BackendError, MigrationBackend, ProvisionedStorage, Timeouts};
use crate::Dialect;
use crate::fingerprint::{CatalogStamp, Fingerprint};
use crate::history::HISTORY_TABLE;
use crate::source::SetKind;
use crate::sql::quote_ident;
use crate::target::Target;
use crate::template::{Instantiation, TemplateRow};
use domain::tenant::TenantSlug;

/// What [`PgDatabaseBackend::copy_database`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Copied {
    Created,
    Exists,
    TemplateUnavailable(String),
}

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

    /// The role that owns tenant databases and their objects; `None`: the connecting user.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// A connection of its own on the server's database holding the session advisory lock
    /// `key` (waiting for it): released when the connection closes, also when this process dies.
    ///
    /// # Errors
    /// A database error.
    pub(crate) async fn hold_lock(&self, key: i64) -> Result<PgConnection, BackendError> {
        let mut conn = PgConnection::connect_with(&self.server).await?;
        if let Err(error) = sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut conn)
            .await
        {
            let _ = conn.close().await;
            return Err(error.into());
        }
        Ok(conn)
    }

    /// The small pool on the server's administrative database.
    pub fn admin_pool(&self) -> &PgPool {
        &self.admin
    }

    /// `CREATE DATABASE` of the tenant's database, empty or as a copy of `template`'s; one
    /// created concurrently by another runner counts as created.
    ///
    /// # Errors
    /// A database error: among them `55006` (the template is in use) and `3D000` (no such
    /// template).
    async fn create_database(
        &self,
        tenant: &TenantSlug,
        template: Option<&TenantSlug>,
    ) -> Result<(), BackendError> {
        // CREATE DATABASE has no IF NOT EXISTS and cannot run in a transaction.
        let owner = self
            .owner
            .as_deref()
            .map(|owner| format!(" OWNER {}", quote_ident(owner)))
            .unwrap_or_default();
        let template = template
            .map(|template| format!(" TEMPLATE {}", quote_ident(&template.storage_name())))
            .unwrap_or_default();
        let sql = format!(
            "CREATE DATABASE {}{owner}{template}",
            quote_ident(&tenant.storage_name())
        );
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.admin).await {
            Ok(_) => Ok(()),
            // Created concurrently by another runner: 42P04 duplicate_database, or the unique
            // index on pg_database.
            Err(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("42P04" | "23505")) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The role `role`, and the grants outside the database of `database`: `CONNECT` on that
    /// database only (`PUBLIC` loses it there and on the server's own database).
    async fn create_role_and_grant_connect(
        &self,
        database: &TenantSlug,
        role: &TenantSlug,
    ) -> Result<(), BackendError> {
        let (database, name) = (
            quote_ident(&database.storage_name()),
            pg_role::role_name(role),
        );
        let outside = format!(
            "{create_role};
             {CLOSE_SERVER_DATABASE};
             REVOKE ALL ON DATABASE {database} FROM PUBLIC;
             GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {name}",
            create_role = pg_role::create_role(role),
        );
        let mut admin = PgConnection::connect_with(&self.server).await?;
        let done = pg_role::run_grants(&mut admin, &outside).await;
        let _ = admin.close().await;
        done
    }

    /// The database of `database` with its history table ([`MigrationBackend::create_storage`])
    /// and the role of `role`, which can use that database's tables and nothing else (see
    /// [`ProvisionedStorage::create_storage_with_role`]). Idempotent.
    async fn create_storage_for(
        &self,
        database: &TenantSlug,
        role: &TenantSlug,
    ) -> Result<(), BackendError> {
        self.create_storage(database).await?;
        self.create_role_and_grant_connect(database, role).await?;
        let name = pg_role::role_name(role);
        // As the owner (the session's role): default privileges apply to what their role creates.
        let inside = format!(
            "REVOKE ALL ON SCHEMA public FROM PUBLIC;
             GRANT USAGE ON SCHEMA public TO {name};
             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {name};
             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {name}"
        );
        let mut conn = PgConnection::connect_with(&self.tenant_options(database)).await?;
        let done = pg_role::run_grants(&mut conn, &inside).await;
        let _ = conn.close().await;
        done
    }

    /// A template database being built: the database of `database`, its objects granted to the
    /// role of `role` (the template's, named after the template, not after this build).
    ///
    /// # Errors
    /// A database error.
    pub(crate) async fn create_template_storage(
        &self,
        database: &TenantSlug,
        role: &TenantSlug,
    ) -> Result<(), BackendError> {
        self.create_storage_for(database, role).await
    }

    /// Renames the database of `from` to that of `to`: `false` when `to`'s exists already.
    ///
    /// # Errors
    /// A database error.
    pub(crate) async fn rename_database(
        &self,
        from: &TenantSlug,
        to: &TenantSlug,
    ) -> Result<bool, BackendError> {
        let sql = format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&from.storage_name()),
            quote_ident(&to.storage_name())
        );
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.admin).await {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("42P04" | "23505")) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The databases whose names start with `prefix` (literally).
    ///
    /// # Errors
    /// A database error.
    pub(crate) async fn databases_named_like(
        &self,
        prefix: &str,
    ) -> Result<Vec<String>, BackendError> {
        let names = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 ORDER BY 1",
        )
        .bind(prefix)
        .fetch_all(&self.admin)
        .await?;
        Ok(names)
    }

    /// The tenant's database, created as a copy of `template`'s database unless it exists:
    /// [`Copied::Created`], or [`Copied::Exists`] (a previous attempt, on either path, created
    /// it). [`Copied::TemplateUnavailable`] when the template database is missing or in use
    /// after PostgreSQL's own wait (a session on it): nothing was created.
    ///
    /// # Errors
    /// A database error.
    pub(crate) async fn copy_database(
        &self,
        tenant: &TenantSlug,
        template: &TenantSlug,
    ) -> Result<Copied, BackendError> {
        if self.storage_exists(tenant).await? {
            return Ok(Copied::Exists);
        }
        match self.create_database(tenant, Some(template)).await {
            Ok(()) => Ok(Copied::Created),
            Err(BackendError::Sql {
                source: sqlx::Error::Database(db),
                ..
            }) if matches!(db.code().as_deref(), Some("55006" | "3D000")) => {
                Ok(Copied::TemplateUnavailable(db.message().to_owned()))
            }
            Err(error) => Err(error),
        }
    }

    /// Finishes a copy of a template database (see [`database_template::instantiate`]), on a
    /// connection of its own.
    ///
    /// # Errors
    /// A database error: nothing of the instantiation stays.
    pub(crate) async fn instantiate_copy(
        &self,
        tenant: &TenantSlug,
        copy: &database_template::Copy<'_>,
        timeouts: Timeouts,
    ) -> Result<Instantiation, BackendError> {
        self.create_role_and_grant_connect(tenant, tenant).await?;
        let mut conn = PgConnection::connect_with(&self.tenant_options(tenant)).await?;
        let lock_key = Target::Tenant(tenant.clone()).lock_key();
        let done = database_template::instantiate(&mut conn, lock_key, copy, timeouts).await;
        let _ = conn.close().await;
        done
    }

    /// Makes the migrated template database of `template` (a tenant of this backend) one:
    /// history rows set aside (see [`database_template::set_aside_history`]). Returns why it
    /// cannot be one.
    ///
    /// # Errors
    /// A database error.
    pub(crate) async fn set_aside_history(
        &self,
        template: &TenantSlug,
        set: SetKind,
    ) -> Result<Vec<String>, BackendError> {
        let mut conn = PgConnection::connect_with(&self.tenant_options(template)).await?;
        let done = database_template::set_aside_history(&mut conn, set).await;
        let _ = conn.close().await;
        done
    }

    /// A template database's history rows (set aside) and fingerprint.
    ///
    /// # Errors
    /// A database error.
    pub(crate) async fn read_database_template(
        &self,
        template: &TenantSlug,
        role: &TenantSlug,
        set: SetKind,
    ) -> Result<(Vec<TemplateRow>, Fingerprint), BackendError> {
        let mut conn = PgConnection::connect_with(&self.tenant_options(template)).await?;
        let done = database_template::read(&mut conn, &role.storage_name(), set).await;
        let _ = conn.close().await;
        done
    }

    /// The comment on `template`'s database (where a template database says it is ready).
    ///
    /// # Errors
    /// A database error.
    pub(crate) async fn database_comment(
        &self,
        template: &TenantSlug,
    ) -> Result<Option<String>, BackendError> {
        let comment = sqlx::query_scalar(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
        )
        .bind(template.storage_name())
        .fetch_optional(&self.admin)
        .await?
        .flatten();
        Ok(comment)
    }

    /// Comments on `template`'s database.
    ///
    /// # Errors
    /// A database error.
    pub(crate) async fn comment_database(
        &self,
        template: &TenantSlug,
        comment: &str,
    ) -> Result<(), BackendError> {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(&template.storage_name()),
            super::pg::sql_string(comment)
        )))
        .execute(&self.admin)
        .await?;
        Ok(())
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
        // A copy of a template that was never instantiated holds the set's objects and no
        // history: migrating it would fail on the first object, so it is dropped and created
        // again, empty (it holds nothing of the tenant's).
        for _ in 0..2 {
            if !self.storage_exists(tenant).await? {
                self.create_database(tenant, None).await?;
            }
            // The history table comes with the database, so the engine's first read of the new
            // tenant finds an empty history rather than a missing table.
            let mut conn = PgConnection::connect_with(&self.tenant_options(tenant)).await?;
            let pending = database_template::is_pending_copy(&mut conn).await;
            let created = match pending {
                Ok(true) => None,
                Ok(false) => Some(
                    sqlx::raw_sql(AssertSqlSafe(history_table_ddl(&format!(
                        "\"public\".{}",
                        quote_ident(HISTORY_TABLE)
                    ))))
                    .execute(&mut conn)
                    .await,
                ),
                Err(error) => {
                    let _ = conn.close().await;
                    return Err(error);
                }
            };
            let _ = conn.close().await;
            match created {
                None => self.drop_storage(tenant).await?,
                Some(Ok(_)) => return Ok(()),
                Some(Err(sqlx::Error::Database(db)))
                    if matches!(db.code().as_deref(), Some("23505" | "42P07")) =>
                {
                    return Ok(());
                }
                Some(Err(e)) => return Err(e.into()),
            }
        }
        Err(BackendError::InvalidScript(format!(
            "database {} was a copy of a template not yet instantiated twice in a row: another provisioner is creating this tenant from a template at the same time",
            tenant.storage_name()
        )))
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
        self.create_storage_for(tenant, tenant).await
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
