//! The engine: runs a migration set on targets through a [`MigrationBackend`].
//!
//! ```text
//!   apply(target)
//!     open session ──► read history ──► plan (pure) ──► nothing pending? ──► done, no lock taken
//!                                                   │
//!                                                   ▼
//!                          lock (try, back off, retry until the deadline)
//!                          re-read history, re-plan (another runner may have finished)
//!                          for each pending script: run it per its mode, record it, emit events
//!                          unlock, close   (a dropped session closes its connection instead)
//! ```
//!
//! A script runs in one of three modes:
//! - **transactional** (default): `BEGIN`, timeouts, the script, its history row, `COMMIT`; a
//!   failure rolls everything back and records nothing, so the target stays at its previous
//!   version;
//! - **no-transaction**: the row is written unfinished first, each statement runs on its own,
//!   the row is completed after; a failure leaves the row unfinished with the error, and the next
//!   run executes the (idempotent) file again;
//! - **batched**: like no-transaction, but the single statement runs repeatedly, each batch in
//!   its own transaction together with the row's progress counters, until a batch comes back
//!   short. An interrupted run resumes where the committed batches stopped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use futures_util::stream;

use super::admin::{AdminValues, MissingAdminUser};
use super::backend::{BackendError, MigrationBackend, SchemaSnapshot, Session, Timeouts};
use super::error::EngineError;
use super::events::{MigrationEvent, ProgressSink};
use super::history::{AppliedMigration, CommitWrite, HistoryWrite};
use super::lint::Finding;
use super::plan::{self, PendingStep, Standing};
use super::source::{Direction, SetKind};
use super::source::{Migration, MigrationSet, Script};
use super::sql;
use super::target::Target;
use domain::version::Version;

/// Knobs of an engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Timeouts of every script that does not override them.
    pub timeouts: Timeouts,
    /// How long a runner waits for a target's lock held by another runner before giving up.
    pub lock_wait: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            timeouts: Timeouts::default(),
            lock_wait: Duration::from_secs(30),
        }
    }
}

/// One script that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub version: Version,
    pub description: String,
    pub duration: Duration,
}

/// What a run did to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub target: Target,
    pub set: SetKind,
    /// Newest applied version before and after the run.
    pub before: Option<Version>,
    pub after: Option<Version>,
    /// Scripts run, in order (up scripts for an apply, down scripts for a revert).
    pub steps: Vec<StepReport>,
}

impl RunReport {
    pub fn is_noop(&self) -> bool {
        self.steps.is_empty()
    }
}

/// One down script a revert would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevertPreview {
    pub version: Version,
    pub description: String,
    pub file: String,
    /// Statements that destroy data.
    pub destroys_data: Vec<Finding>,
}

/// Runs migration sets on the targets of one backend.
#[derive(Debug, Clone)]
pub struct Engine<B> {
    backend: B,
    options: EngineOptions,
}

