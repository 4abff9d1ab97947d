//! Decoding against the fixtures beside this file, plus the envelope's own rules.
#![expect(clippy::unwrap_used, reason = "tests")]

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::Isolation;
use crate::Version;
use crate::provisioning::{Step, StepStatus};
use crate::tenant::TenantSlug;

const TENANT: &str = "6f1d2c3b-1111-4222-8333-944455556666";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Malformed,
    Invalid,
}

fn kind_and_field(error: &DecodeError) -> (Kind, String) {
    match error {
        DecodeError::Malformed(_) => (Kind::Malformed, error.field().unwrap_or("").to_owned()),
        DecodeError::Invalid(e) => (Kind::Invalid, e.field.clone()),
        other => panic!("unexpected {other:?}"),
    }
}

/// Decodes as `T`, forgetting the value: lets one table hold fixtures of several types.
fn typed<T: Event>(bytes: &[u8]) -> Result<(), DecodeError> {
    decode::<T>(bytes).map(drop)
}

type Typed = fn(&[u8]) -> Result<(), DecodeError>;

/// Every string in a JSON value, for the "errors never echo the input" check.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// A fixture's bytes, by file name.
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("fixtures/", $name)).as_slice()
    };
}

/// The invalid-fixture table: file => the type it claims to be, expected error kind and field.
macro_rules! refused {
    ($($name:literal => $ty:ty, $kind:ident, $field:literal;)*) => {
        [$(($name, fixture!($name), typed::<$ty> as Typed, Kind::$kind, $field)),*]
    };
}

#[test]
fn invalid_fixtures_are_refused_with_kind_and_field() {
    let cases = refused! {
        "not_json.bin" => TenantRegistered, Malformed, "";
        "not_cloudevent.json" => TenantRegistered, Malformed, "specversion";
        "wrong_specversion.json" => TenantRegistered, Malformed, "specversion";
        "missing_id.json" => TenantRegistered, Malformed, "id";
        "bad_id.json" => TenantRegistered, Malformed, "id";
        "bad_time.json" => TenantRegistered, Malformed, "time";
        "wrong_datacontenttype.json" => TenantRegistered, Malformed, "datacontenttype";
        "bad_slug.json" => TenantRegistered, Invalid, "data.slug";
        "slug_injection.json" => TenantRegistered, Invalid, "data.slug";
        "unicode_tricks.json" => TenantRegistered, Invalid, "data.name";
        "oversize_name.json" => TenantRegistered, Invalid, "data.name";
        "bad_email.json" => TenantRegistered, Invalid, "data.admin.email";
        "missing_admin.json" => TenantRegistered, Invalid, "data.admin";
        "subject_mismatch.json" => TenantRegistered, Invalid, "subject";
        "migrate_bad_uuid.json" => MigrateTenant, Invalid, "data.tenant_id";
        "rollback_operator_email.json" => RollbackTenant, Invalid, "data.operator";
        "oversize_reason.json" => ProvisioningStep, Invalid, "data.error";
    };
    for (name, bytes, decode_typed, kind, field) in cases {
        for error in [
            decode_any(bytes).unwrap_err(),
            decode_typed(bytes).unwrap_err(),
        ] {
            assert_eq!(
                kind_and_field(&error),
                (kind, field.to_owned()),
                "{name}: {error}"
            );
            assert!(!error.is_transient(), "{name}");
            let reason = error.reason();
            assert!(
                reason.len() <= DecodeError::MAX_REASON_LEN,
                "{name}: {reason}"
            );
            // Neither the message nor the header quotes what was sent.
            let mut sent = Vec::new();
            if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
                strings(value.get("data").unwrap_or(&value), &mut sent);
            }
            for value in sent.iter().filter(|s| s.len() >= 4) {
                let shown = error.to_string();
                assert!(
                    !shown.contains(value.as_str()),
                    "{name}: {shown} quotes {value}"
                );
                assert!(
                    !reason.contains(value.as_str()),
                    "{name}: {reason} quotes {value}"
                );
            }
        }
    }
}

