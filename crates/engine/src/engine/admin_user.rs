//! The tenant-seeds set's admin-user script, run on one tenant: one transaction scoped like a
//! migration's, no lock, no history row.

use super::script::at_line;
use super::{Engine, backend_error};
use crate::admin::{AdminValues, MissingAdminUser};
use crate::backend::{BackendError, MigrationBackend, Session};
use crate::error::EngineError;
use crate::source::MigrationSet;
use crate::target::Target;

impl<B: MigrationBackend> Engine<B> {
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
}
