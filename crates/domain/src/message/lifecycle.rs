//! The lifecycle events the services publish on `tenancy.events` as a tenant is provisioned,
//! migrated and rolled back, and as operators replay dead letters (contract §2.3). The auditor
//! stores every one of them.
//!
//! They carry ids, slugs, step names, versions, durations and reasons: never an email address
//! or a person's name. Free-text reasons go through [`clip_reason`] before they are published.
//!
//! Pure.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

pub use super::rules::{MAX_REASON_CHARS, MAX_REASON_DECODE_CHARS, clip_reason};
use super::wire::{Fields, deserialize_via_from_data, ser};
use super::{Event, ValidationError, rules};
use crate::Isolation;
use crate::Version;
use crate::provisioning::{Step, StepStatus};
use crate::tenant::TenantSlug;

/// One attempt of one provisioning step ended. Type `tenant.provisioning_step`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisioningStep {
    /// The tenant being provisioned.
    pub tenant_id: Uuid,
    /// The step, by its name ([`Step::as_str`]).
    #[serde(serialize_with = "ser::step")]
    pub step: Step,
    /// How the attempt ended, by its name ([`StepStatus::as_str`]): `retrying` means a
    /// transient failure that will be retried.
    #[serde(serialize_with = "ser::step_status")]
    pub status: StepStatus,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How long the attempt took.
    pub duration_ms: u64,
    /// What went wrong, for `failed` and `retrying` (see [`clip_reason`]).
    pub error: Option<String>,
}

impl ProvisioningStep {
    /// An attempt's outcome, with `error` passed through [`clip_reason`].
    pub fn new(
        tenant_id: Uuid,
        step: Step,
        status: StepStatus,
        attempt: u32,
        duration_ms: u64,
        error: Option<&str>,
    ) -> Self {
        ProvisioningStep {
            tenant_id,
            step,
            status,
            attempt,
            duration_ms,
            error: error.map(clip_reason),
        }
    }
}

impl Event for ProvisioningStep {
    const TYPE: &'static str = "tenant.provisioning_step";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::id("data.tenant_id", self.tenant_id)?;
        attempt("data.attempt", self.attempt)?;
        if let Some(error) = &self.error {
            rules::reason("data.error", error)?;
        }
        Ok(())
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let tenant_id = fields.req("tenant_id")?;
        let step: String = fields.req("step")?;
        let status: String = fields.req("status")?;
        let attempt = fields.req("attempt")?;
        let duration_ms = fields.req("duration_ms")?;
        let error = fields.opt("error")?;
        // The names are checked where `validate` checked them when they were strings: after
        // the id, before the rest.
        rules::id("data.tenant_id", tenant_id)?;
        let event = ProvisioningStep {
            tenant_id,
            step: step_named("data.step", &step)?,
            status: named(
                "data.status",
                &status,
                &StepStatus::ALL.map(StepStatus::as_str),
            )?,
            attempt,
            duration_ms,
            error,
        };
        event.validate()?;
        Ok(event)
    }
}

/// A tenant finished provisioning and is `active`. Type `tenant.provisioned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provisioned {
    /// The new tenant.
    pub tenant_id: Uuid,
    /// Its slug.
    #[serde(serialize_with = "ser::slug")]
    pub slug: TenantSlug,
    /// How its data is isolated.
    #[serde(serialize_with = "ser::isolation")]
    pub isolation: Isolation,
    /// The tenant migration version it was created at (`0` when there are none).
    #[serde(serialize_with = "ser::version")]
    pub schema_version: Version,
    /// From the first step's start to activation, across retries.
    pub duration_ms: u64,
}

impl Event for Provisioned {
    const TYPE: &'static str = "tenant.provisioned";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::id("data.tenant_id", self.tenant_id)
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let event = Provisioned {
            tenant_id: fields.req("tenant_id")?,
            slug: fields.req("slug")?,
            isolation: fields.req("isolation")?,
            schema_version: fields.req("schema_version")?,
            duration_ms: fields.req("duration_ms")?,
        };
        event.validate()?;
        Ok(event)
    }
}

