//! What the engine reads without changing anything: where a target stands against a set, its
//! schema, its row counts. No lock is taken.

use std::collections::BTreeMap;

use super::{Engine, backend_error};
use crate::backend::{MigrationBackend, SchemaSnapshot, Session};
use crate::error::EngineError;
use crate::plan::{self, Standing};
use crate::source::MigrationSet;
use crate::target::Target;

impl<B: MigrationBackend> Engine<B> {
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
}