#[test]
fn error_messages_say_what_was_wrong() {
    let cases: &[(&[u8], &str)] = &[
        (fixture!("not_json.bin"), "malformed message: not JSON ("),
        (
            fixture!("not_cloudevent.json"),
            "malformed message: specversion: is required (not a CloudEvent)",
        ),
        (
            fixture!("missing_id.json"),
            "malformed message: id: is required",
        ),
        (
            fixture!("bad_email.json"),
            "invalid message: data.admin.email: is not a valid address: ",
        ),
        (
            fixture!("missing_admin.json"),
            "invalid message: data.admin: is required",
        ),
        (
            fixture!("slug_injection.json"),
            "invalid message: data.slug: must be a tenant slug matching ^[a-z][a-z0-9_]{2,39}$",
        ),
        (
            fixture!("unicode_tricks.json"),
            "invalid message: data.name: must not contain bidirectional override",
        ),
        (
            fixture!("rollback_operator_email.json"),
            "invalid message: data.operator: must be an operator handle, not an email address",
        ),
    ];
    for (bytes, start) in cases {
        let shown = decode_any(bytes).unwrap_err().to_string();
        assert!(shown.starts_with(start), "{shown}");
    }
}

#[test]
fn valid_fixtures_round_trip() {
    fn round_trip<T: Event + PartialEq + fmt::Debug>(name: &str, bytes: &[u8]) {
        let first = decode::<T>(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let encoded = encode(&first);
        let second = decode::<T>(&encoded).unwrap_or_else(|e| panic!("{name} re-encoded: {e}"));
        assert_eq!(first, second, "{name}");
        assert_eq!(encode(&second), encoded, "{name}: encoding is stable");
        let any = decode_any(bytes).unwrap();
        assert_eq!(
            (any.id, &any.type_, any.tenant_id()),
            (first.id, &T::TYPE.to_owned(), first.data.tenant_id()),
            "{name}"
        );
    }
    round_trip::<TenantRegistered>(
        "tenant_registered",
        fixture!("tenant_registered.valid.json"),
    );
    round_trip::<MigrateTenant>("migrate_tenant", fixture!("migrate_tenant.valid.json"));
    round_trip::<MigrateTenant>(
        "migrate_tenant_string_version",
        fixture!("migrate_tenant_string_version.valid.json"),
    );
    round_trip::<RollbackTenant>("rollback_tenant", fixture!("rollback_tenant.valid.json"));
    round_trip::<MigrationCompleted>(
        "migration_completed",
        fixture!("migration_completed.valid.json"),
    );
    round_trip::<ProvisioningStep>(
        "provisioning_step",
        fixture!("provisioning_step.valid.json"),
    );
}

#[test]
fn the_contract_example_decodes_to_the_expected_values() {
    let event = decode::<TenantRegistered>(fixture!("tenant_registered.valid.json")).unwrap();
    assert_eq!(
        event.id,
        Uuid::parse_str("0b6f5a2e-2f8e-4a55-9d8e-3c1f0f6a7b11").unwrap()
    );
    assert_eq!(event.source, "platform-backend");
    assert_eq!(
        event.time,
        Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()
    );
    assert_eq!(event.subject.as_deref(), Some(TENANT));
    assert_eq!(event.data.slug.as_str(), "acme_towers");
    assert_eq!(event.data.isolation, Some(Isolation::Schema));
    assert_eq!(event.data.plan.as_deref(), Some("standard"));
    assert_eq!(event.data.admin.email, "ana@acme.example");
}

#[test]
fn encode_writes_the_structured_envelope_in_order() {
    let event =
        decode::<MigrateTenant>(fixture!("migrate_tenant_string_version.valid.json")).unwrap();
    let text = String::from_utf8(encode(&event)).unwrap();
    assert_eq!(
        text,
        r#"{"specversion":"1.0","id":"0190f5c2-8000-7000-8000-000000000001","source":"tenantctl","type":"migrate.tenant","time":"2026-11-24T10:05:00.123Z","datacontenttype":"application/json","data":{"tenant_id":"6f1d2c3b-1111-4222-8333-944455556666","deploy_id":"0190f5c2-7a4b-7cde-8f00-123456789abc","target_version":20261124093000}}"#
    );
}

fn samples() -> Vec<Vec<u8>> {
    let tenant = Uuid::parse_str(TENANT).unwrap();
    let deploy = Some(Uuid::now_v7());
    let slug = TenantSlug::parse("acme_towers").unwrap();
    let v = |n: i64| Version::new(n).unwrap();
    vec![
        encode(&CloudEvent::new(
            "test",
            TenantRegistered {
                tenant_id: tenant,
                slug: slug.clone(),
                name: "Acme Towers".into(),
                plan: None,
                isolation: Some(Isolation::Database),
                server: None,
                admin: Admin {
                    email: "ana@acme.example".into(),
                    name: "Ana Lima".into(),
                },
            },
        )),
        encode(&CloudEvent::new(
            "test",
            MigrateTenant {
                tenant_id: tenant,
                deploy_id: Uuid::now_v7(),
                target_version: None,
            },
        )),
        encode(&CloudEvent::new(
            "test",
            RollbackTenant {
                tenant_id: tenant,
                to_version: Version::ZERO,
                operator: "sre".into(),
                allow_data_loss: true,
            },
        )),
        encode(&CloudEvent::new(
            "test",
            ProvisioningStep::new(tenant, Step::Activate, StepStatus::Succeeded, 1, 12, None),
        )),
        encode(&CloudEvent::new(
            "test",
            Provisioned {
                tenant_id: tenant,
                slug: slug.clone(),
                isolation: Isolation::Schema,
                schema_version: v(20261124093000),
                duration_ms: 900,
            },
        )),
        encode(&CloudEvent::new(
            "test",
            ProvisioningFailed::new(tenant, Some(slug), Step::Seed, "duplicate key"),
        )),
        encode(&CloudEvent::new(
            "test",
            MigrationStarted {
                tenant_id: tenant,
                deploy_id: deploy,
                from_version: Version::ZERO,
                target_version: v(20261124093000),
            },
        )),
        encode(&CloudEvent::new(
            "test",
            MigrationCompleted {
                tenant_id: tenant,
                deploy_id: deploy,
                from_version: Version::ZERO,
                to_version: v(20261124093000),
                applied: vec![v(20261124093000)],
                duration_ms: 30,
            },
        )),
        encode(&CloudEvent::new(
            "test",
            MigrationFailed::new(
                tenant,
                deploy,
                Some(v(20261124093000)),
                "lock timeout",
                true,
                3,
            ),
        )),
        encode(&CloudEvent::new(
            "test",
            MigrationRollback {
                tenant_id: tenant,
                from_version: v(20261124093000),
                to_version: Version::ZERO,
                reverted: vec![v(20261124093000)],
                operator: "sre".into(),
                allow_data_loss: false,
                duration_ms: 7,
            },
        )),
        encode(&CloudEvent::new(
            "test",
            DlqReplayed {
                queue: "migrator.migrate-tenant.dlq".into(),
                original_message_id: "m-1".into(),
                original_type: Some("migrate.tenant".into()),
                tenant_id: None,
                operator: "sre".into(),
            },
        )),
    ]
}

#[test]
fn every_known_type_round_trips_through_decode_any() {
    let samples = samples();
    let types: Vec<String> = samples
        .iter()
        .map(|bytes| decode_any(bytes).unwrap().type_)
        .collect();
    assert_eq!(
        types,
        known_types().collect::<Vec<_>>(),
        "one sample per known type, in order"
    );
    let last = decode::<DlqReplayed>(samples.last().unwrap()).unwrap();
    assert_eq!(last.subject, None, "no tenant, no subject");
    let text = String::from_utf8(samples[10].clone()).unwrap();
    assert!(!text.contains("\"subject\""), "{text}");
}

#[test]
fn new_stamps_a_v7_id_the_time_and_the_tenant_subject() {
    let before = Utc::now();
    let event = CloudEvent::new(
        "provisioner",
        ProvisioningStep::new(
            Uuid::parse_str(TENANT).unwrap(),
            Step::Seed,
            StepStatus::Succeeded,
            1,
            4,
            None,
        ),
    );
    assert_eq!(event.id.get_version_num(), 7);
    assert!(event.time >= before && event.time <= Utc::now());
    assert_eq!(event.subject.as_deref(), Some(TENANT));
    assert_eq!(event.event_type(), "tenant.provisioning_step");
    assert_eq!(event.validate(), Ok(()));
}

#[test]
fn cloud_event_validate_checks_the_envelope_too() {
    let data = ProvisioningStep::new(
        Uuid::parse_str(TENANT).unwrap(),
        Step::Seed,
        StepStatus::Succeeded,
        1,
        4,
        None,
    );
    let mut event = CloudEvent::new("", data);
    assert_eq!(event.validate().unwrap_err().field, "source");
    event.source = "provisioner".into();
    event.subject = Some(Uuid::now_v7().to_string());
    assert_eq!(event.validate().unwrap_err().field, "subject");
    event.subject = None;
    // The step is typed (an unknown step cannot be built, and is refused on decoding:
    // `lifecycle::tests::steps_and_statuses_are_closed_sets`), so the data's own rule checked
    // here is the attempt's.
    event.data.attempt = 0;
    assert_eq!(event.validate().unwrap_err().field, "data.attempt");
}

#[test]
fn wrong_type_names_both() {
    let error = decode::<MigrateTenant>(fixture!("rollback_tenant.valid.json")).unwrap_err();
    assert_eq!(
        error,
        DecodeError::WrongType {
            expected: "migrate.tenant",
            found: "rollback.tenant".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "wrong event type: expected `migrate.tenant`, found `rollback.tenant`"
    );
    assert_eq!(error.field(), Some("type"));
}

fn envelope(change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(fixture!("migrate_tenant.valid.json")).unwrap();
    change(&mut value);
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn envelope_rules() {
    let malformed = |change: fn(&mut Value), field: &str| {
        let error = decode_any(&envelope(change)).unwrap_err();
        assert!(matches!(error, DecodeError::Malformed(_)), "{error}");
        assert_eq!(error.field(), Some(field), "{error}");
    };
    malformed(|v| v["specversion"] = json!(1.0), "specversion");
    malformed(|v| v["id"] = json!(42), "id");
    malformed(
        |v| v["id"] = json!("{0190f5c2-8000-7000-8000-000000000001}"),
        "id",
    );
    malformed(|v| v["source"] = json!(""), "source");
    malformed(|v| v["source"] = json!("x".repeat(257)), "source");
    malformed(|v| v["source"] = json!("evil\nINFO forged"), "source");
    malformed(
        |v| {
            v.as_object_mut().unwrap().remove("source");
        },
        "source",
    );
    malformed(|v| v["type"] = json!("migrate tenant"), "type");
    malformed(
        |v| {
            v.as_object_mut().unwrap().remove("type");
        },
        "type",
    );
    malformed(
        |v| {
            v.as_object_mut().unwrap().remove("time");
        },
        "time",
    );
    malformed(|v| v["time"] = json!("2026-11-24"), "time");
    malformed(|v| v["subject"] = json!(7), "subject");
    malformed(
        |v| v["datacontenttype"] = json!("text/plain"),
        "datacontenttype",
    );
    malformed(|v| v["data_base64"] = json!("AAAA"), "data_base64");
    assert!(matches!(
        decode_any(b"[1,2]"),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(decode_any(b""), Err(DecodeError::Malformed(_))));

    // Tolerated: a null subject, a content type with parameters, an offset time, extensions.
    let accepted = envelope(|v| {
        v["subject"] = Value::Null;
        v["datacontenttype"] = json!("Application/JSON; charset=utf-8");
        v["time"] = json!("2026-11-24T12:05:00+02:00");
        v["traceparent"] = json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    });
    let event = decode::<MigrateTenant>(&accepted).unwrap();
    assert_eq!(
        event.time,
        Utc.with_ymd_and_hms(2026, 11, 24, 10, 5, 0).unwrap()
    );
    assert_eq!(event.subject, None);
}

#[test]
fn known_types_need_their_data() {
    let error = decode_any(&envelope(|v| {
        v.as_object_mut().unwrap().remove("data");
    }))
    .unwrap_err();
    assert_eq!(
        error,
        DecodeError::Invalid(ValidationError::new("data", "is required"))
    );
    let error = decode_any(&envelope(|v| v["data"] = json!("x"))).unwrap_err();
    assert_eq!(
        error,
        DecodeError::Invalid(ValidationError::new("data", "must be a JSON object"))
    );
}

#[test]
fn messages_over_64_kib_are_invalid() {
    let mut padded = envelope(|v| v["data"]["padding"] = json!("x".repeat(MAX_MESSAGE_BYTES)));
    let error = decode_any(&padded).unwrap_err();
    assert_eq!(
        kind_and_field(&error),
        (Kind::Invalid, "message".to_owned())
    );
    // Just under the limit still decodes: the limit is on bytes, not on content.
    let excess = padded.len() - MAX_MESSAGE_BYTES;
    let text = String::from_utf8(padded.clone())
        .unwrap()
        .replacen(&"x".repeat(excess), "", 1);
    padded = text.into_bytes();
    assert_eq!(padded.len(), MAX_MESSAGE_BYTES);
    assert!(decode::<MigrateTenant>(&padded).is_ok());
}

#[test]
fn unknown_types_are_accepted_as_they_are() {
    let bytes = fixture!("unknown_type.valid.json");
    let event = decode_any(bytes).unwrap();
    assert_eq!(event.type_, "com.example.invoice.paid");
    assert_eq!(event.data, json!({ "invoice": "INV-1", "amount": 120 }));
    assert_eq!(event.redacted_data(), event.data);
    assert_eq!(event.tenant_id(), None);
    let no_data = envelope(|v| {
        v["type"] = json!("com.example.ping");
        v.as_object_mut().unwrap().remove("data");
    });
    assert_eq!(decode_any(&no_data).unwrap().data, Value::Null);
    assert!(matches!(
        decode::<TenantRegistered>(bytes),
        Err(DecodeError::WrongType { .. })
    ));
}

#[test]
fn the_audit_copy_of_tenant_registered_holds_no_personal_data() {
    let mut value: Value =
        serde_json::from_slice(fixture!("tenant_registered.valid.json")).unwrap();
    value["data"]["referrer_email"] = json!("bob@other.example");
    let event = decode_any(&serde_json::to_vec(&value).unwrap()).unwrap();
    let redacted = event.redacted_data();
    assert_eq!(
        redacted,
        json!({
            "tenant_id": TENANT,
            "slug": "acme_towers",
            "name": "Acme Towers",
            "plan": "standard",
            "isolation": "schema",
            "admin": { "redacted": true }
        })
    );
    let shown = format!("{event:?}");
    assert!(
        !shown.contains("ana@") && !shown.contains("Ana Lima") && !shown.contains("bob@"),
        "{shown}"
    );
    assert_eq!(event.tenant_id(), Uuid::parse_str(TENANT).ok());

    let other = decode_any(fixture!("migration_completed.valid.json")).unwrap();
    assert_eq!(other.redacted_data(), other.data);
}

#[test]
fn known_types_are_distinct_valid_names() {
    let types: Vec<&str> = known_types().collect();
    assert_eq!(types.len(), 11);
    let mut unique = types.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), types.len());
    assert!(types.iter().all(|t| rules::is_type_name(t)));
}

/// A type that relies on the default [`Event::from_data`] (serde, then `validate`).
#[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
struct Ping {
    tenant_id: Uuid,
    note: String,
}

impl Event for Ping {
    const TYPE: &'static str = "test.ping";

    fn validate(&self) -> Result<(), ValidationError> {
        rules::display_name("data.note", &self.note)
    }

    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }
}

#[test]
fn the_default_from_data_names_missing_fields_and_quotes_nothing() {
    let error = Ping::from_data(&json!({ "tenant_id": TENANT })).unwrap_err();
    assert_eq!(error, ValidationError::new("data.note", "is required"));
    let error =
        Ping::from_data(&json!({ "tenant_id": "ana@acme.example", "note": "n" })).unwrap_err();
    assert_eq!(
        error,
        ValidationError::new("data", "does not match the data of test.ping")
    );
    let error = Ping::from_data(&json!({ "tenant_id": TENANT, "note": "a\u{202E}b" })).unwrap_err();
    assert_eq!(error.field, "data.note");
    let event = CloudEvent::new(
        "test",
        Ping {
            tenant_id: Uuid::now_v7(),
            note: "hi".into(),
        },
    );
    assert_eq!(decode::<Ping>(&encode(&event)).unwrap(), event);
    assert_eq!(decode_any(&encode(&event)).unwrap().type_, "test.ping");
}

/// The structured fixture `name` in binary mode: its attributes as `prefix`ed properties, its
/// data as the body. `datacontenttype` goes to the transport's content type.
fn binary(name: &[u8], prefix: &str) -> (Vec<(String, String)>, Option<String>, Vec<u8>) {
    let Value::Object(mut map) = serde_json::from_slice::<Value>(name).unwrap() else {
        panic!("a structured fixture")
    };
    let body = map
        .remove("data")
        .map(|data| serde_json::to_vec(&data).unwrap())
        .unwrap_or_default();
    let content_type = map
        .remove("datacontenttype")
        .and_then(|v| v.as_str().map(str::to_owned));
    let properties = map
        .into_iter()
        .map(|(key, value)| (format!("{prefix}{key}"), value.as_str().unwrap().to_owned()))
        .collect();
    (properties, content_type, body)
}

fn received<'a>(
    properties: &'a [(String, String)],
    content_type: Option<&'a str>,
    body: &'a [u8],
) -> Received<'a> {
    Received {
        content_type,
        properties: properties
            .iter()
            .map(|(k, v)| (k.as_str(), std::borrow::Cow::Borrowed(v.as_str())))
            .collect(),
        body,
    }
}

