//! The provisioning state machine, pure: given what is recorded of a tenant's provisioning,
//! which step runs next, and what a failure means. No I/O, no clock, no async: the provisioner
//! service executes these decisions.
//!
//! The six steps run in order; each is idempotent and recorded after its effect, so a run that
//! stops anywhere (a crash, a lost connection, a redelivery) resumes at the first step not
//! recorded as succeeded, and re-running a step whose record was lost changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A provisioning step, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// The tenant row in the platform database, status `provisioning`.
    Register,
    /// The schema or database `tenant_<slug>` with its history table, and the tenant's role.
    CreateStorage,
    /// Every tenant migration.
    Migrate,
    /// The structural seed.
    Seed,
    /// The tenant administrator, invited.
    AdminUser,
    /// Status `active`.
    Activate,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Register,
        Step::CreateStorage,
        Step::Migrate,
        Step::Seed,
        Step::AdminUser,
        Step::Activate,
    ];

    /// The name in `provisioning_steps.step` and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Register => "register",
            Step::CreateStorage => "create_storage",
            Step::Migrate => "migrate",
            Step::Seed => "seed",
            Step::AdminUser => "admin_user",
            Step::Activate => "activate",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Step {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| format!("unknown provisioning step {s:?}"))
    }
}

/// The recorded state of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Succeeded,
    /// Failed last time it ran (transiently or not); it runs again on the next attempt.
    Failed,
}

/// The status of a tenant row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    Provisioning,
    Active,
    Failed,
    /// Suspended or deleted: provisioning never touches it.
    Other,
}

impl TenantStatus {
    pub fn parse(status: &str) -> Self {
        match status {
            "provisioning" => TenantStatus::Provisioning,
            "active" => TenantStatus::Active,
            "failed" => TenantStatus::Failed,
            _ => TenantStatus::Other,
        }
    }
}

/// What is recorded of a tenant's provisioning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// `None` until the register step created the tenant row.
    pub status: Option<TenantStatus>,
    pub steps: BTreeMap<Step, StepState>,
}

impl Progress {
    pub fn succeeded(&self, step: Step) -> bool {
        self.steps.get(&step) == Some(&StepState::Succeeded)
    }
}

/// What to do with a tenant now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run this step (the first one not recorded as succeeded).
    Run(Step),
    /// Every step succeeded; nothing to do (a redelivery).
    Done,
    /// The tenant is suspended or deleted: leave it alone.
    Untouchable,
}

/// The next thing to do for a tenant. A `failed` tenant resumes at its first unfinished step
/// (a replay or `tenantctl tenant retry` is a decision to try again).
pub fn next(progress: &Progress) -> Decision {
    if progress.status == Some(TenantStatus::Other) {
        return Decision::Untouchable;
    }
    match Step::ALL
        .into_iter()
        .find(|step| !progress.succeeded(*step))
    {
        Some(step) => Decision::Run(step),
        None => Decision::Done,
    }
}

/// How a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// May succeed later (a database restarting, a lock held elsewhere).
    Transient,
    /// Will not succeed as it is (a slug taken by another tenant, a broken migration).
    Permanent,
}

/// What a failed step means for the tenant and the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Try again later; the tenant stays `provisioning` with the failure recorded on the step.
    RetryLater,
    /// Give up: the tenant becomes `failed` (if it has a row), `tenant.provisioning_failed` is
    /// emitted, the message goes to the dead-letter queue.
    GiveUp,
}

/// A permanent failure gives up at once; a transient one retries until the message's last
/// delivery (the retry budget), then gives up.
pub fn on_failure(kind: FailureKind, last_delivery: bool) -> OnFailure {
    match (kind, last_delivery) {
        (FailureKind::Transient, false) => OnFailure::RetryLater,
        _ => OnFailure::GiveUp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done_up_to(last: Option<Step>) -> Progress {
        let mut progress = Progress {
            status: last.map(|_| TenantStatus::Provisioning),
            ..Progress::default()
        };
        for step in Step::ALL {
            if last.is_some_and(|l| step <= l) {
                progress.steps.insert(step, StepState::Succeeded);
            }
        }
        progress
    }

    #[test]
    fn runs_the_first_step_not_succeeded() {
        assert_eq!(next(&Progress::default()), Decision::Run(Step::Register));
        for (index, step) in Step::ALL.iter().enumerate() {
            let expected = Step::ALL
                .get(index + 1)
                .map_or(Decision::Done, |n| Decision::Run(*n));
            assert_eq!(next(&done_up_to(Some(*step))), expected, "after {step}");
        }
    }

    #[test]
    fn a_failed_step_runs_again_and_a_failed_tenant_resumes_there() {
        let mut progress = done_up_to(Some(Step::CreateStorage));
        progress.steps.insert(Step::Migrate, StepState::Failed);
        assert_eq!(next(&progress), Decision::Run(Step::Migrate));
        progress.status = Some(TenantStatus::Failed);
        assert_eq!(next(&progress), Decision::Run(Step::Migrate));
    }

    #[test]
    fn a_hole_in_the_record_is_filled_before_later_steps() {
        // A lost record of an idempotent step: it runs again, and later records stay.
        let mut progress = done_up_to(Some(Step::Seed));
        progress.steps.remove(&Step::CreateStorage);
        assert_eq!(next(&progress), Decision::Run(Step::CreateStorage));
    }

    #[test]
    fn suspended_or_deleted_tenants_are_left_alone() {
        let mut progress = done_up_to(Some(Step::Register));
        progress.status = Some(TenantStatus::Other);
        assert_eq!(next(&progress), Decision::Untouchable);
    }

    #[test]
    fn failures_retry_until_the_budget_is_spent_and_permanent_ones_give_up_at_once() {
        assert_eq!(
            on_failure(FailureKind::Transient, false),
            OnFailure::RetryLater
        );
        assert_eq!(on_failure(FailureKind::Transient, true), OnFailure::GiveUp);
        assert_eq!(on_failure(FailureKind::Permanent, false), OnFailure::GiveUp);
        assert_eq!(on_failure(FailureKind::Permanent, true), OnFailure::GiveUp);
    }

    #[test]
    fn step_names_round_trip() {
        for step in Step::ALL {
            assert_eq!(step.as_str().parse::<Step>(), Ok(step));
        }
        assert!("unknown".parse::<Step>().is_err());
    }
}
