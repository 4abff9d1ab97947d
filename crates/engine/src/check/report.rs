//! What a check found and what it ran: [`CheckReport`] with its findings, and how each set
//! and the admin-user script fared on each dialect.

use std::fmt;

use crate::backend::SchemaSnapshot;
use crate::dialect::Dialect;
use crate::lint::{Finding, Severity};
use crate::source::SetKind;

/// One problem found by the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFinding {
    pub severity: Severity,
    pub set: SetKind,
    /// The file, relative to the set's directory, when the finding is about one file.
    pub file: Option<String>,
    pub line: Option<usize>,
    /// Stable kebab-case code (`cross-schema`, `dialect-parity`, …).
    pub code: String,
    pub message: String,
}

impl CheckFinding {
    /// A lint's finding on `file` of `set`.
    pub(super) fn of_lint(set: SetKind, file: &str, finding: Finding) -> Self {
        CheckFinding {
            severity: finding.code.severity(),
            set,
            file: Some(file.to_owned()),
            line: Some(finding.line),
            code: finding.code.as_str().to_owned(),
            message: finding.message,
        }
    }
}

impl fmt::Display for CheckFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            _ => "warning",
        };
        write!(f, "{severity}[{}] {}", self.code, self.set)?;
        if let Some(file) = &self.file {
            write!(f, "/{file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Whether the PostgreSQL half of the check ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresCheck {
    Ran,
    Skipped(String),
}

/// How one set fared on one dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetRun {
    pub set: SetKind,
    pub dialect: Dialect,
    pub outcome: SetOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutcome {
    /// Every migration applied; `proven` of the `reversible` ones went up → down → up to the
    /// same schema (the others are findings).
    Applied { reversible: usize, proven: usize },
    /// A migration failed: see the findings.
    Failed,
    /// Not applied on this dialect, and why.
    Skipped(String),
}

/// How the admin-user script fared on one dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUserRun {
    pub dialect: Dialect,
    pub outcome: AdminUserOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminUserOutcome {
    /// Ran twice: the first run added these rows (table, rows), the second added none.
    Idempotent { added: Vec<(String, i64)> },
    /// The file holds no statement: tenants get no administrator.
    NoStatement,
    /// It failed a requirement: see the findings.
    Failed,
    /// The set has no file for this dialect: see the findings.
    Missing,
    /// Not run on this dialect, and why.
    Skipped(String),
}

/// The result of a check.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub findings: Vec<CheckFinding>,
    /// The schema each set produced, per dialect that ran.
    pub schemas: Vec<(SetKind, Dialect, SchemaSnapshot)>,
    pub postgres: PostgresCheck,
    /// Migrations proven to go up → down → up to the same schema, per dialect (failures are
    /// findings, not counted here).
    pub round_trips: Vec<(Dialect, usize)>,
    /// Every set on every dialect that ran, in order.
    pub runs: Vec<SetRun>,
    /// The admin-user script on every dialect that ran.
    pub admin_user: Vec<AdminUserRun>,
}

impl CheckReport {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.len() - self.errors()
    }
}