#[test]
fn binary_mode_decodes_with_either_prefix_like_structured_mode() {
    let bytes = fixture!("tenant_registered.valid.json");
    let structured = decode::<TenantRegistered>(bytes).unwrap();
    let structured_any = decode_any(bytes).unwrap();
    for prefix in [
        "cloudEvents:",
        "cloudEvents_",
        "CLOUDEVENTS:",
        "cloudevents_",
    ] {
        let (properties, content_type, body) = binary(bytes, prefix);
        for content_type in [
            content_type.as_deref(),
            None,
            Some("application/json; charset=utf-8"),
        ] {
            let message = received(&properties, content_type, &body);
            assert_eq!(
                decode_received::<TenantRegistered>(&message).unwrap(),
                structured,
                "{prefix} {content_type:?}"
            );
            let any = decode_any_received(&message).unwrap();
            assert_eq!(any, structured_any, "{prefix}");
            assert_eq!(
                any.content_digest(),
                structured_any.content_digest(),
                "the mode is not content"
            );
        }
    }
    // Properties that are not CloudEvents attributes are ignored, as are extensions.
    let (mut properties, _, body) = binary(bytes, "cloudEvents:");
    properties.push((
        "traceparent".into(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
    ));
    properties.push(("cloudEvents:partitionkey".into(), "k".into()));
    properties.push(("cloudEvents:not-a-name!".into(), "k".into()));
    assert!(decode_received::<TenantRegistered>(&received(&properties, None, &body)).is_ok());
}

#[test]
fn structured_mode_accepts_the_cloudevents_json_content_type() {
    let bytes = fixture!("tenant_registered.valid.json");
    let expected = decode_any(bytes).unwrap();
    for content_type in [
        "application/cloudevents+json",
        "application/cloudevents+json; charset=utf-8",
        "Application/CloudEvents+JSON ;charset=UTF-8",
        "application/json",
        "application/json; charset=utf-8",
    ] {
        let message = received(&[], Some(content_type), bytes);
        assert_eq!(
            decode_any_received(&message).unwrap(),
            expected,
            "{content_type}"
        );
    }
    // The structured content type wins over stray binary properties.
    let stray = [("cloudEvents:specversion".to_owned(), "1.0".to_owned())];
    let message = received(&stray, Some("application/cloudevents+json"), bytes);
    assert_eq!(decode_any_received(&message).unwrap(), expected);

    for (content_type, field) in [
        ("application/cloudevents-batch+json", "content_type"),
        ("application/cloudevents+avro", "content_type"),
        ("text/plain", "content_type"),
        ("application/xml", "content_type"),
    ] {
        let error = decode_any_received(&received(&[], Some(content_type), bytes)).unwrap_err();
        assert!(
            matches!(error, DecodeError::Malformed(_)),
            "{content_type}: {error}"
        );
        assert_eq!(error.field(), Some(field), "{content_type}: {error}");
        assert!(
            !error.reason().contains(content_type),
            "the reason quotes nothing: {error}"
        );
    }
}

#[test]
fn binary_mode_errors_name_the_attribute() {
    let bytes = fixture!("tenant_registered.valid.json");
    let (properties, _, body) = binary(bytes, "cloudEvents:");
    let without = |name: &str| -> Vec<(String, String)> {
        properties
            .iter()
            .filter(|(k, _)| k != &format!("cloudEvents:{name}"))
            .cloned()
            .collect()
    };
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut changed = without(name);
        changed.push((format!("cloudEvents:{name}"), value.to_owned()));
        changed
    };
    let refused = |properties: &[(String, String)], content_type: Option<&str>, body: &[u8]| {
        decode_any_received(&received(properties, content_type, body)).unwrap_err()
    };

    let error = refused(&without("specversion"), None, &body);
    assert_eq!(error.field(), Some("specversion"), "{error}");
    assert!(
        error.to_string().contains("cloudEvents:specversion"),
        "{error}"
    );
    let error = refused(&with("specversion", "0.3"), None, &body);
    assert_eq!(error.field(), Some("specversion"), "{error}");
    let error = refused(&without("id"), None, &body);
    assert_eq!(
        error,
        DecodeError::Malformed("id: is required".to_owned()),
        "{error}"
    );
    assert_eq!(refused(&with("id", "42"), None, &body).field(), Some("id"));
    assert_eq!(
        refused(&without("source"), None, &body).field(),
        Some("source")
    );
    assert_eq!(refused(&without("type"), None, &body).field(), Some("type"));
    assert_eq!(
        refused(&with("time", "yesterday"), None, &body).field(),
        Some("time")
    );
    assert_eq!(
        refused(&with("source", "a\nb"), None, &body).field(),
        Some("source")
    );

    // The data must be JSON, and said to be.
    for content_type in ["text/plain", "application/xml", "application/octet-stream"] {
        let error = refused(&properties, Some(content_type), &body);
        assert_eq!(
            error.field(),
            Some("datacontenttype"),
            "{content_type}: {error}"
        );
        assert!(error.to_string().contains("binary mode"), "{error}");
    }
    assert_eq!(
        refused(&with("datacontenttype", "text/plain"), None, &body).field(),
        Some("datacontenttype")
    );
    let error = refused(&properties, Some("application/json"), b"<xml/>");
    assert_eq!(error.field(), Some("data"), "{error}");

    // No attribute twice, and the data only in the body.
    let mut twice = properties.clone();
    twice.push((
        "cloudEvents_id".into(),
        "0b6f5a2e-2f8e-4a55-9d8e-3c1f0f6a7b12".into(),
    ));
    assert_eq!(refused(&twice, None, &body).field(), Some("id"));
    assert_eq!(
        refused(&with("data", "{}"), None, &body).field(),
        Some("data")
    );
    assert_eq!(
        refused(&with("data_base64", "AAAA"), None, &body).field(),
        Some("data_base64")
    );
}

