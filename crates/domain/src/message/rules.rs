//! The content rules of the contract, as plain functions over strings: display names, email
//! addresses, operator handles, plan names, free-text reasons, type and queue names.
//!
//! Pure. Each check returns a [`ValidationError`] naming the field and the rule, never the
//! value, because most of what is checked here is personal data or hostile input.

use uuid::Uuid;

use super::ValidationError;

/// Longest display name (`name`, `admin.name`), in characters after trimming: room for any real
/// organisation or person, small enough for a UI line and a database column.
pub(crate) const MAX_NAME_CHARS: usize = 200;

/// Longest free-text `reason` / `error` a publisher of ours writes ([`clip_reason`]): enough for
/// a database error and its context, small next to the 64 KiB message limit.
pub const MAX_REASON_CHARS: usize = 1000;

/// Longest free-text `reason` / `error` a consumer accepts. Looser than [`MAX_REASON_CHARS`] so
/// a publisher in another language that clips differently is not dead-lettered for it.
pub const MAX_REASON_DECODE_CHARS: usize = 4000;

/// Longest email address (RFC 5321's path limit, less the angle brackets).
const MAX_EMAIL_LEN: usize = 254;
/// Longest local part of an address (RFC 5321 §4.5.3.1.1).
const MAX_EMAIL_LOCAL_LEN: usize = 64;
/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_DNS_LABEL_LEN: usize = 63;
/// Longest operator handle: a login name, not an address.
const MAX_OPERATOR_LEN: usize = 64;
/// Longest plan name.
const MAX_PLAN_LEN: usize = 40;
/// Longest event type name; ours are under 30.
pub(crate) const MAX_TYPE_LEN: usize = 128;
/// Longest AMQP queue name or message id (an AMQP short string).
const MAX_SHORTSTR_LEN: usize = 255;

/// Bidirectional embeddings, overrides (U+202A–U+202E) and isolates (U+2066–U+2069): they make
/// text display in another order than it is stored ("Trojan Source").
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Zero-width characters (U+200B–U+200D, U+2060, U+FEFF): they make two different strings look
/// the same.
pub(crate) fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Line and paragraph separators (U+2028, U+2029): not control characters, but they break a
/// log line like `\n` does.
fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// Why `text` holds a character no single-line label may hold, if it does.
pub(crate) fn forbidden_char(text: &str) -> Option<&'static str> {
    if text.chars().any(|c| c.is_control() || is_line_separator(c)) {
        Some("must not contain control characters or line breaks")
    } else if text.chars().any(is_bidi_control) {
        Some(
            "must not contain bidirectional override or isolate characters (U+202A-U+202E, U+2066-U+2069)",
        )
    } else if text.chars().any(is_zero_width) {
        Some("must not contain zero-width characters (U+200B-U+200D, U+2060, U+FEFF)")
    } else {
        None
    }
}

/// An id field: any UUID but the nil one, which only ever means "forgot to set it".
pub(crate) fn id(field: &str, id: Uuid) -> Result<(), ValidationError> {
    if id.is_nil() {
        return Err(ValidationError::new(field, "must not be the nil UUID"));
    }
    Ok(())
}

