//! PostgreSQL statements that block an existing table for long: building an index without
//! `CONCURRENTLY`, changing a column's type, `NOT NULL` on existing rows, validating a new
//! constraint, and `CONCURRENTLY` where it cannot run (inside a transaction). A table the same
//! file created holds no rows yet, so statements on it are not flagged.

use super::FileScope;
use super::findings::{Finding, LintCode};
use super::statement::{AlterTable, LintedStatement};

/// `concurrently-in-transaction`: `CONCURRENTLY` in a file that runs inside a transaction.
pub(super) fn concurrently_in_transaction(
    s: &LintedStatement<'_>,
    _: &FileScope<'_>,
    out: &mut Vec<Finding>,
) {
    let toks = &s.tokens;
    if toks.is_word_at(0, "refresh") {
        // REFRESH MATERIALIZED VIEW CONCURRENTLY may run inside a transaction.
        return;
    }
    if let Some(tok) = toks.iter().find(|t| t.is_word("concurrently")) {
        out.push(
            s.finding(
                LintCode::ConcurrentlyInTransaction,
                tok.line,
                "`CONCURRENTLY` cannot run inside a transaction block, and this file runs in one: \
             put the statement in a migration of its own with `-- no-transaction` at the top \
             (and `IF [NOT] EXISTS`, so a failed run can be repeated)"
                    .to_owned(),
            ),
        );
    }
}

/// `index-without-concurrently`: `CREATE [UNIQUE] INDEX` on a table this file did not create,
/// without `CONCURRENTLY`.
pub(super) fn index_without_concurrently(
    s: &LintedStatement<'_>,
    scope: &FileScope<'_>,
    out: &mut Vec<Finding>,
) {
    let toks = &s.tokens;
    if !toks.is_word_at(0, "create") {
        return;
    }
    let unique = toks.is_word_at(1, "unique");
    let i = if unique { 2 } else { 1 };
    if !toks.is_word_at(i, "index") {
        return;
    }
    let Some(on) = toks.find_top_level_words(i + 1..toks.len(), &["on"]) else {
        return;
    };
    if (i + 1..on).any(|j| toks.is_word_at(j, "concurrently")) {
        return;
    }
    let Some((table, _)) = s.name_at(toks.skip_words(on + 1, &["only"])) else {
        return;
    };
    if scope.created.contains(&table.key) {
        return;
    }
    let verb = if unique {
        "CREATE UNIQUE INDEX"
    } else {
        "CREATE INDEX"
    };
    let fix = if scope.input.no_transaction {
        format!("use {verb} CONCURRENTLY IF NOT EXISTS")
    } else {
        format!("move it to a `-- no-transaction` file and use {verb} CONCURRENTLY IF NOT EXISTS")
    };
    out.push(s.finding(
        LintCode::IndexWithoutConcurrently,
        s.line,
        format!(
            "{verb} on existing table `{}` without CONCURRENTLY blocks writes for the whole \
             build: {fix}",
            table.display
        ),
    ));
}

/// Serial types carry their own default.
const SERIAL_TYPES: [&str; 6] = [
    "serial",
    "bigserial",
    "smallserial",
    "serial2",
    "serial4",
    "serial8",
];

/// `column-type-change`, `not-null-on-existing-table` and `constraint-validation`: the
/// actions of an `ALTER TABLE` on a table this file did not create that rewrite or scan it
/// under a lock that blocks writes.
pub(super) fn alter_table_locks(
    s: &LintedStatement<'_>,
    scope: &FileScope<'_>,
    out: &mut Vec<Finding>,
) {
    let toks = &s.tokens;
    let Some(alter) = AlterTable::parse(s) else {
        return;
    };
    if scope.created.contains(&alter.table.key) {
        return;
    }
    let table = &alter.table.display;
    for action in &alter.actions {
        let a = action.start;
        let line = s.line_at(a);
        if toks.is_word_at(a, "alter") {
            let c = toks.skip_words(a + 1, &["column"]);
            let Some((column, rest)) = s.name_at(c) else {
                continue;
            };
            let column = column.display;
            if toks.is_word_at(rest, "type") || toks.has_words_at(rest, &["set", "data", "type"]) {
                out.push(s.finding(
                    LintCode::ColumnTypeChange,
                    line,
                    format!(
                        "changing the type of `{table}.{column}` rewrites the table and its \
                         indexes under an ACCESS EXCLUSIVE lock (reads and writes wait) unless \
                         the new type is binary-compatible: add a new column, backfill it in a \
                         batched migration and switch over, or confirm the table is small"
                    ),
                ));
            } else if toks.has_words_at(rest, &["set", "not", "null"]) {
                out.push(s.finding(
                    LintCode::NotNullOnExistingTable,
                    line,
                    format!(
                        "SET NOT NULL on `{table}.{column}` scans the whole existing table under \
                         an ACCESS EXCLUSIVE lock: first add `CHECK ({column} IS NOT NULL) NOT \
                         VALID`, VALIDATE it in a later migration, then SET NOT NULL (which then \
                         skips the scan) and drop the check"
                    ),
                ));
            }
        } else if toks.is_word_at(a, "add") {
            let mut k = a + 1;
            let mut constraint = "...".to_owned();
            if toks.is_word_at(k, "constraint") {
                if let Some(name) = toks.get(k + 1).filter(|t| t.is_ident()) {
                    constraint = name.text.to_owned();
                }
                k += 2;
            }
            let constraint_kind = if toks.has_words_at(k, &["foreign", "key"]) {
                Some("FOREIGN KEY")
            } else if toks.is_word_at(k, "check") {
                Some("CHECK")
            } else {
                None
            };
            let is_column = toks.is_word_at(a + 1, "column")
                || !toks.is_any_word_at(
                    a + 1,
                    &[
                        "constraint",
                        "primary",
                        "unique",
                        "foreign",
                        "check",
                        "exclude",
                    ],
                );
            if let Some(kind) = constraint_kind {
                if toks
                    .find_top_level_words(action.clone(), &["not", "valid"])
                    .is_none()
                {
                    out.push(s.finding(
                        LintCode::ConstraintValidation,
                        line,
                        format!(
                            "ADD {kind} on existing table `{table}` validates every row while \
                             holding a lock that blocks writes: add it with NOT VALID here and \
                             run `ALTER TABLE {table} VALIDATE CONSTRAINT {constraint}` in a later \
                             migration (validation then does not block writes)"
                        ),
                    ));
                }
            } else if is_column {
                let c = toks.skip_words(
                    toks.skip_words(a + 1, &["column"]),
                    &["if", "not", "exists"],
                );
                let Some((column, ty)) = s.name_at(c) else {
                    continue;
                };
                let not_null = toks
                    .find_top_level_words(action.clone(), &["not", "null"])
                    .is_some();
                let has_default = toks.is_any_word_at(ty, &SERIAL_TYPES)
                    || toks
                        .find_top_level_words(action.clone(), &["default"])
                        .is_some()
                    || toks
                        .find_top_level_words(action.clone(), &["generated"])
                        .is_some();
                if not_null && !has_default {
                    out.push(s.finding(
                        LintCode::NotNullOnExistingTable,
                        line,
                        format!(
                            "ADD COLUMN `{}` NOT NULL without a DEFAULT on existing table \
                             `{table}` fails as soon as the table has a row: give it a DEFAULT, \
                             or add it nullable, backfill it in a batched migration and SET NOT \
                             NULL later",
                            column.display
                        ),
                    ));
                }
            }
        }
    }
}
