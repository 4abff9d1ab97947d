//! The JSON wire forms of event data.
//!
//! Reading: [`Fields`] walks a `data` object field by field, so an error names the exact path
//! (`data.admin.email`, `data.applied[2]`) and the rule, never the value. Serde's own messages
//! are not used on this path because they quote the offending value (`invalid type: string
//! "ana@…"`), which may be personal data.
//!
//! Writing: [`ser`] holds the `serialize_with` functions for the shared types that carry no
//! serde implementation of their own (`TenantSlug`, `Version`, `Isolation`, the provisioning
//! `Step` and `StepStatus`).
//!
//! Pure.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::ValidationError;
use crate::Isolation;
use crate::Version;
use crate::tenant::TenantSlug;

/// A value that can be read from one JSON field, and the rule it must follow.
pub(crate) trait Leaf: Sized {
    /// What the field must be, for the error when it is not.
    const RULE: &'static str;

    /// The value, or `None` when `value` has the wrong shape.
    fn from_json(value: &Value) -> Option<Self>;
}

impl Leaf for String {
    const RULE: &'static str = "must be a string";

    fn from_json(value: &Value) -> Option<Self> {
        value.as_str().map(str::to_owned)
    }
}

impl Leaf for bool {
    const RULE: &'static str = "must be true or false";

    fn from_json(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

impl Leaf for u32 {
    const RULE: &'static str = "must be an integer from 0 to 4294967295";

    fn from_json(value: &Value) -> Option<Self> {
        value.as_u64().and_then(|n| u32::try_from(n).ok())
    }
}

impl Leaf for u64 {
    const RULE: &'static str = "must be a non-negative integer";

    fn from_json(value: &Value) -> Option<Self> {
        value.as_u64()
    }
}

impl Leaf for Uuid {
    const RULE: &'static str = "must be a UUID in its hyphenated form (8-4-4-4-12 hex digits)";

    fn from_json(value: &Value) -> Option<Self> {
        value.as_str().and_then(parse_uuid)
    }
}

impl Leaf for TenantSlug {
    const RULE: &'static str = "must be a tenant slug matching ^[a-z][a-z0-9_]{2,39}$ (3 to 40 of a-z, 0-9 and _, starting with a letter)";

    fn from_json(value: &Value) -> Option<Self> {
        value.as_str().and_then(|s| TenantSlug::parse(s).ok())
    }
}

impl Leaf for crate::server::ServerName {
    const RULE: &'static str = "must be a tenant server name matching ^[a-z][a-z0-9_-]{0,39}$";

    fn from_json(value: &Value) -> Option<Self> {
        value
            .as_str()
            .and_then(|s| crate::server::ServerName::parse(s).ok())
    }
}

impl Leaf for Isolation {
    const RULE: &'static str = "must be \"schema\" or \"database\"";

    fn from_json(value: &Value) -> Option<Self> {
        value.as_str().and_then(|s| s.parse().ok())
    }
}

impl Leaf for Version {
    const RULE: &'static str = "must be a migration version: a UTC timestamp YYYYMMDDHHMMSS as a number or a 14-digit string, or 0";

    fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::Number(n) => n.as_i64().and_then(|n| Version::new(n).ok()),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// A UUID in its canonical hyphenated form (either case); the braced, URN and unhyphenated forms
/// the `uuid` crate also accepts are refused, so an id has one spelling on the wire.
pub(crate) fn parse_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 36 {
        return None;
    }
    Uuid::try_parse(text).ok()
}

/// The fields of one JSON object, at `path` from the envelope root.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// The object `value`, found at `path`.
    ///
    /// # Errors
    /// `value` is null (the object is missing) or not an object.
    pub(crate) fn of(value: &'a Value, path: &str) -> Result<Self, ValidationError> {
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                path: path.to_owned(),
            }),
            Value::Null => Err(ValidationError::new(path, "is required")),
            _ => Err(ValidationError::new(path, "must be a JSON object")),
        }
    }

    fn path_of(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The field, treating an explicit `null` like an absent field.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    /// A required field.
    ///
    /// # Errors
    /// It is absent, null, or not a `T`.
    pub(crate) fn req<T: Leaf>(&self, key: &str) -> Result<T, ValidationError> {
        let value = self
            .get(key)
            .ok_or_else(|| ValidationError::new(self.path_of(key), "is required"))?;
        T::from_json(value).ok_or_else(|| ValidationError::new(self.path_of(key), T::RULE))
    }

    /// An optional field (absent or `null` is `None`).
    ///
    /// # Errors
    /// It is present and not a `T`.
    pub(crate) fn opt<T: Leaf>(&self, key: &str) -> Result<Option<T>, ValidationError> {
        self.get(key)
            .map(|value| {
                T::from_json(value).ok_or_else(|| ValidationError::new(self.path_of(key), T::RULE))
            })
            .transpose()
    }

    /// A required array of `T`; an error names the offending index.
    ///
    /// # Errors
    /// It is absent, null, not an array, or an element is not a `T`.
    pub(crate) fn list<T: Leaf>(&self, key: &str) -> Result<Vec<T>, ValidationError> {
        let path = self.path_of(key);
        let items = self
            .get(key)
            .ok_or_else(|| ValidationError::new(&path, "is required"))?
            .as_array()
            .ok_or_else(|| ValidationError::new(&path, "must be an array"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                T::from_json(item)
                    .ok_or_else(|| ValidationError::new(format!("{path}[{i}]"), T::RULE))
            })
            .collect()
    }

    /// A required nested object.
    ///
    /// # Errors
    /// It is absent, null or not an object.
    pub(crate) fn object(&self, key: &str) -> Result<Fields<'a>, ValidationError> {
        let path = self.path_of(key);
        match self.map.get(key) {
            Some(value) => Fields::of(value, &path),
            None => Err(ValidationError::new(path, "is required")),
        }
    }
}

