//! What every service process shares, and how it starts and stops: configuration, telemetry,
//! signals, the platform database, the bus, the migration sets, and health.
//!
//! Each service library exposes `run(ctx: Context, shutdown: CancellationToken)`. Its binary is
//! [`main`] around it; `tenantctl up` starts one [`Process`] ([`Launch::start`]) and runs
//! several services in it ([`run_together`]).
//!
//! ```text
//! Launch::start: config → telemetry → signals → Context (platform database, broker: waited for)
//!                → platform schema (Wait: health first, then wait; Apply: apply, then health)
//! Process::stop: cancel → health endpoint ends → bus closed → telemetry flushed last
//! ```

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::bus::{Bus, BusError, Topology};
use crate::config::{Config, ConfigError, DatabaseUrl};
use crate::health::Health;
use crate::platform::{PlatformDb, StoreError};
use crate::telemetry::{TelemetryError, TelemetryGuard};
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
    Config(#[from] ConfigError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The health endpoint could not be served.
    #[error(transparent)]
    Health(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Migrations(#[from] LoadError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("applying the platform migrations")]
    PlatformMigrations(#[source] EngineError),
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

    /// What `tenantctl setup` and `up` do to the platform database: the pending platform
    /// migrations, the service roles' grants on its tables, and the released-sets check.
    ///
    /// # Errors
    /// Failing migrations or grants (the connecting user must own the platform tables), or
    /// released migrations this build contradicts.
    pub async fn set_up_platform(&self) -> Result<RunReport, StartError> {
        let platform = self
            .apply_platform_migrations()
            .await
            .map_err(StartError::PlatformMigrations)?;
        if self.platform.owns_platform_tables().await? {
            self.platform.grant_service_roles().await?;
            if let PlatformDb::Postgres(_) = self.platform {
                self.platform
                    .record_default_server_url(&self.config.tenant_database_url.redacted())
                    .await?;
            }
        } else {
            tracing::debug!(
                "not the platform tables' owner: their grants are left to `tenantctl setup`"
            );
        }
        self.check_released_sets().await?;
        Ok(platform)
    }

    /// Waits until the platform database has every platform migration this build knows (a
    /// service never runs against an older platform schema; `tenantctl setup` or `up` apply
    /// them), logging while it waits. Versions newer than this build (a rolling upgrade whose
    /// setup ran first) are accepted; an edited or deleted one is not.
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
            let set = &self.catalog.platform;
            let (ahead, drift): (Vec<_>, Vec<_>) = standing
                .drift
                .iter()
                .partition(|drift| drift.is_ahead_of(set));
            if !drift.is_empty() {
                // An edited or deleted platform migration: no wait will change that.
                return Err(StartError::Engine(EngineError::Plan {
                    target: Target::Platform,
                    source: engine::plan::PlanError::Drift(drift.into_iter().cloned().collect()),
                }));
            }
            if standing.pending.is_empty() {
                if !ahead.is_empty() {
                    // A rolling upgrade: the next release's setup ran first. Platform migrations
                    // only add (docs/DEPLOYMENT.md), so the previous release runs on.
                    tracing::warn!(
                        newer = ahead.len(),
                        "the platform database is ahead of this build: a newer release migrated it; running on it until this service is upgraded"
                    );
                }
                self.check_released_sets().await?;
                ready.send_replace(true);
                return Ok(());
            }
            tracing::warn!(
                pending = standing.pending.len(),
                "the platform database is behind this build: waiting for `tenantctl setup` (or `tenantctl up`) to migrate it"
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

/// The environment every service reads, for its `--help`.
pub const ENVIRONMENT_HELP: &str = "Environment (docs/CONFIG.md):
  DATABASE_URL                 the platform database (postgres://… or sqlite://<file>)
  TENANT_DATABASE_URL          the tenant server `default` [default: DATABASE_URL]
  PGPASSFILE                   passwords of the other tenant servers (`tenantctl servers add`)
  TENANT_ISOLATION             schema or database, for tenants that do not say [default: schema]
  TENANT_OWNER_ROLE            the role owning every tenant's storage, tenant sessions run as it
                               [default: the connecting user]
  AMQP_URL                     RabbitMQ; a cluster's nodes separated by commas
                               [default: amqp://guest:guest@127.0.0.1:5672/%2f]
  TENANCY_NAMESPACE            prefix of every exchange and queue name
  MIGRATIONS_DIR               migration sets replacing the ones built in
  HEALTH_ADDR                  where /healthz, /readyz and /metrics are served [default: 127.0.0.1:8080]
  LOG_FORMAT, RUST_LOG         log format (auto, human, json) and filter
  OTEL_EXPORTER_OTLP_ENDPOINT  where traces and metrics go, http(s):// (none: no export)
  OTEL_EXPORTER_OTLP_PROTOCOL  http/protobuf or grpc; OTEL_EXPORTER_OTLP_HEADERS, OTEL_SDK_DISABLED,
                               OTEL_SERVICE_NAME and the other standard OTEL_* variables";

/// How a process makes the platform schema ready before its services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformSchema {
    /// Wait until it has every platform migration this build knows, serving `/healthz`
    /// meanwhile: a service never runs against an older platform schema, and never migrates it
    /// (`tenantctl deploy` or `up` do).
    Wait,
    /// Apply the pending platform migrations (under the platform's migration lock) and check the
    /// released sets, then serve health: `tenantctl up`.
    Apply,
}

/// What a process is, for its start.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The service name of its telemetry.
    pub telemetry_name: &'static str,
    /// Names its broker connection and the CloudEvents `source` of what it publishes.
    pub process: &'static str,
    /// Where `/healthz`, `/readyz` and `/metrics` are served [default: `HEALTH_ADDR`].
    pub health_addr: Option<SocketAddr>,
    pub platform_schema: PlatformSchema,
}

impl Launch {
    /// A service as its own process: `name` everywhere, waiting for the platform schema.
    pub fn service(name: &'static str) -> Self {
        Launch {
            telemetry_name: name,
            process: name,
            health_addr: None,
            platform_schema: PlatformSchema::Wait,
        }
    }

    /// The start every process shares: the configuration from the environment, telemetry, a
    /// shutdown token cancelled by SIGTERM or SIGINT, the [`Context`] (waiting for a platform
    /// database or broker that is down), the health endpoint and the platform schema.
    ///
    /// # Errors
    /// Invalid configuration, telemetry that cannot be set up, a health address that cannot be
    /// bound, anything [`Context::connect`] refuses, platform migrations that fail, released
    /// migrations this build contradicts, or a signal while waiting.
    pub async fn start(self) -> Result<Process, StartError> {
        let config = Config::from_env()?;
        let telemetry =
            crate::telemetry::init(&config.otel, self.telemetry_name, config.log_format)?;
        let shutdown = crate::shutdown::on_signal();
        let health_addr = self.health_addr.unwrap_or(config.health_addr);
        let ctx = Context::connect(config, self.process, &shutdown).await?;
        let serve_health =
            || crate::health::spawn(health_addr, ctx.health.clone(), shutdown.clone());
        let health = match self.platform_schema {
            PlatformSchema::Wait => {
                let health = serve_health().await?;
                ctx.wait_for_platform_schema(&shutdown).await?;
                health
            }
            PlatformSchema::Apply => {
                let platform = ctx.set_up_platform().await?;
                tracing::info!(
                    applied = platform.steps.len(),
                    version = %platform.after.map_or("none".to_owned(), |v| v.to_string()),
                    "platform database migrated"
                );
                serve_health().await?
            }
        };
        Ok(Process {
            ctx,
            shutdown,
            health,
            telemetry,
        })
    }
}

/// A started process: its context and shutdown token for the services it runs.
#[derive(Debug)]
pub struct Process {
    pub ctx: Context,
    /// Cancelled by SIGTERM or SIGINT, or by [`Process::stop`].
    pub shutdown: CancellationToken,
    health: JoinHandle<()>,
    telemetry: TelemetryGuard,
}

impl Process {
    /// Stops in order: cancels the shutdown token (what still runs ends), lets the health
    /// endpoint end, closes the bus, and flushes telemetry last.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.health.await;
        self.ctx.bus.close().await;
        tracing::info!("stopped");
        self.telemetry.shutdown();
    }
}

/// A service binary's `main`: starts the process as [`Launch::service`] `name`, runs `run` until
/// it ends (on a signal, or on an error), stops the process and returns what `run` returned.
///
/// # Errors
/// The start failed ([`StartError`]), or `run` did.
pub async fn main<Run, Fut, E>(name: &'static str, run: Run) -> Result<(), E>
where
    Run: FnOnce(Context, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: From<StartError>,
{
    let process = Launch::service(name).start().await?;
    let result = run(process.ctx.clone(), process.shutdown.clone()).await;
    process.stop().await;
    result
}

/// A service to run beside others in one process: its name and its run.
pub type Service<E> = (&'static str, BoxFuture<'static, Result<(), E>>);

/// Runs `services` together until every one has ended; the first to end cancels `shutdown`,
/// which ends the others: a half-running system is worse than none. Each failure is logged.
/// Whether every service ended cleanly.
pub async fn run_together<E>(services: Vec<Service<E>>, shutdown: &CancellationToken) -> bool
where
    E: Display + Send + 'static,
{
    let mut running = JoinSet::new();
    for (name, run) in services {
        running.spawn(async move { (name, run.await) });
    }
    let mut clean = true;
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((service, Err(error))) => {
                tracing::error!(service, error = %format!("{error:#}"), "service stopped; shutting the others down");
                clean = false;
            }
            Err(error) => {
                tracing::error!(%error, "a service panicked; shutting the others down");
                clean = false;
            }
        }
        shutdown.cancel();
    }
    clean
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
