//! What a target's history table says was applied. Plain data: backends read and write it, the
//! planner reasons about it.

use chrono::{DateTime, Utc};

use domain::version::Version;

/// Name of the history table inside every tenant schema or database, and in the platform
/// database. Always used schema-qualified by the backends.
pub const HISTORY_TABLE: &str = "_tenancy_history";

/// One row of the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: Version,
    pub description: String,
    /// Hex SHA-256 of the script that ran, in the dialect of the target.
    pub checksum: String,
    /// `false` only for a script that runs outside a transaction (or in batches) and has not
    /// finished: it failed, was interrupted, or is running now. A transactional script that
    /// fails leaves no row at all.
    pub success: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// The last error of an unfinished script.
    pub error: Option<String>,
    /// Batches committed by a batched data migration.
    pub batches_done: i64,
    /// Rows those batches touched.
    pub rows_done: i64,
}

impl AppliedMigration {
    /// A successful row, as the planner's tests and fakes build them.
    pub fn succeeded(version: Version, description: &str, checksum: &str) -> Self {
        AppliedMigration {
            version,
            description: description.to_owned(),
            checksum: checksum.to_owned(),
            success: true,
            started_at: None,
            finished_at: None,
            duration_ms: Some(0),
            error: None,
            batches_done: 0,
            rows_done: 0,
        }
    }
}

/// The history write that commits together with a transactional script.
#[derive(Debug, Clone, Copy)]
pub enum CommitWrite<'a> {
    /// An up script: insert its row (replacing an unfinished one when `replaces_unfinished`).
    Applied {
        version: Version,
        description: &'a str,
        checksum: &'a str,
        replaces_unfinished: bool,
    },
    /// A down script: delete its row.
    Removed { version: Version },
}

impl<'a> CommitWrite<'a> {
    /// The write, once the script's duration is known.
    pub fn with_duration(self, duration_ms: i64) -> HistoryWrite<'a> {
        match self {
            CommitWrite::Applied {
                version,
                description,
                checksum,
                ..
            } => HistoryWrite::Applied {
                version,
                description,
                checksum,
                duration_ms,
            },
            CommitWrite::Removed { version } => HistoryWrite::Removed { version },
        }
    }
}

/// A write to the history table, expressed once here so every backend records the same facts.
#[derive(Debug, Clone)]
pub enum HistoryWrite<'a> {
    /// A transactional up script committed: insert its row inside the same transaction.
    Applied {
        version: Version,
        description: &'a str,
        checksum: &'a str,
        duration_ms: i64,
    },
    /// A non-transactional or batched script is starting (insert, or reset an unfinished row and
    /// keep its batch counters, which a resumed batched migration continues from).
    Started {
        version: Version,
        description: &'a str,
        checksum: &'a str,
    },
    /// A non-transactional or batched down script is starting: the row is marked unfinished
    /// (with its batch counters reset), so an interrupted revert is visible and the next apply
    /// runs the up script again.
    Reverting { version: Version },
    /// One batch committed (in the batch's own transaction).
    BatchDone { version: Version, rows: i64 },
    /// A non-transactional or batched script finished.
    Finished { version: Version, duration_ms: i64 },
    /// A non-transactional or batched script failed; the row stays unfinished with the reason.
    Failed { version: Version, error: &'a str },
    /// A down script completed: the version is no longer applied.
    Removed { version: Version },
}
