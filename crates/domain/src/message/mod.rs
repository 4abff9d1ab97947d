//! The messages of the contract (§2.3): the CloudEvents 1.0 envelope (structured and binary
//! content modes), one typed struct per message kind, and the rules each must follow.
//!
//! Pure: no I/O, no async, no clock reads except in [`CloudEvent::new`], which stamps the
//! event's `time`. The bus adapter calls [`encode`] and [`decode_received`] /
//! [`decode_any_received`] with the message as plain data ([`Received`]); nothing here knows
//! about AMQP.
//!
//! # Wire format
//! Our services publish structured mode (the whole event is one JSON body, which the
//! dead-letter tools, logs and other tools can read on its own):
//! ```json
//! {"specversion":"1.0","id":"<uuid>","source":"provisioner","type":"tenant.provisioned",
//!  "time":"2026-11-24T10:00:00Z","subject":"<tenant id>","datacontenttype":"application/json",
//!  "data":{...}}
//! ```
//! `subject` is the tenant id when the event concerns one tenant, and is omitted otherwise.
//!
//! Consumers accept both content modes of the AMQP binding: structured (content type
//! `application/json`, `application/cloudevents+json` or none) and binary (attributes in
//! `cloudEvents:*` or `cloudEvents_*` application properties, JSON data as the body); see
//! `received`.
//!
//! # Decoding
//! A message is refused ([`DecodeError`]) when it is over 64 KiB, is not a CloudEvent, or its
//! `data` breaks its type's rules. Unknown fields inside `data` are accepted and ignored, so a
//! newer publisher can add fields without breaking older consumers; required fields must be
//! present. Errors name the field and the rule, never the value: they go to logs and
//! dead-letter headers, and the value may be personal data. The rules of every type are listed
//! in `docs/MESSAGES.md`.
//!
//! # Auditing
//! [`AnyEvent::redacted_data`] is what the audit trail may store (no personal data, whatever the
//! type); [`AnyEvent::content_digest`] tells a redelivery from an id reused for another event.
//!
//! # Layout
//! - this file: [`CloudEvent`], [`Event`], [`encode`], [`decode`], [`decode_any`],
//!   [`decode_received`], [`decode_any_received`], [`AnyEvent`];
//! - one file per message kind: [`tenant_registered`], [`migrate_tenant`], [`rollback_tenant`],
//!   and [`lifecycle`] for the events the services publish as work progresses;
//! - `received`: [`Received`], the content modes, [`peek`];
//! - private: `envelope` (reading the envelope), `wire` (reading `data` field by field, writing
//!   the shared types), `rules` (the content rules), `digest` (the content digest), `redact`
//!   (personal data in events of unknown types), `error`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};
use uuid::Uuid;

mod digest;
mod envelope;
mod error;
pub mod lifecycle;
pub mod migrate_tenant;
mod received;
mod redact;
pub mod rollback_tenant;
mod rules;
pub mod tenant_registered;
mod wire;

pub use digest::content_digest;
pub use error::{DecodeError, ValidationError};
pub use lifecycle::{
    DlqReplayed, MigrationCompleted, MigrationFailed, MigrationRollback, MigrationStarted,
    Provisioned, ProvisioningFailed, ProvisioningStep, clip_reason,
};
pub use migrate_tenant::MigrateTenant;
pub use received::{Peek, Received, STRUCTURED_CONTENT_TYPE, is_cloudevents_property, peek};
pub use rollback_tenant::RollbackTenant;
pub use tenant_registered::{Admin, TenantRegistered};

/// Largest message accepted, in bytes. Our largest event is a few KiB; the limit bounds what a
/// hostile or broken publisher can make a consumer parse and the auditor store.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The data of one kind of message.
///
/// Implementations are plain structs mirroring the contract; [`Event::TYPE`] is the CloudEvents
/// `type` (and the routing key).
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The CloudEvents `type`, e.g. `tenant.registered`.
    const TYPE: &'static str;

    /// Checks the contract's content rules.
    ///
    /// # Errors
    /// The first broken rule, with the field's path from the envelope root (`data.slug`).
    fn validate(&self) -> Result<(), ValidationError>;

    /// The tenant the event concerns, if one: the envelope's `subject`, and the tenant of the
    /// log lines and the audit row.
    fn tenant_id(&self) -> Option<Uuid>;

    /// Reads and validates `data` (JSON `null` when the message had none).
    ///
    /// The default deserializes with serde and then calls [`Event::validate`]; since serde's
    /// messages may quote the offending value, it reports only the missing field or a generic
    /// rule. The types of this module override it to name the exact field.
    ///
    /// # Errors
    /// A missing or ill-typed field, or a broken rule.
    fn from_data(data: &Value) -> Result<Self, ValidationError> {
        let event: Self = serde_json::from_value(data.clone()).map_err(|error| {
            let text = error.to_string();
            match text
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split_once('`'))
            {
                Some((field, _)) if rules::is_type_name(field) => {
                    ValidationError::new(format!("data.{field}"), "is required")
                }
                _ => ValidationError::new(
                    "data",
                    format!("does not match the data of {}", Self::TYPE),
                ),
            }
        })?;
        event.validate()?;
        Ok(event)
    }
}

