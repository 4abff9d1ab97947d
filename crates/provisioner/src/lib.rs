#![doc = include_str!("../README.md")]

pub mod driver;
mod effects;
mod error;
mod provisioner;
mod request;
mod steps;
mod templates;

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::Isolation;
use domain::message::{CloudEvent, TenantRegistered};
use shared::backoff::Backoff;
use shared::bus::WorkQueue;
use shared::bus::consumer::{self, ConsumerOptions, Delivered, Handler, Outcome};
use shared::platform::tenants::TenantLock;
use shared::service::Context;
use shared::tenant_servers::TenantServers;
use sqlx::postgres::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use effects::{Emitted, ProvisioningEffects};
pub use error::StepError;
pub use provisioner::Provisioner;
pub use request::Request;

/// Tenants provisioned at once by one process (and the prefetch).
pub const CONCURRENCY: u16 = 8;

/// Runs the provisioner until `shutdown`.
///
/// # Errors
/// The tenant-seeds set has no admin-user script (every tenant would fail at `admin_user`), the
/// tenant server is not PostgreSQL or unreachable, or the consumer could not run.
pub async fn run(ctx: Context, shutdown: CancellationToken) -> anyhow::Result<()> {
    ctx.catalog.admin_user()?;
    if ctx.config.tenant_session_options().is_none() {
        anyhow::bail!("TENANT_DATABASE_URL must be a PostgreSQL server for the provisioner");
    }
    let servers = TenantServers::pooled(
        ctx.platform.clone(),
        ctx.config.clone(),
        u32::from(CONCURRENCY),
    );
    let provisioner = Provisioner::new(
        ctx.platform.clone(),
        servers,
        ctx.catalog.clone(),
        ctx.bus.publisher().clone(),
    )
    .with_templates(ctx.config.provisioner.templates);
    let locks = ctx.platform.lock_pool(u32::from(CONCURRENCY))?;
    let handler = Arc::new(ProvisionHandler::new(
        provisioner,
        locks,
        ctx.config.tenant_isolation,
    ));
    let options = ConsumerOptions {
        concurrency: CONCURRENCY,
        ready: Some(ctx.health.component("provisioner")),
        ..ConsumerOptions::default()
    };
    consumer::consume(
        &ctx.bus,
        WorkQueue::TenantRegistered,
        handler,
        options,
        shutdown,
    )
    .await?;
    Ok(())
}

/// Handles `tenant.registered`: one delivery at a time per tenant (a lock), every remaining
/// step. Generic over the [`ProvisioningEffects`] so that tests can interpose on the real ones.
pub struct ProvisionHandler<E> {
    effects: E,
    /// Connections for the per-tenant locks ([`PlatformDb::lock_pool`]).
    locks: PgPool,
    default_isolation: Isolation,
}

impl<E: ProvisioningEffects> ProvisionHandler<E> {
    pub fn new(effects: E, locks: PgPool, default_isolation: Isolation) -> Self {
        ProvisionHandler {
            effects,
            locks,
            default_isolation,
        }
    }
}

/// How long a delivery waits for another provisioner working on the same tenant.
const LOCK_WAIT: Duration = Duration::from_secs(30);

impl<E: ProvisioningEffects + 'static> Handler for ProvisionHandler<E> {
    type Event = TenantRegistered;

    async fn handle(&self, message: &Delivered<CloudEvent<TenantRegistered>>) -> Outcome {
        let request = Request::new(&message.event.data, self.default_isolation);
        let span = tracing::info_span!("provision", tenant.id = %request.tenant_id, tenant.slug = %request.slug, isolation = %request.isolation);
        async {
            let lock = match self.lock(&request).await {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    return Outcome::Retry {
                        reason: "another provisioner is working on this tenant".into(),
                    };
                }
                Err(error) => {
                    return Outcome::Retry {
                        reason: error.to_string(),
                    };
                }
            };
            let outcome =
                driver::provision(&self.effects, &request, message.is_last_delivery()).await;
            lock.release().await;
            outcome
        }
        .instrument(span)
        .await
    }
}

impl<P> ProvisionHandler<P> {
    async fn lock(
        &self,
        request: &Request,
    ) -> Result<Option<TenantLock>, shared::platform::StoreError> {
        let deadline = Instant::now() + LOCK_WAIT;
        let mut delays = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
        loop {
            if let Some(lock) =
                TenantLock::try_acquire(&self.locks, "provisioning", request.tenant_id).await?
            {
                return Ok(Some(lock));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(delays.next_delay()).await;
        }
    }
}
