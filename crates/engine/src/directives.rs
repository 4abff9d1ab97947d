//! The directive header of a migration file (`-- no-transaction`, `-- lock-timeout: 5s`, …).
//!
//! Pure: parses text, never touches a database. The format is specified in
//! `docs/MIGRATION_FORMAT.md`.

use std::time::Duration;

/// What the header of one script asks of the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// Run outside a transaction, statement by statement.
    pub no_transaction: bool,
    /// Why the migration cannot be rolled back (up files only).
    pub irreversible: Option<String>,
    /// Overrides the engine's default `lock_timeout` for this script.
    pub lock_timeout: Option<Duration>,
    /// Overrides the engine's default `statement_timeout` for this script.
    pub statement_timeout: Option<Duration>,
    /// Rows per batch of a batched data migration.
    pub batch_size: Option<u32>,
}

impl Directives {
    /// Whether the engine must not wrap the whole script in one transaction.
    pub fn runs_outside_transaction(&self) -> bool {
        self.no_transaction || self.batch_size.is_some()
    }
}

/// A header line that looks like a directive but is not a valid one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DirectiveError {
    pub line: usize,
    pub message: String,
}

const NAMES: [&str; 5] = [
    "no-transaction",
    "irreversible",
    "lock-timeout",
    "statement-timeout",
    "batch-size",
];

const KNOWN: &str = "no-transaction, irreversible: <reason>, lock-timeout: <duration>, statement-timeout: <duration>, batch-size: <rows>";

/// Parses the directives at the top of `sql`: the `--` comment lines before the first statement.
///
/// # Errors
/// An unknown or repeated directive, a missing or malformed value.
pub fn parse(sql: &str) -> Result<Directives, DirectiveError> {
    let mut directives = Directives::default();
    for (index, raw) in sql.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        let Some(comment) = trimmed.strip_prefix("--") else {
            break; // the first statement ends the header
        };
        let Some((name, value)) = directive_shape(comment.trim()) else {
            continue; // an ordinary comment
        };
        let fail = |message: String| DirectiveError { line, message };
        let duplicate = || fail(format!("directive `{name}` is given twice"));
        match name {
            "no-transaction" => {
                if value.is_some() {
                    return Err(fail("`no-transaction` takes no value".into()));
                }
                if directives.no_transaction {
                    return Err(duplicate());
                }
                directives.no_transaction = true;
            }
            "irreversible" => {
                let reason = value.unwrap_or_default();
                if reason.is_empty() {
                    return Err(fail(
                        "`irreversible` needs a reason, e.g. `-- irreversible: drops the legacy column after the export`".into(),
                    ));
                }
                if directives.irreversible.is_some() {
                    return Err(duplicate());
                }
                directives.irreversible = Some(reason.to_owned());
            }
            "lock-timeout" | "statement-timeout" => {
                let text =
                    value.ok_or_else(|| fail(format!("`{name}` needs a duration such as 5s")))?;
                let duration =
                    parse_duration(text).map_err(|why| fail(format!("`{name}: {text}`: {why}")))?;
                let slot = if name == "lock-timeout" {
                    &mut directives.lock_timeout
                } else {
                    &mut directives.statement_timeout
                };
                if slot.replace(duration).is_some() {
                    return Err(duplicate());
                }
            }
            "batch-size" => {
                let text =
                    value.ok_or_else(|| fail("`batch-size` needs a number of rows".into()))?;
                let rows: u32 = text.parse().ok().filter(|rows| *rows > 0).ok_or_else(|| {
                    fail(format!(
                        "`batch-size: {text}` is not a positive number of rows"
                    ))
                })?;
                if directives.batch_size.replace(rows).is_some() {
                    return Err(duplicate());
                }
            }
            other => {
                let hint = NAMES
                    .iter()
                    .find(|known| edit_distance(known, other) <= 2)
                    .map(|known| format!("did you mean `{known}`? "))
                    .unwrap_or_default();
                return Err(fail(format!(
                    "unknown directive `{other}`: {hint}known directives are {KNOWN}"
                )));
            }
        }
    }
    Ok(directives)
}

