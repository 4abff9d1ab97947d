//! The batched mode: a `-- batch-size` script's one statement runs again and again, each batch
//! in its own transaction together with the history row's progress counters, until a batch
//! comes back short. An interrupted run resumes where the committed batches stopped.

use std::time::Instant;

use super::Engine;
use super::script::{finish, mark_started};
use crate::backend::{BackendError, MigrationBackend, Session, Timeouts};
use crate::events::{MigrationEvent, ProgressSink};
use crate::history::{AppliedMigration, HistoryWrite};
use crate::source::{Direction, Migration, Script, SetKind};
use crate::sql;
use crate::target::Target;

impl<B: MigrationBackend> Engine<B> {
    #[expect(
        clippy::too_many_arguments,
        reason = "the batch loop needs the whole context of the script"
    )]
    pub(super) async fn run_batched(
        &self,
        session: &mut B::Session,
        target: &Target,
        set: SetKind,
        migration: &Migration,
        script: &Script,
        direction: Direction,
        batch_size: u32,
        timeouts: Timeouts,
        resumes: Option<&AppliedMigration>,
        sink: &impl ProgressSink,
    ) -> Result<(), BackendError> {
        let started = Instant::now();
        let statement = batch_statement(script, batch_size)?;
        mark_started(session, set, migration, script, direction).await?;
        let (mut batches, mut rows) = match (direction, resumes) {
            (Direction::Up, Some(row)) => (row.batches_done, row.rows_done),
            _ => (0, 0),
        };
        let outcome = async {
            loop {
                session.begin(timeouts).await?;
                let batch = async {
                    let touched = session.execute_counting(&statement).await?;
                    let touched = i64::try_from(touched).unwrap_or(i64::MAX);
                    session
                        .record(
                            set,
                            HistoryWrite::BatchDone {
                                version: migration.version,
                                rows: touched,
                            },
                        )
                        .await?;
                    session.commit().await?;
                    Ok::<_, BackendError>(touched)
                }
                .await;
                let touched = match batch {
                    Ok(touched) => touched,
                    Err(error) => {
                        let _ = session.rollback().await;
                        return Err(error);
                    }
                };
                batches += 1;
                rows += touched;
                sink.emit(MigrationEvent::BatchCommitted {
                    target: target.clone(),
                    set,
                    version: migration.version,
                    batches,
                    rows,
                })
                .await;
                if touched < i64::from(batch_size) {
                    return Ok(());
                }
            }
        }
        .await;
        finish(session, set, migration, direction, started, outcome).await
    }
}

/// The single statement of a batched script with `:batch_size` bound.
fn batch_statement(script: &Script, batch_size: u32) -> Result<String, BackendError> {
    let statements = sql::split_statements(&script.sql);
    let [statement] = statements.as_slice() else {
        return Err(BackendError::InvalidScript(format!(
            "{}: a batched migration must hold exactly one statement (it has {}); `tenantctl migrations check` explains",
            script.file,
            statements.len()
        )));
    };
    Ok(sql::bind_batch_size(statement.text, batch_size))
}
