//! `tenantctl deploy` as named steps, in the order a deploy takes them. Nothing here prints:
//! each step returns what happened, and the command (`src/cmd/deploy.rs`) says it.
//!
//! 1. [`static_errors`]: the static half of `migrations check`; an unapproved destructive
//!    migration or any other error stops a deploy before anything is applied or published.
//! 2. [`start`]: sets that contradict the released record are refused; the platform migrations
//!    are applied under the platform's migration lock; the deploy and its tenants (active and
//!    suspended) are recorded under the fleet lock, so a tenant that activates meanwhile joins
//!    the deploy by itself (`shared::platform::deploys`).
//! 3. [`refuse_drifted`]: tenants with something to apply whose schema drifted are recorded as
//!    failed and left out, unless `--allow-drift`.
//! 4. [`publish`]: one confirmed `migrate.tenant` per tenant, in batches, canary tenants first
//!    ([`Started::canary_split`]): the rest is published only if all of them reached the
//!    target; then [`finish_publishing`].
//! 5. [`follow`]: the results the migrators record, until every tenant is done.
//!
//! [`dry_run`] is what each tenant would run, instead of steps 2 to 5.

mod checks;
mod drift_gate;
mod dry_run;
mod follow;
mod publish;

use anyhow::Context as _;
use domain::Version;
use domain::server::ServerName;
use engine::Catalog;
use shared::platform::PlatformDb;
use shared::platform::deploys::{DeployTenant, NewDeploy};
use shared::service::Context;
use uuid::Uuid;

pub use checks::{refuse_conflicts, release_conflicts, static_errors};
pub use drift_gate::{Gate, refuse_drifted};
pub use dry_run::{DryRun, TenantPreview, dry_run};
pub use follow::{Counts, Followed, follow};
pub use publish::publish;

/// A deploy recorded, its platform migrations applied: what is left is publishing.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: Uuid,
    pub target: Version,
    /// The platform's version after its migrations (`None`: it has none).
    pub platform_version: Option<Version>,
    /// Platform migrations this deploy applied.
    pub platform_applied: usize,
    /// Every tenant of the deploy, canary tenants first.
    pub tenants: Vec<DeployTenant>,
    canary: usize,
}

impl Started {
    /// The canary tenants (published and followed first; none without `--canary`), and the
    /// rest.
    pub fn canary_split(&self) -> (&[DeployTenant], &[DeployTenant]) {
        self.tenants.split_at(self.canary)
    }

    /// Takes `refused` out of the deploy. The canary keeps its size: the next tenants take the
    /// refused ones' places, so a canary still proves the release on as many tenants.
    fn without(&mut self, refused: &std::collections::HashSet<Uuid>) {
        self.tenants.retain(|t| !refused.contains(&t.id));
        self.canary = self.canary.min(self.tenants.len());
    }
}

/// Step 2: refuses sets that contradict the released record (every released version must be
/// there, unchanged: a deploy of an older build is refused too), applies the platform
/// migrations, and records the deploy to `target` with its tenants. `canary` tenants (at most
/// all of them) will go first.
///
/// # Errors
/// A conflict with the released record (nothing was applied), failing platform migrations, or
/// a database error.
pub async fn start(
    ctx: &Context,
    catalog: &Catalog,
    target: Version,
    operator: String,
    canary: u32,
    server: Option<ServerName>,
) -> anyhow::Result<Started> {
    // Before anything is applied or published: the files must be the ones already released
    // (completed on some tenant; the migrators and the provisioner record them).
    refuse_conflicts(catalog, release_conflicts(&ctx.platform, catalog).await?)?;
    let platform_run = ctx
        .apply_platform_migrations()
        .await
        .context("applying the platform migrations")?;
    let id = Uuid::new_v4();
    let tenants = ctx
        .platform
        .record_deploy(&NewDeploy {
            id,
            target_version: target,
            platform_version: platform_run.after.unwrap_or(Version::ZERO),
            operator,
            canary,
            server,
        })
        .await?;
    let canary = usize::try_from(canary)
        .unwrap_or(usize::MAX)
        .min(tenants.len());
    Ok(Started {
        id,
        target,
        platform_version: platform_run.after,
        platform_applied: platform_run.steps.len(),
        tenants,
        canary,
    })
}

/// Ends step 3: the deploy is `published`, or, after a failed canary, `canary_failed` with the
/// tenants never published marked `canceled`.
///
/// # Errors
/// A database error.
pub async fn finish_publishing(
    platform: &PlatformDb,
    deploy: Uuid,
    canary_failed: bool,
) -> anyhow::Result<()> {
    Ok(platform.finish_publishing(deploy, canary_failed).await?)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::collections::HashSet;

    use domain::Version;
    use domain::server::ServerName;
    use domain::tenant::TenantSlug;
    use shared::platform::deploys::DeployTenant;
    use uuid::Uuid;

    use super::Started;

    fn started(tenants: usize, canary: usize) -> Started {
        Started {
            id: Uuid::new_v4(),
            target: Version::new(20_270_101_000_000).unwrap(),
            platform_version: None,
            platform_applied: 0,
            tenants: (0..tenants)
                .map(|i| DeployTenant {
                    id: Uuid::new_v4(),
                    slug: TenantSlug::parse(&format!("tenant_{i}")).unwrap(),
                    server: ServerName::default_server(),
                    schema_version: Version::new(20_261_124_110_800).unwrap(),
                })
                .collect(),
            canary,
        }
    }

    #[test]
    fn refused_tenants_leave_the_deploy_and_the_next_ones_take_their_canary_places() {
        let mut deploy = started(6, 3);
        let refused: HashSet<Uuid> = [deploy.tenants[1].id, deploy.tenants[4].id].into();
        let kept: Vec<String> = deploy
            .tenants
            .iter()
            .filter(|t| !refused.contains(&t.id))
            .map(|t| t.slug.to_string())
            .collect();
        deploy.without(&refused);
        let (canary, rest) = deploy.canary_split();
        let slugs = |tenants: &[DeployTenant]| -> Vec<String> {
            tenants.iter().map(|t| t.slug.to_string()).collect()
        };
        assert_eq!(slugs(canary), ["tenant_0", "tenant_2", "tenant_3"]);
        assert_eq!(slugs(rest), ["tenant_5"]);
        assert_eq!(
            [slugs(canary), slugs(rest)].concat(),
            kept,
            "order unchanged"
        );

        let mut few = started(3, 2);
        let two: HashSet<Uuid> = [few.tenants[0].id, few.tenants[1].id].into();
        few.without(&two);
        assert_eq!(
            slugs(few.canary_split().0),
            ["tenant_2"],
            "as many as are left"
        );
        assert!(few.canary_split().1.is_empty());
    }
}
