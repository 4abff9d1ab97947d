//! Tenant identity: the validated slug and the names derived from it.
//!
//! Every name that ends up in SQL (schema, database, role) is derived from a [`TenantSlug`],
//! and a slug can only be built by [`TenantSlug::parse`], so hostile input is rejected before
//! any SQL runs.

use std::fmt;
use std::str::FromStr;

/// A tenant's slug: `^[a-z][a-z0-9_]{2,39}$` (contract §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantSlug(String);

/// Why a string is not a slug. The offending input is shown escaped and truncated, so a hostile
/// value cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "slug {shown} is not valid: {reason}; a slug is 3 to 40 characters of lower-case ASCII letters, digits and `_`, starting with a letter (e.g. acme_towers)"
)]
pub struct SlugError {
    shown: String,
    reason: &'static str,
}

impl TenantSlug {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 40;

    /// # Errors
    /// When `input` does not match `^[a-z][a-z0-9_]{2,39}$`.
    pub fn parse(input: &str) -> Result<Self, SlugError> {
        let fail = |reason| SlugError {
            shown: shown(input),
            reason,
        };
        if input.len() < Self::MIN_LEN {
            return Err(fail("it is shorter than 3 characters"));
        }
        if input.len() > Self::MAX_LEN {
            return Err(fail("it is longer than 40 characters"));
        }
        if !input.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(fail("it must start with a lower-case letter"));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(fail("it contains a character other than a-z, 0-9 and _"));
        }
        Ok(TenantSlug(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant's schema (schema isolation), database (database isolation) or file stem
    /// (SQLite): `tenant_<slug>`, at most 47 characters, within PostgreSQL's 63-byte limit.
    pub fn storage_name(&self) -> String {
        format!("tenant_{}", self.0)
    }
}

fn shown(input: &str) -> String {
    let mut shown: String = input.chars().take(48).collect();
    if shown.len() < input.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

impl FromStr for TenantSlug {
    type Err = SlugError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: honours widths in tables (`{:<40}`).
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_contract_slugs() {
        for ok in [
            "abc",
            "acme_towers",
            "a12",
            "z_________________________________________"[..40].as_ref(),
        ] {
            assert!(TenantSlug::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_hostile_and_malformed_slugs() {
        for bad in [
            "",
            "ab",
            "Acme",
            "1abc",
            "_abc",
            "acme-towers",
            "acme towers",
            "acme;drop",
            "acme\"x",
            "acme'x",
            "acmé",
            "acme\u{200b}x",
            "аcme",
            "acme\n",
            "a".repeat(41).as_str(),
        ] {
            let err = TenantSlug::parse(bad);
            assert!(err.is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn errors_escape_and_truncate_the_input() {
        let long = format!("x\n{}", "y".repeat(100));
        let message = TenantSlug::parse(&long)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("\\n") && !message.contains('\n') && message.contains('…'),
            "{message}"
        );
    }
}