/// Provisioning gave up on a tenant, which is now `failed`. Type `tenant.provisioning_failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisioningFailed {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Its slug, when it got far enough to have a valid one.
    #[serde(serialize_with = "ser::opt_slug")]
    pub slug: Option<TenantSlug>,
    /// The step that failed, by its name ([`Step::as_str`]).
    #[serde(serialize_with = "ser::step")]
    pub step: Step,
    /// Why (see [`clip_reason`]).
    pub reason: String,
}

impl ProvisioningFailed {
    /// A failure, with `reason` passed through [`clip_reason`].
    pub fn new(tenant_id: Uuid, slug: Option<TenantSlug>, step: Step, reason: &str) -> Self {
        ProvisioningFailed {
            tenant_id,
            slug,
            step,
            reason: clip_reason(reason),
        }
    }
}

impl Event for ProvisioningFailed {
    const TYPE: &'static str = "tenant.provisioning_failed";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::id("data.tenant_id", self.tenant_id)?;
        rules::reason("data.reason", &self.reason)
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let tenant_id = fields.req("tenant_id")?;
        let slug = fields.opt("slug")?;
        let step: String = fields.req("step")?;
        let reason = fields.req("reason")?;
        rules::id("data.tenant_id", tenant_id)?;
        let event = ProvisioningFailed {
            tenant_id,
            slug,
            step: step_named("data.step", &step)?,
            reason,
        };
        event.validate()?;
        Ok(event)
    }
}

/// The migrator started applying a tenant's pending migrations. Type `migration.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationStarted {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The deploy that asked, if any (provisioning migrates without one).
    pub deploy_id: Option<Uuid>,
    /// The tenant's version before (`0` for a new tenant).
    #[serde(serialize_with = "ser::version")]
    pub from_version: Version,
    /// The version the run aims at.
    #[serde(serialize_with = "ser::version")]
    pub target_version: Version,
}

impl Event for MigrationStarted {
    const TYPE: &'static str = "migration.started";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::id("data.tenant_id", self.tenant_id)?;
        optional_id("data.deploy_id", self.deploy_id)
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let event = MigrationStarted {
            tenant_id: fields.req("tenant_id")?,
            deploy_id: fields.opt("deploy_id")?,
            from_version: fields.req("from_version")?,
            target_version: fields.req("target_version")?,
        };
        event.validate()?;
        Ok(event)
    }
}

/// A tenant's migrations were applied. Type `migration.completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationCompleted {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The deploy that asked, if any.
    pub deploy_id: Option<Uuid>,
    /// The version before.
    #[serde(serialize_with = "ser::version")]
    pub from_version: Version,
    /// The version after; not earlier than `from_version`.
    #[serde(serialize_with = "ser::version")]
    pub to_version: Version,
    /// The versions applied, in order (empty when the tenant was up to date); never `0`.
    #[serde(serialize_with = "ser::versions")]
    pub applied: Vec<Version>,
    /// How long the run took, lock wait included.
    pub duration_ms: u64,
}

impl Event for MigrationCompleted {
    const TYPE: &'static str = "migration.completed";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::id("data.tenant_id", self.tenant_id)?;
        optional_id("data.deploy_id", self.deploy_id)?;
        if self.to_version < self.from_version {
            return Err(ValidationError::new(
                "data.to_version",
                "must not be earlier than data.from_version (a revert is migration.rollback)",
            ));
        }
        migration_versions("data.applied", &self.applied)
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let event = MigrationCompleted {
            tenant_id: fields.req("tenant_id")?,
            deploy_id: fields.opt("deploy_id")?,
            from_version: fields.req("from_version")?,
            to_version: fields.req("to_version")?,
            applied: fields.list("applied")?,
            duration_ms: fields.req("duration_ms")?,
        };
        event.validate()?;
        Ok(event)
    }
}

