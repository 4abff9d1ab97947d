//! What the driver needs from the world, as a trait: [`ProvisioningEffects`] reads a tenant's
//! progress, runs a step, records its outcome, sets the tenant's status and emits lifecycle
//! events. The [`Provisioner`](crate::Provisioner) implements it over PostgreSQL and the bus;
//! the driver's tests implement it in memory with injected faults.

use std::future::Future;

use chrono::{DateTime, Utc};
use domain::provisioning::{Progress, Step, StepOutcome, StepStatus, TenantStatus};

use crate::error::StepError;
use crate::request::Request;

/// A lifecycle event to publish. The effects give each a deterministic id, so an event sent
/// again after a crash is the same event (stored once by the auditor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emitted {
    /// An attempt of a step ended.
    Step {
        step: Step,
        status: StepStatus,
        attempt: u32,
        duration_ms: u64,
        error: Option<String>,
    },
    /// The tenant is active.
    Provisioned,
    /// The tenant is given up at `step`.
    Failed {
        step: Step,
        reason: String,
        attempt: u32,
    },
}

/// The side effects of provisioning: everything the driver does to the world goes through here.
pub trait ProvisioningEffects: Send + Sync {
    /// What is recorded of the tenant's provisioning.
    fn progress(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<Progress, StepError>> + Send;

    /// Performs `step` (idempotently).
    fn run(
        &self,
        step: Step,
        request: &Request,
    ) -> impl Future<Output = Result<(), StepError>> + Send;

    /// Records how `step` ended; returns its attempt count.
    fn record(
        &self,
        request: &Request,
        step: Step,
        outcome: &StepOutcome,
        started_at: DateTime<Utc>,
        duration_ms: i64,
    ) -> impl Future<Output = Result<u32, StepError>> + Send;

    /// Sets the tenant's status (`Failed` when giving up, `Provisioning` when resuming).
    fn set_status(
        &self,
        request: &Request,
        status: TenantStatus,
    ) -> impl Future<Output = Result<(), StepError>> + Send;

    /// Publishes a lifecycle event.
    fn emit(
        &self,
        request: &Request,
        event: Emitted,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}
