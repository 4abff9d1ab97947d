//! Tenant servers: the PostgreSQL servers that hold tenants, by name, and whether new tenants
//! may be placed on them.

use std::fmt;
use std::str::FromStr;

/// A tenant server's name: `^[a-z][a-z0-9_-]{0,39}$`. `default` is `TENANT_DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerName(String);

/// Why a string is not a server name. The input is shown escaped and truncated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "server name {shown} is not valid: a server name is 1 to 40 characters of lower-case ASCII letters, digits, `_` and `-`, starting with a letter (e.g. eu-west-2)"
)]
pub struct ServerNameError {
    shown: String,
}

impl ServerName {
    pub const MAX_LEN: usize = 40;

    /// The server of `TENANT_DATABASE_URL`, registered on every fleet.
    pub fn default_server() -> Self {
        ServerName("default".to_owned())
    }

    /// # Errors
    /// When `input` does not match `^[a-z][a-z0-9_-]{0,39}$`.
    pub fn parse(input: &str) -> Result<Self, ServerNameError> {
        let valid = !input.is_empty()
            && input.len() <= Self::MAX_LEN
            && input.starts_with(|c: char| c.is_ascii_lowercase())
            && input
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(ServerName(input.to_owned()))
        } else {
            let mut shown: String = input.chars().take(48).collect();
            if shown.len() < input.len() {
                shown.push('…');
            }
            Err(ServerNameError {
                shown: format!("{shown:?}"),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == "default"
    }
}

impl FromStr for ServerName {
    type Err = ServerNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Whether a server takes new tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Takes new tenants while it has room.
    Open,
    /// Keeps serving its tenants; takes no new ones (before a server is retired or while it is
    /// full in practice).
    Draining,
    /// Takes no new tenants, not even pinned ones.
    Closed,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Open => "open",
            ServerState::Draining => "draining",
            ServerState::Closed => "closed",
        }
    }
}

impl FromStr for ServerState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(ServerState::Open),
            "draining" => Ok(ServerState::Draining),
            "closed" => Ok(ServerState::Closed),
            other => Err(format!(
                "unknown server state {other:?} (open, draining or closed)"
            )),
        }
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_lower_case_identifiers() {
        for ok in ["default", "eu-west-2", "pg_3", "a"] {
            assert!(ServerName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "EU",
            "2pg",
            "-pg",
            "pg 3",
            "pg;drop",
            "pg\n",
            &"a".repeat(41),
        ] {
            assert!(ServerName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn states_read_back_as_written() {
        for state in [
            ServerState::Open,
            ServerState::Draining,
            ServerState::Closed,
        ] {
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        assert!("full".parse::<ServerState>().is_err());
    }
}