/// Migrating a tenant failed. Type `migration.failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationFailed {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The deploy that asked, if any.
    pub deploy_id: Option<Uuid>,
    /// The migration that failed, when one had started; never `0`.
    #[serde(serialize_with = "ser::opt_version")]
    pub version: Option<Version>,
    /// Why (see [`clip_reason`]).
    pub reason: String,
    /// A retry may succeed (a lost connection, a lock timeout); the command is retried.
    pub transient: bool,
    /// 1 for the first attempt.
    pub attempt: u32,
}

impl MigrationFailed {
    /// A failure, with `reason` passed through [`clip_reason`].
    pub fn new(
        tenant_id: Uuid,
        deploy_id: Option<Uuid>,
        version: Option<Version>,
        reason: &str,
        transient: bool,
        attempt: u32,
    ) -> Self {
        MigrationFailed {
            tenant_id,
            deploy_id,
            version,
            reason: clip_reason(reason),
            transient,
            attempt,
        }
    }
}

impl Event for MigrationFailed {
    const TYPE: &'static str = "migration.failed";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::id("data.tenant_id", self.tenant_id)?;
        optional_id("data.deploy_id", self.deploy_id)?;
        if self.version.is_some_and(Version::is_zero) {
            return Err(ValidationError::new(
                "data.version",
                "must be a migration's version, not 0",
            ));
        }
        rules::reason("data.reason", &self.reason)?;
        attempt("data.attempt", self.attempt)
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let event = MigrationFailed {
            tenant_id: fields.req("tenant_id")?,
            deploy_id: fields.opt("deploy_id")?,
            version: fields.opt("version")?,
            reason: fields.req("reason")?,
            transient: fields.req("transient")?,
            attempt: fields.req("attempt")?,
        };
        event.validate()?;
        Ok(event)
    }
}

/// A tenant was rolled back by an operator's decision. Type `migration.rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationRollback {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The version before.
    #[serde(serialize_with = "ser::version")]
    pub from_version: Version,
    /// The version after; not later than `from_version`.
    #[serde(serialize_with = "ser::version")]
    pub to_version: Version,
    /// The versions reverted, in the order they were reverted; never `0`.
    #[serde(serialize_with = "ser::versions")]
    pub reverted: Vec<Version>,
    /// Who decided (an operator handle, never an email address).
    pub operator: String,
    /// Whether the operator allowed down scripts that drop data.
    pub allow_data_loss: bool,
    /// How long the rollback took.
    pub duration_ms: u64,
}

impl Event for MigrationRollback {
    const TYPE: &'static str = "migration.rollback";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::id("data.tenant_id", self.tenant_id)?;
        if self.to_version > self.from_version {
            return Err(ValidationError::new(
                "data.to_version",
                "must not be later than data.from_version",
            ));
        }
        migration_versions("data.reverted", &self.reverted)?;
        rules::operator("data.operator", &self.operator)
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let event = MigrationRollback {
            tenant_id: fields.req("tenant_id")?,
            from_version: fields.req("from_version")?,
            to_version: fields.req("to_version")?,
            reverted: fields.list("reverted")?,
            operator: fields.req("operator")?,
            allow_data_loss: fields.req("allow_data_loss")?,
            duration_ms: fields.req("duration_ms")?,
        };
        event.validate()?;
        Ok(event)
    }
}

/// An operator replayed a dead-lettered message (`tenantctl dlq replay`). Type `dlq.replayed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DlqReplayed {
    /// The dead-letter queue it came from (namespaced name, `[A-Za-z0-9._:-]`).
    pub queue: String,
    /// The replayed message's AMQP `message_id` (for our events, the event id).
    pub original_message_id: String,
    /// The replayed message's type, when it had a readable one.
    pub original_type: Option<String>,
    /// The tenant it concerned, when known.
    pub tenant_id: Option<Uuid>,
    /// Who replayed it (an operator handle, never an email address).
    pub operator: String,
}

