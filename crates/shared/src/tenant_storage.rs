//! Where tenants live: the schemas or databases `tenant_<slug>` on the tenant server
//! (`TENANT_DATABASE_URL`), each with a role of its own, migrated by the engine.
//!
//! Everything about one tenant's storage (the schema or database, its history table, its role
//! and the grants that keep the role to its own storage) belongs to the engine backend of its
//! isolation mode: [`PgSchemaBackend`] or [`PgDatabaseBackend`]. This module holds one engine
//! of each and picks the tenant's once, in `with_engine!`; every operation delegates.
//!
//! PostgreSQL only: the engine alone runs on SQLite.

use std::collections::BTreeMap;

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

use crate::config::{Config, DatabaseUrl};
use domain::Isolation;
use domain::Version;
use domain::tenant::TenantSlug;
use engine::backend::{BackendError, ProvisionedStorage as _};
use engine::fingerprint::{CatalogStamp, Fingerprint};
use engine::plan::Standing;
use engine::template::{DatabaseTemplate, Instantiation, Template, TemplateError};
use engine::{
    AdminValues, Engine, EngineError, EngineOptions, MigrationSet, PgDatabaseBackend,
    PgSchemaBackend, ProgressSink, RunReport, ServerSlots, Target,
};

/// `with_engine!(storage, isolation, |engine| body)`: runs `body` with `engine` bound to
/// `storage`'s engine for `isolation`. The one place that dispatches on the isolation mode:
/// the two engines are of different types, so `body` is compiled once for each.
macro_rules! with_engine {
    ($storage:expr, $isolation:expr, |$engine:ident| $body:expr) => {
        match $isolation {
            Isolation::Schema => {
                let $engine = &$storage.schema;
                $body
            }
            Isolation::Database => {
                let $engine = &$storage.database;
                $body
            }
        }
    };
}

/// `TENANT_DATABASE_URL`'s server (`default`).
///
/// # Errors
/// The URL is not PostgreSQL.
pub fn default_server(config: &Config) -> Result<PgConnectOptions, BackendError> {
    match &config.tenant_database_url {
        DatabaseUrl::Postgres { options, .. } => Ok((**options).clone()),
        DatabaseUrl::Sqlite { .. } => Err(BackendError::InvalidScript(
            "TENANT_DATABASE_URL must be a PostgreSQL server for the services (SQLite tenants are for the engine's tests)".into(),
        )),
    }
}