impl<B: MigrationBackend> Engine<B> {
    pub fn new(backend: B, options: EngineOptions) -> Self {
        Engine { backend, options }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The tables, columns, indexes and constraints of `target`.
    ///
    /// # Errors
    /// When the target cannot be reached or read.
    pub async fn snapshot(&self, target: &Target) -> Result<SchemaSnapshot, EngineError> {
        let failed = backend_error(target);
        let mut session = self.backend.open(target).await.map_err(&failed)?;
        let snapshot = session.snapshot().await.map_err(&failed);
        session.close().await;
        snapshot
    }

    /// The number of rows of every table of `target` (history table excluded).
    ///
    /// # Errors
    /// When the target cannot be reached or read.
    pub async fn row_counts(&self, target: &Target) -> Result<BTreeMap<String, i64>, EngineError> {
        let failed = backend_error(target);
        let mut session = self.backend.open(target).await.map_err(&failed)?;
        let counts = session.row_counts().await.map_err(&failed);
        session.close().await;
        counts
    }

    /// Where `target` stands against `set`: applied version, pending versions, unfinished
    /// scripts, drift. Reads only; takes no lock.
    ///
    /// # Errors
    /// When the target cannot be reached or does not exist.
    pub async fn status(
        &self,
        target: &Target,
        set: &MigrationSet,
    ) -> Result<Standing, EngineError> {
        let failed = backend_error(target);
        let mut session = self.backend.open(target).await.map_err(&failed)?;
        let history = session.read_history(set.kind).await.map_err(&failed);
        session.close().await;
        Ok(plan::standing(set, &history?, self.backend.dialect()))
    }

    /// Applies the pending migrations of `set` to `target`, up to `to` (or all of them).
    ///
    /// A target with nothing pending costs one read and takes no lock.
    ///
    /// # Errors
    /// Drift or an unknown `to` (before anything runs), the lock held elsewhere past
    /// [`EngineOptions::lock_wait`], or the first script that fails (the ones before it stay
    /// applied and are listed in [`EngineError::Script::completed`]).
    pub async fn apply(
        &self,
        target: &Target,
        set: &MigrationSet,
        to: Option<Version>,
        sink: &impl ProgressSink,
    ) -> Result<RunReport, EngineError> {
        let failed = backend_error(target);
        let mut session = self.backend.open(target).await.map_err(&failed)?;
        let result = self.apply_in(&mut session, target, set, to, sink).await;
        session.close().await;
        result
    }

    async fn apply_in(
        &self,
        session: &mut B::Session,
        target: &Target,
        set: &MigrationSet,
        to: Option<Version>,
        sink: &impl ProgressSink,
    ) -> Result<RunReport, EngineError> {
        let dialect = self.backend.dialect();
        let failed = backend_error(target);
        let wanted = set
            .migrations
            .iter()
            .filter(|m| to.is_none_or(|t| m.version <= t))
            .count();
        let (history, locked) = session
            .read_history_locking_if_behind(set.kind, to, wanted)
            .await
            .map_err(&failed)?;
        let pending = match self.plan_apply(target, set, &history, to) {
            Ok(steps) => steps.len(),
            Err(error) => {
                self.unlock(session, target).await;
                return Err(error);
            }
        };
        if pending == 0 {
            self.unlock(session, target).await;
            let version = plan::standing(set, &history, dialect).applied_version;
            return Ok(RunReport {
                target: target.clone(),
                set: set.kind,
                before: version,
                after: version,
                steps: Vec::new(),
            });
        }

        let history = if locked {
            history
        } else {
            self.lock(session, target, set.kind, sink).await?
        };
        let result = async {
            let steps = self.plan_apply(target, set, &history, to)?;
            let before = plan::standing(set, &history, dialect).applied_version;
            let mut report = RunReport {
                target: target.clone(),
                set: set.kind,
                before,
                after: before,
                steps: Vec::new(),
            };
            let last = steps.len().saturating_sub(1);
            for (index, PendingStep { migration, resumes }) in steps.into_iter().enumerate() {
                let duration = self
                    .run_script(
                        session,
                        target,
                        set.kind,
                        migration,
                        Direction::Up,
                        resumes,
                        index == last,
                        sink,
                    )
                    .await
                    .map_err(|source| EngineError::Script {
                        target: target.clone(),
                        version: migration.version,
                        file: script_file(migration, dialect, Direction::Up),
                        direction: Direction::Up,
                        completed: report.steps.iter().map(|s| s.version).collect(),
                        source: Box::new(source),
                    })?;
                report.after = Some(migration.version);
                report.steps.push(StepReport {
                    version: migration.version,
                    description: migration.description.clone(),
                    duration,
                });
            }
            Ok(report)
        }
        .await;
        self.unlock(session, target).await;
        result
    }

    fn plan_apply<'a>(
        &self,
        target: &Target,
        set: &'a MigrationSet,
        history: &'a [AppliedMigration],
        to: Option<Version>,
    ) -> Result<Vec<PendingStep<'a>>, EngineError> {
        plan::plan_apply(set, history, self.backend.dialect(), to).map_err(|source| {
            EngineError::Plan {
                target: target.clone(),
                source,
            }
        })
    }

    /// The down scripts a revert of `target` to `to` would run, newest first, with the
    /// statements that destroy data. Reads only.
    ///
    /// # Errors
    /// As [`Engine::revert`] before it runs anything.
    pub async fn preview_revert(
        &self,
        target: &Target,
        set: &MigrationSet,
        to: Version,
    ) -> Result<Vec<RevertPreview>, EngineError> {
        let failed = backend_error(target);
        let mut session = self.backend.open(target).await.map_err(&failed)?;
        let history = session.read_history(set.kind).await.map_err(&failed);
        session.close().await;
        let history = history?;
        let dialect = self.backend.dialect();
        let steps =
            plan::plan_revert(set, &history, dialect, to).map_err(|source| EngineError::Plan {
                target: target.clone(),
                source,
            })?;
        Ok(steps
            .into_iter()
            .map(|step| RevertPreview {
                version: step.migration.version,
                description: step.migration.description.clone(),
                file: script_file(step.migration, dialect, Direction::Down),
                destroys_data: step.destroys_data,
            })
            .collect())
    }

    /// Reverts `target` to `to` (`Version::ZERO` for everything) with the down scripts, newest
    /// first.
    ///
    /// Refuses before anything runs when a migration in the range is irreversible, and when a
    /// down script destroys data unless `allow_data_loss`.
    ///
    /// # Errors
    /// As described, plus drift in the range, the lock, and the first failing down script.
    pub async fn revert(
        &self,
        target: &Target,
        set: &MigrationSet,
        to: Version,
        allow_data_loss: bool,
        sink: &impl ProgressSink,
    ) -> Result<RunReport, EngineError> {
        let failed = backend_error(target);
        let mut session = self.backend.open(target).await.map_err(&failed)?;
        let result = self
            .revert_in(&mut session, target, set, to, allow_data_loss, sink)
            .await;
        session.close().await;
        result
    }

    async fn revert_in(
        &self,
        session: &mut B::Session,
        target: &Target,
        set: &MigrationSet,
        to: Version,
        allow_data_loss: bool,
        sink: &impl ProgressSink,
    ) -> Result<RunReport, EngineError> {
        let dialect = self.backend.dialect();
        let failed = backend_error(target);
        let checked = |history: &[AppliedMigration]| {
            let steps = plan::plan_revert(set, history, dialect, to).map_err(|source| {
                EngineError::Plan {
                    target: target.clone(),
                    source,
                }
            })?;
            let destroys: Vec<(Version, Finding)> = steps
                .iter()
                .flat_map(|s| {
                    s.destroys_data
                        .iter()
                        .map(|f| (s.migration.version, f.clone()))
                })
                .collect();
            if !destroys.is_empty() && !allow_data_loss {
                return Err(EngineError::DataLoss {
                    target: target.clone(),
                    findings: destroys,
                });
            }
            Ok(steps)
        };
        let history = session.read_history(set.kind).await.map_err(&failed)?;
        let before = plan::standing(set, &history, dialect).applied_version;
        if checked(&history)?.is_empty() {
            return Ok(RunReport {
                target: target.clone(),
                set: set.kind,
                before,
                after: before,
                steps: Vec::new(),
            });
        }

        let history = self.lock(session, target, set.kind, sink).await?;
        let result = async {
            let before = plan::standing(set, &history, dialect).applied_version;
            let steps = checked(&history)?;
            let mut report = RunReport {
                target: target.clone(),
                set: set.kind,
                before,
                after: before,
                steps: Vec::new(),
            };
            for step in steps {
                let migration = step.migration;
                let duration = self
                    .run_script(
                        session,
                        target,
                        set.kind,
                        migration,
                        Direction::Down,
                        None,
                        false,
                        sink,
                    )
                    .await
                    .map_err(|source| EngineError::Script {
                        target: target.clone(),
                        version: migration.version,
                        file: script_file(migration, dialect, Direction::Down),
                        direction: Direction::Down,
                        completed: report.steps.iter().map(|s| s.version).collect(),
                        source: Box::new(source),
                    })?;
                report.steps.push(StepReport {
                    version: migration.version,
                    description: migration.description.clone(),
                    duration,
                });
            }
            let history = session.read_history(set.kind).await.map_err(&failed)?;
            report.after = plan::standing(set, &history, dialect).applied_version;
            Ok(report)
        }
        .await;
        self.unlock(session, target).await;
        result
    }

    /// Applies `set` to many targets, at most `parallelism` at once. One target's failure does
    /// not stop or slow the others. Results come back in completion order.
    pub async fn apply_many(
        &self,
        targets: impl IntoIterator<Item = Target>,
        set: &MigrationSet,
        to: Option<Version>,
        parallelism: usize,
        sink: &impl ProgressSink,
    ) -> Vec<(Target, Result<RunReport, EngineError>)> {
        stream::iter(targets)
            .map(|target| async move {
                let result = self.apply(&target, set, to, sink).await;
                (target, result)
            })
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await
    }

    /// Runs the admin-user script of `seeds` (the tenant-seeds set) on `target`, with `values`
    /// bound to its named parameters, and returns the rows its statements affected.
    ///
    /// The script runs in one transaction scoped like a migration's (the target's schema as the
    /// only entry of `search_path`, the timeouts of its directives), so it uses unqualified table
    /// names; a failure rolls all of it back. It takes no migration lock and records nothing in
    /// the history: it must be idempotent (run twice, one administrator), which
    /// `migrations check` verifies. A script without statements runs nothing.
    ///
    /// # Errors
    /// The set has no script for this backend's dialect, the target cannot be reached, or a
    /// statement fails ([`EngineError::AdminUser`], with the line of the file).
    pub async fn run_admin_user(
        &self,
        target: &Target,
        seeds: &MigrationSet,
        values: &AdminValues<'_>,
    ) -> Result<u64, EngineError> {
        let dialect = self.backend.dialect();
        let Some(script) = seeds.admin_user(dialect) else {
            let missing = MissingAdminUser::new(&seeds.origin, dialect);
            return Err(EngineError::AdminUser {
                target: target.clone(),
                file: missing.file.clone(),
                source: Box::new(BackendError::InvalidScript(missing.to_string())),
            });
        };
        if script.statements.is_empty() {
            return Ok(0);
        }
        let failed = |source: BackendError| EngineError::AdminUser {
            target: target.clone(),
            file: script.file.clone(),
            source: Box::new(source),
        };
        let mut session = self
            .backend
            .open(target)
            .await
            .map_err(backend_error(target))?;
        let timeouts = self.options.timeouts.for_script(&script.directives);
        let result = async {
            session.begin(timeouts).await?;
            let work = async {
                let mut rows = 0;
                for statement in &script.statements {
                    let bound: Vec<_> = statement.params.iter().map(|p| values.get(*p)).collect();
                    rows += session
                        .execute_bound(&statement.sql, &bound)
                        .await
                        .map_err(|error| at_line(error, statement.line))?;
                }
                session.commit().await?;
                Ok(rows)
            }
            .await;
            if work.is_err() {
                // If the rollback fails too, the session stays marked in-transaction and its
                // connection is closed rather than reused.
                let _ = session.rollback().await;
            }
            work
        }
        .await
        .map_err(|error: BackendError| {
            // A database may quote a value in its message (a failed cast): never the
            // administrator's email or name, which end up in step records and events.
            failed(error.redacting(&[
                (values.admin_email, "admin_email"),
                (values.admin_name, "admin_name"),
            ]))
        });
        session.close().await;
        result
    }

    /// Takes the target's lock (try, back off with jitter, retry until `lock_wait` is spent) and
    /// returns the history as read under it: another runner may have finished in the meantime.
    async fn lock(
        &self,
        session: &mut B::Session,
        target: &Target,
        set: SetKind,
        sink: &impl ProgressSink,
    ) -> Result<Vec<AppliedMigration>, EngineError> {
        let started = Instant::now();
        let deadline = started + self.options.lock_wait;
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_millis(500))
            .with_jitter()
            .without_max_times()
            .build();
        let mut announced = false;
        loop {
            if let Some(history) = session
                .lock_and_read(set)
                .await
                .map_err(backend_error(target))?
            {
                return Ok(history);
            }
            if !announced {
                announced = true;
                sink.emit(MigrationEvent::LockWaiting {
                    target: target.clone(),
                })
                .await;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(EngineError::LockTimeout {
                    target: target.clone(),
                    waited: now - started,
                });
            }
            let delay = delays.next().unwrap_or(Duration::from_millis(500));
            tokio::time::sleep(delay.min(deadline - now)).await;
        }
    }

    async fn unlock(&self, session: &mut B::Session, target: &Target) {
        if let Err(error) = session.unlock().await {
            // The session is still marked locked, so closing it drops the connection and the
            // server releases the lock with it.
            tracing::warn!(%target, %error, "releasing the migration lock failed; closing the connection instead");
        }
    }

    /// Runs one script in its mode and records it. See the module documentation. With `last`,
    /// a transactional script releases the lock with its commit (one round trip fewer).
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per direction; a struct would only rename them"
    )]
    async fn run_script(
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

    #[expect(
        clippy::too_many_arguments,
        reason = "the batch loop needs the whole context of the script"
    )]
    async fn run_batched(
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
async fn mark_started<S: Session>(
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
async fn finish<S: Session>(
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
fn at_line(error: BackendError, first: usize) -> BackendError {
    match error {
        BackendError::Sql { source, line } => BackendError::Sql {
            source,
            line: Some(first + line.unwrap_or(1) - 1),
        },
        other => other,
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

fn script_file(
    migration: &Migration,
    dialect: super::dialect::Dialect,
    direction: Direction,
) -> String {
    migration.script(dialect, direction).map_or_else(
        || migration.file_name(dialect, direction),
        |s| s.file.clone(),
    )
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn backend_error(target: &Target) -> impl Fn(BackendError) -> EngineError + '_ {
    move |source| EngineError::Backend {
        target: target.clone(),
        source: Box::new(source),
    }
}
