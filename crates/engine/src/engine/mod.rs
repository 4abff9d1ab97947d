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
//!
//! # Layout
//! `apply.rs` (apply, one target or many), `revert.rs` (revert and its preview), `status.rs`
//! (reads: standing, schema snapshot, row counts), `lock.rs` (taking and releasing a target's
//! lock), `script.rs` (one script in its mode, and the history writes around it), `batched.rs`
//! (the batched mode), `admin_user.rs` (the tenant-seeds set's admin-user script), `expected.rs`
//! (a set's expected fingerprint), `scratch.rs` (scratch tenants for both), `template.rs`
//! (building, verifying and instantiating a set's template).

mod admin_user;
mod apply;
mod batched;
mod database_template;
mod expected;
mod lock;
mod revert;
mod scratch;
mod script;
mod status;
mod template;

use std::time::Duration;

use super::backend::{BackendError, MigrationBackend, Timeouts};
use super::dialect::Dialect;
use super::error::EngineError;
use super::lint::Finding;
use super::plan::PlanError;
use super::source::{Direction, Migration, SetKind};
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

    /// A run of `set` on `target` that starts at `version`, before any step.
    fn starting_at(target: &Target, set: SetKind, version: Option<Version>) -> Self {
        RunReport {
            target: target.clone(),
            set,
            before: version,
            after: version,
            steps: Vec::new(),
        }
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
}

fn script_file(migration: &Migration, dialect: Dialect, direction: Direction) -> String {
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

fn plan_error(target: &Target) -> impl Fn(PlanError) -> EngineError + '_ {
    move |source| EngineError::Plan {
        target: target.clone(),
        source,
    }
}

/// The error of `migration`'s script in `direction` failing on `target`, after the steps of
/// `report` completed.
fn script_error<'a>(
    target: &'a Target,
    migration: &'a Migration,
    dialect: Dialect,
    direction: Direction,
    report: &'a RunReport,
) -> impl FnOnce(BackendError) -> EngineError + 'a {
    move |source| EngineError::Script {
        target: target.clone(),
        version: migration.version,
        file: script_file(migration, dialect, direction),
        direction,
        completed: report.steps.iter().map(|s| s.version).collect(),
        source: Box::new(source),
    }
}