/// A CloudEvent with typed data.
///
/// Serializes to the structured-JSON form (see the module docs), with `type` from
/// [`Event::TYPE`] and `datacontenttype` always `application/json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent<T> {
    /// Unique per event (a UUIDv7 from [`CloudEvent::new`]): the AMQP `message_id`, and the key
    /// that makes the auditor and every consumer idempotent.
    pub id: Uuid,
    /// Who published it (`provisioner`, `platform-backend`): 1 to 256 characters.
    pub source: String,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// The tenant id, when the event concerns one tenant.
    pub subject: Option<String>,
    /// The payload.
    pub data: T,
}

impl<T: Event> CloudEvent<T> {
    /// A new event from `source`: a fresh UUIDv7 `id`, `time` now, `subject` the data's tenant.
    /// The only clock read of this module.
    pub fn new(source: &str, data: T) -> Self {
        CloudEvent {
            id: Uuid::now_v7(),
            source: source.to_owned(),
            time: Utc::now(),
            subject: data.tenant_id().map(|id| id.to_string()),
            data,
        }
    }

    /// The CloudEvents `type`.
    pub fn event_type(&self) -> &'static str {
        T::TYPE
    }

    /// Checks what a consumer's [`decode`] would: `source`, `subject` and the data's rules.
    /// Publishers call it before publishing, so a bad event fails where it was made.
    ///
    /// # Errors
    /// The first broken rule.
    pub fn validate(&self) -> Result<(), ValidationError> {
        envelope::attribute("source", &self.source)?;
        if let Some(subject) = &self.subject {
            envelope::attribute("subject", subject)?;
        }
        self.data.validate()?;
        check_subject(self.subject.as_deref(), self.data.tenant_id())
    }

    /// The event's content digest: the same as [`AnyEvent::content_digest`] of the event
    /// decoded from [`encode`]'s bytes. A publisher that derives an event id from what the
    /// event is about can fold it in, so that an event re-emitted with other content gets
    /// another id instead of reusing one.
    pub fn content_digest(&self) -> [u8; 32] {
        let data = serde_json::to_value(&self.data)
            .expect("event data are structs of strings, numbers, booleans and lists: always JSON");
        content_digest(T::TYPE, &self.source, self.subject.as_deref(), &data)
    }
}

impl<T: Event> Serialize for CloudEvent<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut event = serializer.serialize_struct("CloudEvent", 8)?;
        event.serialize_field("specversion", envelope::SPEC_VERSION)?;
        event.serialize_field("id", &self.id)?;
        event.serialize_field("source", &self.source)?;
        event.serialize_field("type", T::TYPE)?;
        event.serialize_field(
            "time",
            &self.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )?;
        match &self.subject {
            Some(subject) => event.serialize_field("subject", subject)?,
            None => event.skip_field("subject")?,
        }
        event.serialize_field("datacontenttype", envelope::DATA_CONTENT_TYPE)?;
        event.serialize_field("data", &self.data)?;
        event.end()
    }
}

/// The event as JSON bytes, ready to publish. Does not validate: see [`CloudEvent::validate`].
pub fn encode<T: Event>(event: &CloudEvent<T>) -> Vec<u8> {
    serde_json::to_vec(event)
        .expect("event data are structs of strings, numbers, booleans and lists: always JSON")
}

/// Decodes a structured-mode message of type `T` from its body alone.
///
/// # Errors
/// As [`decode_received`].
pub fn decode<T: Event>(bytes: &[u8]) -> Result<CloudEvent<T>, DecodeError> {
    decode_received(&Received::structured(bytes))
}