/// Splits `word` or `word: value` when it is meant as a directive: a known name, a hyphenated
/// lower-case word (every directive with two words is hyphenated), or a near miss of a known name.
/// Anything else (`-- edited`, `-- note: see the docs`) is an ordinary comment.
fn directive_shape(comment: &str) -> Option<(&str, Option<&str>)> {
    let (name, value) = match comment.split_once(':') {
        Some((name, value)) => (name.trim_end(), Some(value.trim())),
        None => (comment, None),
    };
    let word = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    let meant = name.contains('-') || NAMES.iter().any(|known| edit_distance(known, name) <= 2);
    (word && meant).then_some((name, value))
}

/// Levenshtein distance, for "did you mean" on short directive names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Parses `500ms`, `5s`, `2min`, `1h`.
///
/// # Errors
/// A missing number, an unknown unit, or zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let amount: u64 = number
        .parse()
        .map_err(|_| "expected a number followed by ms, s, min or h".to_owned())?;
    let duration = match unit.trim() {
        "ms" => Duration::from_millis(amount),
        "s" => Duration::from_secs(amount),
        "min" => Duration::from_secs(amount.saturating_mul(60)),
        "h" => Duration::from_secs(amount.saturating_mul(3600)),
        other => return Err(format!("unknown unit `{other}`: use ms, s, min or h")),
    };
    if duration.is_zero() {
        return Err("a timeout of zero would disable it; give a positive duration".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_directive_from_the_header() {
        let sql = "-- Builds the reservations index.\n-- no-transaction\n-- lock-timeout: 2s\n-- statement-timeout: 1h\n\nCREATE INDEX CONCURRENTLY x ON t (a);\n-- batch-size: 3\n";
        let parsed = parse(sql);
        assert_eq!(
            parsed,
            Ok(Directives {
                no_transaction: true,
                lock_timeout: Some(Duration::from_secs(2)),
                statement_timeout: Some(Duration::from_secs(3600)),
                ..Directives::default()
            }),
            "directives after the first statement are ignored"
        );
    }

    #[test]
    fn irreversible_needs_a_reason() {
        assert_eq!(
            parse("-- irreversible: drops data\nSELECT 1;").map(|d| d.irreversible),
            Ok(Some("drops data".to_owned()))
        );
        let err = parse("-- irreversible\nSELECT 1;").err();
        assert_eq!(err.map(|e| e.line), Some(1));
    }

    #[test]
    fn rejects_unknown_duplicated_and_malformed_directives() {
        for (sql, line) in [
            ("-- no-transactions\n", 1),
            ("-- no-transaction\n-- no-transaction\n", 2),
            ("\n-- lock-timeout: soon\n", 2),
            ("-- lock-timeout: 0s\n", 1),
            ("-- batch-size: 0\n", 1),
            ("-- batch-size: -5\n", 1),
            ("-- irreversable: typo\n", 1),
            ("-- batchsize: 5\n", 1),
            ("-- lock-wait: 5s\n", 1),
        ] {
            assert_eq!(parse(sql).err().map(|e| e.line), Some(line), "{sql:?}");
        }
    }

    #[test]
    fn other_comments_stay_comments() {
        for sql in [
            "-- Creates users.\n",
            "-- edited\n",
            "-- note: see the docs\n",
            "-- Note: it is fine\n",
            "-- todo\n",
        ] {
            assert_eq!(parse(sql), Ok(Directives::default()), "{sql:?}");
        }
    }

    #[test]
    fn near_misses_suggest_the_directive() {
        let message = parse("-- no-transactions\n")
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(
            message.contains("did you mean `no-transaction`"),
            "{message}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 days").is_err());
    }
}
