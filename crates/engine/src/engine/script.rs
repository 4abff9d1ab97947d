//! One script, run in its mode (transactional, no-transaction, batched: see the module
//! documentation of [`crate::engine`]), with the history writes around it and its events.

use std::time::{Duration, Instant};

use super::{Engine, millis};
use crate::backend::{BackendError, MigrationBackend, Session, Timeouts};
use crate::events::{MigrationEvent, ProgressSink};
use crate::history::{AppliedMigration, CommitWrite, HistoryWrite};
use crate::source::{Direction, Migration, Script, SetKind};
use crate::sql;
use crate::target::Target;

impl<B: MigrationBackend> Engine<B> {
    /// Runs one script in its mode and records it. See the module documentation. With `last`,
    /// a transactional script releases the lock with its commit (one round trip fewer).
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per direction; a struct would only rename them"
    )]
    pub(super) async fn run_script(
        &self,
        session: &mut B::Session,
        target: &Target,
        set: SetKind,
        migration: &Migration,
        direction: Direction,
        resumes: Option<&AppliedMigration>,
        last: bool,
        sink: &impl ProgressSink,
    ) -> Result<Duration, BackendError> {
        let dialect = self.backend.dialect();
        let Some(script) = migration.script(dialect, direction) else {
            // The planner refuses plans with missing scripts; this is a defensive stop.
            return Err(BackendError::InvalidScript(format!(
                "{} is missing",
                migration.file_name(dialect, direction)
            )));
        };
        let timeouts = self.options.timeouts.for_script(&script.directives);
        sink.emit(MigrationEvent::Started {
            target: target.clone(),
            set,
            version: migration.version,
            direction,
        })
        .await;
        let started = Instant::now();
        let outcome = match script.directives.batch_size {
            Some(batch_size) => {
                self.run_batched(
                    session, target, set, migration, script, direction, batch_size, timeouts,
                    resumes, sink,
                )
                .await
            }
            None if script.directives.no_transaction => {
                self.run_outside_transaction(session, set, migration, script, direction, timeouts)
                    .await
            }
            None => {
                let replaces_unfinished = resumes.is_some();
                run_transactional(
                    session,
                    set,
                    migration,
                    script,
                    direction,
                    timeouts,
                    replaces_unfinished,
                    last,
                )
                .await
            }
        };
        let duration = started.elapsed();
        let event = match &outcome {
            Ok(()) if direction == Direction::Up => MigrationEvent::Completed {
                target: target.clone(),
                set,
                version: migration.version,
                duration,
            },
            Ok(()) => MigrationEvent::RolledBack {
                target: target.clone(),
                set,
                version: migration.version,
                duration,
            },
            Err(error) => MigrationEvent::Failed {
                target: target.clone(),
                set,
                version: migration.version,
                direction,
                duration,
                error: error.to_string(),
                transient: error.is_transient(),
            },
        };
        sink.emit(event).await;
        outcome.map(|()| duration)
    }

    async fn run_outside_transaction(
        &self,
        session: &mut B::Session,
        set: SetKind,
        migration: &Migration,
        script: &Script,
        direction: Direction,
        timeouts: Timeouts,
    ) -> Result<(), BackendError> {
        let started = Instant::now();
        mark_started(session, set, migration, script, direction).await?;
        session.begin_autocommit(timeouts).await?;
        let mut outcome = Ok(());
        for statement in sql::split_statements(&script.sql) {
            if let Err(error) = session.execute(statement.text).await {
                outcome = Err(at_line(error, statement.line));
                break;
            }
        }
        let reset = session.end_autocommit().await;
        finish(
            session,
            set,
            migration,
            direction,
            started,
            outcome.and(reset),
        )
        .await
    }
}

/// The transactional mode: the script and its history write commit together or not at all.
#[expect(
    clippy::too_many_arguments,
    reason = "the script's whole context, passed straight through"
)]
async fn run_transactional<S: Session>(
    session: &mut S,
    set: SetKind,
    migration: &Migration,
    script: &Script,
    direction: Direction,
    timeouts: Timeouts,
    replaces_unfinished: bool,
    release_lock: bool,
) -> Result<(), BackendError> {
    let checksum = script.checksum.to_hex();
    let write = match direction {
        Direction::Up => CommitWrite::Applied {
            version: migration.version,
            description: &migration.description,
            checksum: &checksum,
            replaces_unfinished,
        },
        Direction::Down => CommitWrite::Removed {
            version: migration.version,
        },
    };
    session
        .run_in_transaction(set, &script.sql, timeouts, write, release_lock)
        .await
}

/// First write of a non-transactional or batched script: the row exists, unfinished, before any
/// statement runs, so an interruption at any instant is visible in the history.
pub(super) async fn mark_started<S: Session>(
    session: &mut S,
    set: SetKind,
    migration: &Migration,
    script: &Script,
    direction: Direction,
) -> Result<(), BackendError> {
    let write = match direction {
        Direction::Up => HistoryWrite::Started {
            version: migration.version,
            description: &migration.description,
            checksum: &script.checksum.to_hex(),
        },
        Direction::Down => HistoryWrite::Reverting {
            version: migration.version,
        },
    };
    session.record(set, write).await
}

/// Last write of a non-transactional or batched script: completed, removed, or failed with the
/// reason.
pub(super) async fn finish<S: Session>(
    session: &mut S,
    set: SetKind,
    migration: &Migration,
    direction: Direction,
    started: Instant,
    outcome: Result<(), BackendError>,
) -> Result<(), BackendError> {
    let version = migration.version;
    match outcome {
        Ok(()) => {
            let write = match direction {
                Direction::Up => HistoryWrite::Finished {
                    version,
                    duration_ms: millis(started.elapsed()),
                },
                Direction::Down => HistoryWrite::Removed { version },
            };
            session.record(set, write).await
        }
        Err(error) => {
            let message = match direction {
                Direction::Up => error.to_string(),
                Direction::Down => format!("revert failed: {error}"),
            };
            // Best effort: if the connection is gone the row still says "unfinished".
            let _ = session
                .record(
                    set,
                    HistoryWrite::Failed {
                        version,
                        error: &message,
                    },
                )
                .await;
            Err(error)
        }
    }
}

/// An error of a statement that starts on line `first` of its file, with its line in the file.
pub(super) fn at_line(error: BackendError, first: usize) -> BackendError {
    match error {
        BackendError::Sql { source, line } => BackendError::Sql {
            source,
            line: Some(first + line.unwrap_or(1) - 1),
        },
        other => other,
    }
}