#[test]
fn binary_events_follow_every_content_rule() {
    let (properties, content_type, _) =
        binary(fixture!("tenant_registered.valid.json"), "cloudEvents:");
    let data = |change: fn(&mut Value)| {
        let mut value: Value =
            serde_json::from_slice(fixture!("tenant_registered.valid.json")).unwrap();
        change(&mut value["data"]);
        serde_json::to_vec(&value["data"]).unwrap()
    };
    let refused = |body: &[u8]| {
        kind_and_field(
            &decode_received::<TenantRegistered>(&received(
                &properties,
                content_type.as_deref(),
                body,
            ))
            .unwrap_err(),
        )
    };
    assert_eq!(
        refused(&data(|d| d["slug"] = json!("acme'; DROP SCHEMA public; --"))),
        (Kind::Invalid, "data.slug".to_owned())
    );
    assert_eq!(
        refused(&data(|d| d["admin"]["email"] = json!("ana"))),
        (Kind::Invalid, "data.admin.email".to_owned())
    );
    assert_eq!(
        refused(&data(
            |d| d["tenant_id"] = json!("0190f5c2-8000-7000-8000-000000000001")
        )),
        (Kind::Invalid, "subject".to_owned())
    );
    assert_eq!(
        refused(&data(
            |d| d["padding"] = json!("x".repeat(MAX_MESSAGE_BYTES))
        )),
        (Kind::Invalid, "message".to_owned())
    );
    assert_eq!(
        refused(b""),
        (Kind::Invalid, "data".to_owned()),
        "no body, no data"
    );
    // The limit counts the attributes too.
    let mut heavy = properties.clone();
    heavy.push(("cloudEvents:padding".into(), "x".repeat(MAX_MESSAGE_BYTES)));
    let error = decode_any_received(&received(&heavy, None, &data(|_| {}))).unwrap_err();
    assert_eq!(
        kind_and_field(&error),
        (Kind::Invalid, "message".to_owned())
    );
    // And the type is checked as in structured mode.
    assert!(matches!(
        decode_received::<MigrateTenant>(&received(&properties, None, &data(|_| {}))),
        Err(DecodeError::WrongType { .. })
    ));
}

