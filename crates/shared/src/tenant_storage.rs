//! Where tenants live: the schemas or databases `tenant_<slug>` on the tenant server
//! (`TENANT_DATABASE_URL`), each with a role of its own, migrated by the engine.
//!
//! A tenant's role (`tenant_<slug>`, `NOLOGIN`: the application assumes it) can use its own
//! schema's tables and nothing else: not `public`, not the platform tables, not another tenant.
//! - schema isolation: `USAGE` on its schema and default privileges on what migrations create
//!   there; `public` is closed to `PUBLIC`;
//! - database isolation: `CONNECT` on its database only (`PUBLIC` loses it there and on the
//!   server's own database, the platform database by default), and the same inside.
//!
//! PostgreSQL only: the engine alone runs on SQLite.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use crate::config::{Config, DatabaseUrl};
use domain::Isolation;
use domain::Version;
use domain::tenant::TenantSlug;
use engine::backend::{BackendError, MigrationBackend};
use engine::plan::Standing;
use engine::sql::quote_ident;
use engine::{
    AdminValues, Engine, EngineError, EngineOptions, MigrationSet, PgDatabaseBackend,
    PgSchemaBackend, ProgressSink, RunReport, ServerSlots, Target,
};

/// The tenant server, for both isolation modes.
#[derive(Debug, Clone)]
pub struct TenantStorage {
    schema: Engine<PgSchemaBackend>,
    database: Engine<PgDatabaseBackend>,
    server: PgConnectOptions,
}

impl TenantStorage {
    /// Connects to `TENANT_DATABASE_URL`; `max_connections` bounds the schema-mode pool (and so
    /// how many tenants of that database migrate at once from this process).
    ///
    /// # Errors
    /// The URL is not PostgreSQL, or the server is unreachable.
    pub async fn connect(
        config: &Config,
        max_connections: u32,
        options: EngineOptions,
    ) -> Result<Self, BackendError> {
        let DatabaseUrl::Postgres {
            options: server, ..
        } = &config.tenant_database_url
        else {
            return Err(BackendError::InvalidScript(
                "TENANT_DATABASE_URL must be a PostgreSQL server for the services (SQLite tenants are for the engine's tests)".into(),
            ));
        };
        let server = (**server).clone().disable_statement_logging();
        Ok(TenantStorage {
            schema: Engine::new(
                PgSchemaBackend::connect(server.clone(), max_connections).await?,
                options,
            ),
            database: Engine::new(PgDatabaseBackend::connect(server.clone()).await?, options),
            server,
        })
    }

    /// For the migrator: like [`TenantStorage::connect`], but schema-isolated tenants migrate on
    /// connections that hold one of `slots` (which must be on this server's database), so the
    /// slots bound both the migrations and the connections there. Such a storage migrates and
    /// reads; it cannot create tenants or insert their admins (the migrator does neither).
    ///
    /// # Errors
    /// As [`TenantStorage::connect`].
    pub async fn connect_with_slots(
        config: &Config,
        slots: ServerSlots,
        options: EngineOptions,
    ) -> Result<Self, BackendError> {
        let storage = TenantStorage::connect(config, 1, options).await?;
        // The plain pool only serves storage creation, which the migrator never does.
        storage.schema.backend().pool().close().await;
        let schema = storage.schema.backend().clone().with_slots(slots);
        Ok(TenantStorage {
            schema: Engine::new(schema, options),
            ..storage
        })
    }

