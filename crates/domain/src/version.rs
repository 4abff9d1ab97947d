//! Migration versions: UTC timestamps `YYYYMMDDHHMMSS`.

use std::fmt;
use std::str::FromStr;

/// A migration version: a UTC timestamp `YYYYMMDDHHMMSS`, stored as a `bigint`.
///
/// Timestamps rather than counters let two branches add migrations without renumbering, and
/// make the out-of-order check meaningful (a file whose version sorts before the last applied
/// one was written on a branch that merged late).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(i64);

/// Why a string is not a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a migration version: {reason} (expected a UTC timestamp YYYYMMDDHHMMSS, e.g. 20261124093000)"
)]
pub struct VersionError {
    input: String,
    reason: &'static str,
}

impl Version {
    /// The version of a target that has nothing applied; `revert --to 0` reverts everything.
    pub const ZERO: Version = Version(0);

    /// Builds a version from its `bigint` form, validating it like [`FromStr`].
    ///
    /// # Errors
    /// When the number is not a plausible `YYYYMMDDHHMMSS` timestamp.
    pub fn new(value: i64) -> Result<Self, VersionError> {
        if value == 0 {
            return Ok(Version::ZERO);
        }
        value.to_string().parse()
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Version for a timestamp, used by `migrations new`.
    pub fn from_datetime(at: chrono::NaiveDateTime) -> Self {
        let text = at.format("%Y%m%d%H%M%S").to_string();
        // The format above always yields 14 digits for years 1000..=9999.
        Version(text.parse().unwrap_or_default())
    }

    /// The version one second later: the next free version when the clock ties.
    pub fn successor(self) -> Self {
        let parsed = chrono::NaiveDateTime::parse_from_str(&self.to_string(), "%Y%m%d%H%M%S");
        match parsed {
            Ok(at) => Version::from_datetime(at + chrono::TimeDelta::seconds(1)),
            Err(_) => Version(self.0 + 1),
        }
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| VersionError {
            input: input.to_owned(),
            reason,
        };
        if input == "0" {
            return Ok(Version::ZERO);
        }
        if input.len() != 14 || !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail("it must be exactly 14 digits"));
        }
        if chrono::NaiveDateTime::parse_from_str(input, "%Y%m%d%H%M%S").is_err() {
            return Err(fail("it is not a valid date and time"));
        }
        input
            .parse::<i64>()
            .map(Version)
            .map_err(|_| fail("it does not fit in 64 bits"))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps_and_zero() {
        assert_eq!(
            "20261124093000".parse::<Version>().map(Version::get),
            Ok(20261124093000)
        );
        assert_eq!("0".parse::<Version>(), Ok(Version::ZERO));
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        for bad in [
            "",
            "1",
            "2026112409300",
            "202611240930000",
            "20261324093000",
            "20261124253000",
            "2026112409300a",
            "-2026112409300",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn successor_carries_across_minutes_and_days() {
        let v: Version = "20261231235959".parse().unwrap_or(Version::ZERO);
        assert_eq!(v.successor().to_string(), "20270101000000");
    }
}