#[test]
fn peek_reads_either_mode_without_validating() {
    let bytes = fixture!("bad_slug.json");
    let structured = peek(&Received::structured(bytes));
    assert_eq!(structured.event_type.as_deref(), Some("tenant.registered"));
    assert_eq!(structured.tenant_id.as_deref(), Some(TENANT));
    assert!(structured.id.is_some());
    let (properties, content_type, body) = binary(bytes, "cloudEvents_");
    let binary = peek(&received(&properties, content_type.as_deref(), &body));
    assert_eq!(binary, structured);
    // Without data, the subject names the tenant.
    let binary = peek(&received(&properties, None, b""));
    assert_eq!(binary.tenant_id.as_deref(), Some(TENANT));
    assert_eq!(
        peek(&Received::structured(b"\xff garbage")),
        Peek::default()
    );
}

#[test]
fn unknown_types_lose_their_personal_data_in_the_audit_copy() {
    let bytes = envelope(|v| {
        v["type"] = json!("com.example.resident.moved");
        v["source"] = json!("mailto:ops@acme.example");
        v["data"] = json!({
            "unit": "12B",
            "admin": { "email": "ana@acme.example", "name": "Ana Lima" },
            "resident": { "first_name": "Bob", "phone": "+55 11 99999-0000" },
            "history": [{ "by": "carla@acme.example", "at": "2026-11-24" }],
            "full_name": "Dora Dias",
        });
    });
    let event = decode_any(&bytes).unwrap();
    let redacted = event.redacted_data();
    assert_eq!(
        redacted,
        json!({
            "unit": "12B",
            "admin": { "redacted": true },
            "resident": { "redacted": true },
            "history": [{ "by": "redacted", "at": "2026-11-24" }],
            "full_name": "redacted",
        })
    );
    assert_eq!(event.redacted_source(), "redacted");
    let shown = format!("{event:?}");
    for secret in ["ana@", "Ana Lima", "Bob", "99999", "carla@", "Dora", "ops@"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    // Our own types, as we publish them, are stored as they are.
    let known = decode_any(fixture!("migration_completed.valid.json")).unwrap();
    assert_eq!(known.redacted_data(), known.data);
    assert_eq!(known.redacted_source(), known.source);
}

#[test]
fn a_known_type_keeps_only_its_contract_fields_and_no_email_in_free_text() {
    let tenant = "6f1d2c3b-1111-4222-8333-944455556666";
    let bytes = envelope(|v| {
        v["type"] = json!("migration.failed");
        v["subject"] = json!(tenant);
        v["data"] = json!({
            "tenant_id": tenant,
            "version": "20261124110000",
            "reason": "duplicate key value violates unique constraint: Key (email)=(ana@acme.example) already exists",
            "transient": false,
            "attempt": 1,
            "admin": { "email": "bob@acme.example", "name": "Bob Reis" },
        });
    });
    let event = decode_any(&bytes).unwrap();
    let stored = event.redacted_data().to_string();
    for secret in ["ana@", "bob@", "Bob Reis", "admin"] {
        assert!(!stored.contains(secret), "{stored}");
    }
    assert_eq!(event.redacted_data()["tenant_id"], json!(tenant));
    assert_eq!(event.redacted_data()["reason"], json!("redacted"));
}

#[test]
fn a_typed_event_and_its_decoded_bytes_have_the_same_content_digest() {
    for bytes in samples() {
        let any = decode_any(&bytes).unwrap();
        let digest = any.content_digest();
        // Re-sent later: a new time, the same content.
        let mut value: Value = serde_json::from_slice(&bytes).unwrap();
        value["time"] = json!("2030-01-01T00:00:00Z");
        let resent = decode_any(&serde_json::to_vec(&value).unwrap()).unwrap();
        assert_eq!(resent.content_digest(), digest, "{}", any.type_);
        value["id"] = json!(Uuid::now_v7());
        assert_eq!(
            decode_any(&serde_json::to_vec(&value).unwrap())
                .unwrap()
                .content_digest(),
            digest
        );
    }
    let typed = decode::<TenantRegistered>(fixture!("tenant_registered.valid.json")).unwrap();
    assert_eq!(
        typed.content_digest(),
        decode_any(&encode(&typed)).unwrap().content_digest()
    );
    let mut other = typed.clone();
    other.data.slug = TenantSlug::parse("other_towers").unwrap();
    assert_ne!(other.content_digest(), typed.content_digest());
}
