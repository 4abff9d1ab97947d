//! Step 4 of a deploy: following the results the migrators record in `deploy_tenants` until
//! every tenant is done, or a deadline; then each tenant's result, and the counts a summary
//! shows.

use std::collections::BTreeMap;
use std::time::Instant;

use shared::platform::PlatformDb;
use shared::platform::deploys::DeployResultRow;
use uuid::Uuid;

use crate::follow::{self, Mark, Standing};

/// `deploy_tenants.status` of a tenant that reached the target.
const SUCCEEDED: &str = "succeeded";
/// ... that failed for good (its command is in the dead-letter queue).
const FAILED: &str = "failed";
/// ... that was never published: the canary failed.
const CANCELED: &str = "canceled";

/// A deploy (or its canary) followed to its end, or to the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// Every followed tenant is done (else the deadline passed first).
    pub finished: bool,
    /// Each followed tenant's result.
    pub rows: Vec<DeployResultRow>,
}

impl Followed {
    /// Whether every followed tenant reached the target: a deploy's success, a canary's
    /// go-ahead.
    pub fn all_succeeded(&self) -> bool {
        self.finished && self.rows.iter().all(|row| row.status == SUCCEEDED)
    }
}

/// How the tenants of a deploy's results ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub tenants: usize,
    /// At the target, whether or not anything ran.
    pub succeeded: usize,
    /// At the target, having applied something.
    pub migrated: usize,
    pub failed: usize,
    pub canceled: usize,
    /// Neither at the target nor failed yet.
    pub unfinished: usize,
}

impl Counts {
    pub fn of(rows: &[DeployResultRow]) -> Self {
        let mut counts = Counts {
            tenants: rows.len(),
            ..Counts::default()
        };
        for row in rows {
            match row.status.as_str() {
                SUCCEEDED => {
                    counts.succeeded += 1;
                    if row.applied != 0 {
                        counts.migrated += 1;
                    }
                }
                FAILED => counts.failed += 1,
                CANCELED => counts.canceled += 1,
                _ => counts.unfinished += 1,
            }
        }
        counts
    }
}

/// Follows `deploy` (or only the tenants of `only`: the canary) until every tenant is done or
/// `deadline` passes, telling `on_progress` where it stands; then reads each tenant's result.
///
/// # Errors
/// A database error.
pub async fn follow(
    platform: &PlatformDb,
    deploy: Uuid,
    only: Option<&[Uuid]>,
    deadline: Option<Instant>,
    on_progress: impl FnMut(&Standing),
) -> anyhow::Result<Followed> {
    let poll = || async move {
        let counts = match only {
            None => platform.deploy_progress(deploy).await?,
            Some(ids) => {
                let mut counts = BTreeMap::new();
                for row in platform.deploy_results(deploy, Some(ids)).await? {
                    *counts.entry((row.server, row.status)).or_insert(0) += 1;
                }
                counts
            }
        };
        Ok((standing_of(&counts), ()))
    };
    let (finished, ()) = follow::until_done(deadline, poll, on_progress).await?;
    let rows = platform.deploy_results(deploy, only).await?;
    Ok(Followed { finished, rows })
}

/// Counts by server and `deploy_tenants.status`, as progress.
fn standing_of(counts: &BTreeMap<(String, String), i64>) -> Standing {
    let mut standing = Standing::default();
    for ((server, status), count) in counts {
        let mark = match status.as_str() {
            SUCCEEDED => Mark::Succeeded,
            FAILED | CANCELED => Mark::Failed,
            _ => Mark::Unfinished,
        };
        standing.add(server, mark, u64::try_from(*count).unwrap_or(0));
    }
    standing
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shared::platform::deploys::DeployResultRow;
    use uuid::Uuid;

    use super::{Counts, Followed, standing_of};
    use crate::follow::Tally;

    fn row(status: &str, applied: i32) -> DeployResultRow {
        DeployResultRow {
            tenant_id: Uuid::new_v4(),
            slug: "acme_towers".to_owned(),
            server: "default".to_owned(),
            status: status.to_owned(),
            from_version: None,
            to_version: None,
            applied,
            attempts: 1,
            error: None,
            duration_ms: None,
        }
    }

    #[test]
    fn progress_counts_canceled_tenants_as_failed_and_every_other_status_as_unfinished() {
        let on = |server: &str, status: &str| (server.to_owned(), status.to_owned());
        let counts = BTreeMap::from([
            (on("default", "succeeded"), 5),
            (on("default", "failed"), 1),
            (on("pg-b", "canceled"), 2),
            (on("pg-b", "pending"), 3),
            (on("default", "published"), 4),
            (on("pg-b", "retrying"), 1),
        ]);
        let standing = standing_of(&counts);
        let tally = |total, succeeded, failed, unfinished| Tally {
            total,
            succeeded,
            failed,
            unfinished,
        };
        assert_eq!(standing.all, tally(16, 5, 3, 8));
        assert_eq!(standing.servers["default"], tally(10, 5, 1, 4));
        assert_eq!(standing.servers["pg-b"], tally(6, 0, 2, 4));
    }

    #[test]
    fn a_summary_tells_migrated_tenants_from_those_already_at_the_target() {
        let rows = [
            row("succeeded", 2),
            row("succeeded", 0),
            row("failed", 0),
            row("canceled", 0),
            row("retrying", 0),
        ];
        let expected = Counts {
            tenants: 5,
            succeeded: 2,
            migrated: 1,
            failed: 1,
            canceled: 1,
            unfinished: 1,
        };
        assert_eq!(Counts::of(&rows), expected);
    }

    #[test]
    fn only_a_finished_follow_where_every_tenant_succeeded_is_a_success() {
        let done = |finished, statuses: &[&str]| Followed {
            finished,
            rows: statuses.iter().map(|s| row(s, 1)).collect(),
        };
        assert!(done(true, &["succeeded", "succeeded"]).all_succeeded());
        assert!(done(true, &[]).all_succeeded());
        assert!(!done(true, &["succeeded", "failed"]).all_succeeded());
        assert!(!done(true, &["canceled"]).all_succeeded());
        assert!(!done(false, &["succeeded"]).all_succeeded());
    }
}
