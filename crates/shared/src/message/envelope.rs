//! Reading the CloudEvents 1.0 structured-JSON envelope: size limit, JSON, the required and
//! optional attributes, and their rules. `data` is left as JSON for the caller to check against
//! its type.
//!
//! Pure.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::wire::parse_uuid;
use super::{AnyEvent, DecodeError, MAX_MESSAGE_BYTES, ValidationError, rules};

/// Longest `source` and `subject`, in characters: room for a URI reference, small enough for a
/// log field.
pub(crate) const MAX_ATTRIBUTE_CHARS: usize = 256;

/// The only `specversion` we speak.
pub(crate) const SPEC_VERSION: &str = "1.0";

/// The only `datacontenttype`: JSON in the `data` attribute.
pub(crate) const DATA_CONTENT_TYPE: &str = "application/json";

fn malformed(field: &str, rule: &str) -> DecodeError {
    DecodeError::Malformed(format!("{field}: {rule}"))
}

/// Rules shared by `source` and `subject`: 1 to 256 characters of one printable line.
pub(crate) fn attribute(field: &str, text: &str) -> Result<(), ValidationError> {
    if !(1..=MAX_ATTRIBUTE_CHARS).contains(&text.chars().count()) {
        return Err(ValidationError::new(
            field,
            format!("must be 1 to {MAX_ATTRIBUTE_CHARS} characters"),
        ));
    }
    if let Some(rule) = rules::forbidden_char(text) {
        return Err(ValidationError::new(field, rule));
    }
    Ok(())
}

/// A string attribute: `Ok(None)` when absent or null.
fn string_attribute<'a>(
    map: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, DecodeError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(malformed(field, "must be a string")),
    }
}

fn required<'a>(map: &'a Map<String, Value>, field: &str) -> Result<&'a str, DecodeError> {
    string_attribute(map, field)?.ok_or_else(|| malformed(field, "is required"))
}

/// Parses the envelope of `bytes`.
///
/// # Errors
/// [`DecodeError::Invalid`] over [`MAX_MESSAGE_BYTES`]; [`DecodeError::Malformed`] for anything
/// wrong with the envelope.
pub(crate) fn parse(bytes: &[u8]) -> Result<AnyEvent, DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::Invalid(ValidationError::new(
            "message",
            format!("must be at most {MAX_MESSAGE_BYTES} bytes (64 KiB)"),
        )));
    }
    // serde_json's syntax errors name a position and what was expected, never the input.
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::Malformed(format!("not JSON ({e})")))?;
    let Value::Object(mut map) = value else {
        return Err(DecodeError::Malformed(
            "not a JSON object (a structured-mode CloudEvent is one)".to_owned(),
        ));
    };

    match map.get("specversion") {
        None | Some(Value::Null) => {
            return Err(malformed("specversion", "is required (not a CloudEvent)"));
        }
        Some(Value::String(version)) if version == SPEC_VERSION => {}
        Some(_) => return Err(malformed("specversion", "must be \"1.0\"")),
    }

    let id = parse_uuid(required(&map, "id")?).ok_or_else(|| {
        malformed(
            "id",
            "must be a UUID in its hyphenated form (8-4-4-4-12 hex digits)",
        )
    })?;

    let source = required(&map, "source")?;
    attribute("source", source).map_err(|e| malformed("source", &e.rule))?;

    let type_ = required(&map, "type")?;
    rules::type_name("type", type_).map_err(|e| malformed("type", &e.rule))?;

    let time = DateTime::parse_from_rfc3339(required(&map, "time")?)
        .map_err(|_| malformed("time", "must be an RFC 3339 timestamp"))?
        .with_timezone(&Utc);

    let subject = string_attribute(&map, "subject")?;
    if let Some(subject) = subject {
        attribute("subject", subject).map_err(|e| malformed("subject", &e.rule))?;
    }

    if let Some(content_type) = string_attribute(&map, "datacontenttype")? {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case(DATA_CONTENT_TYPE) {
            return Err(malformed("datacontenttype", "must be application/json"));
        }
    }
    if map.contains_key("data_base64") {
        return Err(malformed(
            "data_base64",
            "is not supported (data goes in `data`, as JSON)",
        ));
    }

    let (source, type_, subject) = (
        source.to_owned(),
        type_.to_owned(),
        subject.map(str::to_owned),
    );
    Ok(AnyEvent {
        id,
        source,
        type_,
        time,
        subject,
        data: map.remove("data").unwrap_or(Value::Null),
    })
}