/// `Deserialize` for event data types, through [`Event::from_data`](super::Event::from_data),
/// so a deserialized value has always passed the same checks as a decoded one.
macro_rules! deserialize_via_from_data {
    ($($ty:ty),+ $(,)?) => {
        $(
            impl<'de> serde::Deserialize<'de> for $ty {
                fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                    let value = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
                    <$ty as $crate::message::Event>::from_data(&value).map_err(serde::de::Error::custom)
                }
            }
        )+
    };
}
pub(crate) use deserialize_via_from_data;

/// `serialize_with` functions: slugs, isolation modes and provisioning steps and statuses as
/// strings, versions as numbers.
pub(crate) mod ser {
    use serde::Serializer;

    use crate::Isolation;
    use crate::Version;
    use crate::provisioning::{Step, StepStatus};
    use crate::tenant::TenantSlug;

    pub(crate) fn step<S: Serializer>(step: &Step, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(step.as_str())
    }

    pub(crate) fn step_status<S: Serializer>(status: &StepStatus, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(status.as_str())
    }

    pub(crate) fn slug<S: Serializer>(slug: &TenantSlug, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(slug.as_str())
    }

    pub(crate) fn opt_slug<S: Serializer>(
        slug: &Option<TenantSlug>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match slug {
            Some(slug) => s.serialize_some(slug.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn isolation<S: Serializer>(isolation: &Isolation, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(isolation.as_str())
    }

    pub(crate) fn opt_server<S: Serializer>(
        server: &Option<crate::server::ServerName>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match server {
            Some(server) => s.serialize_some(server.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn opt_isolation<S: Serializer>(
        isolation: &Option<Isolation>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match isolation {
            Some(isolation) => s.serialize_some(isolation.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn version<S: Serializer>(version: &Version, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(version.get())
    }

    pub(crate) fn opt_version<S: Serializer>(
        version: &Option<Version>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match version {
            Some(version) => s.serialize_some(&version.get()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn versions<S: Serializer>(versions: &[Version], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(versions.iter().map(|v| v.get()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn versions_read_from_numbers_and_strings() {
        let v = Version::new(20261124093000).ok();
        assert_eq!(Version::from_json(&json!(20261124093000_i64)), v);
        assert_eq!(Version::from_json(&json!("20261124093000")), v);
        assert_eq!(Version::from_json(&json!(0)), Some(Version::ZERO));
        assert_eq!(Version::from_json(&json!("0")), Some(Version::ZERO));
        for bad in [
            json!(-20261124093000_i64),
            json!(2026112409300_i64),
            json!(20261324093000_i64),
            json!(20261124093000.0),
            json!("2026-11-24"),
            json!(true),
            json!(null),
        ] {
            assert_eq!(Version::from_json(&bad), None, "{bad}");
        }
    }

    #[test]
    fn uuids_have_one_spelling() {
        let id = "6f1d2c3b-1111-4222-8333-944455556666";
        assert!(Uuid::from_json(&json!(id)).is_some());
        assert!(Uuid::from_json(&json!(id.to_uppercase())).is_some());
        for bad in [
            "6f1d2c3b111142228333944455556666",
            "{6f1d2c3b-1111-4222-8333-944455556666}",
            "urn:uuid:6f1d2c3b-1111-4222-8333-944455556666",
            "6f1d2c3b-1111-4222-8333-94445555666g",
        ] {
            assert!(Uuid::from_json(&json!(bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn fields_name_the_path() {
        let data = json!({ "a": { "b": null }, "list": [20261124093000_i64, "x"], "n": -1 });
        let Ok(fields) = Fields::of(&data, "data") else {
            panic!("an object")
        };
        let nested = fields.object("a").map(|a| a.req::<String>("b"));
        assert_eq!(
            nested.ok().and_then(Result::err).map(|e| e.field),
            Some("data.a.b".to_owned())
        );
        assert_eq!(
            fields.list::<Version>("list").err().map(|e| e.field),
            Some("data.list[1]".to_owned())
        );
        assert_eq!(
            fields.req::<u64>("n").err().map(|e| e.to_string()),
            Some("data.n: must be a non-negative integer".to_owned())
        );
        assert_eq!(fields.opt::<u64>("missing"), Ok(None));
        assert!(
            fields
                .object("missing")
                .is_err_and(|e| e.rule == "is required")
        );
        assert!(Fields::of(&json!([1]), "data").is_err_and(|e| e.rule == "must be a JSON object"));
    }
}
