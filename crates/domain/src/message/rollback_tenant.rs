//! `rollback.tenant`: an operator asks the migrator to revert one tenant to an earlier version
//! (contract §2.3). Always a manual, audited decision: the operator's handle travels with it.
//!
//! Pure.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::wire::{Fields, deserialize_via_from_data, ser};
use super::{Event, ValidationError, rules};
use crate::Version;

/// Revert a tenant's migrations down to a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackTenant {
    /// The tenant to roll back.
    pub tenant_id: Uuid,
    /// Revert every migration after this version; `0` reverts them all.
    #[serde(serialize_with = "ser::version")]
    pub to_version: Version,
    /// Who decided: an operator handle (1 to 64 of `[A-Za-z0-9._-]`), never an email address.
    pub operator: String,
    /// The operator acknowledged that a down script may drop data; without it, such a rollback
    /// is refused.
    pub allow_data_loss: bool,
}

impl Event for RollbackTenant {
    const TYPE: &'static str = "rollback.tenant";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::id("data.tenant_id", self.tenant_id)?;
        rules::operator("data.operator", &self.operator)
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let event = RollbackTenant {
            tenant_id: fields.req("tenant_id")?,
            to_version: fields.req("to_version")?,
            operator: fields.req("operator")?,
            allow_data_loss: fields.req("allow_data_loss")?,
        };
        event.validate()?;
        Ok(event)
    }
}

deserialize_via_from_data!(RollbackTenant);

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    const TENANT: &str = "6f1d2c3b-1111-4222-8333-944455556666";

    #[test]
    fn zero_reverts_everything() {
        let data = json!({ "tenant_id": TENANT, "to_version": 0, "operator": "sre.ana", "allow_data_loss": false });
        assert_eq!(
            RollbackTenant::from_data(&data).unwrap().to_version,
            Version::ZERO
        );
    }

    #[test]
    fn allow_data_loss_must_be_an_explicit_boolean() {
        for flag in [json!(null), json!("true"), json!(1)] {
            let data = json!({ "tenant_id": TENANT, "to_version": 0, "operator": "sre", "allow_data_loss": flag });
            let error = RollbackTenant::from_data(&data).unwrap_err();
            assert_eq!(error.field, "data.allow_data_loss", "{error}");
        }
    }
}
