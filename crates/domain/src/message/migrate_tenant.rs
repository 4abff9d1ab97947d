//! `migrate.tenant`: the deploy job asks the migrator to bring one tenant up to date
//! (contract §2.3). Published on `tenancy.commands`, one per tenant per deploy.
//!
//! Pure.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::wire::{Fields, deserialize_via_from_data, ser};
use super::{Event, ValidationError, rules};
use crate::Version;

/// Apply a tenant's pending migrations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrateTenant {
    /// The tenant to migrate.
    pub tenant_id: Uuid,
    /// The deploy this command belongs to, to group the fleet's results.
    pub deploy_id: Uuid,
    /// Apply up to and including this version; `None` applies everything available. Written as
    /// a JSON number; a 14-digit string is accepted too. Never `0`: reverting is
    /// `rollback.tenant`'s job.
    #[serde(serialize_with = "ser::opt_version")]
    pub target_version: Option<Version>,
}

impl Event for MigrateTenant {
    const TYPE: &'static str = "migrate.tenant";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::id("data.tenant_id", self.tenant_id)?;
        rules::id("data.deploy_id", self.deploy_id)?;
        if self.target_version.is_some_and(Version::is_zero) {
            return Err(ValidationError::new(
                "data.target_version",
                "must not be 0 (to revert, send rollback.tenant)",
            ));
        }
        Ok(())
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let event = MigrateTenant {
            tenant_id: fields.req("tenant_id")?,
            deploy_id: fields.req("deploy_id")?,
            target_version: fields.opt("target_version")?,
        };
        event.validate()?;
        Ok(event)
    }
}

deserialize_via_from_data!(MigrateTenant);

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    const TENANT: &str = "6f1d2c3b-1111-4222-8333-944455556666";
    const DEPLOY: &str = "0190f5c2-7a4b-7cde-8f00-123456789abc";

    #[test]
    fn target_version_accepts_number_or_string_and_writes_a_number() {
        for target in [json!(20261124093000_i64), json!("20261124093000")] {
            let data =
                json!({ "tenant_id": TENANT, "deploy_id": DEPLOY, "target_version": target });
            let event = MigrateTenant::from_data(&data).unwrap();
            assert_eq!(event.target_version.map(Version::get), Some(20261124093000));
            assert_eq!(
                serde_json::to_value(&event).unwrap()["target_version"],
                json!(20261124093000_i64)
            );
        }
        let data = json!({ "tenant_id": TENANT, "deploy_id": DEPLOY });
        assert_eq!(
            MigrateTenant::from_data(&data).unwrap().target_version,
            None
        );
    }

    #[test]
    fn target_version_zero_and_garbage_are_refused() {
        for (target, rule) in [
            (json!(0), "must not be 0"),
            (json!("2026"), "must be a migration version"),
            (json!(-1), "must be a migration version"),
        ] {
            let data =
                json!({ "tenant_id": TENANT, "deploy_id": DEPLOY, "target_version": target });
            let error = MigrateTenant::from_data(&data).unwrap_err();
            assert_eq!(error.field, "data.target_version");
            assert!(error.rule.starts_with(rule), "{error}");
        }
    }

    #[test]
    fn deploy_id_is_required() {
        let error = MigrateTenant::from_data(&json!({ "tenant_id": TENANT })).unwrap_err();
        assert_eq!(error.to_string(), "data.deploy_id: is required");
    }
}
