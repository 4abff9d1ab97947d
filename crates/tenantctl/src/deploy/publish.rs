//! Step 3 of a deploy: one confirmed `migrate.tenant` per tenant, a batch at a time, each batch
//! marked published before the next.

use anyhow::Context as _;
use domain::message::MigrateTenant;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use shared::platform::deploys::DeployTenant;
use shared::service::Context;

use super::Started;

/// Publishes in flight at once: enough to hide the broker's confirm latency.
const PUBLISH_WINDOW: usize = 1024;

/// Publishes one confirmed `migrate.tenant` to `deploy`'s target per tenant of `tenants`,
/// `batch` at a time, and marks each batch published.
///
/// # Errors
/// A publish that was not confirmed (the tenants of its batch stay `pending`), or a database
/// error.
pub async fn publish(
    ctx: &Context,
    deploy: &Started,
    tenants: &[DeployTenant],
    batch: usize,
) -> anyhow::Result<()> {
    let publisher = ctx.bus.publisher();
    for chunk in tenants.chunks(batch.max(1)) {
        stream::iter(chunk)
            .map(|tenant| async move {
                let command = publisher.event(MigrateTenant {
                    tenant_id: tenant.id,
                    deploy_id: deploy.id,
                    target_version: Some(deploy.target),
                });
                publisher
                    .publish(&command)
                    .await
                    .with_context(|| format!("publishing migrate.tenant for {}", tenant.slug))
            })
            .buffer_unordered(PUBLISH_WINDOW)
            .try_collect::<()>()
            .await?;
        let ids: Vec<_> = chunk.iter().map(|t| t.id).collect();
        ctx.platform.mark_published(deploy.id, &ids).await?;
    }
    Ok(())
}
