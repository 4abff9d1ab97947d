//! Why a step, or the bookkeeping around it, failed: transient (retry later) or permanent (give
//! up), with a reason fit for events and logs.

use std::fmt;

use domain::provisioning::FailureKind;

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

impl From<shared::platform::servers::PlacementError> for StepError {
    fn from(error: shared::platform::servers::PlacementError) -> Self {
        Self::classified(error.is_transient(), error.to_string())
    }
}

impl From<shared::tenant_servers::ServerError> for StepError {
    fn from(error: shared::tenant_servers::ServerError) -> Self {
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
