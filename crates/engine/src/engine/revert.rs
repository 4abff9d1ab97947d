//! Reverting a target to an earlier version with the down scripts, newest first, and the
//! preview of what a revert would run. Irreversible migrations and, unless allowed, data loss
//! are refused before anything runs.

use super::{
    Engine, RevertPreview, RunReport, StepReport, backend_error, plan_error, script_error,
    script_file,
};
use crate::backend::{MigrationBackend, Session};
use crate::error::EngineError;
use crate::events::ProgressSink;
use crate::history::AppliedMigration;
use crate::lint::Finding;
use crate::plan;
use crate::source::{Direction, MigrationSet};
use crate::target::Target;
use domain::version::Version;

impl<B: MigrationBackend> Engine<B> {
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
        let steps = plan::plan_revert(set, &history, dialect, to).map_err(plan_error(target))?;
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
            let steps = plan::plan_revert(set, history, dialect, to).map_err(plan_error(target))?;
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
            return Ok(RunReport::starting_at(target, set.kind, before));
        }

        let history = self.lock(session, target, set.kind, sink).await?;
        let result = async {
            let before = plan::standing(set, &history, dialect).applied_version;
            let steps = checked(&history)?;
            let mut report = RunReport::starting_at(target, set.kind, before);
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
                    .map_err(script_error(
                        target,
                        migration,
                        dialect,
                        Direction::Down,
                        &report,
                    ))?;
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
}
