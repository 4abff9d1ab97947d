//! `tenant.registered`: the platform backend asks for a new tenant (contract §2.3).
//!
//! The one message of the contract that carries personal data (its `admin` block): [`Admin`]
//! never prints it, and the auditor stores this event through
//! [`AnyEvent::redacted_data`](super::AnyEvent::redacted_data), without it.
//!
//! Pure.

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::wire::{Fields, deserialize_via_from_data, ser};
use super::{Event, ValidationError, rules};
use crate::Isolation;
use crate::server::ServerName;
use crate::tenant::TenantSlug;

/// A tenant to provision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRegistered {
    /// The tenant's id, chosen by the platform backend; also the event's `subject`.
    pub tenant_id: Uuid,
    /// The tenant's slug; its schema or database is `tenant_<slug>`.
    #[serde(serialize_with = "ser::slug")]
    pub slug: TenantSlug,
    /// Display name of the tenant (an organisation, not a person): 1 to 200 characters after
    /// trimming, no control, bidirectional-override or zero-width characters.
    pub name: String,
    /// Plan name, `^[a-z0-9_-]{1,40}$`; `None` leaves the platform's default.
    pub plan: Option<String>,
    /// Isolation for this tenant; `None` uses `TENANT_ISOLATION`.
    #[serde(serialize_with = "ser::opt_isolation")]
    pub isolation: Option<Isolation>,
    /// The tenant server to create it on (`tenantctl servers list`); `None` lets the provisioner
    /// place it on the least loaded open server with room. Left out when `None`, so a consumer
    /// of the previous release reads the message as before.
    #[serde(
        serialize_with = "ser::opt_server",
        skip_serializing_if = "Option::is_none"
    )]
    pub server: Option<ServerName>,
    /// The tenant's first administrator (personal data).
    pub admin: Admin,
}

/// The first administrator of a new tenant. Personal data: its `Debug` prints neither field,
/// and it must never reach a log, a span or the audit trail.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Admin {
    /// Email address: ASCII, one `@`, a dot-atom local part of at most 64 characters, a DNS
    /// domain with a dot (an IDN in punycode), 254 characters in all.
    pub email: String,
    /// Display name: same rules as [`TenantRegistered::name`].
    pub name: String,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Admin { .. }")
    }
}

impl Admin {
    /// Checks both fields.
    ///
    /// # Errors
    /// The first broken rule, as `data.admin.email` or `data.admin.name`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        rules::email("data.admin.email", &self.email)?;
        rules::display_name("data.admin.name", &self.name)
    }

    fn read(fields: &Fields<'_>) -> Result<Self, ValidationError> {
        Ok(Admin {
            email: fields.req("email")?,
            name: fields.req("name")?,
        })
    }
}

impl Event for TenantRegistered {
    const TYPE: &'static str = "tenant.registered";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::id("data.tenant_id", self.tenant_id)?;
        rules::display_name("data.name", &self.name)?;
        if let Some(plan) = &self.plan {
            rules::plan("data.plan", plan)?;
        }
        self.admin.validate()
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }

    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let fields = Fields::of(data, "data")?;
        let event = TenantRegistered {
            tenant_id: fields.req("tenant_id")?,
            slug: fields.req("slug")?,
            name: fields.req("name")?,
            plan: fields.opt("plan")?,
            isolation: fields.opt("isolation")?,
            server: fields.opt("server")?,
            admin: Admin::read(&fields.object("admin")?)?,
        };
        event.validate()?;
        Ok(event)
    }
}

deserialize_via_from_data!(TenantRegistered);

impl<'de> serde::Deserialize<'de> for Admin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = <Value as serde::Deserialize>::deserialize(deserializer)?;
        Fields::of(&value, "data.admin")
            .and_then(|fields| Admin::read(&fields))
            .and_then(|admin| admin.validate().map(|()| admin))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    fn data() -> Value {
        json!({
            "tenant_id": "6f1d2c3b-1111-4222-8333-944455556666",
            "slug": "acme_towers",
            "name": "Acme Towers",
            "plan": "standard",
            "isolation": "schema",
            "admin": { "email": "ana@acme.example", "name": "Ana Lima" }
        })
    }

    #[test]
    fn admin_debug_hides_personal_data() {
        let event = TenantRegistered::from_data(&data()).unwrap();
        let shown = format!("{event:?} {:?}", event.admin);
        assert!(shown.contains("Admin { .. }"), "{shown}");
        assert!(
            !shown.contains("ana@") && !shown.contains("Ana Lima"),
            "{shown}"
        );
    }

    #[test]
    fn optional_fields_may_be_absent_or_null_and_extra_fields_are_tolerated() {
        let mut value = data();
        value["plan"] = Value::Null;
        value.as_object_mut().unwrap().remove("isolation");
        value["referral"] = json!({ "code": "x" });
        let event = TenantRegistered::from_data(&value).unwrap();
        assert_eq!((event.plan, event.isolation), (None, None));
    }

    #[test]
    fn each_field_is_checked_with_its_path() {
        for (field, bad, path) in [
            (
                "tenant_id",
                json!("00000000-0000-0000-0000-000000000000"),
                "data.tenant_id",
            ),
            ("tenant_id", json!(42), "data.tenant_id"),
            ("slug", json!("Acme"), "data.slug"),
            ("name", json!(""), "data.name"),
            ("plan", json!("Gold Plan"), "data.plan"),
            ("isolation", json!("cluster"), "data.isolation"),
            ("admin", json!("ana@acme.example"), "data.admin"),
            (
                "admin",
                json!({ "email": "ana@acme.example" }),
                "data.admin.name",
            ),
            (
                "admin",
                json!({ "email": "ana", "name": "Ana" }),
                "data.admin.email",
            ),
        ] {
            let mut value = data();
            value[field] = bad;
            let error = TenantRegistered::from_data(&value).unwrap_err();
            assert_eq!(error.field, path, "{error}");
        }
    }

    #[test]
    fn serde_deserialize_validates_too() {
        let mut value = data();
        value["slug"] = json!("acme'; DROP SCHEMA public; --");
        let error = serde_json::from_value::<TenantRegistered>(value).unwrap_err();
        assert!(error.to_string().starts_with("data.slug: "), "{error}");
        assert!(!error.to_string().contains("DROP"), "{error}");
        assert!(serde_json::from_value::<Admin>(json!({ "email": "x", "name": "y" })).is_err());
        assert!(serde_json::from_value::<TenantRegistered>(data()).is_ok());
    }
}