/// Decodes a message of type `T`, in either content mode.
///
/// # Errors
/// [`DecodeError::Malformed`] when it is not a CloudEvent (or a binary-mode one whose data are
/// not JSON), [`DecodeError::WrongType`] when it is another type, [`DecodeError::Invalid`] when
/// it is over [`MAX_MESSAGE_BYTES`], its data break `T`'s rules, or its `subject` is not its
/// data's tenant.
pub fn decode_received<T: Event>(message: &Received<'_>) -> Result<CloudEvent<T>, DecodeError> {
    let any = received::parse(message)?;
    if any.type_ != T::TYPE {
        return Err(DecodeError::WrongType {
            expected: T::TYPE,
            found: any.type_,
        });
    }
    let data = T::from_data(&any.data)?;
    check_subject(any.subject.as_deref(), data.tenant_id())?;
    Ok(CloudEvent {
        id: any.id,
        source: any.source,
        time: any.time,
        subject: any.subject,
        data,
    })
}

/// Decodes a structured-mode message of any type from its body alone.
///
/// # Errors
/// As [`decode_any_received`].
pub fn decode_any(bytes: &[u8]) -> Result<AnyEvent, DecodeError> {
    decode_any_received(&Received::structured(bytes))
}

/// Decodes a message of any type, in either content mode, for consumers that handle them all
/// (the auditor, the DLQ tools). A message of a known type (see [`known_types`]) must also pass
/// that type's rules; one of an unknown type is accepted when its envelope is valid.
///
/// # Errors
/// As [`decode_received`], without [`DecodeError::WrongType`].
pub fn decode_any_received(message: &Received<'_>) -> Result<AnyEvent, DecodeError> {
    let any = received::parse(message)?;
    if let Some((_, check, _)) = KNOWN.iter().find(|(type_, ..)| *type_ == any.type_) {
        let tenant_id = check(&any.data)?;
        check_subject(any.subject.as_deref(), tenant_id)?;
    }
    Ok(any)
}

/// The types this module knows, in contract order.
pub fn known_types() -> impl Iterator<Item = &'static str> {
    KNOWN.iter().map(|(type_, ..)| *type_)
}

/// Reads `data` as an event's type and returns its tenant.
type Check = fn(&Value) -> Result<Option<Uuid>, ValidationError>;

fn check<T: Event>(data: &Value) -> Result<Option<Uuid>, ValidationError> {
    T::from_data(data).map(|event| event.tenant_id())
}

/// The fields of a known type's `data` as that type writes them: anything else a producer
/// added (unvetted, maybe personal) is dropped. `None` when the data is not of the type.
type ContractFields = fn(&Value) -> Option<Value>;

fn contract_fields<T: Event>(data: &Value) -> Option<Value> {
    T::from_data(data)
        .ok()
        .and_then(|event| serde_json::to_value(event).ok())
}

/// Every known type, how to check its data ([`decode_any`]) and its contract fields
/// ([`AnyEvent::redacted_data`]).
const KNOWN: [(&str, Check, ContractFields); 11] = [
    (
        TenantRegistered::TYPE,
        check::<TenantRegistered>,
        contract_fields::<TenantRegistered>,
    ),
    (
        MigrateTenant::TYPE,
        check::<MigrateTenant>,
        contract_fields::<MigrateTenant>,
    ),
    (
        RollbackTenant::TYPE,
        check::<RollbackTenant>,
        contract_fields::<RollbackTenant>,
    ),
    (
        ProvisioningStep::TYPE,
        check::<ProvisioningStep>,
        contract_fields::<ProvisioningStep>,
    ),
    (
        Provisioned::TYPE,
        check::<Provisioned>,
        contract_fields::<Provisioned>,
    ),
    (
        ProvisioningFailed::TYPE,
        check::<ProvisioningFailed>,
        contract_fields::<ProvisioningFailed>,
    ),
    (
        MigrationStarted::TYPE,
        check::<MigrationStarted>,
        contract_fields::<MigrationStarted>,
    ),
    (
        MigrationCompleted::TYPE,
        check::<MigrationCompleted>,
        contract_fields::<MigrationCompleted>,
    ),
    (
        MigrationFailed::TYPE,
        check::<MigrationFailed>,
        contract_fields::<MigrationFailed>,
    ),
    (
        MigrationRollback::TYPE,
        check::<MigrationRollback>,
        contract_fields::<MigrationRollback>,
    ),
    (
        DlqReplayed::TYPE,
        check::<DlqReplayed>,
        contract_fields::<DlqReplayed>,
    ),
];