impl Event for DlqReplayed {
    const TYPE: &'static str = "dlq.replayed";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::queue_name("data.queue", &self.queue)?;
        rules::message_id("data.original_message_id", &self.original_message_id)?;
        if let Some(original_type) = &self.original_type {
            rules::type_name("data.original_type", original_type)?;
        }
        optional_id("data.tenant_id", self.tenant_id)?;
        rules::operator("data.operator", &self.operator)
    }

    fn tenant_id(&self) -> Option<Uuid> {
        self.tenant_id
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let event = DlqReplayed {
            queue: fields.req("queue")?,
            original_message_id: fields.req("original_message_id")?,
            original_type: fields.opt("original_type")?,
            tenant_id: fields.opt("tenant_id")?,
            operator: fields.req("operator")?,
        };
        event.validate()?;
        Ok(event)
    }
}

deserialize_via_from_data!(
    ProvisioningStep,
    Provisioned,
    ProvisioningFailed,
    MigrationStarted,
    MigrationCompleted,
    MigrationFailed,
    MigrationRollback,
    DlqReplayed,
);

/// A provisioning step's name, one of [`Step::ALL`]'s.
fn step_named(field: &str, name: &str) -> Result<Step, ValidationError> {
    named(field, name, &Step::ALL.map(Step::as_str))
}

/// A name from a closed set: `names` (the enum's own, so the error lists them as
/// [`rules::one_of`] does), parsed by the enum.
fn named<T: std::str::FromStr<Err = String>>(
    field: &str,
    name: &str,
    names: &[&str],
) -> Result<T, ValidationError> {
    rules::one_of(field, name, names)?;
    name.parse()
        .map_err(|rule| ValidationError::new(field, rule))
}

fn optional_id(field: &str, id: Option<Uuid>) -> Result<(), ValidationError> {
    id.map_or(Ok(()), |id| rules::id(field, id))
}

fn attempt(field: &str, attempt: u32) -> Result<(), ValidationError> {
    if attempt == 0 {
        return Err(ValidationError::new(field, "must be at least 1"));
    }
    Ok(())
}

