//! A message as the transport delivered it, and the two CloudEvents content modes of the AMQP
//! protocol binding:
//!
//! - **structured**: the whole event (attributes and `data`) is the body, as JSON. Recognised by
//!   a transport content type `application/cloudevents+json` (parameters such as `charset`
//!   allowed), or, as our services publish it, `application/json` or none, with a body carrying
//!   `specversion`.
//! - **binary**: the attributes are application properties named `cloudEvents:<attribute>`, or
//!   `cloudEvents_<attribute>` as JMS-based clients write them (prefixes matched without regard
//!   to case); the data is the body and its content type the transport's (`datacontenttype`),
//!   which must be JSON. Recognised by a `specversion` property.
//!
//! Either way the same envelope and data rules apply afterwards (`envelope::read`, then the
//! type's rules). The bus turns AMQP properties into a [`Received`]; nothing here knows AMQP.
//!
//! Pure.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::envelope::{self, DATA_CONTENT_TYPE};
use super::{AnyEvent, DecodeError};

/// The content type of a structured-mode event in the JSON event format.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The prefixes of binary-mode attribute properties: the AMQP binding's, and the one JMS-based
/// clients write (a JMS property name cannot hold `:`).
const BINARY_PREFIXES: [&str; 2] = ["cloudEvents:", "cloudEvents_"];

/// Longest attribute name the CloudEvents specification allows.
const MAX_ATTRIBUTE_NAME_LEN: usize = 20;

/// A message as the transport delivered it, as plain data: what
/// [`decode_received`](super::decode_received) reads.
#[derive(Debug, Clone, Default)]
pub struct Received<'a> {
    /// The transport's content type (AMQP `content_type`), if set.
    pub content_type: Option<&'a str>,
    /// Application properties (AMQP headers) holding text, as (name, value). Only the
    /// CloudEvents ones ([`is_cloudevents_property`]) are read; others may be left out.
    pub properties: Vec<(&'a str, Cow<'a, str>)>,
    /// The body.
    pub body: &'a [u8],
}

impl<'a> Received<'a> {
    /// A body alone, without content type or properties: a structured-mode event (how
    /// [`decode`](super::decode) reads bytes).
    pub fn structured(body: &'a [u8]) -> Self {
        Received {
            content_type: None,
            properties: Vec::new(),
            body,
        }
    }

    /// The binary-mode attributes, by lower-case name, with the size they take (names and
    /// values, in bytes). Properties that are not a valid attribute name are ignored, as
    /// unknown extensions are.
    ///
    /// # Errors
    /// An attribute given twice (under both prefixes), or `data` / `data_base64` given as an
    /// attribute.
    fn binary_attributes(&self) -> Result<(Map<String, Value>, usize), DecodeError> {
        let mut attributes = Map::new();
        let mut size = 0;
        for (name, value) in &self.properties {
            let Some(attribute) = attribute_name(name) else {
                continue;
            };
            size += name.len() + value.len();
            if attribute == "data" || attribute == "data_base64" {
                return Err(DecodeError::Malformed(format!(
                    "{attribute}: is not an attribute in binary mode (the body is the data)"
                )));
            }
            if !is_attribute_name(&attribute) {
                continue;
            }
            if attributes
                .insert(attribute.clone(), Value::String(value.to_string()))
                .is_some()
            {
                return Err(DecodeError::Malformed(format!(
                    "{attribute}: is given more than once (as both cloudEvents: and cloudEvents_ properties)"
                )));
            }
        }
        Ok((attributes, size))
    }

    /// Whether a property carries a binary-mode attribute (any of them).
    fn has_binary_attributes(&self) -> bool {
        self.properties
            .iter()
            .any(|(name, _)| is_cloudevents_property(name))
    }

    /// Whether a property carries the binary-mode `specversion`.
    fn has_binary_specversion(&self) -> bool {
        self.properties
            .iter()
            .any(|(name, _)| attribute_name(name).as_deref() == Some("specversion"))
    }
}

/// Whether an application property carries a CloudEvents attribute (binary mode): its name
/// starts with `cloudEvents:` or `cloudEvents_`, in any case. The bus passes only these.
pub fn is_cloudevents_property(name: &str) -> bool {
    attribute_name(name).is_some()
}

/// The attribute a property carries: the name after the prefix, in lower case.
fn attribute_name(property: &str) -> Option<String> {
    BINARY_PREFIXES.iter().find_map(|prefix| {
        let head = property.as_bytes().get(..prefix.len())?;
        // The prefix is ASCII, so a match ends on a character boundary.
        head.eq_ignore_ascii_case(prefix.as_bytes())
            .then(|| property[prefix.len()..].to_ascii_lowercase())
    })
}