/// A `subject` must name the data's tenant when both are there: routing, logs and the audit
/// trail must agree on which tenant an event is about.
fn check_subject(subject: Option<&str>, tenant_id: Option<Uuid>) -> Result<(), ValidationError> {
    match (subject, tenant_id) {
        (Some(subject), Some(tenant_id)) if wire::parse_uuid(subject) != Some(tenant_id) => Err(
            ValidationError::new("subject", "must be data.tenant_id when both are present"),
        ),
        _ => Ok(()),
    }
}

/// A CloudEvent of any type, its data as JSON: what the auditor stores.
///
/// `Debug` shows [`AnyEvent::redacted_data`], never the raw data.
#[derive(Clone, PartialEq)]
pub struct AnyEvent {
    /// The event id (the audit row's primary key).
    pub id: Uuid,
    /// Who published it.
    pub source: String,
    /// The CloudEvents `type`: 1 to 128 of `[A-Za-z0-9._-]`.
    pub type_: String,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// The tenant id, for events about one tenant.
    pub subject: Option<String>,
    /// The data as received, unknown fields included (`null` when the message had none). May
    /// hold personal data: store [`AnyEvent::redacted_data`] instead.
    pub data: Value,
}

/// The fields of `tenant.registered` the audit trail keeps; everything else (the `admin` block,
/// and any field a newer publisher adds, which nobody has vetted for personal data) is left out.
const TENANT_REGISTERED_AUDITED: [&str; 6] =
    ["tenant_id", "slug", "name", "plan", "isolation", "server"];

impl AnyEvent {
    /// The data as the audit trail stores it, with no personal data (contract §2.3):
    /// - `tenant.registered`: the `admin` block becomes `{"redacted": true}` and fields beyond
    ///   the contract's are dropped;
    /// - the other known types (our commands and lifecycle events): their contract fields
    ///   only, so a producer cannot smuggle personal data in through an extra field, and then
    ///   the rule of unknown types, which catches an email address echoed in a free-text
    ///   `reason` (a database error quoting a row);
    /// - unknown types: personal data removed by field name and shape (see `redact`: person
    ///   blocks, keys such as `email` or `first_name`, anything shaped like an email address).
    pub fn redacted_data(&self) -> Value {
        if self.type_ != TenantRegistered::TYPE {
            let contract = KNOWN
                .iter()
                .find(|(type_, ..)| *type_ == self.type_)
                .and_then(|(_, _, fields)| fields(&self.data));
            return redact::personal_data(contract.as_ref().unwrap_or(&self.data));
        }
        let mut kept: Map<String, Value> = self
            .data
            .as_object()
            .map(|data| {
                TENANT_REGISTERED_AUDITED
                    .iter()
                    .filter_map(|key| data.get(*key).map(|v| ((*key).to_owned(), v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        kept.insert("admin".to_owned(), json!({ "redacted": true }));
        Value::Object(kept)
    }

    /// The `source` as the audit trail stores it: `"redacted"` when it holds something shaped
    /// like an email address (a producer naming itself after a person), else as received.
    pub fn redacted_source(&self) -> &str {
        if redact::looks_like_email(&self.source) {
            "redacted"
        } else {
            &self.source
        }
    }

    /// SHA-256 of what the event says (`type`, `source`, `subject`, `data` as received; not `id`
    /// or `time`): equal for two deliveries of one event, different when an id is reused for
    /// another event. See `digest` for the canonical form.
    pub fn content_digest(&self) -> [u8; 32] {
        content_digest(
            &self.type_,
            &self.source,
            self.subject.as_deref(),
            &self.data,
        )
    }

    /// The tenant the event concerns: `data.tenant_id` when it is a UUID (for any type, known
    /// or not).
    pub fn tenant_id(&self) -> Option<Uuid> {
        self.data
            .get("tenant_id")
            .and_then(Value::as_str)
            .and_then(wire::parse_uuid)
    }
}

impl fmt::Debug for AnyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyEvent")
            .field("id", &self.id)
            .field("source", &self.redacted_source())
            .field("type_", &self.type_)
            .field("time", &self.time)
            .field("subject", &self.subject)
            .field("data", &self.redacted_data())
            .finish()
    }
}

#[cfg(test)]
mod tests;
