//! A set's settings file (`settings.conf` in the set's directory): what a set says about itself,
//! once, instead of in every file. Today one setting: whether the set is tested on SQLite.
//!
//! The format is `key = value` lines; `#` starts a comment; blank lines are ignored. Unknown
//! keys and values are refused, so a typo never silently means the default. Pure. Documented in
//! `docs/MIGRATION_FORMAT.md`.

use std::fmt;

/// The settings file's name in a set directory.
pub const SETTINGS_FILE: &str = "settings.conf";

/// Whether a set is written and tested for SQLite too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqlitePolicy {
    /// Every migration has an SQLite variant, and `migrations check` applies them: a missing or
    /// mismatched variant is an error (a deploy refuses the set).
    #[default]
    Required,
    /// The team does not test this set on SQLite: dialect-parity findings are warnings, and
    /// `migrations check` does not apply the set on SQLite.
    Untested,
}

impl SqlitePolicy {
    const ALL: [SqlitePolicy; 2] = [SqlitePolicy::Required, SqlitePolicy::Untested];

    pub fn as_str(self) -> &'static str {
        match self {
            SqlitePolicy::Required => "required",
            SqlitePolicy::Untested => "untested",
        }
    }
}

impl fmt::Display for SqlitePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a settings file can say; the defaults when a set has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetSettings {
    /// `sqlite = required | untested`
    pub sqlite: SqlitePolicy,
}

/// A line of a settings file that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SettingsError {
    pub line: usize,
    pub message: String,
}

const KEYS: &str = "`sqlite` (required | untested)";

/// Parses a settings file.
///
/// # Errors
/// A line that is not `key = value`, an unknown key, a value the key does not accept, or a key
/// given twice; the message names the key and what is accepted.
pub fn parse(text: &str) -> Result<SetSettings, SettingsError> {
    let mut settings = SetSettings::default();
    let mut seen_sqlite = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let fail = |message: String| SettingsError { line, message };
        let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if content.is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(fail(format!(
                "`{content}` is not a setting: write `key = value`; the known keys are {KEYS}"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "sqlite" => {
                if std::mem::replace(&mut seen_sqlite, true) {
                    return Err(fail("`sqlite` is set twice".into()));
                }
                settings.sqlite = SqlitePolicy::ALL
                    .into_iter()
                    .find(|policy| policy.as_str() == value)
                    .ok_or_else(|| {
                        fail(format!(
                            "`sqlite = {value}`: the accepted values are `required` (the default: every migration has an SQLite variant that `migrations check` applies) and `untested` (dialect-parity findings become warnings and SQLite is not exercised)"
                        ))
                    })?;
            }
            other => {
                return Err(fail(format!(
                    "unknown key `{other}`: the known keys are {KEYS}"
                )));
            }
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_setting_with_comments_and_blank_lines() {
        let text = "# This set is only ever run on PostgreSQL.\n\n  sqlite =   untested   # no SQLite here\n";
        assert_eq!(
            parse(text),
            Ok(SetSettings {
                sqlite: SqlitePolicy::Untested
            })
        );
        assert_eq!(parse("sqlite=required"), Ok(SetSettings::default()));
        assert_eq!(parse(""), Ok(SetSettings::default()));
    }

    #[test]
    fn refuses_unknown_keys_and_values_naming_them_and_what_is_accepted() {
        let err = parse("# settings\nsqlite_variants = optional\n").err();
        assert_eq!(err.as_ref().map(|e| e.line), Some(2));
        let message = err.map(|e| e.message).unwrap_or_default();
        assert!(
            message.contains("`sqlite_variants`")
                && message.contains("`sqlite` (required | untested)"),
            "{message}"
        );

        let message = parse("sqlite = optional").err().map(|e| e.message);
        let message = message.unwrap_or_default();
        assert!(
            message.contains("`sqlite = optional`")
                && message.contains("`required`")
                && message.contains("`untested`"),
            "{message}"
        );

        for bad in [
            "sqlite",
            "sqlite =",
            "sqlite = Untested",
            "sqlite = required\nsqlite = untested",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
