//! Errors of an engine run, classified for retry.

use std::time::Duration;

use super::backend::BackendError;
use super::lint::Finding;
use super::plan::PlanError;
use super::source::Direction;
use super::target::Target;
use domain::version::Version;

/// Why a run on one target failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The files and the history disagree, or the request cannot be planned. Permanent.
    #[error("{target}: {source}")]
    Plan {
        target: Target,
        #[source]
        source: PlanError,
    },
    /// Another runner held the target's lock for the whole wait. Transient.
    #[error("{target}: another runner held the migration lock for {}s; try again once it finishes", waited.as_secs())]
    LockTimeout { target: Target, waited: Duration },
    /// A revert would run down scripts that destroy data and the caller did not allow it.
    #[error(
        "{target}: reverting would destroy data ({}); pass allow_data_loss to go ahead",
        describe(findings)
    )]
    DataLoss {
        target: Target,
        findings: Vec<(Version, Finding)>,
    },
    /// A script failed. `completed` lists the versions this run finished before it.
    #[error("{target}: {file} failed: {source}")]
    Script {
        target: Target,
        version: Version,
        file: String,
        direction: Direction,
        completed: Vec<Version>,
        /// Boxed to keep `EngineError` small: it travels in every `Result` of the engine.
        #[source]
        source: Box<BackendError>,
    },
    /// The set's admin-user script (`admin_user.sql`) failed, or the set has none. Its
    /// transaction was rolled back: nothing of it stays.
    #[error("{target}: {file} failed: {source}")]
    AdminUser {
        target: Target,
        file: String,
        #[source]
        source: Box<BackendError>,
    },
    /// Reading the history, locking, connecting: anything around the scripts.
    #[error("{target}: {source}")]
    Backend {
        target: Target,
        #[source]
        source: Box<BackendError>,
    },
}

fn describe(findings: &[(Version, Finding)]) -> String {
    findings
        .iter()
        .map(|(version, f)| format!("{version}: {}", f.statement))
        .collect::<Vec<_>>()
        .join("; ")
}

impl EngineError {
    /// Whether the same run may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Plan { .. } | EngineError::DataLoss { .. } => false,
            EngineError::LockTimeout { .. } => true,
            EngineError::Script { source, .. }
            | EngineError::AdminUser { source, .. }
            | EngineError::Backend { source, .. } => source.is_transient(),
        }
    }

    pub fn target(&self) -> &Target {
        match self {
            EngineError::Plan { target, .. }
            | EngineError::LockTimeout { target, .. }
            | EngineError::DataLoss { target, .. }
            | EngineError::Script { target, .. }
            | EngineError::AdminUser { target, .. }
            | EngineError::Backend { target, .. } => target,
        }
    }
}

/// Whether a database error may go away if the same work is tried again later: lost
/// connections, timeouts, serialization failures, a server starting or stopping, a busy SQLite
/// file. Syntax errors, constraint violations and conflicting objects are permanent.
pub fn is_transient_sql_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite primary result codes: 5 BUSY, 6 LOCKED, 9 INTERRUPT (our statement
                // timeout), 10 IOERR; extended codes keep the primary in the low byte.
                return code
                    .parse::<i64>()
                    .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 9 | 10));
            }
            // PostgreSQL SQLSTATEs: 08 connection exception, 40001 serialization failure,
            // 40P01 deadlock, 53 insufficient resources, 55P03 lock not available
            // (lock_timeout), 57014 query canceled (statement_timeout), 57P01..57P05
            // shutdown / cannot connect now / idle timeouts, 58 system error.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("58")
                || matches!(
                    &*code,
                    "40001"
                        | "40P01"
                        | "55P03"
                        | "57014"
                        | "57P01"
                        | "57P02"
                        | "57P03"
                        | "57P04"
                        | "57P05"
                )
        }
        _ => false,
    }
}
