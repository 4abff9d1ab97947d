//! Applying a set's pending migrations to a target (or to many, in parallel): nothing pending
//! costs one read and no lock; otherwise lock, re-read, re-plan, and run each pending script.

use futures_util::StreamExt;
use futures_util::stream;

use super::{Engine, RunReport, StepReport, backend_error, plan_error, script_error};
use crate::backend::{MigrationBackend, Session};
use crate::error::EngineError;
use crate::events::ProgressSink;
use crate::history::AppliedMigration;
use crate::plan::{self, PendingStep};
use crate::source::{Direction, MigrationSet};
use crate::target::Target;
use domain::version::Version;

impl<B: MigrationBackend> Engine<B> {
    /// Applies the pending migrations of `set` to `target`, up to `to` (or all of them).
    ///
    /// A target with nothing pending costs one read and takes no lock.
    ///
    /// # Errors
    /// Drift or an unknown `to` (before anything runs), the lock held elsewhere past
    /// [`EngineOptions::lock_wait`](super::EngineOptions::lock_wait), or the first script that
    /// fails (the ones before it stay applied and are listed in
    /// [`EngineError::Script::completed`]).
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
            return Ok(RunReport::starting_at(target, set.kind, version));
        }

        let history = if locked {
            history
        } else {
            self.lock(session, target, set.kind, sink).await?
        };
        let result = async {
            let steps = self.plan_apply(target, set, &history, to)?;
            let before = plan::standing(set, &history, dialect).applied_version;
            let mut report = RunReport::starting_at(target, set.kind, before);
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
                    .map_err(script_error(
                        target,
                        migration,
                        dialect,
                        Direction::Up,
                        &report,
                    ))?;
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
        plan::plan_apply(set, history, self.backend.dialect(), to).map_err(plan_error(target))
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
}
