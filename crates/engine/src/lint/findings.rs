//! What a lint reports: a [`Finding`] of a rule ([`LintCode`]) with its [`Severity`], and the
//! statement summary it quotes.

use std::fmt;

/// Number of characters of a statement quoted in a [`Finding`].
pub(super) const SUMMARY_CHARS: usize = 80;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Severity {
    /// The migration must not be loaded or applied as written.
    Error,
    /// The migration is allowed but risky; the engine reports it (destructive warnings also need
    /// an approval to deploy).
    Warning,
}

impl Severity {
    /// `"error"` or `"warning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule a finding comes from. [`LintCode::as_str`] is the stable kebab-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LintCode {
    /// A tenant-scoped migration names another schema, tenant or database, or changes the
    /// schema search path.
    CrossSchema,
    /// `DROP TABLE`, `DROP SCHEMA`, `ALTER TABLE ... DROP COLUMN`, `TRUNCATE` or `DELETE`.
    Destructive,
    /// PostgreSQL: `CREATE INDEX` on an existing table without `CONCURRENTLY`.
    IndexWithoutConcurrently,
    /// PostgreSQL: `ALTER COLUMN ... TYPE` on an existing table.
    ColumnTypeChange,
    /// PostgreSQL: `SET NOT NULL`, or `ADD COLUMN ... NOT NULL` without a default, on an
    /// existing table.
    NotNullOnExistingTable,
    /// PostgreSQL: `ADD FOREIGN KEY` / `ADD CHECK` on an existing table without `NOT VALID`.
    ConstraintValidation,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, ... as a statement.
    TransactionControl,
    /// PostgreSQL: `CONCURRENTLY` in a file that runs inside a transaction.
    ConcurrentlyInTransaction,
    /// A `-- no-transaction` file has a `CREATE` without `IF NOT EXISTS` or a `DROP` without
    /// `IF EXISTS`.
    NoTransactionNotIdempotent,
    /// A `-- batch-size` file is not exactly one `UPDATE`/`DELETE`/`INSERT` with `:batch_size`
    /// and a `WHERE` clause.
    BatchStatement,
    /// `:batch_size` in a file without `-- batch-size`.
    BatchPlaceholder,
}

impl LintCode {
    /// Every lint code, in a stable order.
    pub const ALL: [LintCode; 11] = [
        LintCode::CrossSchema,
        LintCode::Destructive,
        LintCode::IndexWithoutConcurrently,
        LintCode::ColumnTypeChange,
        LintCode::NotNullOnExistingTable,
        LintCode::ConstraintValidation,
        LintCode::TransactionControl,
        LintCode::ConcurrentlyInTransaction,
        LintCode::NoTransactionNotIdempotent,
        LintCode::BatchStatement,
        LintCode::BatchPlaceholder,
    ];

    /// The stable kebab-case name of the lint, e.g. `"cross-schema"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LintCode::CrossSchema => "cross-schema",
            LintCode::Destructive => "destructive",
            LintCode::IndexWithoutConcurrently => "index-without-concurrently",
            LintCode::ColumnTypeChange => "column-type-change",
            LintCode::NotNullOnExistingTable => "not-null-on-existing-table",
            LintCode::ConstraintValidation => "constraint-validation",
            LintCode::TransactionControl => "transaction-control",
            LintCode::ConcurrentlyInTransaction => "concurrently-in-transaction",
            LintCode::NoTransactionNotIdempotent => "no-transaction-not-idempotent",
            LintCode::BatchStatement => "batch-statement",
            LintCode::BatchPlaceholder => "batch-placeholder",
        }
    }

    /// How serious a finding of this lint is.
    pub fn severity(self) -> Severity {
        match self {
            LintCode::CrossSchema
            | LintCode::TransactionControl
            | LintCode::ConcurrentlyInTransaction
            | LintCode::NoTransactionNotIdempotent
            | LintCode::BatchStatement
            | LintCode::BatchPlaceholder => Severity::Error,
            LintCode::Destructive
            | LintCode::IndexWithoutConcurrently
            | LintCode::ColumnTypeChange
            | LintCode::NotNullOnExistingTable
            | LintCode::ConstraintValidation => Severity::Warning,
        }
    }

    /// Whether a finding of this lint marks the migration as destructive (it loses data, so a
    /// deploy needs an approval and a rollback warns before running it).
    pub fn is_destructive(self) -> bool {
        matches!(self, LintCode::Destructive)
    }
}

impl fmt::Display for LintCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule that fired.
    pub code: LintCode,
    /// 1-based line of the script: the line of the offending token (e.g. the qualified name,
    /// `CONCURRENTLY`, the `DROP` of `DROP COLUMN`), otherwise the statement's first line.
    pub line: usize,
    /// The first 80 characters of the statement, whitespace collapsed (`…` when cut).
    pub statement: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Finding {
    /// The severity of the finding's lint.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {} [{}]: {} (in `{}`)",
            self.line,
            self.severity(),
            self.code,
            self.message,
            self.statement
        )
    }
}

/// The first [`SUMMARY_CHARS`] characters of `text`, whitespace collapsed.
pub(super) fn summarize(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= SUMMARY_CHARS {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(SUMMARY_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::dialect::Dialect;
    use crate::lint::destructive_statements;
    use crate::lint::tests::{BP, BS, CD, CT, CV, DE, IX, NI, NN, TC, TY};

    #[test]
    fn statement_summary_is_collapsed_and_cut() {
        let long = format!("DELETE   FROM\n\tt WHERE a IN ({})", "1, ".repeat(40));
        let findings = destructive_statements(&long, Dialect::Postgres);
        let summary = &findings[0].statement;
        assert!(
            summary.starts_with("DELETE FROM t WHERE a IN (1, 1, "),
            "{summary}"
        );
        assert_eq!(summary.chars().count(), SUMMARY_CHARS);
        assert!(summary.ends_with('…'));
        let short = destructive_statements("-- c\nDROP  TABLE\n  t", Dialect::Postgres);
        assert_eq!(short[0].statement, "DROP TABLE t");
    }

    #[test]
    fn lint_codes_are_stable() {
        let names: Vec<&str> = LintCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [CD, DE, IX, TY, NN, CV, TC, CT, NI, BS, BP],
            "codes are part of the contract"
        );
        for code in LintCode::ALL {
            assert_eq!(code.to_string(), code.as_str());
            assert_eq!(code.is_destructive(), code == LintCode::Destructive);
            let warning = matches!(
                code,
                LintCode::Destructive
                    | LintCode::IndexWithoutConcurrently
                    | LintCode::ColumnTypeChange
                    | LintCode::NotNullOnExistingTable
                    | LintCode::ConstraintValidation
            );
            let expected = if warning {
                Severity::Warning
            } else {
                Severity::Error
            };
            assert_eq!(code.severity(), expected, "{code}");
        }
        assert_eq!(Severity::Error.to_string(), "error");
    }

    #[test]
    fn finding_display() {
        let finding = destructive_statements("\nTRUNCATE t", Dialect::Sqlite)
            .into_iter()
            .next()
            .unwrap();
        let shown = finding.to_string();
        assert!(
            shown.starts_with("line 2: warning [destructive]: TRUNCATE `t` deletes every row:"),
            "{shown}"
        );
        assert!(shown.ends_with("(in `TRUNCATE t`)"), "{shown}");
    }
}
