//! The statement as the rules read it ([`LintedStatement`]: its tokens, from [`crate::sql`],
//! its first line and its summary), and the shapes several rules recognise in it: names, the
//! table a `CREATE` creates, the actions of an `ALTER TABLE`.

use std::ops::Range;

use super::findings::{Finding, LintCode, summarize};
use crate::sql::{Statement, Tokens};

/// A statement being linted.
pub(super) struct LintedStatement<'a> {
    /// The line of the script on which the statement starts.
    pub(super) line: usize,
    /// What a finding quotes of the statement.
    summary: String,
    /// Its tokens, with lines of the script.
    pub(super) tokens: Tokens<'a>,
}

/// A possibly qualified name as written, and its lookup key (last part, lower-cased).
pub(super) struct Name {
    pub(super) display: String,
    pub(super) key: String,
}

impl<'a> LintedStatement<'a> {
    pub(super) fn new(statement: Statement<'a>) -> Self {
        LintedStatement {
            line: statement.line,
            summary: summarize(statement.text),
            tokens: statement.tokens(),
        }
    }

    /// The line of the token at `i`, or the statement's first line past its end.
    pub(super) fn line_at(&self, i: usize) -> usize {
        self.tokens.get(i).map_or(self.line, |t| t.line)
    }

    /// The (possibly qualified) name starting at `i`, and the index after it.
    pub(super) fn name_at(&self, i: usize) -> Option<(Name, usize)> {
        let parts = self.tokens.dotted_name_at(i);
        let last = parts.last()?;
        let key = last.ident()?.to_lowercase();
        let display = parts.iter().map(|t| t.text).collect::<Vec<_>>().join(".");
        let next = i + parts.len() * 2 - 1;
        Some((Name { display, key }, next))
    }

    /// A comma-separated list of names starting at `i` (each may be followed by `*`).
    pub(super) fn names_at(&self, mut i: usize) -> Vec<Name> {
        let mut names = Vec::new();
        while let Some((name, next)) = self.name_at(i) {
            names.push(name);
            i = next;
            if self.tokens.is_punct_at(i, '*') {
                i += 1;
            }
            if !self.tokens.is_punct_at(i, ',') {
                break;
            }
            i += 1;
        }
        names
    }

    /// A finding of `code` on `line`, quoting this statement.
    pub(super) fn finding(&self, code: LintCode, line: usize, message: String) -> Finding {
        Finding {
            code,
            line,
            statement: self.summary.clone(),
            message,
        }
    }
}

/// The table a `CREATE TABLE` / `CREATE MATERIALIZED VIEW` statement creates.
pub(super) fn created_table(s: &LintedStatement<'_>) -> Option<Name> {
    let toks = &s.tokens;
    if !toks.is_word_at(0, "create") {
        return None;
    }
    let mut i = toks.skip_words(1, &["or", "replace"]);
    i = toks.skip_any_words(i, &["global", "local", "temp", "temporary", "unlogged"]);
    if toks.is_word_at(i, "table") {
        i += 1;
    } else if toks.has_words_at(i, &["materialized", "view"]) {
        i += 2;
    } else {
        return None;
    }
    i = toks.skip_words(i, &["if", "not", "exists"]);
    s.name_at(i).map(|(name, _)| name)
}

/// An `ALTER TABLE` statement: its table and the token ranges of its comma-separated actions.
pub(super) struct AlterTable {
    pub(super) table: Name,
    pub(super) actions: Vec<Range<usize>>,
}

impl AlterTable {
    pub(super) fn parse(s: &LintedStatement<'_>) -> Option<AlterTable> {
        let toks = &s.tokens;
        if !toks.has_words_at(0, &["alter", "table"]) {
            return None;
        }
        let mut i = toks.skip_words(2, &["if", "exists"]);
        i = toks.skip_words(i, &["only"]);
        let (table, mut i) = s.name_at(i)?;
        if toks.is_punct_at(i, '*') {
            i += 1;
        }
        let mut actions = Vec::new();
        let mut start = i;
        for j in i..toks.len() {
            if toks[j].depth == 0 && toks.is_punct_at(j, ',') {
                actions.push(start..j);
                start = j + 1;
            }
        }
        if start < toks.len() {
            actions.push(start..toks.len());
        }
        Some(AlterTable { table, actions })
    }
}
