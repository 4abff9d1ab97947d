//! Reading the CloudEvents 1.0 envelope: size limit, JSON, the required and optional
//! attributes, and their rules. `data` is left as JSON for the caller to check against its type.
//!
//! [`parse`] reads a structured-mode body; [`read`] checks attributes gathered by either content
//! mode (the binary mode gathers them from application properties: see `received`).
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

/// The media type of a content type, without its parameters (`; charset=utf-8`), trimmed and
/// in lower case (media types are case-insensitive).
pub(crate) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether `content_type` is [`DATA_CONTENT_TYPE`], parameters allowed.
pub(crate) fn is_json(content_type: &str) -> bool {
    media_type(content_type) == DATA_CONTENT_TYPE
}

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

/// Refuses a message of more than [`MAX_MESSAGE_BYTES`].
///
/// # Errors
/// [`DecodeError::Invalid`] on the `message` field.
pub(crate) fn check_size(bytes: usize) -> Result<(), DecodeError> {
    if bytes > MAX_MESSAGE_BYTES {
        return Err(DecodeError::Invalid(ValidationError::new(
            "message",
            format!("must be at most {MAX_MESSAGE_BYTES} bytes (64 KiB)"),
        )));
    }
    Ok(())
}

/// Parses the structured-mode envelope of `bytes`.
///
/// # Errors
/// [`DecodeError::Invalid`] over [`MAX_MESSAGE_BYTES`]; [`DecodeError::Malformed`] for anything
/// wrong with the envelope.
pub(crate) fn parse(bytes: &[u8]) -> Result<AnyEvent, DecodeError> {
    check_size(bytes.len())?;
    // serde_json's syntax errors name a position and what was expected, never the input.
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::Malformed(format!("not JSON ({e})")))?;
    let Value::Object(map) = value else {
        return Err(DecodeError::Malformed(
            "not a JSON object (a structured-mode CloudEvent is one)".to_owned(),
        ));
    };
    read(map)
}

/// Checks the attributes of `map` (an envelope: attributes and `data`) and returns the event.
///
/// # Errors
/// [`DecodeError::Malformed`] for a missing, ill-typed or ill-formed attribute.
pub(crate) fn read(mut map: Map<String, Value>) -> Result<AnyEvent, DecodeError> {
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

    if let Some(content_type) = string_attribute(&map, "datacontenttype")?
        && !is_json(content_type)
    {
        return Err(malformed("datacontenttype", "must be application/json"));
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
