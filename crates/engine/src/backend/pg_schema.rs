//! PostgreSQL, schema per tenant: every tenant is the schema `tenant_<slug>` of one database;
//! the platform target is that database's `public` schema.
//!
//! Sessions come from one pool, so a fleet run reuses a handful of connections instead of
//! opening one per tenant; each run scopes itself with `SET LOCAL search_path`. With
//! [`PgSchemaBackend::with_slots`] (the migrator), sessions run on connections that hold a
//! server slot instead, so the slot costs neither a round trip nor a connection of its own.

use std::collections::BTreeMap;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions};

use super::pg::fingerprint::read_fingerprints;
use super::pg::stamp::read_stamps;
use super::pg::template::{self, ReadTemplate};
use super::pg::{PgConn, PgSession, history_table_ddl};
use super::pg_role::{
    self, AS_CONNECTING_USER, AS_SESSION_ROLE, CLOSE_PUBLIC_SCHEMA, CLOSE_SERVER_DATABASE,
};
use super::slots::ServerSlots;
use super::{BackendError, MigrationBackend, ProvisionedStorage, Timeouts};
use crate::Dialect;
use crate::fingerprint::{CatalogStamp, Fingerprint};
use crate::history::HISTORY_TABLE;
use crate::source::SetKind;
use crate::sql::quote_ident;
use crate::target::Target;
use crate::template::{Instantiation, Template};
use domain::tenant::TenantSlug;

/// Schema-per-tenant backend over one database.
#[derive(Debug, Clone)]
pub struct PgSchemaBackend {
    /// Storage creation and the like, and sessions unless `slots`.
    pool: PgPool,
    /// Where sessions get their connection, when set.
    slots: Option<ServerSlots>,
}

impl PgSchemaBackend {
    pub fn new(pool: PgPool) -> Self {
        PgSchemaBackend { pool, slots: None }
    }

    /// Sessions run on connections that hold one of `slots` (which must name this backend's
    /// database): at most that many sessions at once across every process sharing them.
    pub fn with_slots(self, slots: ServerSlots) -> Self {
        PgSchemaBackend {
            slots: Some(slots),
            ..self
        }
    }

    /// A backend with its own pool of at most `max_connections`, which bounds how many tenants
    /// of this database migrate at once.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn connect(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> Result<Self, BackendError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // No ping before every checkout: it would add a round trip per tenant. A connection
            // that died since its last use fails that tenant's run with a transient error, which
            // callers retry, and the pool replaces it.
            .test_before_acquire(false)
            .connect_with(
                options
                    .application_name("tenancy-migrations")
                    .disable_statement_logging(),
            )
            .await?;
        Ok(PgSchemaBackend::new(pool))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Reads the tenant's schema, migrated by `set`, as a template's parts (see
    /// [`crate::Engine::build_template`]).
    ///
    /// # Errors
    /// A database error.
    pub(crate) async fn read_template(
        &self,
        tenant: &TenantSlug,
        set: SetKind,
    ) -> Result<ReadTemplate, BackendError> {
        let name = tenant.storage_name();
        let mut conn = self.pool.acquire().await?;
        template::read_template(&mut conn, &name, &name, set).await
    }

    /// Instantiates `template` on the tenant's empty schema in one transaction that checks its
    /// fingerprint before committing (see [`crate::Engine::instantiate_template`]).
    ///
    /// # Errors
    /// A database error, or a template statement that fails: nothing stays.
    pub(crate) async fn instantiate_template(
        &self,
        tenant: &TenantSlug,
        set: SetKind,
        template: &Template,
        timeouts: Timeouts,
    ) -> Result<Instantiation, BackendError> {
        let conn = self.pool.acquire().await?;
        let lock_key = Target::Tenant(tenant.clone()).lock_key();
        template::instantiate(
            conn,
            &tenant.storage_name(),
            lock_key,
            set,
            template,
            timeouts,
        )
        .await
    }
}

impl MigrationBackend for PgSchemaBackend {
    type Session = PgSession;

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn open(&self, target: &Target) -> Result<PgSession, BackendError> {
        let conn = match &self.slots {
            Some(slots) => {
                let spread = u128::from(target.lock_key().unsigned_abs());
                PgConn::Slot(
                    slots
                        .acquire(spread)
                        .await?
                        .ok_or(BackendError::ShuttingDown)?,
                )
            }
            None => PgConn::Pooled(self.pool.acquire().await?),
        };
        let schema = match target {
            Target::Platform => "public".to_owned(),
            Target::Tenant(slug) => slug.storage_name(),
        };
        Ok(PgSession::new(conn, schema, target.lock_key()))
    }

