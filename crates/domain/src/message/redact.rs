//! Removing personal data from the data of events we do not know (types outside the contract),
//! before the audit trail stores them. Nobody vetted those fields, so they are judged by their
//! names and shapes; over-redacting is acceptable, leaking is not.
//!
//! The rules, applied recursively through objects and arrays (`docs/MESSAGES.md` lists them for
//! producers):
//!
//! 1. a key naming a person ([`PERSON_WORDS`]: `admin`, `user`, `owner`, `contact`, ...) loses
//!    its value: an object becomes `{"redacted": true}`, an array has each item redacted this
//!    way, any other value but `null` becomes `"redacted"`;
//! 2. a key naming personal or secret data ([`SENSITIVE_WORDS`]: `email`, `phone`, `name`,
//!    `address`, `password`, `token`, `secret`, ...) has its value, whatever it is, replaced by
//!    `"redacted"`;
//! 3. any string that holds something shaped like an email address becomes `"redacted"`;
//! 4. an object with a key shaped like an email address becomes `{"redacted": true}`.
//!
//! Keys are compared in lower case with everything but letters and digits removed, so
//! `firstName`, `first_name`, `first-name` and `FIRST NAME` are the same key.
//!
//! Pure.

use serde_json::{Map, Value, json};

/// Words that make a key name a person, when the compared key (less a final `s`) ends with one:
/// `admin`, `users`, `billing_contact`, `account_owner`.
pub(crate) const PERSON_WORDS: [&str; 15] = [
    "admin",
    "administrator",
    "user",
    "owner",
    "contact",
    "person",
    "people",
    "customer",
    "member",
    "resident",
    "guest",
    "employee",
    "author",
    "sender",
    "recipient",
];

/// Words that make a key name personal or secret data, when the compared key contains one:
/// `email`, `e_mail`, `phone_number`, `first_name`, `username`, `ip_address`, `api_token`.
pub(crate) const SENSITIVE_WORDS: [&str; 11] = [
    "mail",
    "phone",
    "mobile",
    "name",
    "address",
    "birth",
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
];

/// What replaces a redacted value that is not an object.
const REDACTED: &str = "redacted";

/// `data` with the personal data rules applied (see the module docs).
pub(crate) fn personal_data(data: &Value) -> Value {
    match data {
        Value::Object(map) => object(map),
        Value::Array(items) => Value::Array(items.iter().map(personal_data).collect()),
        Value::String(text) if looks_like_email(text) => json!(REDACTED),
        other => other.clone(),
    }
}

fn object(map: &Map<String, Value>) -> Value {
    if map.keys().any(|key| looks_like_email(key)) {
        return redacted_object();
    }
    let redacted = map
        .iter()
        .map(|(key, value)| {
            let compared = compared_key(key);
            let value = if names_a_person(&compared) {
                person(value)
            } else if names_sensitive_data(&compared) {
                json!(REDACTED)
            } else {
                personal_data(value)
            };
            (key.clone(), value)
        })
        .collect();
    Value::Object(redacted)
}

/// The value of a key that names a person: nothing of it is kept.
fn person(value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::Object(_) => redacted_object(),
        Value::Array(items) => Value::Array(items.iter().map(person).collect()),
        _ => json!(REDACTED),
    }
}

fn redacted_object() -> Value {
    json!({ "redacted": true })
}

/// The key as compared: lower case, letters and digits only.
fn compared_key(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn names_a_person(compared: &str) -> bool {
    let singular = compared.strip_suffix('s').unwrap_or(compared);
    PERSON_WORDS
        .iter()
        .any(|word| compared.ends_with(word) || singular.ends_with(word))
}

fn names_sensitive_data(compared: &str) -> bool {
    SENSITIVE_WORDS.iter().any(|word| compared.contains(word))
}

/// Whether `text` holds something shaped like an email address: a word with an `@` (or its
/// URL-encoded `%40`, or the full-width `＠`) between two other characters. Words are split on
/// whitespace and the punctuation that surrounds addresses in text (`<>()[]{},;:"'`).
pub(crate) fn looks_like_email(text: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || "<>()[]{},;:\"'".contains(c))
        .any(|word| {
            ["@", "%40", "\u{FF20}"].iter().any(|at| {
                word.to_ascii_lowercase()
                    .match_indices(at)
                    .any(|(i, _)| i > 0 && i + at.len() < word.len())
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_blocks_are_replaced_whole_wherever_they_are() {
        let data = json!({
            "invoice": "INV-1",
            "admin": { "email": "ana@acme.example", "name": "Ana Lima" },
            "billing": { "contact": { "phone": "+55 11 99999-0000" }, "amount": 120 },
            "Users": [{ "id": 1 }, "bob", null],
            "accountOwner": "Carla Souza",
            "owner_id": null,
        });
        assert_eq!(
            personal_data(&data),
            json!({
                "invoice": "INV-1",
                "admin": { "redacted": true },
                "billing": { "contact": { "redacted": true }, "amount": 120 },
                "Users": [{ "redacted": true }, "redacted", null],
                "accountOwner": "redacted",
                "owner_id": null,
            })
        );
    }

    #[test]
    fn sensitive_keys_lose_their_values_in_any_spelling() {
        let data = json!({
            "email": "x", "E-Mail": "x", "emailAddress": "x", "emails": ["x", "y"],
            "first_name": "x", "lastName": "x", "full-name": "x", "display_name": "x",
            "username": "x", "name": { "given": "x" }, "phone_number": 5511999990000_u64,
            "mobile": "x", "address": { "street": "x" }, "ip_address": "x",
            "date_of_birth": "x", "password": "x", "api_token": "x", "client_secret": "x",
            "credentials": ["x"],
        });
        let redacted = personal_data(&data);
        let Value::Object(map) = &redacted else {
            panic!("{redacted}")
        };
        for (key, value) in map {
            assert_eq!(value, &json!("redacted"), "{key}");
        }
    }

    #[test]
    fn emails_are_found_in_unexpected_keys_arrays_and_text() {
        let data = json!({
            "note": "please write to ana@acme.example today",
            "reply_to": "<bob@other.example>",
            "cc": ["carla@x.example", "not an address", "@handle", "trailing@"],
            "link": "mailto:dora%40y.example",
            "wide": "eve\u{FF20}z.example",
            "nested": [[{ "deep": "fred@q.example" }]],
            "by_address": { "gina@h.example": { "visits": 3 } },
            "count": 3,
            "flag": true,
        });
        assert_eq!(
            personal_data(&data),
            json!({
                "note": "redacted",
                "reply_to": "redacted",
                "cc": ["redacted", "not an address", "@handle", "trailing@"],
                "link": "redacted",
                "wide": "redacted",
                "nested": [[{ "deep": "redacted" }]],
                "by_address": "redacted",
                "count": 3,
                "flag": true,
            })
        );
        assert_eq!(personal_data(&json!("ana@acme.example")), json!("redacted"));
        assert_eq!(
            personal_data(&json!({ "items": { "ana@acme.example": 1 } })),
            json!({ "items": { "redacted": true } })
        );
    }

    #[test]
    fn data_without_personal_data_is_kept_as_it_is() {
        let data = json!({
            "invoice": "INV-1", "amount": 120.5, "lines": [{ "sku": "A-1", "qty": 2 }],
            "tenant_id": "6f1d2c3b-1111-4222-8333-944455556666", "paid": true, "ref": null,
        });
        assert_eq!(personal_data(&data), data);
        assert_eq!(personal_data(&Value::Null), Value::Null);
    }
}
