//! `-- batch-size` files: `batch-statement` (the one statement the engine runs again and again
//! until a batch comes back short has the shape that makes that end) and `batch-placeholder`
//! (the placeholder is only replaced in a batched file).

use super::FileScope;
use super::findings::{Finding, LintCode};
use super::statement::LintedStatement;
use crate::sql::{BATCH_SIZE_PLACEHOLDER, Token, TokenKind};

/// The batch-size placeholders of a statement, as tokens.
fn placeholders<'s, 'a>(s: &'s LintedStatement<'a>) -> impl Iterator<Item = &'s Token<'a>> {
    s.tokens
        .iter()
        .filter(|t| t.kind == TokenKind::Param && t.text == BATCH_SIZE_PLACEHOLDER)
}

/// `batch-placeholder`: the batch-size placeholder in a file that is not batched.
pub(super) fn batch_placeholder(
    s: &LintedStatement<'_>,
    _: &FileScope<'_>,
    out: &mut Vec<Finding>,
) {
    for tok in placeholders(s) {
        out.push(s.finding(
            LintCode::BatchPlaceholder,
            tok.line,
            format!(
                "`{BATCH_SIZE_PLACEHOLDER}` is only replaced in a batched file: add \
                 `-- batch-size: <n>` at the top of the file, or write the number"
            ),
        ));
    }
}

/// `batch-statement`: a batched file holds exactly one `UPDATE`, `DELETE` or `INSERT` (behind
/// `WITH` or not) that uses the placeholder and has a `WHERE` clause. A rule of the whole file.
pub(super) fn batch_statement(statements: &[LintedStatement<'_>], out: &mut Vec<Finding>) {
    let Some(s) = statements.first() else {
        out.push(Finding {
            code: LintCode::BatchStatement,
            line: 1,
            statement: String::new(),
            message: "a `-- batch-size` file must hold exactly one UPDATE, DELETE or INSERT \
                      statement, and this one has none"
                .to_owned(),
        });
        return;
    };
    let toks = &s.tokens;
    if let Some(second) = statements.get(1) {
        out.push(second.finding(
            LintCode::BatchStatement,
            second.line,
            format!(
                "a `-- batch-size` file must hold exactly one statement (it is executed again \
                 and again until it affects fewer rows than the batch size), and this one has \
                 {}: move the other statements to migrations of their own",
                statements.len()
            ),
        ));
    }
    let verb_at = if toks.is_word_at(0, "with") {
        (1..toks.len()).find(|&i| {
            toks[i].depth == 0
                && toks.is_any_word_at(
                    i,
                    &[
                        "select", "insert", "update", "delete", "merge", "values", "table",
                    ],
                )
        })
    } else {
        Some(0)
    };
    let verb = verb_at.filter(|&i| toks.is_any_word_at(i, &["update", "delete", "insert"]));
    let Some(verb) = verb else {
        let found = verb_at
            .or(Some(0))
            .and_then(|i| toks.get(i))
            .map_or_else(String::new, |t| t.text.to_uppercase());
        out.push(s.finding(
            LintCode::BatchStatement,
            s.line,
            format!(
                "a `-- batch-size` statement must be an UPDATE, DELETE or INSERT (optionally \
                 behind WITH), not `{found}`: move other statements to an ordinary migration"
            ),
        ));
        return;
    };
    if placeholders(s).next().is_none() {
        out.push(s.finding(
            LintCode::BatchStatement,
            s.line,
            format!(
                "the batched statement never uses `{BATCH_SIZE_PLACEHOLDER}`, so every execution \
                 touches all remaining rows at once: limit it, e.g. `WHERE id IN (SELECT id FROM \
                 ... WHERE <not yet done> LIMIT {BATCH_SIZE_PLACEHOLDER})`"
            ),
        ));
    }
    let has_where = if toks.is_word_at(verb, "insert") {
        toks.iter().any(|t| t.is_word("where"))
    } else {
        toks.find_top_level_words(verb..toks.len(), &["where"])
            .is_some()
    };
    if !has_where {
        out.push(s.finding(
            LintCode::BatchStatement,
            s.line,
            "the batched statement has no WHERE clause: each execution must only touch rows not \
             yet done (e.g. `WHERE new_column IS NULL`), otherwise the batches never run out \
             and the migration does not finish"
                .to_owned(),
        ));
    }
}
