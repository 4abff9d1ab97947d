//! Decoding against the fixtures beside this file, plus the envelope's own rules.
#![expect(clippy::unwrap_used, reason = "tests")]

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::config::Isolation;
use crate::migrate::Version;
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
            ProvisioningStep::new(tenant, "activate", "succeeded", 1, 12, None),
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
            ProvisioningFailed::new(tenant, Some(slug), "seed", "duplicate key"),
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
            "seed",
            "succeeded",
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
        "seed",
        "succeeded",
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
    event.data.step = "deploy".into();
    assert_eq!(event.validate().unwrap_err().field, "data.step");
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
