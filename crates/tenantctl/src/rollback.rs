//! `tenantctl rollback` as named steps, in order; a rollback is always a manual decision.
//! Nothing here prints: each step returns what happened, and the command
//! (`src/cmd/rollback.rs`) says it.
//!
//! 1. [`select_tenants`]: one tenant, the tenants a deploy migrated, or every active or
//!    suspended tenant.
//! 2. [`preview`]: every tenant's down scripts to the target are read first, and [`Plan::of`]
//!    decides: one tenant that cannot be rolled back (an irreversible migration in its range, or
//!    unreadable) stops the whole rollback before anything is published, and down scripts that
//!    destroy data need the operator's explicit allowance.
//! 3. [`publish`]: one `rollback.tenant` per tenant with something to revert, carrying the
//!    operator's identity to the migrator, which reverts and emits `migration.rollback` (stored
//!    in the audit trail).
//! 4. [`follow()`]: until every tenant is at or before the target, or marked failed.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use domain::Version;
use domain::message::RollbackTenant;
use domain::provisioning::TenantStatus;
use domain::tenant::TenantSlug;
use engine::{MigrationSet, RevertPreview};
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use shared::bus::{Bus, BusError};
use shared::platform::{PlatformDb, TenantRecord};
use shared::tenant_servers::TenantServers;
use uuid::Uuid;

use crate::follow::{self, Mark, Standing, Tally};

/// Tenants read at once.
const READ_WINDOW: usize = 8;
/// Commands published in flight at once.
const PUBLISH_WINDOW: usize = 64;

/// Which tenants a rollback takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One tenant.
    Tenant(TenantSlug),
    /// The tenants a deploy migrated (applied something to).
    MigratedBy(Uuid),
    /// Every active or suspended tenant.
    All,
}

/// Step 1: the tenants of `scope`.
///
/// # Errors
/// No such tenant or deploy, or a database error.
pub async fn select_tenants(
    platform: &PlatformDb,
    scope: &Scope,
) -> anyhow::Result<Vec<TenantRecord>> {
    if let Scope::Tenant(slug) = scope {
        let tenants = platform.tenants(Some(slug)).await?;
        anyhow::ensure!(!tenants.is_empty(), "there is no tenant {slug}");
        return Ok(tenants);
    }
    let all = platform.tenants(None).await?;
    if let Scope::MigratedBy(deploy) = scope {
        let deploy = *deploy;
        anyhow::ensure!(
            platform.deploy(deploy).await?.is_some(),
            "there is no deploy {deploy}"
        );
        let migrated: HashSet<Uuid> = platform
            .deploy_results(deploy, None)
            .await?
            .into_iter()
            .filter(|r| r.applied > 0)
            .map(|r| r.tenant_id)
            .collect();
        return Ok(all
            .into_iter()
            .filter(|t| migrated.contains(&t.id))
            .collect());
    }
    Ok(all
        .into_iter()
        .filter(|t| matches!(t.status, TenantStatus::Active | TenantStatus::Suspended))
        .collect())
}

/// What rolling one tenant back would run.
#[derive(Debug)]
pub struct TenantPreview {
    pub tenant: TenantRecord,
    /// Its down scripts, newest first (none: nothing to revert); or why it cannot be rolled
    /// back.
    pub downs: Result<Vec<RevertPreview>, String>,
}

/// Step 2: reads every tenant's down scripts back to `to`, in the order of `tenants`.
pub async fn preview(
    servers: &TenantServers,
    set: &MigrationSet,
    tenants: Vec<TenantRecord>,
    to: Version,
) -> Vec<TenantPreview> {
    stream::iter(tenants)
        .map(|tenant| async move {
            let downs = match servers.storage(&tenant.server).await {
                Ok(storage) => storage
                    .preview_revert(&tenant.slug, tenant.isolation, set, to)
                    .await
                    .map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            TenantPreview { tenant, downs }
        })
        .buffered(READ_WINDOW)
        .collect()
        .await
}

/// What the previews decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Tenants that cannot be rolled back: any stops the rollback.
    pub refused: usize,
    /// Down scripts that destroy data: they need the operator's allowance.
    pub destroying: usize,
    /// The tenants with something to revert, which get a command.
    pub to_publish: Vec<&'a TenantRecord>,
}

