#![doc = include_str!("../README.md")]

mod batcher;
mod metrics;
mod migrate;
mod recorder;
mod rollback;
mod tenants;

use std::sync::Arc;

use engine::{Catalog, EngineOptions, ServerSlots};
use recorder::Recorder;
use shared::bus::consumer::{self, ConsumerOptions};
use shared::bus::{Publisher, WorkQueue};
use shared::config::DatabaseUrl;
use shared::platform::ReleaseRecorder;
use shared::service::Context;
use shared::tenant_storage::TenantStorage;
use tenants::TenantReader;
use tokio_util::sync::CancellationToken;

pub use migrate::MigrateHandler;
pub use rollback::RollbackHandler;

/// What both handlers share.
pub struct Migrator {
    storage: TenantStorage,
    catalog: Arc<Catalog>,
    publisher: Publisher,
    slots: ServerSlots,
    recorder: Recorder,
    tenants: TenantReader,
    metrics: metrics::Metrics,
    /// What this process applies joins the released record.
    released: ReleaseRecorder,
    shutdown: CancellationToken,
}

/// Runs the migrator (both queues) until `shutdown`.
///
/// # Errors
/// The tenant server is not PostgreSQL or unreachable, or a consumer could not run.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = ctx.config.migrator;
    let DatabaseUrl::Postgres {
        options: server, ..
    } = &ctx.config.tenant_database_url
    else {
        anyhow::bail!("TENANT_DATABASE_URL must be a PostgreSQL server for the migrator");
    };
    // A migration holds a slot, so no more than the slots ever need a connection at once.
    let local = settings.concurrency.min(settings.server_slots);
    let slots = ServerSlots::new(
        (**server).clone(),
        settings.server_slots,
        local,
        shutdown.clone(),
    );
    let storage =
        TenantStorage::connect_with_slots(&ctx.config, slots.clone(), EngineOptions::default())
            .await?;
    let (recorder, writer) = Recorder::spawn(ctx.platform.clone());
    let (tenants, reader) = TenantReader::spawn(ctx.platform.clone());
    let migrator = Arc::new(Migrator {
        storage,
        catalog: ctx.catalog.clone(),
        publisher: ctx.bus.publisher().clone(),
        slots: slots.clone(),
        recorder,
        tenants,
        metrics: metrics::Metrics::new(),
        released: ReleaseRecorder::new(ctx.platform.clone(), "migrator"),
        shutdown: shutdown.clone(),
    });
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
    let (migrations, rollbacks) = tokio::join!(migrations, rollbacks);
    drop(migrator);
    let _ = tokio::join!(writer, reader);
    slots.close_idle().await;
    migrations?;
    rollbacks?;
    Ok(())
}
