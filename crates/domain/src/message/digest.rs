//! The content digest of an event: what tells a redelivery (same id, same content) from a
//! producer reusing an id for another event (same id, different content).
//!
//! The content is the event's `type`, `source`, `subject` and `data` as received (before any
//! redaction); `id` and `time` are not part of it (a publisher stamps a new `time` when it sends
//! an event again). The digest is the SHA-256 of the canonical JSON text of
//! `{"data":…,"source":…,"subject":…,"type":…}` (`subject` is `null` when absent):
//!
//! - object keys sorted by their UTF-8 bytes, at every level; no whitespace;
//! - strings escaped as serde_json writes them;
//! - numbers: integers as integers; a float with an integral value of magnitude below 2^53 as
//!   that integer (`1.0` and `1e0` are `1`); other floats as serde_json writes them (the
//!   shortest form that reads back the same, e.g. `2.5`, `1e+300`).
//!
//! Pure.

use std::io::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Floats with an integral value below this magnitude are written as integers: every such
/// value is exactly representable, so the integer and the float are the same number.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53

/// The SHA-256 of the event content (see the module docs).
pub fn content_digest(
    event_type: &str,
    source: &str,
    subject: Option<&str>,
    data: &Value,
) -> [u8; 32] {
    let mut text = Vec::with_capacity(256);
    text.extend_from_slice(b"{\"data\":");
    canonical(data, &mut text);
    text.extend_from_slice(b",\"source\":");
    string(source, &mut text);
    text.extend_from_slice(b",\"subject\":");
    match subject {
        Some(subject) => string(subject, &mut text),
        None => text.extend_from_slice(b"null"),
    }
    text.extend_from_slice(b",\"type\":");
    string(event_type, &mut text);
    text.push(b'}');
    Sha256::digest(&text).into()
}

/// Appends the canonical JSON text of `value` to `out`.
fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            if number.is_f64()
                && let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float.abs() < EXACT_INTEGER_LIMIT
            {
                // Lossless: the value is an integer of magnitude below 2^53.
                let _ = write!(out, "{}", float as i64);
            } else {
                let _ = write!(out, "{number}");
            }
        }
        Value::String(text) => string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here rather than relying on the map's order: serde_json keeps insertion
            // order when any crate of the build enables its `preserve_order` feature.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(key, out);
                out.push(b':');
                canonical(item, out);
            }
            out.push(b'}');
        }
    }
}

fn string(text: &str, out: &mut Vec<u8>) {
    // Writing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    fn text_of(value: &Value) -> String {
        let mut out = Vec::new();
        canonical(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_canonical_form_sorts_keys_at_every_level_and_writes_integral_floats_as_integers() {
        let value: Value = serde_json::from_str(
            r#"{"b":{"z":1.0,"a":[3,2.5,1e2,-0.0]},"a":"é\"\n","c":null,"d":true,"big":1e300}"#,
        )
        .unwrap();
        assert_eq!(
            text_of(&value),
            r#"{"a":"é\"\n","b":{"a":[3,2.5,100,0],"z":1},"big":1e+300,"c":null,"d":true}"#
        );
    }

    #[test]
    fn the_same_content_has_the_same_digest_whatever_the_key_order() {
        let one: Value =
            serde_json::from_str(r#"{"tenant_id":"t","admin":{"email":"a","name":"n"},"n":1}"#)
                .unwrap();
        let other: Value = serde_json::from_str(
            r#"{ "n": 1.0, "admin": {"name":"n", "email":"a"}, "tenant_id": "t" }"#,
        )
        .unwrap();
        assert_eq!(
            content_digest("t.x", "src", Some("s"), &one),
            content_digest("t.x", "src", Some("s"), &other)
        );
    }

    #[test]
    fn any_change_of_type_source_subject_or_data_changes_the_digest() {
        let data = json!({ "tenant_id": "t", "slug": "acme" });
        let base = content_digest("t.x", "src", Some("s"), &data);
        for other in [
            content_digest("t.y", "src", Some("s"), &data),
            content_digest("t.x", "src2", Some("s"), &data),
            content_digest("t.x", "src", None, &data),
            content_digest("t.x", "src", Some("s2"), &data),
            content_digest(
                "t.x",
                "src",
                Some("s"),
                &json!({ "tenant_id": "t", "slug": "acmf" }),
            ),
            content_digest("t.x", "src", Some("s"), &json!({ "tenant_id": "t" })),
            content_digest(
                "t.x",
                "src",
                Some("s"),
                &json!({ "tenant_id": "t", "slug": ["acme"] }),
            ),
            content_digest("t.x", "src", Some("s"), &Value::Null),
        ] {
            assert_ne!(base, other);
        }
        // A string that spells a number is not that number.
        assert_ne!(
            content_digest("t.x", "src", None, &json!({ "v": 1 })),
            content_digest("t.x", "src", None, &json!({ "v": "1" }))
        );
    }

    #[test]
    fn fields_cannot_be_shifted_between_attributes() {
        // The canonical text quotes every attribute, so moving characters from one to the next
        // gives another text.
        assert_ne!(
            content_digest("a", "bc", None, &Value::Null),
            content_digest("ab", "c", None, &Value::Null)
        );
    }
}