/// A CloudEvents attribute name: 1 to 20 of `[a-z0-9]`.
fn is_attribute_name(name: &str) -> bool {
    (1..=MAX_ATTRIBUTE_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// How a message carries its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Structured,
    Binary,
}

fn mode(received: &Received<'_>) -> Result<Mode, DecodeError> {
    let media_type = received.content_type.map(envelope::media_type);
    if let Some(media_type) = media_type
        .as_deref()
        .filter(|m| m.starts_with("application/cloudevents"))
    {
        return if media_type == STRUCTURED_CONTENT_TYPE {
            Ok(Mode::Structured)
        } else {
            Err(DecodeError::Malformed(
                "content_type: only single events in the JSON format (application/cloudevents+json) are accepted"
                    .to_owned(),
            ))
        };
    }
    if received.has_binary_specversion() {
        return Ok(Mode::Binary);
    }
    match media_type.as_deref() {
        None | Some(DATA_CONTENT_TYPE) => Ok(Mode::Structured),
        Some(_) => Err(DecodeError::Malformed(
            "content_type: must be application/json or application/cloudevents+json (structured mode), or the event must be in binary mode (a cloudEvents:specversion property)"
                .to_owned(),
        )),
    }
}

/// Reads the envelope of a message in either content mode.
///
/// # Errors
/// As `envelope::parse`, plus a content type that is not JSON, and the binary mode's own
/// errors.
pub(crate) fn parse(received: &Received<'_>) -> Result<AnyEvent, DecodeError> {
    match mode(received)? {
        Mode::Structured => envelope::parse(received.body).map_err(|error| {
            // Other cloudEvents properties but no specversion: a binary-mode event missing it,
            // more likely than a structured one.
            if error.field() == Some("specversion") && received.has_binary_attributes() {
                DecodeError::Malformed(
                    "specversion: is required (in binary mode, as the cloudEvents:specversion property)"
                        .to_owned(),
                )
            } else {
                error
            }
        }),
        Mode::Binary => parse_binary(received),
    }
}

fn parse_binary(received: &Received<'_>) -> Result<AnyEvent, DecodeError> {
    let (mut envelope_map, attributes_size) = received.binary_attributes()?;
    envelope::check_size(received.body.len() + attributes_size)?;
    if let Some(content_type) = received.content_type {
        if !envelope::is_json(content_type) {
            return Err(DecodeError::Malformed(
                "datacontenttype: must be application/json (in binary mode the body is the data, and only JSON data is accepted)"
                    .to_owned(),
            ));
        }
        envelope_map.insert(
            "datacontenttype".to_owned(),
            Value::String(content_type.to_owned()),
        );
    }
    let data = if received.body.is_empty() {
        Value::Null
    } else {
        // serde_json's syntax errors name a position and what was expected, never the input.
        serde_json::from_slice(received.body)
            .map_err(|e| DecodeError::Malformed(format!("data: the body is not JSON ({e})")))?
    };
    envelope_map.insert("data".to_owned(), data);
    envelope::read(envelope_map)
}

/// What can be read of a message without validating it: for tools that show messages which
/// may be invalid (the dead-letter listing). Values are as sent, unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peek {
    /// The `id` attribute.
    pub id: Option<String>,
    /// The `type` attribute.
    pub event_type: Option<String>,
    /// `data.tenant_id`, else the `subject` attribute.
    pub tenant_id: Option<String>,
}

/// Reads the id, type and tenant of a message in either content mode, without validating it.
pub fn peek(received: &Received<'_>) -> Peek {
    let mut attributes: Map<String, Value> = Map::new();
    for (name, value) in &received.properties {
        if let Some(attribute) = attribute_name(name) {
            attributes
                .entry(attribute)
                .or_insert_with(|| Value::String(value.to_string()));
        }
    }
    let body: Option<Value> = serde_json::from_slice(received.body).ok();
    // A body with `specversion` is a structured event; otherwise (binary mode) it is the data.
    let (structured, data) = match &body {
        Some(value) if value.get("specversion").is_some() => (Some(value), value.get("data")),
        other => (None, other.as_ref()),
    };
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let attribute = |key: &str| {
        text(attributes.get(key)).or_else(|| text(structured.and_then(|event| event.get(key))))
    };
    Peek {
        id: attribute("id"),
        event_type: attribute("type"),
        tenant_id: text(data.and_then(|data| data.get("tenant_id")))
            .or_else(|| attribute("subject")),
    }
}
