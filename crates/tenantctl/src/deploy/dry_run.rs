//! A deploy's dry run: what the platform and each tenant would run up to the target, and
//! whether the released record would refuse the deploy. Nothing is applied or published.

use domain::Version;
use domain::provisioning::TenantStatus;
use engine::plan::Standing;
use engine::release::ReleaseConflict;
use engine::{Catalog, Engine, EngineOptions, PgSchemaBackend, Target};
use futures_util::{StreamExt as _, stream};
use shared::config::Config;
use shared::platform::{PlatformDb, TenantRecord};
use shared::tenant_servers::TenantServers;

use super::release_conflicts;

/// Tenants read at once.
const READ_WINDOW: usize = 8;

/// What a deploy would do.
#[derive(Debug)]
pub struct DryRun {
    /// Where the platform stands: its pending migrations would be applied.
    pub platform: Standing,
    /// Every tenant a deploy would take (active and suspended), ordered by slug.
    pub tenants: Vec<TenantPreview>,
    /// What the sets contradict in the released record: a deploy would refuse.
    pub conflicts: Vec<ReleaseConflict>,
}

/// What one tenant would run.
#[derive(Debug)]
pub struct TenantPreview {
    pub tenant: TenantRecord,
    /// Where it stands, its `pending` cut at the target (what it would apply); or why it
    /// cannot be read.
    /// Or why it could not be read (its server unreachable, …).
    pub standing: Result<Standing, String>,
}

/// Reads what a deploy to `target` would do.
///
/// # Errors
/// The platform database cannot be read, or is not PostgreSQL; the tenant server cannot be
/// reached. (A tenant that cannot be read is a [`TenantPreview`] with its error.)
pub async fn dry_run(
    config: &Config,
    catalog: &Catalog,
    target: Version,
) -> anyhow::Result<DryRun> {
    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    let conflicts = release_conflicts(&platform, catalog).await?;
    let platform_standing = {
        let PlatformDb::Postgres(pool) = &platform else {
            anyhow::bail!("deploys need a PostgreSQL platform database");
        };
        Engine::new(PgSchemaBackend::new(pool.clone()), EngineOptions::default())
            .status(&Target::Platform, &catalog.platform)
            .await?
    };
    let servers = TenantServers::pooled(platform.clone(), std::sync::Arc::new(config.clone()), 8);
    let tenants: Vec<TenantRecord> = platform
        .tenants(None)
        .await?
        .into_iter()
        .filter(|t| matches!(t.status, TenantStatus::Active | TenantStatus::Suspended))
        .collect();
    let tenants = stream::iter(tenants)
        .map(|tenant| {
            let servers = &servers;
            async move {
                let standing = match servers.storage(&tenant.server).await {
                    Ok(storage) => storage
                        .status(&tenant.slug, tenant.isolation, &catalog.tenant)
                        .await
                        .map(|mut standing| {
                            standing.pending.retain(|v| *v <= target);
                            standing
                        })
                        .map_err(|e| e.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                TenantPreview { tenant, standing }
            }
        })
        .buffered(READ_WINDOW)
        .collect()
        .await;
    Ok(DryRun {
        platform: platform_standing,
        tenants,
        conflicts,
    })
}