/// Versions of migrations that ran: `0` is "nothing applied", never a migration.
fn migration_versions(field: &str, versions: &[Version]) -> Result<(), ValidationError> {
    match versions.iter().position(|v| v.is_zero()) {
        Some(i) => Err(ValidationError::new(
            format!("{field}[{i}]"),
            "must be a migration's version, not 0",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    const TENANT: &str = "6f1d2c3b-1111-4222-8333-944455556666";

    fn error_field<T: Event + std::fmt::Debug>(data: Value) -> String {
        T::from_data(&data).unwrap_err().field
    }

    #[test]
    fn constructors_clip_reasons() {
        let tenant = Uuid::parse_str(TENANT).unwrap();
        let long = "x".repeat(10_000);
        let failed = MigrationFailed::new(tenant, None, None, &long, true, 1);
        assert_eq!(failed.reason.chars().count(), MAX_REASON_CHARS);
        assert_eq!(failed.validate(), Ok(()));
        let step = ProvisioningStep::new(
            tenant,
            Step::Seed,
            StepStatus::Retrying,
            2,
            15,
            Some("a\u{0}b"),
        );
        assert_eq!(step.error.as_deref(), Some("a\u{FFFD}b"));
        assert_eq!(step.validate(), Ok(()));
        let gave_up = ProvisioningFailed::new(tenant, None, Step::CreateStorage, "");
        assert_eq!(gave_up.validate(), Ok(()));
    }

    #[test]
    fn steps_and_statuses_are_closed_sets() {
        let step = |step: &str, status: &str| json!({ "tenant_id": TENANT, "step": step, "status": status, "attempt": 1, "duration_ms": 3 });
        for name in Step::ALL.map(Step::as_str) {
            assert!(ProvisioningStep::from_data(&step(name, "succeeded")).is_ok());
        }
        assert_eq!(
            error_field::<ProvisioningStep>(step("deploy", "succeeded")),
            "data.step"
        );
        assert_eq!(
            error_field::<ProvisioningStep>(step("seed", "ok")),
            "data.status"
        );
        let mut zero = step("seed", "failed");
        zero["attempt"] = json!(0);
        assert_eq!(error_field::<ProvisioningStep>(zero), "data.attempt");
    }

    /// The wire form of the typed step and status is their names: what the provisioner
    /// published before they were typed.
    #[test]
    fn steps_and_statuses_travel_as_their_names() {
        let tenant = Uuid::parse_str(TENANT).unwrap();
        for step in Step::ALL {
            for status in StepStatus::ALL {
                let event = ProvisioningStep::new(tenant, step, status, 1, 3, None);
                let data = serde_json::to_value(&event).unwrap();
                assert_eq!(
                    (&data["step"], &data["status"]),
                    (&json!(step.as_str()), &json!(status.as_str()))
                );
                assert_eq!(ProvisioningStep::from_data(&data), Ok(event));
            }
            let failed = ProvisioningFailed::new(tenant, None, step, "broken");
            let data = serde_json::to_value(&failed).unwrap();
            assert_eq!(data["step"], json!(step.as_str()));
            assert_eq!(ProvisioningFailed::from_data(&data), Ok(failed));
        }
        let unknown = json!({ "tenant_id": TENANT, "step": "deploy", "reason": "x" });
        assert_eq!(error_field::<ProvisioningFailed>(unknown), "data.step");
    }

    #[test]
    fn reasons_over_the_decode_limit_are_refused() {
        let data = json!({
            "tenant_id": TENANT, "step": "migrate", "reason": "x".repeat(MAX_REASON_DECODE_CHARS + 1)
        });
        assert_eq!(error_field::<ProvisioningFailed>(data), "data.reason");
    }

    #[test]
    fn version_order_and_zero_rules() {
        let completed = |from: i64, to: i64, applied: Value| json!({ "tenant_id": TENANT, "from_version": from, "to_version": to, "applied": applied, "duration_ms": 5 });
        assert!(
            MigrationCompleted::from_data(&completed(
                0,
                20261124093000,
                json!([20261124093000_i64])
            ))
            .is_ok()
        );
        assert_eq!(
            error_field::<MigrationCompleted>(completed(20261124093000, 0, json!([]))),
            "data.to_version"
        );
        assert_eq!(
            error_field::<MigrationCompleted>(completed(
                0,
                20261124093000,
                json!([20261124093000_i64, 0])
            )),
            "data.applied[1]"
        );
        let rollback = |from: i64, to: i64| {
            json!({ "tenant_id": TENANT, "from_version": from, "to_version": to, "reverted": [],
                    "operator": "sre", "allow_data_loss": false, "duration_ms": 1 })
        };
        assert!(MigrationRollback::from_data(&rollback(20261124093000, 0)).is_ok());
        assert_eq!(
            error_field::<MigrationRollback>(rollback(0, 20261124093000)),
            "data.to_version"
        );
    }

    #[test]
    fn dlq_replayed_may_lack_a_tenant() {
        let data = json!({
            "queue": "provisioner.tenant-registered.dlq",
            "original_message_id": "0b6f5a2e-2f8e-4a55-9d8e-3c1f0f6a7b11",
            "original_type": null,
            "operator": "sre.ana"
        });
        let event = DlqReplayed::from_data(&data).unwrap();
        assert_eq!(event.tenant_id(), None);
        let mut bad = data.clone();
        bad["operator"] = json!("ana@acme.example");
        assert_eq!(error_field::<DlqReplayed>(bad), "data.operator");
        let mut bad = data;
        bad["original_type"] = json!("tenant registered");
        assert_eq!(error_field::<DlqReplayed>(bad), "data.original_type");
    }
}