/// A display name (a tenant's or a person's): 1 to 200 characters after trimming, none of them
/// control, bidirectional-override or zero-width characters.
pub(crate) fn display_name(field: &str, text: &str) -> Result<(), ValidationError> {
    if let Some(rule) = forbidden_char(text) {
        return Err(ValidationError::new(field, rule));
    }
    let chars = text.trim().chars().count();
    if chars == 0 {
        return Err(ValidationError::new(field, "must not be empty or blank"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A plan name: `^[a-z0-9_-]{1,40}$`.
pub(crate) fn plan(field: &str, plan: &str) -> Result<(), ValidationError> {
    let ok = (1..=MAX_PLAN_LEN).contains(&plan.len())
        && plan
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(ValidationError::new(field, "must match ^[a-z0-9_-]{1,40}$"));
    }
    Ok(())
}

/// An email address, deliberately narrower than RFC 5322: a dot-atom local part of at most 64
/// ASCII characters (no quoted strings, so no spaces, quotes, angle brackets, commas or
/// semicolons), one `@`, and a DNS domain of at least two labels of `[A-Za-z0-9-]` (an IDN goes
/// in punycode), 254 characters in all.
pub(crate) fn email(field: &str, email: &str) -> Result<(), ValidationError> {
    let fail = |why: &str| ValidationError::new(field, format!("is not a valid address: {why}"));
    if email.len() > MAX_EMAIL_LEN {
        return Err(fail("it is longer than 254 characters"));
    }
    if !email.is_ascii() {
        return Err(fail(
            "it must be ASCII, with no invisible or look-alike characters (an internationalised domain goes in punycode, xn--)",
        ));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(fail("it must contain exactly one @"));
    };
    if domain.contains('@') {
        return Err(fail("it must contain exactly one @"));
    }
    if local.is_empty() || local.len() > MAX_EMAIL_LOCAL_LEN {
        return Err(fail("the part before @ must be 1 to 64 characters"));
    }
    // RFC 5322 `atext`: letters, digits and these; everything else (space, quotes, angle
    // brackets, comma, semicolon, backslash, parentheses, control characters) is refused.
    const ATEXT_SYMBOLS: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
    let local_ok = local.split('.').all(|atom| {
        !atom.is_empty()
            && atom
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || ATEXT_SYMBOLS.contains(&b))
    });
    if !local_ok {
        return Err(fail(
            "the part before @ may only hold letters, digits, dots (not leading, trailing or doubled) and !#$%&'*+-/=?^_`{|}~",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(fail("the domain must contain a dot"));
    }
    let labels_ok = labels.iter().all(|label| {
        (1..=MAX_DNS_LABEL_LEN).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !labels_ok {
        return Err(fail(
            "each domain label must be 1 to 63 letters, digits or inner hyphens",
        ));
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(fail("the top-level domain must not be numeric"));
    }
    Ok(())
}

/// An operator handle (who ran a rollback or a replay): 1 to 64 of `[A-Za-z0-9._-]`. Never an
/// email address: events carry no personal data.
pub(crate) fn operator(field: &str, operator: &str) -> Result<(), ValidationError> {
    if operator.contains('@') {
        return Err(ValidationError::new(
            field,
            "must be an operator handle, not an email address",
        ));
    }
    let ok = (1..=MAX_OPERATOR_LEN).contains(&operator.len())
        && operator
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(ValidationError::new(
            field,
            "must be an operator handle of 1 to 64 of [A-Za-z0-9._-]",
        ));
    }
    Ok(())
}

/// A free-text reason or error: not blank, at most [`MAX_REASON_DECODE_CHARS`] characters,
/// line breaks and tabs allowed, other control, bidirectional-override and zero-width
/// characters not.
pub(crate) fn reason(field: &str, text: &str) -> Result<(), ValidationError> {
    if text.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty or blank"));
    }
    if text.chars().count() > MAX_REASON_DECODE_CHARS {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_REASON_DECODE_CHARS} characters"),
        ));
    }
    if text.chars().any(is_unsafe_in_reason) {
        return Err(ValidationError::new(
            field,
            "must not contain control (other than line breaks and tabs), bidirectional-override or zero-width characters",
        ));
    }
    Ok(())
}

fn is_unsafe_in_reason(c: char) -> bool {
    (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || is_bidi_control(c) || is_zero_width(c)
}

/// Makes `text` a valid reason: characters a reason may not hold become U+FFFD, blank text
/// becomes `"no reason given"`, and text over [`MAX_REASON_CHARS`] characters is cut there
/// (ending in `…`). Publishers pass error messages through it before putting them in an event.
pub fn clip_reason(text: &str) -> String {
    if text.trim().is_empty() {
        return "no reason given".to_owned();
    }
    let cleaned = text.chars().map(|c| {
        if is_unsafe_in_reason(c) {
            char::REPLACEMENT_CHARACTER
        } else {
            c
        }
    });
    if text.chars().count() <= MAX_REASON_CHARS {
        return cleaned.collect();
    }
    let mut clipped: String = cleaned.take(MAX_REASON_CHARS - 1).collect();
    clipped.push('…');
    clipped
}

/// An event type name: 1 to 128 of `[A-Za-z0-9._-]`, so it can be shown, routed on and stored
/// as is.
pub(crate) fn type_name(field: &str, name: &str) -> Result<(), ValidationError> {
    if !is_type_name(name) {
        return Err(ValidationError::new(
            field,
            "must be 1 to 128 of [A-Za-z0-9._-]",
        ));
    }
    Ok(())
}

pub(crate) fn is_type_name(name: &str) -> bool {
    (1..=MAX_TYPE_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An AMQP queue name: 1 to 255 of `[A-Za-z0-9._:-]` (what our topology and namespaces use).
pub(crate) fn queue_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let ok = (1..=MAX_SHORTSTR_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if !ok {
        return Err(ValidationError::new(
            field,
            "must be a queue name of 1 to 255 of [A-Za-z0-9._:-]",
        ));
    }
    Ok(())
}

/// An AMQP message id as another publisher set it: 1 to 255 bytes, no control,
/// bidirectional-override or zero-width characters.
pub(crate) fn message_id(field: &str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > MAX_SHORTSTR_LEN {
        return Err(ValidationError::new(field, "must be 1 to 255 bytes"));
    }
    if let Some(rule) = forbidden_char(id) {
        return Err(ValidationError::new(field, rule));
    }
    Ok(())
}

/// One of a fixed set of names (a provisioning step, a step status).
pub(crate) fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), ValidationError> {
    if !allowed.contains(&value) {
        return Err(ValidationError::new(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        for ok in [
            "Acme Towers",
            "  Condomínio São Paulo  ",
            "ACME & Sons, Ltd.",
            "שלום",
            "x",
            &"é".repeat(200),
        ] {
            assert_eq!(display_name("name", ok), Ok(()), "{ok:?}");
        }
        for (bad, rule) in [
            ("", "blank"),
            ("   ", "blank"),
            ("a\nb", "control"),
            ("a\u{7f}", "control"),
            ("a\u{2028}b", "line breaks"),
            ("evil\u{202E}gnp.exe", "bidirectional"),
            ("a\u{2066}b", "bidirectional"),
            ("ad\u{200B}min", "zero-width"),
            ("\u{FEFF}x", "zero-width"),
            (&"a".repeat(201), "at most 200"),
        ] {
            let error = display_name("data.name", bad).err();
            assert!(
                error
                    .as_ref()
                    .is_some_and(|e| e.field == "data.name" && e.rule.contains(rule)),
                "{bad:?}: {error:?}"
            );
        }
    }

    #[test]
    fn emails() {
        for ok in [
            "ana@acme.example",
            "o'brien+tag@mail.acme.example",
            "a.b-c_d@xn--bcher-kva.example",
            "x@a.io",
        ] {
            assert_eq!(email("e", ok), Ok(()), "{ok}");
        }
        let long_local = format!("{}@acme.example", "a".repeat(65));
        let long_total = format!("a@{}.example", "b".repeat(250));
        for bad in [
            "",
            "ana",
            "@acme.example",
            "ana@",
            "ana@localhost",
            "ana@@acme.example",
            "ana@b@acme.example",
            "ana lima@acme.example",
            "\"ana\"@acme.example",
            "<ana@acme.example>",
            "ana@acme.example>",
            "ana;drop@acme.example",
            "ana,bob@acme.example",
            "ana@acme .example",
            "ana@acme..example",
            "ana@-acme.example",
            "ana@acme.example.",
            ".ana@acme.example",
            "ana..lima@acme.example",
            "ana@[127.0.0.1]",
            "ana@1.2.3.4",
            "ana\n@acme.example",
            "ana\u{202E}@acme.example",
            "ana\u{200B}@acme.example",
            "ana@bücher.example",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            let error = email("data.admin.email", bad).err();
            assert!(
                error.as_ref().is_some_and(|e| e.field == "data.admin.email"
                    && e.rule.starts_with("is not a valid address")
                    && (bad.is_empty() || !e.rule.contains(bad))),
                "{bad:?}: {error:?}"
            );
        }
    }

    #[test]
    fn operators_plans_and_ids() {
        assert_eq!(operator("o", "ana.lima"), Ok(()));
        assert_eq!(operator("o", "sre-bot_2"), Ok(()));
        assert!(
            operator("o", "ana@acme.example")
                .is_err_and(|e| e.rule.contains("not an email address"))
        );
        for bad in ["", "ana lima", "ana;", &"a".repeat(65), "ána"] {
            assert!(operator("o", bad).is_err(), "{bad:?}");
        }
        assert_eq!(plan("p", "standard"), Ok(()));
        assert_eq!(plan("p", "pro-2026_yearly"), Ok(()));
        for bad in ["", "Standard", "pro plan", &"a".repeat(41)] {
            assert!(plan("p", bad).is_err(), "{bad:?}");
        }
        assert!(id("t", Uuid::nil()).is_err());
        assert_eq!(id("t", Uuid::now_v7()), Ok(()));
    }

    #[test]
    fn reasons_allow_line_breaks_and_refuse_tricks() {
        assert_eq!(
            reason("r", "relation \"x\" does not exist\n\tat line 3"),
            Ok(())
        );
        assert!(reason("r", " ").is_err());
        assert!(reason("r", "a\u{0}b").is_err());
        assert!(reason("r", "a\u{202E}b").is_err());
        assert!(reason("r", &"x".repeat(MAX_REASON_DECODE_CHARS + 1)).is_err());
        assert_eq!(reason("r", &"x".repeat(MAX_REASON_DECODE_CHARS)), Ok(()));
    }

    #[test]
    fn clip_reason_always_yields_a_valid_reason() {
        let long = "é".repeat(5000);
        let clipped = clip_reason(&long);
        assert_eq!(clipped.chars().count(), MAX_REASON_CHARS);
        assert!(clipped.ends_with('…'));
        for text in ["", " \n", "a\u{0}b\u{202E}c\u{200B}", "ok", long.as_str()] {
            assert_eq!(reason("r", &clip_reason(text)), Ok(()), "{text:?}");
        }
        assert_eq!(clip_reason("a\u{1b}[31mb"), "a\u{FFFD}[31mb");
        assert_eq!(clip_reason(&"x".repeat(1000)), "x".repeat(1000));
    }

    #[test]
    fn type_queue_and_message_id_names() {
        assert!(is_type_name("tenant.registered"));
        assert!(is_type_name("com.example.Thing-v2"));
        assert!(!is_type_name(""));
        assert!(!is_type_name("a b"));
        assert!(!is_type_name(&"a".repeat(129)));
        assert_eq!(
            queue_name("q", "ns.provisioner.tenant-registered.dlq"),
            Ok(())
        );
        assert!(queue_name("q", "a queue").is_err());
        assert_eq!(
            message_id("m", "0b6f5a2e-2f8e-4a55-9d8e-3c1f0f6a7b11"),
            Ok(())
        );
        assert!(message_id("m", "").is_err());
        assert!(message_id("m", "a\nb").is_err());
        assert!(one_of("s", "seed", &["seed", "migrate"]).is_ok());
        assert!(
            one_of("s", "x", &["seed", "migrate"])
                .is_err_and(|e| e.rule == "must be one of seed, migrate")
        );
    }
}
