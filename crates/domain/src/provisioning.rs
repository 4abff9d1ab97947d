//! The provisioning state machine, pure: given what is recorded of a tenant's provisioning,
//! which step runs next, and what a failure means. No I/O, no clock, no async: the provisioner
//! service executes these decisions.
//!
//! The six steps run in order; each is idempotent and recorded after its effect, so a run that
//! stops anywhere (a crash, a lost connection, a redelivery) resumes at the first step not
//! recorded as succeeded, and re-running a step whose record was lost changes nothing.
//!
//! The steps ([`Step`]), how an attempt ended ([`StepStatus`]) and the tenant statuses
//! ([`TenantStatus`]) are enums whose `as_str` is the name stored in the platform database and
//! published in events (contract §2.4): the platform store and the events take the names from
//! here.

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

/// How an attempt of a step ended: the `status` of a `tenant.provisioning_step` event, and of
/// the step's `provisioning_steps` row, which records the last attempt (`succeeded` or
/// `failed`; an attempt that will be retried is recorded as `failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepStatus {
    Succeeded,
    /// Failed for good: the tenant is given up (or, in a record, failed last time it ran).
    Failed,
    /// Failed transiently; the step runs again on a later delivery. Events only.
    Retrying,
}

impl StepStatus {
    pub const ALL: [StepStatus; 3] = [
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::Retrying,
    ];

    /// The name in events and in `provisioning_steps.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Retrying => "retrying",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for StepStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown provisioning step status {s:?}"))
    }
}

/// How a step ended, as the provisioner records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Succeeded,
    Failed { reason: String },
}

impl StepOutcome {
    /// The recorded status: `succeeded` or `failed`.
    pub fn status(&self) -> StepStatus {
        match self {
            StepOutcome::Succeeded => StepStatus::Succeeded,
            StepOutcome::Failed { .. } => StepStatus::Failed,
        }
    }

    /// Why it failed.
    pub fn error(&self) -> Option<&str> {
        match self {
            StepOutcome::Succeeded => None,
            StepOutcome::Failed { reason } => Some(reason),
        }
    }
}

/// The status of a tenant row (`tenants.status`, contract §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantStatus {
    /// Registered; the steps are running (or will be retried).
    Provisioning,
    Active,
    /// Given up at a step; a replay of its registration resumes it.
    Failed,
    /// Set by the platform: provisioning never touches it; deploys still migrate it.
    Suspended,
    /// Set by the platform: nothing touches it.
    Deleted,
}

impl TenantStatus {
    pub const ALL: [TenantStatus; 5] = [
        TenantStatus::Provisioning,
        TenantStatus::Active,
        TenantStatus::Failed,
        TenantStatus::Suspended,
        TenantStatus::Deleted,
    ];

    /// The value in `tenants.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Provisioning => "provisioning",
            TenantStatus::Active => "active",
            TenantStatus::Failed => "failed",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Deleted => "deleted",
        }
    }

    /// Whether provisioning leaves the tenant alone (the platform suspended or deleted it).
    pub fn is_untouchable(self) -> bool {
        matches!(self, TenantStatus::Suspended | TenantStatus::Deleted)
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for TenantStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown tenant status {s:?}"))
    }
}

/// What is recorded of a tenant's provisioning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// `None` until the register step created the tenant row.
    pub status: Option<TenantStatus>,
    /// The status of each step's last recorded attempt; a step absent has not run.
    pub steps: BTreeMap<Step, StepStatus>,
}

impl Progress {
    pub fn succeeded(&self, step: Step) -> bool {
        self.steps.get(&step) == Some(&StepStatus::Succeeded)
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
    if progress.status.is_some_and(TenantStatus::is_untouchable) {
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
                progress.steps.insert(step, StepStatus::Succeeded);
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
        progress.steps.insert(Step::Migrate, StepStatus::Failed);
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
        for status in [TenantStatus::Suspended, TenantStatus::Deleted] {
            let mut progress = done_up_to(Some(Step::Register));
            progress.status = Some(status);
            assert_eq!(next(&progress), Decision::Untouchable, "{status}");
        }
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

    /// The names are the contract's (§2.4 and `tenant.provisioning_step`): spelled out here, so
    /// that a renamed variant cannot change what is stored or published.
    #[test]
    fn the_names_are_the_contract_values_and_round_trip() {
        assert_eq!(
            Step::ALL.map(Step::as_str),
            [
                "register",
                "create_storage",
                "migrate",
                "seed",
                "admin_user",
                "activate"
            ]
        );
        assert_eq!(
            StepStatus::ALL.map(StepStatus::as_str),
            ["succeeded", "failed", "retrying"]
        );
        assert_eq!(
            TenantStatus::ALL.map(TenantStatus::as_str),
            ["provisioning", "active", "failed", "suspended", "deleted"]
        );
        for status in StepStatus::ALL {
            assert_eq!(status.as_str().parse::<StepStatus>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        for status in TenantStatus::ALL {
            assert_eq!(status.as_str().parse::<TenantStatus>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        assert!("pending".parse::<StepStatus>().is_err());
        assert!("other".parse::<TenantStatus>().is_err());
    }

    #[test]
    fn an_outcome_records_its_status_and_error() {
        assert_eq!(StepOutcome::Succeeded.status(), StepStatus::Succeeded);
        assert_eq!(StepOutcome::Succeeded.error(), None);
        let failed = StepOutcome::Failed {
            reason: "broken migration".into(),
        };
        assert_eq!(failed.status(), StepStatus::Failed);
        assert_eq!(failed.error(), Some("broken migration"));
    }
}
