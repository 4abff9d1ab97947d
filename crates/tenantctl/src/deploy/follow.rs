//! Step 4 of a deploy: following the results the migrators record in `deploy_tenants` until
//! every tenant is done, or a deadline; then each tenant's result, and the counts a summary
//! shows.

use std::collections::BTreeMap;
use std::time::Instant;

use shared::platform::PlatformDb;
use shared::platform::deploys::DeployResultRow;
use uuid::Uuid;

use crate::follow::{self, Tally};

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
/// `deadline` passes, telling `on_progress` each tally; then reads each tenant's result.
///
/// # Errors
/// A database error.
pub async fn follow(
    platform: &PlatformDb,
    deploy: Uuid,
    only: Option<&[Uuid]>,
    deadline: Option<Instant>,
    on_progress: impl FnMut(&Tally),
) -> anyhow::Result<Followed> {
    let poll = || async move {
        let counts = match only {
            None => platform.deploy_progress(deploy).await?,
            Some(ids) => {
                let mut counts = BTreeMap::new();
                for row in platform.deploy_results(deploy, Some(ids)).await? {
                    *counts.entry(row.status).or_insert(0) += 1;
                }
                counts
            }
        };
        Ok((tally_of(&counts), ()))
    };
    let (finished, ()) = follow::until_done(deadline, poll, on_progress).await?;
    let rows = platform.deploy_results(deploy, only).await?;
    Ok(Followed { finished, rows })
}

/// Counts by `deploy_tenants.status`, as progress.
fn tally_of(counts: &BTreeMap<String, i64>) -> Tally {
    let mut tally = Tally::default();
    for (status, count) in counts {
        let count = u64::try_from(*count).unwrap_or(0);
        tally.total += count;
        match status.as_str() {
            SUCCEEDED => tally.succeeded += count,
            FAILED | CANCELED => tally.failed += count,
            _ => tally.unfinished += count,
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shared::platform::deploys::DeployResultRow;
    use uuid::Uuid;

    use super::{Counts, Followed, tally_of};
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
        let counts = BTreeMap::from([
            ("succeeded".to_owned(), 5),
            ("failed".to_owned(), 1),
            ("canceled".to_owned(), 2),
            ("pending".to_owned(), 3),
            ("published".to_owned(), 4),
            ("retrying".to_owned(), 1),
        ]);
        let expected = Tally {
            total: 16,
            succeeded: 5,
            failed: 3,
            unfinished: 8,
        };
        assert_eq!(tally_of(&counts), expected);
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
