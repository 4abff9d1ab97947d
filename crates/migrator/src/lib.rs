#![doc = include_str!("../README.md")]
//!
//! # Modules
//! - `decision`: the policy, pure: whether a command runs, and what its end means for the
//!   result row, the event and the message.
//! - `migrate`, `rollback`: the two handlers, each a sequence of named steps around
//!   `decision`.
//! - `steps`: the steps both handlers share (read the tenant, take a slot, record and announce).
//! - `recorder`, `tenants`, over `batcher`: the platform-database writes and reads of concurrent
//!   commands, batched.
//! - `metrics`: the migrator's instruments.
//! - `tests`: the handlers against PostgreSQL, with testkit's `RecordingPublisher` as the bus.
//!
//! The migrator reaches the broker only through `shared::bus` (never lapin) and the tenants
//! only through the engine and `shared::tenant_storage`.

mod batcher;
mod decision;
mod fleet;
mod metrics;
mod migrate;
mod recorder;
mod rollback;
mod shares;
mod steps;
mod tenants;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use domain::version::Version;
use engine::{Catalog, EngineOptions};
use recorder::Recorder;
use shared::bus::consumer::{self, ConsumerOptions};
use shared::bus::{EventPublisher, Publisher, WorkQueue};
use shared::platform::{PlatformDb, ReleaseRecorder};
use shared::service::Context;
use shared::tenant_servers::{Connection, TenantServers};
use shares::ServerShares;
use tenants::TenantReader;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use migrate::MigrateHandler;
pub use rollback::RollbackHandler;

/// What both handlers share. `P` publishes the lifecycle events: the bus's [`Publisher`] in the
/// service, an in-memory recorder in tests.
pub struct Migrator<P = Publisher> {
    /// Every tenant server, each migrating on its own slots.
    servers: TenantServers,
    catalog: Arc<Catalog>,
    publisher: P,
    recorder: Recorder,
    tenants: TenantReader,
    metrics: metrics::Metrics,
    /// What this process applies joins the released record.
    released: ReleaseRecorder,
    /// Each server's share of the commands in hand: a slow server gives way to the others.
    shares: ServerShares,
    shutdown: CancellationToken,
}

/// What a [`Migrator`] is made of.
pub(crate) struct Parts<P> {
    pub platform: PlatformDb,
    /// The tenant servers, connected with [`Connection::Slots`].
    pub servers: TenantServers,
    pub catalog: Arc<Catalog>,
    pub publisher: P,
    /// The slots this process may hold on one server.
    pub local_slots: u16,
    pub shutdown: CancellationToken,
}

impl<P: EventPublisher> Migrator<P> {
    /// A migrator, and the tasks that batch its platform-database calls (the result writer and
    /// the tenant reader): they end once the migrator is dropped.
    pub(crate) fn start(parts: Parts<P>) -> (Self, [JoinHandle<()>; 2]) {
        let (recorder, writer) = Recorder::spawn(parts.platform.clone());
        let (tenants, reader) = TenantReader::spawn(parts.platform.clone());
        let migrator = Migrator {
            metrics: metrics::Metrics::new(parts.servers.clone()),
            servers: parts.servers,
            catalog: parts.catalog,
            publisher: parts.publisher,
            recorder,
            tenants,
            released: ReleaseRecorder::new(parts.platform, "migrator"),
            shares: ServerShares::new(parts.local_slots),
            shutdown: parts.shutdown,
        };
        (migrator, [writer, reader])
    }
}

/// Runs the migrator (both queues) until `shutdown`.
///
/// # Errors
/// The tenant server is not PostgreSQL or unreachable, or a consumer could not run.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = ctx.config.migrator;
    if ctx.config.tenant_session_options().is_none() {
        anyhow::bail!("TENANT_DATABASE_URL must be a PostgreSQL server for the migrator");
    }
    // A migration holds a slot of its server, so no more than the slots of a server ever need
    // a connection there at once.
    let local_slots = settings.concurrency.min(settings.server_slots);
    let servers = TenantServers::new(
        ctx.platform.clone(),
        ctx.config.clone(),
        Connection::Slots {
            slots: settings.server_slots,
            local: local_slots,
            shutdown: shutdown.clone(),
        },
        EngineOptions::default(),
    );
    let (migrator, workers) = Migrator::start(Parts {
        platform: ctx.platform.clone(),
        servers: servers.clone(),
        catalog: ctx.catalog.clone(),
        publisher: ctx.bus.publisher().clone(),
        local_slots,
        shutdown: shutdown.clone(),
    });
    let migrator = Arc::new(migrator);
    let options = |component: &str, concurrency: u16| ConsumerOptions {
        concurrency,
        ready: Some(ctx.health.component(component)),
        ..ConsumerOptions::default()
    };
    let migrations = consumer::consume(
        &ctx.bus,
        WorkQueue::MigrateTenant,
        Arc::new(MigrateHandler(migrator.clone())),
        options("migrator", settings.concurrency),
        shutdown.clone(),
    );
    // Rollbacks are rare and operator-driven: a few at a time is plenty.
    let rollbacks = consumer::consume(
        &ctx.bus,
        WorkQueue::RollbackTenant,
        Arc::new(RollbackHandler(migrator.clone())),
        options("migrator-rollback", settings.concurrency.min(4)),
        shutdown.clone(),
    );
    let fleet = tokio::spawn(fleet::report(
        ctx.platform.clone(),
        ctx.bus.clone(),
        ctx.catalog.tenant.latest().unwrap_or(Version::ZERO),
        shared::telemetry::metric_interval(),
        shutdown.clone(),
    ));
    let (migrations, rollbacks) = tokio::join!(migrations, rollbacks);
    let _ = fleet.await;
    drop(migrator);
    for worker in workers {
        let _ = worker.await;
    }
    servers.close_idle().await;
    migrations?;
    rollbacks?;
    Ok(())
}
