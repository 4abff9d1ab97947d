//! The two errors of the message module: [`ValidationError`] (one broken rule, with the path of
//! the field that broke it) and [`DecodeError`] (why bytes off the queue are not a usable event).
//!
//! Neither ever carries the offending value: a rule names the field and what it must be, so a
//! message can be logged and put in a dead-letter header without leaking personal data or
//! letting a hostile value forge log lines.

/// One broken rule: `field` is the path from the envelope root (`data.admin.email`,
/// `data.applied[2]`, `source`, `message`), `rule` says what the value must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ValidationError {
    /// Path of the offending field, from the envelope root.
    pub field: String,
    /// What the field must be (never the value it was).
    pub rule: String,
}

impl ValidationError {
    /// A broken rule on `field`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// Why a message could not be decoded. Every variant is permanent (a redelivery would fail the
/// same way), so the consumer dead-letters it with [`DecodeError::reason`] in a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a CloudEvent at all: not JSON, not an object, a missing or ill-typed envelope
    /// attribute, `specversion` other than `1.0`, a `datacontenttype` other than
    /// `application/json`, an `id` that is not a UUID, a `time` that is not RFC 3339.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A well-formed CloudEvent whose content breaks the contract (a bad slug, a missing field
    /// of `data`, a message over the size limit, ...).
    #[error("invalid message: {0}")]
    Invalid(#[from] ValidationError),
    /// A well-formed CloudEvent of another type than the one asked for.
    #[error("wrong event type: expected `{expected}`, found `{found}`")]
    WrongType {
        /// The type the caller decodes.
        expected: &'static str,
        /// The type the message has (already checked to be a plain type name).
        found: String,
    },
}

impl DecodeError {
    /// Longest [`DecodeError::reason`], in bytes: an AMQP short string holds 255, and the
    /// dead-letter header should fit one whatever the client library picks.
    pub const MAX_REASON_LEN: usize = 240;

    /// The error as one printable-ASCII line of at most [`DecodeError::MAX_REASON_LEN`] bytes,
    /// for the dead-letter header.
    pub fn reason(&self) -> String {
        let text: String = self
            .to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if text.len() <= Self::MAX_REASON_LEN {
            return text;
        }
        // The text is ASCII, so byte and char positions coincide.
        let mut clipped = text[..Self::MAX_REASON_LEN - 3].to_owned();
        clipped.push_str("...");
        clipped
    }

    /// Always `false`: a message that failed to decode fails again on redelivery, so it is
    /// dead-lettered at once, never retried.
    pub fn is_transient(&self) -> bool {
        false
    }

    /// The path of the offending field, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::Invalid(error) => Some(&error.field),
            DecodeError::WrongType { .. } => Some("type"),
            DecodeError::Malformed(message) => message
                .split_once(": ")
                .map(|(field, _)| field)
                .filter(|field| !field.contains(' ')),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_error_displays_field_and_rule() {
        let error = ValidationError::new("data.slug", "must match ^[a-z][a-z0-9_]{2,39}$");
        assert_eq!(
            error.to_string(),
            "data.slug: must match ^[a-z][a-z0-9_]{2,39}$"
        );
    }

    #[test]
    fn reason_is_short_printable_ascii() {
        let error = DecodeError::Invalid(ValidationError::new("data.name", "é\n".repeat(300)));
        let reason = error.reason();
        assert!(
            reason.len() <= DecodeError::MAX_REASON_LEN,
            "{}",
            reason.len()
        );
        assert!(reason.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
        assert!(reason.starts_with("invalid message: data.name: ") && reason.ends_with("..."));
    }

    #[test]
    fn field_names_the_offending_attribute() {
        assert_eq!(
            DecodeError::Malformed("id: must be a UUID".into()).field(),
            Some("id")
        );
        assert_eq!(DecodeError::Malformed("not JSON: EOF".into()).field(), None);
        assert!(!DecodeError::Malformed(String::new()).is_transient());
    }
}
