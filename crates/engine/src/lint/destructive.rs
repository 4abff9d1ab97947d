//! `destructive`: statements that lose data. An up file with one needs an approval to be
//! deployed; a rollback warns before it runs a down file with one
//! ([`super::destructive_statements`]).

use super::findings::{Finding, LintCode};
use super::statement::{AlterTable, LintedStatement, Name};
use crate::dialect::Dialect;

/// `destructive`: `DROP TABLE` / `DROP SCHEMA`, `TRUNCATE`, `ALTER TABLE ... DROP COLUMN`, and
/// `DELETE FROM` outside a `CREATE` (where it is a trigger's, rule's or function's body).
pub(super) fn destructive(s: &LintedStatement<'_>, dialect: Dialect, out: &mut Vec<Finding>) {
    let toks = &s.tokens;
    let cascade = if dialect == Dialect::Postgres && toks.iter().any(|t| t.is_word("cascade")) {
        " CASCADE also removes everything that depends on it."
    } else {
        ""
    };
    let approval = "make sure the data is no longer needed or has been exported (a deploy \
                    applies a destructive migration only once it is approved in approvals.txt)";
    if toks.is_word_at(0, "drop") && toks.is_any_word_at(1, &["table", "schema"]) {
        let what = toks[1].text.to_uppercase();
        let target = targets(&s.names_at(toks.skip_words(2, &["if", "exists"])));
        let loses = if what == "TABLE" {
            "the table and all its rows"
        } else {
            "the schema with every table and row in it"
        };
        out.push(s.finding(
            LintCode::Destructive,
            s.line,
            format!("DROP {what}{target} permanently deletes {loses}:{cascade} {approval}"),
        ));
    }
    if toks.is_word_at(0, "truncate") {
        let i = toks.skip_any_words(1, &["table", "only"]);
        let target = targets(&s.names_at(i));
        out.push(s.finding(
            LintCode::Destructive,
            s.line,
            format!("TRUNCATE{target} deletes every row:{cascade} {approval}"),
        ));
    }
    if let Some(alter) = AlterTable::parse(s) {
        for action in &alter.actions {
            let a = action.start;
            if !toks.is_word_at(a, "drop") || toks.is_word_at(a + 1, "constraint") {
                continue;
            }
            let c = toks.skip_words(toks.skip_words(a + 1, &["column"]), &["if", "exists"]);
            let column = s
                .name_at(c)
                .map_or_else(String::new, |(n, _)| format!(" `{}`", n.display));
            out.push(s.finding(
                LintCode::Destructive,
                s.line_at(a),
                format!(
                    "ALTER TABLE `{}` DROP COLUMN{column} permanently deletes the column and its \
                     data:{cascade} {approval}",
                    alter.table.display
                ),
            ));
        }
    }
    // `DELETE FROM` as the statement or in a data-modifying WITH; inside a CREATE it is the
    // body of a trigger, rule or function, which deletes nothing now.
    if !toks.is_word_at(0, "create") {
        for i in 0..toks.len() {
            if !toks.has_words_at(i, &["delete", "from"]) {
                continue;
            }
            let t = toks.skip_words(i + 2, &["only"]);
            let table = s
                .name_at(t)
                .map_or_else(String::new, |(n, _)| format!(" `{}`", n.display));
            let depth = toks[i].depth;
            let has_where = toks[i..]
                .iter()
                .take_while(|t| t.depth >= depth)
                .any(|t| t.depth == depth && t.is_word("where"));
            let rows = if has_where {
                "deletes rows"
            } else {
                "has no WHERE clause and deletes every row"
            };
            out.push(s.finding(
                LintCode::Destructive,
                s.line_at(i),
                format!("DELETE FROM{table} {rows}: {approval}"),
            ));
        }
    }
}

/// `names` as a message names them after a verb: empty, or a space and their [`list`].
fn targets(names: &[Name]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" {}", list(names))
    }
}

/// `a`, `` `a` and `b` ``, `` `a`, `b` and `c` ``.
fn list(names: &[Name]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{}`", n.display)).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