    async fn create_storage(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        // The schema and its history table in one transaction (one message): the engine's first
        // read of a new tenant then finds an empty history instead of a missing table.
        let schema = quote_ident(&tenant.storage_name());
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; {}",
            history_table_ddl(&format!("{schema}.{}", quote_ident(HISTORY_TABLE)))
        );
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&self.pool).await {
            Ok(_) => Ok(()),
            // Two concurrent `IF NOT EXISTS` can both pass the check; the loser sees a unique
            // index of the catalog (23505), duplicate_schema (42P06) or duplicate_table (42P07).
            // Either way it exists.
            Err(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("23505" | "42P06" | "42P07")) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn drop_storage(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        let sql = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(&tenant.storage_name())
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn storage_exists(&self, tenant: &TenantSlug) -> Result<bool, BackendError> {
        let exists =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(tenant.storage_name())
                .fetch_one(&self.pool)
                .await?;
        Ok(exists)
    }
}

impl ProvisionedStorage for PgSchemaBackend {
    /// A provisioned tenant: its schema with the history table
    /// ([`MigrationBackend::create_storage`]) and its role, which can use the schema's tables
    /// and nothing else: `USAGE` on the schema and default privileges on what migrations create
    /// there, `CONNECT` on this database (closed to `PUBLIC`), and `public` closed to `PUBLIC`.
    /// Idempotent.
    ///
    /// # Errors
    /// A database error.
    async fn create_storage_with_role(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        self.create_storage(tenant).await?;
        let name = pg_role::role_name(tenant);
        // The role and the database-wide grants as the connecting user; the schema's grants as
        // the session's role, the schema's owner, since default privileges apply to what their
        // own role creates (the tenants' owner, when the pool runs as one: `SET ROLE`).
        let grants = format!(
            "{AS_CONNECTING_USER};
             {create_role};
             {CLOSE_SERVER_DATABASE};
             {CLOSE_PUBLIC_SCHEMA};
             DO $tenancy$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {role}); END $tenancy$;
             {AS_SESSION_ROLE};
             GRANT USAGE ON SCHEMA {name} TO {name};
             ALTER DEFAULT PRIVILEGES IN SCHEMA {name} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {name};
             ALTER DEFAULT PRIVILEGES IN SCHEMA {name} GRANT USAGE, SELECT ON SEQUENCES TO {name}",
            create_role = pg_role::create_role(tenant),
            role = pg_role::role_literal(tenant),
        );
        let mut conn = self.pool.acquire().await?;
        pg_role::run_grants(&mut conn, &grants).await
    }

    /// Drops the tenant's schema and its role (tests and teardown).
    ///
    /// # Errors
    /// A database error.
    async fn drop_storage_with_role(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        self.drop_storage(tenant).await?;
        let mut conn = self.pool.acquire().await?;
        pg_role::drop_role(&mut conn, tenant).await
    }

    /// Every tenant in one catalog query: the caller sizes the batch.
    async fn fingerprints(
        &self,
        tenants: &[TenantSlug],
    ) -> Result<BTreeMap<TenantSlug, Fingerprint>, BackendError> {
        let schemas: Vec<(String, String)> = tenants
            .iter()
            .map(|t| (t.storage_name(), t.storage_name()))
            .collect();
        let mut conn = self.pool().acquire().await?;
        let mut read = read_fingerprints(&mut conn, &schemas).await?;
        Ok(tenants
            .iter()
            .map(|t| {
                let fingerprint = read.remove(&t.storage_name()).unwrap_or_default();
                (t.clone(), fingerprint)
            })
            .collect())
    }

    /// Every tenant in one catalog query, as for the fingerprints.
    async fn catalog_stamps(
        &self,
        tenants: &[TenantSlug],
    ) -> Result<BTreeMap<TenantSlug, CatalogStamp>, BackendError> {
        let schemas: Vec<String> = tenants.iter().map(TenantSlug::storage_name).collect();
        let mut conn = self.pool().acquire().await?;
        let mut read = read_stamps(&mut conn, &schemas).await?;
        Ok(tenants
            .iter()
            .filter_map(|t| Some((t.clone(), read.remove(&t.storage_name())?)))
            .collect())
    }
}
