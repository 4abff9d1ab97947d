//! The SQL text of the history table's reads and writes. Values are escaped literals, never
//! bind parameters: one round trip each, and no prepared statement per schema (which would
//! churn the statement cache across thousands of tenants).

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{ERROR_MAX, sql_string};
use crate::backend::BackendError;
use crate::history::{AppliedMigration, CommitWrite, HistoryWrite};
use crate::source::SetKind;
use domain::version::Version;

/// The query of the rows of `set`, by version.
pub(super) fn select(history: &str, set: SetKind) -> String {
    format!(
        "SELECT version, description, checksum, success, started_at, finished_at, duration_ms, error, batches_done, rows_done \
         FROM {} WHERE migration_set = {} ORDER BY version",
        history,
        sql_string(set.dir_name())
    )
}

/// A history write on its own (not the one that commits with a transactional script: see
/// [`commit_write`]).
pub(super) fn write(history: &str, set: SetKind, write: &HistoryWrite<'_>) -> String {
    let h = history;
    let set = sql_string(set.dir_name());
    let key = |version: Version| format!("migration_set = {set} AND version = {}", version.get());
    match *write {
        HistoryWrite::Applied { version, description, checksum, duration_ms } => applied(
            h,
            &set,
            version,
            description,
            checksum,
            &format!("clock_timestamp() - make_interval(secs => {duration_ms} / 1000.0)"),
            &duration_ms.to_string(),
            true,
        ),
        HistoryWrite::Started { version, description, checksum } => format!(
            "INSERT INTO {h} (migration_set, version, description, checksum, success)
             VALUES ({set}, {}, {}, {}, false)
             ON CONFLICT (migration_set, version) DO UPDATE SET
               description = excluded.description, checksum = excluded.checksum, success = false,
               started_at = clock_timestamp(), finished_at = NULL, duration_ms = NULL, error = NULL",
            version.get(),
            sql_string(description),
            sql_string(checksum)
        ),
        HistoryWrite::Reverting { version } => format!(
            "UPDATE {h} SET success = false, error = 'revert started, not finished', started_at = clock_timestamp(),
               finished_at = NULL, duration_ms = NULL, batches_done = 0, rows_done = 0 WHERE {}",
            key(version)
        ),
        HistoryWrite::BatchDone { version, rows } => format!(
            "UPDATE {h} SET batches_done = batches_done + 1, rows_done = rows_done + {rows} WHERE {}",
            key(version)
        ),
        HistoryWrite::Finished { version, duration_ms } => format!(
            "UPDATE {h} SET success = true, finished_at = clock_timestamp(), duration_ms = {duration_ms}, error = NULL WHERE {}",
            key(version)
        ),
        HistoryWrite::Failed { version, error } => format!(
            "UPDATE {h} SET success = false, finished_at = clock_timestamp(), error = {} WHERE {}",
            sql_string(&truncate(error, ERROR_MAX)),
            key(version)
        ),
        HistoryWrite::Removed { version } => format!("DELETE FROM {h} WHERE {}", key(version)),
    }
}

/// The history write that commits together with a transactional script, in the same message:
/// the row's start and duration are those of the message.
pub(super) fn commit_write(history: &str, set: SetKind, commit: CommitWrite<'_>) -> String {
    match commit {
        CommitWrite::Applied {
            version,
            description,
            checksum,
            replaces_unfinished,
        } => applied(
            history,
            &sql_string(set.dir_name()),
            version,
            description,
            checksum,
            "statement_timestamp()",
            MESSAGE_ELAPSED_MS,
            // Without an unfinished row (the planner saw none, under the lock) a plain INSERT
            // is cheaper to plan, and a duplicate would be a bug worth failing loudly on.
            replaces_unfinished,
        ),
        CommitWrite::Removed { version } => write(history, set, &HistoryWrite::Removed { version }),
    }
}

#[expect(clippy::too_many_arguments, reason = "the columns of one history row")]
fn applied(
    h: &str,
    set: &str,
    version: Version,
    description: &str,
    checksum: &str,
    started_at: &str,
    duration_ms: &str,
    upsert: bool,
) -> String {
    let insert = format!(
        "INSERT INTO {h} (migration_set, version, description, checksum, success, started_at, finished_at, duration_ms)
         VALUES ({set}, {}, {}, {}, true, {started_at}, clock_timestamp(), {duration_ms})",
        version.get(),
        sql_string(description),
        sql_string(checksum)
    );
    if !upsert {
        return insert;
    }
    format!(
        "{insert}
         ON CONFLICT (migration_set, version) DO UPDATE SET
           description = excluded.description, checksum = excluded.checksum, success = true,
           started_at = excluded.started_at, finished_at = excluded.finished_at,
           duration_ms = excluded.duration_ms, error = NULL"
    )
}

/// The history rows of a [`select`].
pub(super) fn decode(rows: &[PgRow]) -> Result<Vec<AppliedMigration>, BackendError> {
    rows.iter()
        .map(|row| {
            let version: i64 = row.try_get("version")?;
            Ok(AppliedMigration {
                version: Version::new(version).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                description: row.try_get("description")?,
                checksum: row.try_get("checksum")?,
                success: row.try_get("success")?,
                started_at: row.try_get("started_at")?,
                finished_at: row.try_get("finished_at")?,
                duration_ms: row
                    .try_get::<Option<f64>, _>("duration_ms")?
                    .map(|ms| ms.round() as i64),
                error: row.try_get("error")?,
                batches_done: row.try_get("batches_done")?,
                rows_done: row.try_get("rows_done")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(BackendError::from)
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars.saturating_sub(1)) {
        Some((at, _)) if text.chars().count() > max_chars => format!("{}…", &text[..at]),
        _ => text.to_owned(),
    }
}

/// Milliseconds since the current simple-query message arrived: inside the message that runs a
/// script, the script's duration.
const MESSAGE_ELAPSED_MS: &str =
    "(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)";
