//! What the driver needs from the world, as a trait: the real provisioner implements it over
//! PostgreSQL and the bus; the driver's tests implement it in memory with injected faults.

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use domain::Isolation;
use domain::message::TenantRegistered;
use domain::provisioning::{FailureKind, Progress, Step, StepOutcome, StepStatus, TenantStatus};
use domain::tenant::TenantSlug;
use uuid::Uuid;

/// A registration to provision, as the steps need it.
#[derive(Clone)]
pub struct Request {
    pub tenant_id: Uuid,
    pub slug: TenantSlug,
    pub name: String,
    pub plan: Option<String>,
    pub isolation: Isolation,
    pub admin_email: String,
    pub admin_name: String,
}

impl Request {
    /// The registration, with the isolation it asks for or else `default_isolation`.
    pub fn new(registered: &TenantRegistered, default_isolation: Isolation) -> Self {
        Request {
            tenant_id: registered.tenant_id,
            slug: registered.slug.clone(),
            name: registered.name.clone(),
            plan: registered.plan.clone(),
            isolation: registered.isolation.unwrap_or(default_isolation),
            admin_email: registered.admin.email.clone(),
            admin_name: registered.admin.name.clone(),
        }
    }
}

/// Never prints the administrator's email or name.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("tenant_id", &self.tenant_id)
            .field("slug", &self.slug)
            .field("isolation", &self.isolation)
            .finish_non_exhaustive()
    }
}

/// Why a step (or the bookkeeping around it) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub kind: FailureKind,
    /// What went wrong, without personal data.
    pub reason: String,
}

impl StepError {
    pub fn transient(reason: impl Into<String>) -> Self {
        StepError {
            kind: FailureKind::Transient,
            reason: reason.into(),
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        StepError {
            kind: FailureKind::Permanent,
            reason: reason.into(),
        }
    }

    fn classified(transient: bool, reason: String) -> Self {
        if transient {
            Self::transient(reason)
        } else {
            Self::permanent(reason)
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<shared::platform::StoreError> for StepError {
    fn from(error: shared::platform::StoreError) -> Self {
        Self::classified(error.is_transient(), error.to_string())
    }
}

impl From<engine::EngineError> for StepError {
    fn from(error: engine::EngineError) -> Self {
        Self::classified(error.is_transient(), error.to_string())
    }
}

impl From<engine::backend::BackendError> for StepError {
    fn from(error: engine::backend::BackendError) -> Self {
        Self::classified(error.is_transient(), error.to_string())
    }
}

impl From<shared::bus::BusError> for StepError {
    fn from(error: shared::bus::BusError) -> Self {
        Self::classified(error.is_transient(), error.to_string())
    }
}

/// A lifecycle event to publish. The port gives each a deterministic id, so an event sent
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

/// The side effects of provisioning.
pub trait Port: Send + Sync {
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