impl<'a> Plan<'a> {
    pub fn of(previews: &'a [TenantPreview]) -> Self {
        let mut plan = Plan {
            refused: 0,
            destroying: 0,
            to_publish: Vec::new(),
        };
        for TenantPreview { tenant, downs } in previews {
            match downs {
                Err(_) => plan.refused += 1,
                Ok(downs) => {
                    plan.destroying += downs.iter().filter(|d| !d.destroys_data.is_empty()).count();
                    if !downs.is_empty() {
                        plan.to_publish.push(tenant);
                    }
                }
            }
        }
        plan
    }

    /// Whether the rollback still needs the operator to allow data loss.
    pub fn needs_allow_data_loss(&self, allowed: bool) -> bool {
        self.destroying > 0 && !allowed
    }
}

/// Step 3: one confirmed `rollback.tenant` to `to` per tenant, on behalf of `operator`.
///
/// # Errors
/// A publish that was not confirmed.
pub async fn publish(
    bus: &Bus,
    tenants: &[&TenantRecord],
    to: Version,
    operator: &str,
    allow_data_loss: bool,
) -> Result<(), BusError> {
    let publisher = bus.publisher();
    stream::iter(tenants)
        .map(|tenant| async move {
            let command = publisher.event(RollbackTenant {
                tenant_id: tenant.id,
                to_version: to,
                operator: operator.to_owned(),
                allow_data_loss,
            });
            publisher.publish(&command).await
        })
        .buffer_unordered(PUBLISH_WINDOW)
        .try_collect::<()>()
        .await
}

/// Where a tenant being rolled back stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// At or before the target.
    RolledBack(Version),
    /// Marked as needing reprocessing: its rollback (or an earlier migration) failed.
    Failed(Version, String),
    /// Still after the target.
    Pending(Version),
    /// Its row is gone.
    Gone,
}

impl Outcome {
    /// Where the tenant whose row reads `now` stands, for a rollback to `to`.
    pub fn of(now: Option<&TenantRecord>, to: Version) -> Self {
        match now {
            None => Outcome::Gone,
            Some(t) => match &t.migration_error {
                Some(error) => Outcome::Failed(t.schema_version, error.clone()),
                None if t.schema_version <= to => Outcome::RolledBack(t.schema_version),
                None => Outcome::Pending(t.schema_version),
            },
        }
    }

    /// Its name in JSON output.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::RolledBack(_) => "rolled_back",
            Outcome::Failed(..) => "failed",
            Outcome::Pending(_) => "pending",
            Outcome::Gone => "gone",
        }
    }
}

/// A rollback followed to its end, or to the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed<'a> {
    /// No tenant is pending any more (else the deadline passed first).
    pub finished: bool,
    pub tally: Tally,
    /// Where each tenant stands, in the order given.
    pub outcomes: Vec<(&'a TenantRecord, Outcome)>,
}

/// Step 4: reads where `tenants` stand until none is pending or `deadline` passes, telling
/// `on_progress` each tally.
///
/// # Errors
/// A database error.
pub async fn follow<'a>(
    platform: &PlatformDb,
    tenants: &[&'a TenantRecord],
    to: Version,
    deadline: Instant,
    on_progress: impl FnMut(&Standing),
) -> anyhow::Result<Followed<'a>> {
    let poll = || async move {
        // One read of the registry per poll, whatever the number of tenants.
        let now: HashMap<Uuid, TenantRecord> = platform
            .tenants(None)
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let outcomes: Vec<(&'a TenantRecord, Outcome)> = tenants
            .iter()
            .map(|t| (*t, Outcome::of(now.get(&t.id), to)))
            .collect();
        let standing = standing_of(&outcomes);
        let tally = standing.all;
        Ok((standing, (tally, outcomes)))
    };
    let (finished, (tally, outcomes)) =
        follow::until_done(Some(deadline), poll, on_progress).await?;
    Ok(Followed {
        finished,
        tally,
        outcomes,
    })
}

/// Rolled back (or gone) counts as done, failed as failed, the rest as unfinished; on the
/// server each tenant lives on.
fn standing_of(outcomes: &[(&TenantRecord, Outcome)]) -> Standing {
    let mut standing = Standing::default();
    for (tenant, outcome) in outcomes {
        let mark = match outcome {
            Outcome::RolledBack(_) | Outcome::Gone => Mark::Succeeded,
            Outcome::Failed(..) => Mark::Failed,
            Outcome::Pending(_) => Mark::Unfinished,
        };
        standing.add(tenant.server.as_str(), mark, 1);
    }
    standing
}

#[cfg(test)]
mod tests {
    use domain::Version;
    use domain::tenant::TenantSlug;
    use engine::RevertPreview;
    use engine::lint::{Finding, LintCode};
    use shared::platform::TenantRecord;
    use uuid::Uuid;

