//! What every service process shares, and how it starts: configuration, the platform
//! database, the bus, the migration sets, and health.
//!
//! Each service library exposes `run(ctx: Context, shutdown: CancellationToken)`; its binary
//! and `tenantctl up` build the [`Context`] here and call it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::bus::{Bus, BusError, Topology};
use crate::config::{Config, DatabaseUrl};
use crate::health::Health;
use crate::platform::{PlatformDb, StoreError};
use engine::release::{self, Coverage};
use engine::source::LoadError;
use engine::{
    Catalog, Engine, EngineError, EngineOptions, PgSchemaBackend, RunReport, SqliteBackend, Target,
};

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Migrations(#[from] LoadError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Released(#[from] engine::release::ReleaseRefused),
    #[error("shutdown requested while starting")]
    Cancelled,
}

/// The shared state of a service process. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub platform: PlatformDb,
    pub bus: Arc<Bus>,
    pub catalog: Arc<Catalog>,
    pub health: Health,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A service's start: connects to the platform database (creating it if missing) and to
    /// the broker (declaring the topology), waiting with backoff for either while it is down,
    /// and loads the migration sets. `process` names the connection and the CloudEvents
    /// `source`.
    ///
    /// # Errors
    /// Invalid migration sets, a database or broker that refuses (as opposed to one that is
    /// down), or `shutdown` while waiting.
    pub async fn connect(
        config: Config,
        process: &str,
        shutdown: &CancellationToken,
    ) -> Result<Self, StartError> {
        Self::open(config, process, shutdown, true).await
    }

    /// As [`Context::connect`], for operator commands: a missing platform database is refused
    /// ([`StoreError::DatabaseMissing`]) instead of created, so a mistyped `DATABASE_URL` never
    /// starts an empty fleet.
    ///
    /// # Errors
    /// As [`Context::connect`].
    pub async fn connect_existing(
        config: Config,
        process: &str,
        shutdown: &CancellationToken,
    ) -> Result<Self, StartError> {
        Self::open(config, process, shutdown, false).await
    }

    async fn open(
        config: Config,
        process: &str,
        shutdown: &CancellationToken,
        create: bool,
    ) -> Result<Self, StartError> {
        let catalog = Catalog::load(config.migrations_dir.as_deref())?;
        let platform = connect_platform(&config.database_url, create, shutdown).await?;
        let topology = Topology::new(config.namespace.clone());
        let bus = Bus::connect(&config.amqp_url, topology, process, process, shutdown).await?;
        Ok(Context {
            config: Arc::new(config),
            platform,
            bus: Arc::new(bus),
            catalog: Arc::new(catalog),
            health: Health::default(),
        })
    }

    /// Applies pending platform migrations (under the platform's migration lock: safe to run
    /// from several processes at once).
    ///
    /// # Errors
    /// As [`Engine::apply`].
    pub async fn apply_platform_migrations(&self) -> Result<RunReport, EngineError> {
        let options = EngineOptions {
            lock_wait: Duration::from_secs(120),
            ..EngineOptions::default()
        };
        match (&self.platform, &self.config.database_url) {
            (PlatformDb::Postgres(pool), _) => {
                Engine::new(PgSchemaBackend::new(pool.clone()), options)
                    .apply(&Target::Platform, &self.catalog.platform, None, &())
                    .await
            }
            (PlatformDb::Sqlite(_), DatabaseUrl::Sqlite { path }) => {
                Engine::new(SqliteBackend::beside_platform_file(path), options)
                    .apply(&Target::Platform, &self.catalog.platform, None, &())
                    .await
            }
            (PlatformDb::Sqlite(_), DatabaseUrl::Postgres { .. }) => {
                unreachable!("the pool follows the URL")
            }
        }
    }

    /// Waits until the platform database has every platform migration this build knows (a
    /// service never runs against an older platform schema; `tenantctl deploy` or `up` apply
    /// them), logging while it waits.
    ///
    /// # Errors
    /// Drift in the platform history, or `shutdown`.
    pub async fn wait_for_platform_schema(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<(), StartError> {
        let ready = self.health.component("platform-schema");
        loop {
            let standing = match (&self.platform, &self.config.database_url) {
                (PlatformDb::Postgres(pool), _) => {
                    Engine::new(PgSchemaBackend::new(pool.clone()), EngineOptions::default())
                        .status(&Target::Platform, &self.catalog.platform)
                        .await?
                }
                (PlatformDb::Sqlite(_), DatabaseUrl::Sqlite { path }) => {
                    Engine::new(
                        SqliteBackend::beside_platform_file(path),
                        EngineOptions::default(),
                    )
                    .status(&Target::Platform, &self.catalog.platform)
                    .await?
                }
                (PlatformDb::Sqlite(_), DatabaseUrl::Postgres { .. }) => {
                    unreachable!("the pool follows the URL")
                }
            };
            if standing.pending.is_empty() && standing.drift.is_empty() {
                self.check_released_sets().await?;
                ready.send_replace(true);
                return Ok(());
            }
            tracing::warn!(
                pending = standing.pending.len(),
                drift = standing.drift.len(),
                "the platform database is behind this build: waiting for `tenantctl deploy` (or `tenantctl up`) to migrate it"
            );
            tokio::select! {
                () = shutdown.cancelled() => return Err(StartError::Cancelled),
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
}

impl Context {
    /// Compares the tenant sets this process carries with what was released to tenants: a
    /// service never starts with an edited, deleted or renamed released migration. Released
    /// versions newer than this build (a rolling upgrade) are only logged.
    ///
    /// # Errors
    /// [`StartError::Released`] listing every conflict, or a database error.
    pub async fn check_released_sets(&self) -> Result<(), StartError> {
        let recorded = self.platform.released_migrations().await?;
        let mut conflicts = Vec::new();
        for set in [&self.catalog.tenant, &self.catalog.tenant_seeds] {
            conflicts.extend(release::conflicts(&recorded, set, Coverage::UpToNewest));
            let beyond = release::released_beyond(&recorded, set);
            if let Some(newest) = beyond.last() {
                tracing::warn!(
                    set = %set.kind,
                    released = beyond.len(),
                    newest = %newest,
                    "this build is older than the fleet: migrations up to {newest} were released after it was built"
                );
            }
        }
        if conflicts.is_empty() {
            return Ok(());
        }
        Err(release::ReleaseRefused {
            origin: self.catalog.tenant.origin.clone(),
            conflicts,
        }
        .into())
    }
}

/// Connects to the platform database, waiting with backoff (and a log line per attempt) while
/// it is unreachable.
async fn connect_platform(
    url: &DatabaseUrl,
    create: bool,
    shutdown: &CancellationToken,
) -> Result<PlatformDb, StartError> {
    let mut delays = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        match PlatformDb::connect(url, create, 8).await {
            Ok(platform) => return Ok(platform),
            Err(error) if error.is_transient() => {
                let delay = delays.next_delay();
                tracing::warn!(database = %url.redacted(), attempt, retry_in_ms = delay.as_millis() as u64, %error, "the platform database is not reachable yet; waiting for it");
                tokio::select! {
                    () = shutdown.cancelled() => return Err(StartError::Cancelled),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}
