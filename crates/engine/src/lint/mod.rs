//! Lints on migration scripts.
//!
//! This module owns the rules a migration file must follow beyond being valid SQL: tenant
//! migrations stay inside their own schema, destructive statements are recognised (they need an
//! approval, and a rollback warns before running them), PostgreSQL statements that take long
//! blocking locks on existing tables are flagged, transactions belong to the engine, and
//! `-- no-transaction` / `-- batch-size` files have the shape the engine relies on (see
//! `docs/MIGRATION_FORMAT.md`).
//!
//! The lints read the tokens of [`super::sql`] ([`sql::Tokens`]), so keywords are matched
//! case-insensitively and never inside strings, quoted identifiers or comments (the one
//! exception: `cross-schema` also looks into the dollar-quoted bodies of functions, procedures
//! and `DO` blocks, which run in the tenant's database too). They are heuristics over tokens, not
//! a SQL parser. Everything here is pure: no I/O, no clock.
//!
//! # Layout
//! One file per family of rules: `cross_schema.rs` (a tenant migration stays in its schema),
//! `destructive.rs` (statements that lose data), `locking.rs` (PostgreSQL statements that block
//! an existing table), `transactions.rs` (transactions belong to the engine; `-- no-transaction`
//! files are re-runnable), `batches.rs` (`-- batch-size` files). `findings.rs` is what a rule
//! reports, `statement.rs` the statement as the rules read it and the shapes several of them
//! recognise. Which rule runs on which file is one registry, `STATEMENT_RULES`; a new rule
//! is a function in its family's file, a [`LintCode`], and a line there.

mod batches;
mod cross_schema;
mod destructive;
mod findings;
mod locking;
mod statement;
#[cfg(test)]
mod tests;
mod transactions;

use std::collections::HashSet;

pub use findings::{Finding, LintCode, Severity};

use super::dialect::Dialect;
use super::source::SetKind;
use super::sql;
use statement::{LintedStatement, created_table};

/// A migration script to lint, with what its directives say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LintInput<'a> {
    /// The script's full text (directive comments included).
    pub sql: &'a str,
    /// The dialect the script is written in.
    pub dialect: Dialect,
    /// The set the migration belongs to (tenant-scoped sets get the `cross-schema` lint).
    pub set: SetKind,
    /// The file has `-- no-transaction`.
    pub no_transaction: bool,
    /// The file has `-- batch-size: n`.
    pub batched: bool,
}

/// What a statement rule sees of the file besides the statement.
struct FileScope<'f> {
    input: &'f LintInput<'f>,
    /// Lookup keys of the tables created earlier in the file: the locking rules leave them
    /// alone, since a table created by the same migration holds no rows yet.
    created: &'f HashSet<String>,
}

/// A rule that reads one statement at a time.
struct StatementRule {
    /// Whether the rule applies to a file, given its dialect, set and directives.
    applies: fn(&LintInput<'_>) -> bool,
    /// Pushes the rule's findings on the statement.
    check: fn(&LintedStatement<'_>, &FileScope<'_>, &mut Vec<Finding>),
}

/// Every statement rule and the files it applies to, in the order their findings on one line
/// are reported. (`batch-statement` reads the whole file: see [`lint`].)
const STATEMENT_RULES: [StatementRule; 8] = [
    StatementRule {
        applies: every_file,
        check: transactions::transaction_control,
    },
    StatementRule {
        applies: tenant_scoped,
        check: cross_schema::cross_schema,
    },
    StatementRule {
        applies: every_file,
        check: destructive,
    },
    StatementRule {
        applies: postgres_in_transaction,
        check: locking::concurrently_in_transaction,
    },
    StatementRule {
        applies: postgres,
        check: locking::index_without_concurrently,
    },
    StatementRule {
        applies: postgres,
        check: locking::alter_table_locks,
    },
    StatementRule {
        applies: no_transaction,
        check: transactions::not_idempotent,
    },
    StatementRule {
        applies: not_batched,
        check: batches::batch_placeholder,
    },
];

fn every_file(_: &LintInput<'_>) -> bool {
    true
}

fn tenant_scoped(input: &LintInput<'_>) -> bool {
    input.set.is_tenant_scoped()
}

fn postgres(input: &LintInput<'_>) -> bool {
    input.dialect == Dialect::Postgres
}

fn postgres_in_transaction(input: &LintInput<'_>) -> bool {
    postgres(input) && !input.no_transaction
}

fn no_transaction(input: &LintInput<'_>) -> bool {
    input.no_transaction
}

fn not_batched(input: &LintInput<'_>) -> bool {
    !input.batched
}

/// The `destructive` rule in the registry: it needs only the file's dialect.
fn destructive(s: &LintedStatement<'_>, scope: &FileScope<'_>, out: &mut Vec<Finding>) {
    destructive::destructive(s, scope.input.dialect, out);
}

/// Runs every lint that applies to `input` and returns the findings ordered by line.
pub fn lint(input: &LintInput<'_>) -> Vec<Finding> {
    let statements: Vec<LintedStatement<'_>> = sql::split_statements(input.sql)
        .into_iter()
        .map(LintedStatement::new)
        .collect();
    let rules: Vec<&StatementRule> = STATEMENT_RULES
        .iter()
        .filter(|rule| (rule.applies)(input))
        .collect();
    let mut out = Vec::new();
    let mut created = HashSet::new();
    for s in &statements {
        let scope = FileScope {
            input,
            created: &created,
        };
        for rule in &rules {
            (rule.check)(s, &scope, &mut out);
        }
        if let Some(table) = created_table(s) {
            created.insert(table.key);
        }
    }
    if input.batched {
        batches::batch_statement(&statements, &mut out);
    }
    out.sort_by_key(|f| f.line);
    out
}

/// Only the destructive findings of `sql` (used to warn before a rollback runs a down file).
pub fn destructive_statements(sql: &str, dialect: Dialect) -> Vec<Finding> {
    let mut out = Vec::new();
    for statement in sql::split_statements(sql) {
        destructive::destructive(&LintedStatement::new(statement), dialect, &mut out);
    }
    out
}