    use super::{Outcome, Plan, TenantPreview, standing_of};
    use crate::follow::Tally;

    /// The `n`th version of a small tenant set.
    fn version(n: i64) -> Version {
        Version::new(20270101000000 + n).unwrap_or_else(|e| panic!("{e}"))
    }

    fn tenant(slug: &str, at: i64, migration_error: Option<&str>) -> TenantRecord {
        TenantRecord {
            id: Uuid::new_v4(),
            slug: TenantSlug::parse(slug).unwrap_or_else(|e| panic!("{e}")),
            status: domain::provisioning::TenantStatus::Active,
            isolation: domain::Isolation::Schema,
            server: domain::server::ServerName::default_server(),
            schema_version: version(at),
            migration_error: migration_error.map(str::to_owned),
        }
    }

    fn down(v: i64, destroys_data: bool) -> RevertPreview {
        RevertPreview {
            version: version(v),
            description: "notice_board".to_owned(),
            file: format!("{}_notice_board.down.sql", version(v)),
            destroys_data: if destroys_data {
                vec![Finding {
                    code: LintCode::Destructive,
                    line: 1,
                    statement: "DROP TABLE notice_board".to_owned(),
                    message: "drops a table".to_owned(),
                }]
            } else {
                Vec::new()
            },
        }
    }

    fn preview(slug: &str, downs: Result<Vec<RevertPreview>, &str>) -> TenantPreview {
        TenantPreview {
            tenant: tenant(slug, 3, None),
            downs: downs.map_err(str::to_owned),
        }
    }

    #[test]
    fn a_plan_publishes_to_the_tenants_with_something_to_revert_and_counts_data_loss() {
        let previews = [
            preview("acme_towers", Ok(vec![down(3, true), down(2, false)])),
            preview("bay_view", Ok(Vec::new())),
            preview("cedar_court", Ok(vec![down(3, true)])),
        ];
        let plan = Plan::of(&previews);
        assert_eq!(plan.refused, 0);
        assert_eq!(plan.destroying, 2);
        let slugs: Vec<&str> = plan.to_publish.iter().map(|t| t.slug.as_str()).collect();
        assert_eq!(slugs, ["acme_towers", "cedar_court"]);
        assert!(plan.needs_allow_data_loss(false));
        assert!(!plan.needs_allow_data_loss(true));
    }

    #[test]
    fn one_tenant_that_cannot_be_rolled_back_is_a_refusal() {
        let previews = [
            preview("acme_towers", Ok(vec![down(3, false)])),
            preview("bay_view", Err("20270101000003 is irreversible")),
        ];
        let plan = Plan::of(&previews);
        assert_eq!((plan.refused, plan.destroying), (1, 0));
        assert!(!plan.needs_allow_data_loss(false));
    }

    #[test]
    fn a_tenant_is_rolled_back_at_or_before_the_target_failed_when_marked_and_gone_without_a_row() {
        let to = version(2);
        assert_eq!(
            Outcome::of(Some(&tenant("acme_towers", 2, None)), to),
            Outcome::RolledBack(version(2))
        );
        assert_eq!(
            Outcome::of(Some(&tenant("acme_towers", 1, None)), to),
            Outcome::RolledBack(version(1))
        );
        assert_eq!(
            Outcome::of(Some(&tenant("acme_towers", 3, None)), to),
            Outcome::Pending(version(3))
        );
        // A failure mark wins, even at the target: the tenant needs reprocessing.
        assert_eq!(
            Outcome::of(Some(&tenant("acme_towers", 2, Some("boom"))), to),
            Outcome::Failed(version(2), "boom".to_owned())
        );
        assert_eq!(Outcome::of(None, to), Outcome::Gone);
    }

    #[test]
    fn progress_counts_gone_tenants_as_done() {
        let records = [
            tenant("acme_towers", 2, None),
            tenant("bay_view", 3, None),
            tenant("cedar_court", 3, Some("boom")),
        ];
        let outcomes = [
            (&records[0], Outcome::RolledBack(version(2))),
            (&records[1], Outcome::Pending(version(3))),
            (&records[2], Outcome::Failed(version(3), "boom".to_owned())),
            (&records[0], Outcome::Gone),
        ];
        let expected = Tally {
            total: 4,
            succeeded: 2,
            failed: 1,
            unfinished: 1,
        };
        assert_eq!(standing_of(&outcomes).all, expected);
    }
}