/// The tenant server, for both isolation modes.
#[derive(Debug, Clone)]
pub struct TenantStorage {
    schema: Engine<PgSchemaBackend>,
    database: Engine<PgDatabaseBackend>,
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
        TenantStorage::connect_to(&default_server(config)?, config, max_connections, options).await
    }

    /// Like [`TenantStorage::connect`], for the tenant server `server` (the URL of a registered
    /// server; its password, if any, from the password file).
    ///
    /// # Errors
    /// The server is unreachable.
    pub async fn connect_to(
        server: &PgConnectOptions,
        config: &Config,
        max_connections: u32,
        options: EngineOptions,
    ) -> Result<Self, BackendError> {
        let server = server.clone().disable_statement_logging();
        let sessions = config
            .tenant_session_options_on(&server)
            .disable_statement_logging();
        let database = PgDatabaseBackend::connect(server).await?;
        Ok(TenantStorage {
            schema: Engine::new(
                PgSchemaBackend::connect(sessions, max_connections).await?,
                options,
            ),
            database: Engine::new(
                match &config.tenant_owner_role {
                    Some(owner) => database.owned_by(owner),
                    None => database,
                },
                options,
            ),
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
        server: &PgConnectOptions,
        config: &Config,
        slots: ServerSlots,
        options: EngineOptions,
    ) -> Result<Self, BackendError> {
        let storage = TenantStorage::connect_to(server, config, 1, options).await?;
        // The plain pool only serves storage creation, which the migrator never does.
        storage.schema.backend().pool().close().await;
        let schema = storage.schema.backend().clone().with_slots(slots);
        Ok(TenantStorage {
            schema: Engine::new(schema, options),
            ..storage
        })
    }

    /// Creates the tenant's schema or database (with its history table) and its role, which can
    /// reach its own schema or database and nothing else (see the backends'
    /// `create_storage_with_role`). Idempotent.
    ///
    /// # Errors
    /// A database error.
    pub async fn create(
        &self,
        tenant: &TenantSlug,
        isolation: Isolation,
    ) -> Result<(), BackendError> {
        with_engine!(self, isolation, |engine| {
            engine.backend().create_storage_with_role(tenant).await
        })
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
        with_engine!(self, isolation, |engine| {
            engine.apply(&target, set, to, sink).await
        })
    }

    /// The verified template of `set` on this server, for schema-isolated tenants (see
    /// [`Engine::build_template`]).
    ///
    /// # Errors
    /// As [`Engine::build_template`].
    pub async fn build_template(&self, set: &MigrationSet) -> Result<Template, TemplateError> {
        self.schema.build_template(set).await
    }

    /// Instantiates `template` on the schema-isolated tenant, whose storage exists (see
    /// [`Engine::instantiate_template`]). [`TenantStorage::apply`] afterwards finishes the job
    /// whatever the outcome.
    ///
    /// # Errors
    /// As [`Engine::instantiate_template`].
    pub async fn instantiate_template(
        &self,
        tenant: &TenantSlug,
        set: &MigrationSet,
        template: &Template,
    ) -> Result<Instantiation, EngineError> {
        self.schema
            .instantiate_template(tenant, set, template)
            .await
    }

    /// The verified template database of `set` on this server, for database-isolated tenants
    /// (see [`Engine::database_template`]).
    ///
    /// # Errors
    /// As [`Engine::database_template`].
    pub async fn database_template(
        &self,
        set: &MigrationSet,
    ) -> Result<DatabaseTemplate, TemplateError> {
        self.database.database_template(set).await
    }

    /// Creates the database-isolated tenant's storage as a copy of `template` (see
    /// [`Engine::create_from_template`]). [`TenantStorage::apply`] afterwards finishes the job.
    ///
    /// # Errors
    /// As [`Engine::create_from_template`]; [`TenantStorage::create`] then creates the
    /// database empty (dropping an unfinished copy).
    pub async fn create_from_template(
        &self,
        tenant: &TenantSlug,
        set: &MigrationSet,
        template: &DatabaseTemplate,
    ) -> Result<Instantiation, EngineError> {
        self.database
            .create_from_template(tenant, set, template)
            .await
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
        with_engine!(self, isolation, |engine| {
            engine.revert(&target, set, to, allow_data_loss, sink).await
        })
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
        with_engine!(self, isolation, |engine| {
            engine.preview_revert(&target, set, to).await
        })
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
        with_engine!(self, isolation, |engine| engine.status(&target, set).await)
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
        with_engine!(self, isolation, |engine| {
            engine.run_admin_user(&target, seeds, values).await
        })
    }

    /// The fingerprints of `tenants`, all of `isolation`: schema-isolated ones in one catalog
    /// query (the caller sizes the batch), a database each otherwise.
    ///
    /// # Errors
    /// A database error.
    pub async fn fingerprints(
        &self,
        isolation: Isolation,
        tenants: &[TenantSlug],
    ) -> Result<BTreeMap<TenantSlug, Fingerprint>, BackendError> {
        with_engine!(self, isolation, |engine| {
            engine.backend().fingerprints(tenants).await
        })
    }

    /// The catalog stamps of `tenants`, all of `isolation`, as [`TenantStorage::fingerprints`]
    /// reads their fingerprints; a tenant whose storage does not exist has none.
    ///
    /// # Errors
    /// A database error.
    pub async fn catalog_stamps(
        &self,
        isolation: Isolation,
        tenants: &[TenantSlug],
    ) -> Result<BTreeMap<TenantSlug, CatalogStamp>, BackendError> {
        with_engine!(self, isolation, |engine| {
            engine.backend().catalog_stamps(tenants).await
        })
    }

    /// The fingerprint `set` gives a tenant of `isolation` at `to`, from a scratch tenant on
    /// this server (which needs the provisioner's rights: creating schemas, databases, roles).
    ///
    /// # Errors
    /// As [`Engine::expected_fingerprint`].
    pub async fn expected_fingerprint(
        &self,
        isolation: Isolation,
        set: &MigrationSet,
        to: Version,
    ) -> Result<Fingerprint, EngineError> {
        with_engine!(self, isolation, |engine| {
            engine.expected_fingerprint(set, Some(to)).await
        })
    }

    /// The server's PostgreSQL major version (the catalogs' text of a definition may change
    /// between majors, so expected fingerprints are kept per major).
    ///
    /// # Errors
    /// A database error.
    pub async fn server_major(&self) -> Result<i32, BackendError> {
        let number: String = sqlx::query_scalar("SHOW server_version_num")
            .fetch_one(self.database.backend().admin_pool())
            .await?;
        number
            .parse::<i32>()
            .map(|n| n / 10_000)
            .map_err(|_| BackendError::InvalidScript(format!("server_version_num {number:?}")))
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
        with_engine!(self, isolation, |engine| {
            engine.backend().drop_storage_with_role(tenant).await
        })
    }
}