    /// Creates the tenant's schema or database (with its history table) and its role, with the
    /// grants described above. Idempotent.
    ///
    /// # Errors
    /// A database error.
    pub async fn create(
        &self,
        tenant: &TenantSlug,
        isolation: Isolation,
    ) -> Result<(), BackendError> {
        let name = quote_ident(&tenant.storage_name());
        let create_role = format!(
            "DO $tenancy$ BEGIN CREATE ROLE {name} NOLOGIN; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $tenancy$"
        );
        match isolation {
            Isolation::Schema => {
                self.schema.backend().create_storage(tenant).await?;
                let pool = self.schema.backend().pool();
                let grants = format!(
                    "{create_role};
                     {CLOSE_SERVER_DATABASE};
                     REVOKE ALL ON SCHEMA public FROM PUBLIC;
                     GRANT USAGE ON SCHEMA {name} TO {name};
                     ALTER DEFAULT PRIVILEGES IN SCHEMA {name} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {name};
                     ALTER DEFAULT PRIVILEGES IN SCHEMA {name} GRANT USAGE, SELECT ON SEQUENCES TO {name};
                     DO $tenancy$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {role}); END $tenancy$"
                    ,
                    role = sql_literal(&tenant.storage_name()),
                );
                let mut conn = pool.acquire().await?;
                run_grants(&mut conn, &grants).await?;
            }
            Isolation::Database => {
                self.database.backend().create_storage(tenant).await?;
                let mut admin = self.server.connect().await?;
                let outside = format!(
                    "{create_role};
                     {CLOSE_SERVER_DATABASE};
                     REVOKE ALL ON DATABASE {name} FROM PUBLIC;
                     GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {name}"
                );
                let done = run_grants(&mut admin, &outside).await;
                let _ = admin.close().await;
                done?;
                let mut inside = self.connect_tenant_database(tenant).await?;
                let grants = format!(
                    "REVOKE ALL ON SCHEMA public FROM PUBLIC;
                     GRANT USAGE ON SCHEMA public TO {name};
                     ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {name};
                     ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {name}"
                );
                let done = run_grants(&mut inside, &grants).await;
                let _ = inside.close().await;
                done?;
            }
        }
        Ok(())
    }

    /// Applies `set` to the tenant, up to `to` (or everything).
    ///
    /// # Errors
    /// As [`Engine::apply`].
    pub async fn apply(
        &self,
        tenant: &TenantSlug,
        isolation: Isolation,
        set: &MigrationSet,
        to: Option<Version>,
        sink: &impl ProgressSink,
    ) -> Result<RunReport, EngineError> {
        let target = Target::Tenant(tenant.clone());
        match isolation {
            Isolation::Schema => self.schema.apply(&target, set, to, sink).await,
            Isolation::Database => self.database.apply(&target, set, to, sink).await,
        }
    }

    /// Reverts the tenant to `to` with the down scripts.
    ///
    /// # Errors
    /// As [`Engine::revert`].
    pub async fn revert(
        &self,
        tenant: &TenantSlug,
        isolation: Isolation,
        set: &MigrationSet,
        to: Version,
        allow_data_loss: bool,
        sink: &impl ProgressSink,
    ) -> Result<RunReport, EngineError> {
        let target = Target::Tenant(tenant.clone());
        match isolation {
            Isolation::Schema => {
                self.schema
                    .revert(&target, set, to, allow_data_loss, sink)
                    .await
            }
            Isolation::Database => {
                self.database
                    .revert(&target, set, to, allow_data_loss, sink)
                    .await
            }
        }
    }

    /// The down scripts a revert to `to` would run.
    ///
    /// # Errors
    /// As [`Engine::preview_revert`].
    pub async fn preview_revert(
        &self,
        tenant: &TenantSlug,
        isolation: Isolation,
        set: &MigrationSet,
        to: Version,
    ) -> Result<Vec<engine::RevertPreview>, EngineError> {
        let target = Target::Tenant(tenant.clone());
        match isolation {
            Isolation::Schema => self.schema.preview_revert(&target, set, to).await,
            Isolation::Database => self.database.preview_revert(&target, set, to).await,
        }
    }

    /// Where the tenant stands against `set`.
    ///
    /// # Errors
    /// As [`Engine::status`].
    pub async fn status(
        &self,
        tenant: &TenantSlug,
        isolation: Isolation,
        set: &MigrationSet,
    ) -> Result<Standing, EngineError> {
        let target = Target::Tenant(tenant.clone());
        match isolation {
            Isolation::Schema => self.schema.status(&target, set).await,
            Isolation::Database => self.database.status(&target, set).await,
        }
    }

    /// Invites the tenant's administrator by running the admin-user script of `seeds` (the
    /// tenant-seeds set's `admin_user.sql`) in the tenant's schema or database, with `values`
    /// bound to its parameters. The built-in script inserts a `users` row, role `admin`, status
    /// `invited`, no password and no invitation token (the application issues one when it sends
    /// the invitation). Scripts are idempotent: a second run (a redelivery) adds nothing.
    /// Returns the rows the script affected.
    ///
    /// # Errors
    /// As [`Engine::run_admin_user`]: no script in the set, or a database error.
    pub async fn insert_admin(
        &self,
        tenant: &TenantSlug,
        isolation: Isolation,
        seeds: &MigrationSet,
        values: &AdminValues<'_>,
    ) -> Result<u64, EngineError> {
        let target = Target::Tenant(tenant.clone());
        match isolation {
            Isolation::Schema => self.schema.run_admin_user(&target, seeds, values).await,
            Isolation::Database => self.database.run_admin_user(&target, seeds, values).await,
        }
    }

    /// Drops the tenant's storage and role (tests and teardown).
    ///
    /// # Errors
    /// A database error.
    pub async fn drop(
        &self,
        tenant: &TenantSlug,
        isolation: Isolation,
    ) -> Result<(), BackendError> {
        match isolation {
            Isolation::Schema => self.schema.backend().drop_storage(tenant).await?,
            Isolation::Database => self.database.backend().drop_storage(tenant).await?,
        }
        let name = quote_ident(&tenant.storage_name());
        let mut admin = self.server.connect().await?;
        let sql = format!(
            "DO $tenancy$ BEGIN
               IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {role}) THEN
                 EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), {role});
                 DROP OWNED BY {name};
                 DROP ROLE {name};
               END IF;
             END $tenancy$",
            role = sql_literal(&tenant.storage_name())
        );
        let done = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut admin).await;
        let _ = admin.close().await;
        done?;
        Ok(())
    }

    async fn connect_tenant_database(
        &self,
        tenant: &TenantSlug,
    ) -> Result<PgConnection, BackendError> {
        Ok(self
            .server
            .clone()
            .database(&tenant.storage_name())
            .connect()
            .await?)
    }
}

/// The database the tenant server's URL names (the platform database, by default) is closed to
/// `PUBLIC`: a tenant role reaches only what it is granted. Schema-mode roles are granted
/// `CONNECT` on it explicitly; the services connect as its owner. Other roles that relied on
/// `PUBLIC` need an explicit grant.
const CLOSE_SERVER_DATABASE: &str = "DO $tenancy$ BEGIN EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database()); END $tenancy$";

fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Runs role and grant statements. Grants and `ALTER DEFAULT PRIVILEGES` touch shared catalog
/// rows: two tenants provisioned at once can collide on them ("tuple concurrently updated"),
/// and such a collision is retried.
async fn run_grants(conn: &mut PgConnection, sql: &str) -> Result<(), BackendError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .map(drop)
        {
            Ok(()) => return Ok(()),
            Err(sqlx::Error::Database(db))
                if attempt < 5
                    && matches!(db.code().as_deref(), Some("XX000" | "40001" | "40P01")) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}
