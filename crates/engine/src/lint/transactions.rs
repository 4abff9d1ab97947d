//! The engine owns transactions: `transaction-control` (no `BEGIN` / `COMMIT` ... in a script)
//! and `no-transaction-not-idempotent` (a `-- no-transaction` file runs again in full after a
//! failure, so each of its `CREATE` / `DROP` must be re-runnable).

use super::FileScope;
use super::findings::{Finding, LintCode};
use super::statement::LintedStatement;

/// `transaction-control`: `BEGIN`, `COMMIT`, `ROLLBACK`, ... as a statement.
pub(super) fn transaction_control(
    s: &LintedStatement<'_>,
    _: &FileScope<'_>,
    out: &mut Vec<Finding>,
) {
    let toks = &s.tokens;
    let verb = if toks.is_any_word_at(
        0,
        &[
            "begin",
            "commit",
            "end",
            "rollback",
            "savepoint",
            "release",
            "abort",
        ],
    ) {
        toks[0].text.to_uppercase()
    } else if toks.has_words_at(0, &["start", "transaction"]) {
        "START TRANSACTION".to_owned()
    } else if toks.has_words_at(0, &["prepare", "transaction"]) {
        "PREPARE TRANSACTION".to_owned()
    } else {
        return;
    };
    out.push(s.finding(
        LintCode::TransactionControl,
        s.line,
        format!(
            "`{verb}` as a statement: the engine owns transactions (each migration runs in one \
             transaction, or statement by statement with `-- no-transaction`); remove it, and \
             split the work into separate migrations if parts must commit separately"
        ),
    ));
}

/// Words naming what a `CREATE` / `DROP` creates or drops (quoted in messages).
const OBJECT_KEYWORDS: [&str; 24] = [
    "aggregate",
    "concurrently",
    "domain",
    "extension",
    "foreign",
    "function",
    "global",
    "index",
    "local",
    "materialized",
    "policy",
    "procedure",
    "role",
    "rule",
    "schema",
    "sequence",
    "table",
    "temp",
    "temporary",
    "trigger",
    "type",
    "unique",
    "unlogged",
    "view",
];

/// `no-transaction-not-idempotent`: a `CREATE` without `IF NOT EXISTS` or a `DROP` without
/// `IF EXISTS` before the statement's first parenthesis.
pub(super) fn not_idempotent(s: &LintedStatement<'_>, _: &FileScope<'_>, out: &mut Vec<Finding>) {
    let toks = &s.tokens;
    let head = toks
        .iter()
        .position(|t| t.is_punct('('))
        .unwrap_or(toks.len());
    let (verb, guard) = if toks.is_word_at(0, "create") {
        if toks.has_words_at(1, &["or", "replace"]) {
            return;
        }
        ("CREATE", &["if", "not", "exists"][..])
    } else if toks.is_word_at(0, "drop") {
        ("DROP", &["if", "exists"][..])
    } else {
        return;
    };
    if (0..head).any(|i| toks.has_words_at(i, guard)) {
        return;
    }
    let what = toks
        .iter()
        .take(head)
        .enumerate()
        .take_while(|&(i, t)| i == 0 || OBJECT_KEYWORDS.iter().any(|k| t.is_word(k)))
        .map(|(_, t)| t.text.to_uppercase())
        .collect::<Vec<_>>()
        .join(" ");
    let guard = guard.join(" ").to_uppercase();
    out.push(s.finding(
        LintCode::NoTransactionNotIdempotent,
        s.line,
        format!(
            "`{what}` without `{guard}` in a `-- no-transaction` file: a failed no-transaction \
             file is run again in full, so every {verb} must be re-runnable; add `{guard}` (a \
             statement that has no such clause belongs in an ordinary migration)"
        ),
    ));
}
