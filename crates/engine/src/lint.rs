//! Lints on migration scripts.
//!
//! This module owns the rules a migration file must follow beyond being valid SQL: tenant
//! migrations stay inside their own schema, destructive statements are recognised (they need an
//! approval, and a rollback warns before running them), PostgreSQL statements that take long
//! blocking locks on existing tables are flagged, transactions belong to the engine, and
//! `-- no-transaction` / `-- batch-size` files have the shape the engine relies on (see
//! `docs/MIGRATION_FORMAT.md`).
//!
//! The lints work on the token stream of [`super::sql`], so keywords are matched
//! case-insensitively and never inside strings, quoted identifiers or comments (the one
//! exception: `cross-schema` also looks into the dollar-quoted bodies of functions, procedures
//! and `DO` blocks, which run in the tenant's database too). They are heuristics over tokens, not
//! a SQL parser. Everything here is pure: no I/O, no clock.

use std::collections::HashSet;
use std::fmt;

use super::dialect::Dialect;
use super::source::SetKind;
use super::sql::{self, BATCH_SIZE_PLACEHOLDER, Statement, Token, TokenKind};

/// Number of characters of a statement quoted in a [`Finding`].
const SUMMARY_CHARS: usize = 80;

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

/// Runs every lint that applies to `input` and returns the findings ordered by line.
pub fn lint(input: &LintInput<'_>) -> Vec<Finding> {
    let statements: Vec<Stmt<'_>> = sql::split_statements(input.sql)
        .into_iter()
        .map(Stmt::new)
        .collect();
    let postgres = input.dialect == Dialect::Postgres;
    let mut out = Vec::new();
    let mut created = HashSet::new();
    for s in &statements {
        transaction_control(s, &mut out);
        if input.set.is_tenant_scoped() {
            cross_schema(s, &mut out);
        }
        destructive(s, input.dialect, &mut out);
        if postgres {
            if !input.no_transaction {
                concurrently_in_transaction(s, &mut out);
            }
            index_without_concurrently(s, &created, input.no_transaction, &mut out);
            alter_table_locks(s, &created, &mut out);
        }
        if input.no_transaction {
            not_idempotent(s, &mut out);
        }
        if !input.batched {
            batch_placeholder(s, &mut out);
        }
        if let Some(table) = created_table(s) {
            created.insert(table.key);
        }
    }
    if input.batched {
        batch_statement(&statements, &mut out);
    }
    out.sort_by_key(|f| f.line);
    out
}

/// Only the destructive findings of `sql` (used to warn before a rollback runs a down file).
pub fn destructive_statements(sql: &str, dialect: Dialect) -> Vec<Finding> {
    let mut out = Vec::new();
    for statement in sql::split_statements(sql) {
        destructive(&Stmt::new(statement), dialect, &mut out);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Statement view

/// A token with its absolute line and its parenthesis depth.
struct Tok<'a> {
    t: Token<'a>,
    line: usize,
    depth: usize,
}

/// A statement with its tokens.
struct Stmt<'a> {
    line: usize,
    summary: String,
    toks: Vec<Tok<'a>>,
}

/// A possibly qualified name as written, and its lookup key (last part, lower-cased).
struct Name {
    display: String,
    key: String,
}

impl<'a> Stmt<'a> {
    fn new(statement: Statement<'a>) -> Self {
        Stmt {
            line: statement.line,
            summary: summarize(statement.text),
            toks: with_depth(statement.text, statement.line),
        }
    }

    fn is(&self, i: usize, keyword: &str) -> bool {
        self.toks.get(i).is_some_and(|t| t.t.is_word(keyword))
    }

    fn is_any(&self, i: usize, keywords: &[&str]) -> bool {
        keywords.iter().any(|k| self.is(i, k))
    }

    fn is_punct(&self, i: usize, c: char) -> bool {
        self.toks.get(i).is_some_and(|t| t.t.is_punct(c))
    }

    /// Whether the words `keywords` follow each other from `i`.
    fn seq(&self, i: usize, keywords: &[&str]) -> bool {
        keywords.iter().enumerate().all(|(n, k)| self.is(i + n, k))
    }

    /// `i` moved past `keywords` when they follow each other from `i`.
    fn skip(&self, i: usize, keywords: &[&str]) -> usize {
        if self.seq(i, keywords) {
            i + keywords.len()
        } else {
            i
        }
    }

    /// `i` moved past any run of the single words in `keywords`.
    fn skip_any(&self, mut i: usize, keywords: &[&str]) -> usize {
        while self.is_any(i, keywords) {
            i += 1;
        }
        i
    }

    /// Index of the first occurrence of `keywords` at depth 0 in `range`.
    fn find_seq(&self, range: std::ops::Range<usize>, keywords: &[&str]) -> Option<usize> {
        range
            .into_iter()
            .find(|&i| self.toks.get(i).is_some_and(|t| t.depth == 0) && self.seq(i, keywords))
    }

    fn line_at(&self, i: usize) -> usize {
        self.toks.get(i).map_or(self.line, |t| t.line)
    }

    fn first_paren(&self) -> usize {
        (0..self.toks.len())
            .find(|&i| self.is_punct(i, '('))
            .unwrap_or(self.toks.len())
    }

    /// The (possibly qualified) name starting at `i`, and the index after it.
    fn name_at(&self, i: usize) -> Option<(Name, usize)> {
        let parts = chain(&self.toks, i);
        let last = parts.last()?;
        let key = last.t.ident()?.to_lowercase();
        let display = parts.iter().map(|t| t.t.text).collect::<Vec<_>>().join(".");
        let next = i + parts.len() * 2 - 1;
        Some((Name { display, key }, next))
    }

    /// A comma-separated list of names starting at `i` (each may be followed by `*`).
    fn names_at(&self, mut i: usize) -> Vec<Name> {
        let mut names = Vec::new();
        while let Some((name, next)) = self.name_at(i) {
            names.push(name);
            i = next;
            if self.is_punct(i, '*') {
                i += 1;
            }
            if !self.is_punct(i, ',') {
                break;
            }
            i += 1;
        }
        names
    }

    fn finding(&self, code: LintCode, line: usize, message: String) -> Finding {
        Finding {
            code,
            line,
            statement: self.summary.clone(),
            message,
        }
    }
}

/// The tokens of `text` with lines made absolute (`text` starts on `line`) and their
/// parenthesis depth (a bracket has the depth of its outside).
fn with_depth(text: &str, line: usize) -> Vec<Tok<'_>> {
    let mut depth = 0usize;
    sql::tokens(text)
        .into_iter()
        .map(|t| {
            if t.is_punct(')') {
                depth = depth.saturating_sub(1);
            }
            let tok = Tok {
                line: line + t.line - 1,
                depth,
                t,
            };
            if tok.t.is_punct('(') {
                depth += 1;
            }
            tok
        })
        .collect()
}

fn is_ident(t: &Tok<'_>) -> bool {
    matches!(t.t.kind, TokenKind::Word | TokenKind::QuotedIdent)
}

/// The identifiers of the dotted chain `a.b.c` starting at `i` (empty if `i` is no identifier).
fn chain<'t, 'a>(toks: &'t [Tok<'a>], i: usize) -> Vec<&'t Tok<'a>> {
    let mut parts = Vec::new();
    let Some(first) = toks.get(i).filter(|t| is_ident(t)) else {
        return parts;
    };
    parts.push(first);
    let mut j = i + 1;
    while let (Some(dot), Some(next)) = (toks.get(j), toks.get(j + 1)) {
        if !dot.t.is_punct('.') || !is_ident(next) {
            break;
        }
        parts.push(next);
        j += 2;
    }
    parts
}

/// The first [`SUMMARY_CHARS`] characters of `text`, whitespace collapsed.
fn summarize(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= SUMMARY_CHARS {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(SUMMARY_CHARS - 1).collect();
    cut.push('…');
    cut
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

/// The table a `CREATE TABLE` / `CREATE MATERIALIZED VIEW` statement creates.
fn created_table(s: &Stmt<'_>) -> Option<Name> {
    if !s.is(0, "create") {
        return None;
    }
    let mut i = s.skip(1, &["or", "replace"]);
    i = s.skip_any(i, &["global", "local", "temp", "temporary", "unlogged"]);
    if s.is(i, "table") {
        i += 1;
    } else if s.seq(i, &["materialized", "view"]) {
        i += 2;
    } else {
        return None;
    }
    i = s.skip(i, &["if", "not", "exists"]);
    s.name_at(i).map(|(name, _)| name)
}

// ---------------------------------------------------------------------------------------------
// transaction-control

fn transaction_control(s: &Stmt<'_>, out: &mut Vec<Finding>) {
    let verb = if s.is_any(
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
        s.toks[0].t.text.to_uppercase()
    } else if s.seq(0, &["start", "transaction"]) {
        "START TRANSACTION".to_owned()
    } else if s.seq(0, &["prepare", "transaction"]) {
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

// ---------------------------------------------------------------------------------------------
// cross-schema

/// Why a schema name is off limits to a tenant migration, if it is.
fn forbidden_schema(name: &str) -> Option<&'static str> {
    let lower = name.to_lowercase();
    if lower == "public" {
        Some("the shared `public` schema")
    } else if lower.starts_with("tenant_") {
        Some("another tenant's schema")
    } else if lower.starts_with("pg_temp") {
        Some("the session's temporary schema")
    } else {
        None
    }
}

const TENANT_SCOPE: &str = "a tenant migration runs inside one tenant's schema and must only \
                            touch objects there";

const SEARCH_PATH: &str = "a tenant migration resolves names in its tenant's schema, and \
                           changing the search path makes the following statements resolve \
                           them (and create objects) elsewhere";

fn cross_schema(s: &Stmt<'_>, out: &mut Vec<Finding>) {
    let schema_statement = s.is_any(0, &["create", "alter", "drop"]) && s.is(1, "schema");
    if schema_statement {
        let verb = format!("{} SCHEMA", s.toks[0].t.text.to_uppercase());
        out.push(s.finding(
            LintCode::CrossSchema,
            s.line,
            format!(
                "`{verb}` in a tenant migration: tenant schemas are created, renamed and dropped \
                 by the provisioner, never by a migration; {TENANT_SCOPE}, so move this to the \
                 platform set or the provisioner"
            ),
        ));
    }
    if s.is_any(0, &["attach", "detach"]) {
        let verb = s.toks[0].t.text.to_uppercase();
        out.push(s.finding(
            LintCode::CrossSchema,
            s.line,
            format!(
                "`{verb}` in a tenant migration opens or closes another database file; \
                 {TENANT_SCOPE}: remove it"
            ),
        ));
    }
    for (i, tok) in s.toks.iter().enumerate() {
        if tok.t.is_word("schema") && !schema_statement && i > 0 {
            if s.is(i - 1, "set") {
                out.push(s.finding(
                    LintCode::CrossSchema,
                    tok.line,
                    format!(
                        "`SET SCHEMA` in a tenant migration moves an object (or the session) to \
                         another schema; {TENANT_SCOPE}: remove it"
                    ),
                ));
            } else if let Some(name) = s.toks.get(i + 1).and_then(|t| t.t.ident())
                && let Some(why) = forbidden_schema(&name)
            {
                out.push(s.finding(
                    LintCode::CrossSchema,
                    tok.line,
                    format!(
                        "`SCHEMA {name}` names {why}; {TENANT_SCOPE}: drop the schema clause \
                         (objects are created in the tenant's schema) or move this to the \
                         platform set"
                    ),
                ));
            }
        }
    }
    schema_references(&s.toks, s, out);
    // Bodies of functions, procedures and DO blocks run in the tenant's database too.
    let routine = s.is(0, "do")
        || (s.is(0, "create")
            && s.is_any(s.skip(1, &["or", "replace"]), &["function", "procedure"]));
    if routine {
        for tok in s.toks.iter().filter(|t| t.t.text.starts_with('$')) {
            if let Some(body) = tok.t.string_value() {
                schema_references(&with_depth(&body, tok.line), s, out);
            }
        }
    }
}

/// Qualified names, `search_path` and `set_config('search_path', ...)` in `toks`.
fn schema_references(toks: &[Tok<'_>], s: &Stmt<'_>, out: &mut Vec<Finding>) {
    for (i, tok) in toks.iter().enumerate() {
        let after_dot = i > 0 && toks[i - 1].t.is_punct('.');
        let parts = if after_dot {
            Vec::new()
        } else {
            chain(toks, i)
        };
        if parts.len() >= 2 {
            let written = parts.iter().map(|t| t.t.text).collect::<Vec<_>>().join(".");
            let qualifier = parts[0].t.ident().unwrap_or_default();
            if let Some(why) = forbidden_schema(&qualifier) {
                let alias_hint = if qualifier.to_lowercase().starts_with("tenant_") {
                    " (if it is a table of this schema, qualify its columns through an alias)"
                } else {
                    ""
                };
                out.push(s.finding(
                    LintCode::CrossSchema,
                    tok.line,
                    format!(
                        "`{written}` names {why} `{qualifier}`; {TENANT_SCOPE}: remove the \
                         qualifier so the name resolves in the tenant's schema{alias_hint}, or \
                         move the change to the platform set"
                    ),
                ));
            } else if parts.len() >= 3
                && !["pg_catalog", "information_schema"]
                    .iter()
                    .any(|c| qualifier.eq_ignore_ascii_case(c))
            {
                out.push(s.finding(
                    LintCode::CrossSchema,
                    tok.line,
                    format!(
                        "`{written}` is a three-part name (database or schema qualified); \
                         {TENANT_SCOPE}: use an unqualified name (or `table.column`)"
                    ),
                ));
            }
        }
        let prev_show = i > 0 && toks[i - 1].t.is_word("show");
        if tok.t.is_word("search_path") && !prev_show {
            out.push(s.finding(
                LintCode::CrossSchema,
                tok.line,
                format!(
                    "`search_path` in a tenant migration: {SEARCH_PATH}; remove it and use \
                     unqualified names"
                ),
            ));
        }
        let set_config = tok.t.is_word("set_config")
            && toks.get(i + 1).is_some_and(|t| t.t.is_punct('('))
            && toks
                .get(i + 2)
                .and_then(|t| t.t.string_value())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("search_path"));
        if set_config {
            out.push(s.finding(
                LintCode::CrossSchema,
                tok.line,
                format!(
                    "`set_config('search_path', ...)` in a tenant migration: {SEARCH_PATH}; \
                     remove it and use unqualified names"
                ),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// destructive

fn destructive(s: &Stmt<'_>, dialect: Dialect, out: &mut Vec<Finding>) {
    let cascade = if dialect == Dialect::Postgres && s.toks.iter().any(|t| t.t.is_word("cascade")) {
        " CASCADE also removes everything that depends on it."
    } else {
        ""
    };
    let approval = "make sure the data is no longer needed or has been exported (a deploy \
                    applies a destructive migration only once it is approved in approvals.txt)";
    if s.is(0, "drop") && s.is_any(1, &["table", "schema"]) {
        let what = s.toks[1].t.text.to_uppercase();
        let names = s.names_at(s.skip(2, &["if", "exists"]));
        let target = if names.is_empty() {
            String::new()
        } else {
            format!(" {}", list(&names))
        };
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
    if s.is(0, "truncate") {
        let i = s.skip_any(1, &["table", "only"]);
        let names = s.names_at(i);
        let target = if names.is_empty() {
            String::new()
        } else {
            format!(" {}", list(&names))
        };
        out.push(s.finding(
            LintCode::Destructive,
            s.line,
            format!("TRUNCATE{target} deletes every row:{cascade} {approval}"),
        ));
    }
    if let Some(alter) = AlterTable::parse(s) {
        for action in &alter.actions {
            let a = action.start;
            if !s.is(a, "drop") || s.is(a + 1, "constraint") {
                continue;
            }
            let c = s.skip(s.skip(a + 1, &["column"]), &["if", "exists"]);
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
    if !s.is(0, "create") {
        for i in 0..s.toks.len() {
            if !s.seq(i, &["delete", "from"]) {
                continue;
            }
            let t = s.skip(i + 2, &["only"]);
            let table = s
                .name_at(t)
                .map_or_else(String::new, |(n, _)| format!(" `{}`", n.display));
            let depth = s.toks[i].depth;
            let has_where = s.toks[i..]
                .iter()
                .take_while(|t| t.depth >= depth)
                .any(|t| t.depth == depth && t.t.is_word("where"));
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

/// An `ALTER TABLE` statement: its table and the token ranges of its comma-separated actions.
struct AlterTable {
    table: Name,
    actions: Vec<std::ops::Range<usize>>,
}

impl AlterTable {
    fn parse(s: &Stmt<'_>) -> Option<AlterTable> {
        if !s.seq(0, &["alter", "table"]) {
            return None;
        }
        let mut i = s.skip(2, &["if", "exists"]);
        i = s.skip(i, &["only"]);
        let (table, mut i) = s.name_at(i)?;
        if s.is_punct(i, '*') {
            i += 1;
        }
        let mut actions = Vec::new();
        let mut start = i;
        for j in i..s.toks.len() {
            if s.toks[j].depth == 0 && s.is_punct(j, ',') {
                actions.push(start..j);
                start = j + 1;
            }
        }
        if start < s.toks.len() {
            actions.push(start..s.toks.len());
        }
        Some(AlterTable { table, actions })
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL locking lints

fn concurrently_in_transaction(s: &Stmt<'_>, out: &mut Vec<Finding>) {
    if s.is(0, "refresh") {
        // REFRESH MATERIALIZED VIEW CONCURRENTLY may run inside a transaction.
        return;
    }
    if let Some(tok) = s.toks.iter().find(|t| t.t.is_word("concurrently")) {
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

fn index_without_concurrently(
    s: &Stmt<'_>,
    created: &HashSet<String>,
    no_transaction: bool,
    out: &mut Vec<Finding>,
) {
    if !s.is(0, "create") {
        return;
    }
    let unique = s.is(1, "unique");
    let i = if unique { 2 } else { 1 };
    if !s.is(i, "index") {
        return;
    }
    let Some(on) = s.find_seq(i + 1..s.toks.len(), &["on"]) else {
        return;
    };
    if (i + 1..on).any(|j| s.is(j, "concurrently")) {
        return;
    }
    let Some((table, _)) = s.name_at(s.skip(on + 1, &["only"])) else {
        return;
    };
    if created.contains(&table.key) {
        return;
    }
    let verb = if unique {
        "CREATE UNIQUE INDEX"
    } else {
        "CREATE INDEX"
    };
    let fix = if no_transaction {
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

fn alter_table_locks(s: &Stmt<'_>, created: &HashSet<String>, out: &mut Vec<Finding>) {
    let Some(alter) = AlterTable::parse(s) else {
        return;
    };
    if created.contains(&alter.table.key) {
        return;
    }
    let table = &alter.table.display;
    for action in &alter.actions {
        let a = action.start;
        let line = s.line_at(a);
        if s.is(a, "alter") {
            let c = s.skip(a + 1, &["column"]);
            let Some((column, rest)) = s.name_at(c) else {
                continue;
            };
            let column = column.display;
            if s.is(rest, "type") || s.seq(rest, &["set", "data", "type"]) {
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
            } else if s.seq(rest, &["set", "not", "null"]) {
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
        } else if s.is(a, "add") {
            let mut k = a + 1;
            let mut constraint = "...".to_owned();
            if s.is(k, "constraint") {
                if let Some(name) = s.toks.get(k + 1).filter(|t| is_ident(t)) {
                    constraint = name.t.text.to_owned();
                }
                k += 2;
            }
            let constraint_kind = if s.seq(k, &["foreign", "key"]) {
                Some("FOREIGN KEY")
            } else if s.is(k, "check") {
                Some("CHECK")
            } else {
                None
            };
            let is_column = s.is(a + 1, "column")
                || !s.is_any(
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
                if s.find_seq(action.clone(), &["not", "valid"]).is_none() {
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
                let c = s.skip(s.skip(a + 1, &["column"]), &["if", "not", "exists"]);
                let Some((column, ty)) = s.name_at(c) else {
                    continue;
                };
                let not_null = s.find_seq(action.clone(), &["not", "null"]).is_some();
                let has_default = s.is_any(ty, &SERIAL_TYPES)
                    || s.find_seq(action.clone(), &["default"]).is_some()
                    || s.find_seq(action.clone(), &["generated"]).is_some();
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

// ---------------------------------------------------------------------------------------------
// no-transaction-not-idempotent

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

fn not_idempotent(s: &Stmt<'_>, out: &mut Vec<Finding>) {
    let head = s.first_paren();
    let (verb, guard) = if s.is(0, "create") {
        if s.seq(1, &["or", "replace"]) {
            return;
        }
        ("CREATE", &["if", "not", "exists"][..])
    } else if s.is(0, "drop") {
        ("DROP", &["if", "exists"][..])
    } else {
        return;
    };
    if (0..head).any(|i| s.seq(i, guard)) {
        return;
    }
    let what = s
        .toks
        .iter()
        .take(head)
        .enumerate()
        .take_while(|&(i, t)| i == 0 || OBJECT_KEYWORDS.iter().any(|k| t.t.is_word(k)))
        .map(|(_, t)| t.t.text.to_uppercase())
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

// ---------------------------------------------------------------------------------------------
// batch-statement and batch-placeholder

fn placeholders<'s, 'a>(s: &'s Stmt<'a>) -> impl Iterator<Item = &'s Tok<'a>> {
    s.toks
        .iter()
        .filter(|t| t.t.kind == TokenKind::Param && t.t.text == BATCH_SIZE_PLACEHOLDER)
}

fn batch_placeholder(s: &Stmt<'_>, out: &mut Vec<Finding>) {
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

fn batch_statement(statements: &[Stmt<'_>], out: &mut Vec<Finding>) {
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
    let verb_at = if s.is(0, "with") {
        (1..s.toks.len()).find(|&i| {
            s.toks[i].depth == 0
                && s.is_any(
                    i,
                    &[
                        "select", "insert", "update", "delete", "merge", "values", "table",
                    ],
                )
        })
    } else {
        Some(0)
    };
    let verb = verb_at.filter(|&i| s.is_any(i, &["update", "delete", "insert"]));
    let Some(verb) = verb else {
        let found = verb_at
            .or(Some(0))
            .and_then(|i| s.toks.get(i))
            .map_or_else(String::new, |t| t.t.text.to_uppercase());
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
    let has_where = if s.is(verb, "insert") {
        s.toks.iter().any(|t| t.t.is_word("where"))
    } else {
        s.find_seq(verb..s.toks.len(), &["where"]).is_some()
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

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// One lint case: a script, how it is run, and the exact `(code, line)` findings expected.
    struct Case {
        name: &'static str,
        sql: &'static str,
        dialect: Dialect,
        set: SetKind,
        no_transaction: bool,
        batched: bool,
        want: &'static [(&'static str, usize)],
    }

    /// A PostgreSQL platform migration that runs in a transaction.
    fn pg(name: &'static str, sql: &'static str, want: &'static [(&'static str, usize)]) -> Case {
        Case {
            name,
            sql,
            dialect: Dialect::Postgres,
            set: SetKind::Platform,
            no_transaction: false,
            batched: false,
            want,
        }
    }

    impl Case {
        fn tenant(self) -> Self {
            Case {
                set: SetKind::Tenant,
                ..self
            }
        }
        fn seeds(self) -> Self {
            Case {
                set: SetKind::TenantSeeds,
                ..self
            }
        }
        fn sqlite(self) -> Self {
            Case {
                dialect: Dialect::Sqlite,
                ..self
            }
        }
        fn no_tx(self) -> Self {
            Case {
                no_transaction: true,
                ..self
            }
        }
        fn batched(self) -> Self {
            Case {
                batched: true,
                ..self
            }
        }
        fn input(&self) -> LintInput<'static> {
            LintInput {
                sql: self.sql,
                dialect: self.dialect,
                set: self.set,
                no_transaction: self.no_transaction,
                batched: self.batched,
            }
        }
    }

    const CD: &str = "cross-schema";
    const DE: &str = "destructive";
    const IX: &str = "index-without-concurrently";
    const TY: &str = "column-type-change";
    const NN: &str = "not-null-on-existing-table";
    const CV: &str = "constraint-validation";
    const TC: &str = "transaction-control";
    const CT: &str = "concurrently-in-transaction";
    const NI: &str = "no-transaction-not-idempotent";
    const BS: &str = "batch-statement";
    const BP: &str = "batch-placeholder";

    fn cases() -> Vec<Case> {
        vec![
            // cross-schema
            pg("public qualifier", "SELECT * FROM public.users", &[(CD, 1)]).tenant(),
            pg(
                "public qualifier, seeds",
                "INSERT INTO public.users VALUES (1)",
                &[(CD, 1)],
            )
            .seeds(),
            pg(
                "platform may name public",
                "SELECT * FROM public.users",
                &[],
            ),
            pg(
                "another tenant",
                "SELECT 1;\nINSERT INTO tenant_acme.orders VALUES (1)",
                &[(CD, 2)],
            )
            .tenant(),
            pg(
                "pg_temp",
                "CREATE TABLE pg_temp.scratch (id int)",
                &[(CD, 1)],
            )
            .tenant(),
            pg(
                "quoted qualifier",
                "SELECT \"public\".users.id FROM x",
                &[(CD, 1)],
            )
            .tenant(),
            pg("quoted both", "SELECT * FROM \"Public\".\"T\"", &[(CD, 1)]).tenant(),
            pg(
                "three-part name",
                "SELECT * FROM otherdb.app.users",
                &[(CD, 1)],
            )
            .tenant(),
            pg(
                "a chain is reported once",
                "SELECT * FROM otherdb.public.users",
                &[(CD, 1)],
            )
            .tenant(),
            pg(
                "cast to a type in public",
                "SELECT x::public.mood",
                &[(CD, 1)],
            )
            .tenant(),
            pg(
                "qualified name on a later line of the statement",
                "UPDATE orders o\nSET total = 0\nFROM public.rates r\nWHERE o.id = r.id",
                &[(CD, 3)],
            )
            .tenant(),
            pg(
                "table.column, alias.column, catalogs are fine",
                "SELECT orders.id, o.total, pg_catalog.now(), x::int\nFROM orders o JOIN \
                 information_schema.tables t ON t.table_name = 'public.orders'\nWHERE \
                 pg_catalog.pg_class.relname = o.name",
                &[],
            )
            .tenant(),
            pg(
                "schema names in strings and comments are fine",
                "COMMENT ON TABLE t IS 'copied from public.t and tenant_a.t'; -- public.t\n\
                 /* SET search_path TO public */ SELECT 1",
                &[],
            )
            .tenant(),
            pg("create schema", "CREATE SCHEMA reports", &[(CD, 1)]).tenant(),
            pg(
                "alter schema",
                "ALTER SCHEMA reports RENAME TO r",
                &[(CD, 1)],
            )
            .tenant(),
            pg(
                "drop schema is also destructive",
                "DROP SCHEMA IF EXISTS tenant_b CASCADE",
                &[(CD, 1), (DE, 1)],
            )
            .tenant(),
            pg("set search_path", "SET search_path TO public", &[(CD, 1)]).tenant(),
            pg(
                "set local search_path",
                "SET LOCAL search_path = x",
                &[(CD, 1)],
            )
            .tenant(),
            pg("set schema", "SET SCHEMA 'reports'", &[(CD, 1)]).tenant(),
            pg(
                "set_config",
                "SELECT pg_catalog.set_config('search_path', 'x', true)",
                &[(CD, 1)],
            )
            .tenant(),
            pg("show search_path is fine", "SHOW search_path", &[]).tenant(),
            pg(
                "set_config of another setting is fine",
                "SELECT set_config('app.user', 'x', true)",
                &[],
            )
            .tenant(),
            pg(
                "alter set schema",
                "ALTER TABLE t SET SCHEMA archive",
                &[(CD, 1)],
            )
            .tenant(),
            pg(
                "grant on schema public",
                "GRANT USAGE ON SCHEMA public TO app",
                &[(CD, 1)],
            )
            .tenant(),
            pg(
                "qualified name in a DO body",
                "DO $$\nBEGIN\n  UPDATE public.x SET a = 1;\nEND\n$$",
                &[(CD, 3)],
            )
            .tenant(),
            pg(
                "plain string is opaque",
                "INSERT INTO notes VALUES ('UPDATE public.x SET a = 1')",
                &[],
            )
            .tenant(),
            pg(
                "sqlite attach",
                "ATTACH DATABASE 'other.db' AS other",
                &[(CD, 1)],
            )
            .tenant()
            .sqlite(),
            pg("sqlite detach", "DETACH other", &[(CD, 1)])
                .tenant()
                .sqlite(),
            pg("sqlite main.t is fine", "SELECT * FROM main.t", &[])
                .tenant()
                .sqlite(),
            // destructive
            pg("drop table", "DROP TABLE legacy_flags", &[(DE, 1)]),
            pg(
                "drop table list",
                "DROP TABLE IF EXISTS a, b CASCADE",
                &[(DE, 1)],
            ),
            pg("drop table sqlite", "DROP TABLE legacy_flags", &[(DE, 1)]).sqlite(),
            pg("drop schema", "DROP SCHEMA reports", &[(DE, 1)]),
            pg("drop column", "ALTER TABLE t DROP COLUMN c", &[(DE, 1)]),
            pg(
                "drop without COLUMN",
                "ALTER TABLE t DROP IF EXISTS c",
                &[(DE, 1)],
            ),
            pg(
                "drop column as second action",
                "ALTER TABLE t ADD COLUMN x int,\n  DROP COLUMN y",
                &[(DE, 2)],
            ),
            pg("drop constraint", "ALTER TABLE t DROP CONSTRAINT t_fk", &[]),
            pg(
                "drop default",
                "ALTER TABLE t ALTER COLUMN c DROP DEFAULT",
                &[],
            ),
            pg("drop not null", "ALTER TABLE t ALTER c DROP NOT NULL", &[]),
            pg("drop index", "DROP INDEX idx", &[]),
            pg("truncate", "TRUNCATE TABLE a, b", &[(DE, 1)]),
            pg("delete", "DELETE FROM orders WHERE id = 1", &[(DE, 1)]),
            pg("delete sqlite", "DELETE FROM orders", &[(DE, 1)]).sqlite(),
            pg(
                "delete in a data-modifying WITH",
                "WITH d AS (\n  DELETE FROM a RETURNING *\n) INSERT INTO b SELECT * FROM d",
                &[(DE, 2)],
            ),
            pg(
                "keywords inside a string",
                "COMMENT ON TABLE x IS 'drop table y; delete from z; truncate w'",
                &[],
            ),
            pg(
                "ON DELETE CASCADE",
                "CREATE TABLE c (id int REFERENCES p ON DELETE CASCADE)",
                &[],
            ),
            pg(
                "delete inside a trigger body",
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM u; END",
                &[],
            )
            .sqlite(),
            pg(
                "quoted drop is an identifier",
                "SELECT \"drop\" FROM \"table\"",
                &[],
            ),
            // index-without-concurrently
            pg(
                "index on existing table",
                "CREATE INDEX idx ON reservations (starts_at)",
                &[(IX, 1)],
            ),
            pg(
                "unique index on existing table",
                "\ncreate unique index idx on only t (a)",
                &[(IX, 2)],
            ),
            pg(
                "index on a table created in the same file",
                "CREATE TABLE r (id int);\nCREATE INDEX i ON r (id)",
                &[],
            ),
            pg(
                "index on a table created IF NOT EXISTS",
                "CREATE TABLE IF NOT EXISTS \"R\" (id int);\nCREATE INDEX i ON r (id)",
                &[],
            ),
            pg(
                "concurrent index in a no-transaction file",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
                &[],
            )
            .no_tx(),
            pg("index in sqlite", "CREATE INDEX idx ON t (a)", &[]).sqlite(),
            // column-type-change
            pg(
                "type change",
                "ALTER TABLE t ALTER COLUMN c TYPE bigint",
                &[(TY, 1)],
            ),
            pg(
                "set data type",
                "ALTER TABLE t ALTER c SET DATA TYPE text",
                &[(TY, 1)],
            ),
            pg(
                "type change on a new table",
                "CREATE TABLE t (c int);\nALTER TABLE t ALTER COLUMN c TYPE bigint",
                &[],
            ),
            pg(
                "set default",
                "ALTER TABLE t ALTER COLUMN c SET DEFAULT 0",
                &[],
            ),
            pg(
                "type change sqlite",
                "ALTER TABLE t ALTER COLUMN c TYPE text",
                &[],
            )
            .sqlite(),
            // not-null-on-existing-table
            pg(
                "set not null",
                "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
                &[(NN, 1)],
            ),
            pg(
                "add not null column",
                "ALTER TABLE t ADD COLUMN c int NOT NULL",
                &[(NN, 1)],
            ),
            pg(
                "add not null column without COLUMN",
                "ALTER TABLE IF EXISTS t\n  ADD c int NOT NULL REFERENCES p",
                &[(NN, 2)],
            ),
            pg(
                "add not null column with default",
                "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0",
                &[],
            ),
            pg(
                "add serial column",
                "ALTER TABLE t ADD COLUMN id bigserial NOT NULL",
                &[],
            ),
            pg("add nullable column", "ALTER TABLE t ADD c int", &[]),
            pg(
                "NOT NULL inside a check",
                "ALTER TABLE t ADD COLUMN c int CHECK (c IS NOT NULL)",
                &[],
            ),
            pg(
                "not null on a new table",
                "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN c int NOT NULL",
                &[],
            ),
            pg(
                "not null sqlite",
                "ALTER TABLE t ADD COLUMN c int NOT NULL",
                &[],
            )
            .sqlite(),
            // constraint-validation
            pg(
                "foreign key",
                "ALTER TABLE t ADD CONSTRAINT t_fk FOREIGN KEY (p) REFERENCES p (id)",
                &[(CV, 1)],
            ),
            pg("check", "ALTER TABLE t ADD CHECK (a > 0)", &[(CV, 1)]),
            pg(
                "foreign key NOT VALID",
                "ALTER TABLE t ADD CONSTRAINT t_fk FOREIGN KEY (p) REFERENCES p (id) NOT VALID",
                &[],
            ),
            pg("validate", "ALTER TABLE t VALIDATE CONSTRAINT t_fk", &[]),
            pg(
                "unique constraint",
                "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)",
                &[],
            ),
            pg(
                "check on a new table",
                "CREATE TABLE t (a int);\nALTER TABLE t ADD CHECK (a > 0)",
                &[],
            ),
            // transaction-control
            pg(
                "begin and commit",
                "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;",
                &[(TC, 1), (TC, 3)],
            ),
            pg(
                "other transaction statements",
                "START TRANSACTION;\nSAVEPOINT s;\nRELEASE SAVEPOINT s;\nROLLBACK;\nEND",
                &[(TC, 1), (TC, 2), (TC, 3), (TC, 4), (TC, 5)],
            ),
            pg("sqlite begin immediate", "BEGIN IMMEDIATE", &[(TC, 1)]).sqlite(),
            pg(
                "trigger body BEGIN ... END",
                "CREATE TRIGGER tr AFTER INSERT ON t\nBEGIN\n  UPDATE u SET n = 1;\nEND;",
                &[],
            )
            .sqlite(),
            pg(
                "BEGIN ATOMIC body",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\nEND;",
                &[],
            ),
            // concurrently-in-transaction
            pg(
                "concurrently inside a transaction",
                "CREATE INDEX\n  CONCURRENTLY IF NOT EXISTS i ON t (a)",
                &[(CT, 2)],
            ),
            pg(
                "concurrently in a no-transaction file",
                "DROP INDEX CONCURRENTLY IF EXISTS i",
                &[],
            )
            .no_tx(),
            pg(
                "refresh concurrently may run in a transaction",
                "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
                &[],
            ),
            pg(
                "concurrently in a string",
                "COMMENT ON INDEX i IS 'built concurrently'",
                &[],
            ),
            // no-transaction-not-idempotent
            pg(
                "create without IF NOT EXISTS",
                "CREATE INDEX CONCURRENTLY i ON t (a)",
                &[(NI, 1)],
            )
            .no_tx(),
            pg(
                "drop without IF EXISTS",
                "SELECT 1;\nDROP INDEX CONCURRENTLY i",
                &[(NI, 2)],
            )
            .no_tx(),
            pg(
                "drop table without IF EXISTS",
                "DROP TABLE t",
                &[(DE, 1), (NI, 1)],
            )
            .no_tx(),
            pg(
                "guarded statements",
                "CREATE TABLE IF NOT EXISTS t (id int);\nDROP INDEX IF EXISTS i;\n\
                 CREATE OR REPLACE VIEW v AS SELECT 1;\nUPDATE t SET id = 1 WHERE id = 0",
                &[],
            )
            .no_tx(),
            pg(
                "sqlite no-transaction",
                "CREATE TABLE t (id int)",
                &[(NI, 1)],
            )
            .sqlite()
            .no_tx(),
            pg(
                "create in a transactional file",
                "CREATE TABLE t (id int)",
                &[],
            ),
            // batch-statement
            pg(
                "batched update",
                "-- batch-size: 1000\nUPDATE t SET c = 0\nWHERE id IN (SELECT id FROM t WHERE c \
                 IS NULL LIMIT :batch_size)",
                &[],
            )
            .batched(),
            pg(
                "batched update behind WITH",
                "WITH b AS (SELECT id FROM t WHERE c IS NULL LIMIT :batch_size)\nUPDATE t SET \
                 c = 0 FROM b WHERE t.id = b.id",
                &[],
            )
            .batched(),
            pg(
                "batched insert",
                "INSERT INTO t2 SELECT * FROM t WHERE NOT EXISTS (SELECT 1 FROM t2 WHERE t2.id \
                 = t.id) LIMIT :batch_size",
                &[],
            )
            .batched(),
            pg(
                "batched delete is still destructive",
                "\nDELETE FROM t WHERE id IN (SELECT id FROM t WHERE old LIMIT :batch_size)",
                &[(DE, 2)],
            )
            .batched(),
            pg(
                "two statements",
                "UPDATE t SET c = 0 WHERE id IN (SELECT id FROM t WHERE c IS NULL LIMIT \
                 :batch_size);\nSELECT 1;",
                &[(BS, 2)],
            )
            .batched(),
            pg("not DML", "CREATE TABLE x (id int)", &[(BS, 1)]).batched(),
            pg(
                "WITH ... SELECT",
                "WITH b AS (SELECT 1) SELECT * FROM b WHERE :batch_size > 0",
                &[(BS, 1)],
            )
            .batched(),
            pg(
                "no placeholder",
                "UPDATE t SET c = 0 WHERE c IS NULL",
                &[(BS, 1)],
            )
            .batched(),
            pg(
                "placeholder only in a string and a comment",
                "UPDATE t SET c = ':batch_size' WHERE c IS NULL -- :batch_size",
                &[(BS, 1)],
            )
            .batched(),
            pg(
                "cast is not the placeholder",
                "UPDATE t SET c = 0::batch_size WHERE c IS NULL",
                &[(BS, 1)],
            )
            .batched(),
            pg(
                "update without top-level WHERE",
                "UPDATE t SET c = (SELECT x FROM s WHERE s.id = t.id LIMIT :batch_size)",
                &[(BS, 1)],
            )
            .batched(),
            pg(
                "insert without WHERE",
                "INSERT INTO t SELECT * FROM s LIMIT :batch_size",
                &[(BS, 1)],
            )
            .batched(),
            pg(
                "empty batched file",
                "-- batch-size: 10\n-- nothing here\n",
                &[(BS, 1)],
            )
            .batched(),
            // batch-placeholder
            pg(
                "placeholder in an unbatched file",
                "UPDATE t SET a = 1\nWHERE id < :batch_size",
                &[(BP, 2)],
            ),
            pg(
                "placeholder look-alikes in an unbatched file",
                "SELECT ':batch_size', x::int, y ::batch_size -- :batch_size",
                &[],
            ),
        ]
    }

    #[test]
    fn lint_cases() {
        let mut failures = Vec::new();
        for case in cases() {
            let got: Vec<(&str, usize)> = lint(&case.input())
                .iter()
                .map(|f| (f.code.as_str(), f.line))
                .collect();
            if got != case.want {
                failures.push(format!(
                    "{}: expected {:?}, got {got:?}",
                    case.name, case.want
                ));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn findings_are_ordered_by_line_across_rules() {
        let sql = "-- no-transaction\nBEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\n\
                   DROP TABLE public.old;\nUPDATE t SET a = :batch_size WHERE true;";
        let input = LintInput {
            sql,
            dialect: Dialect::Postgres,
            set: SetKind::Tenant,
            no_transaction: true,
            batched: false,
        };
        let got: Vec<(&str, usize)> = lint(&input)
            .iter()
            .map(|f| (f.code.as_str(), f.line))
            .collect();
        assert_eq!(got, [(TC, 2), (NI, 3), (CD, 4), (DE, 4), (NI, 4), (BP, 5)]);
    }

    #[test]
    fn index_message_is_actionable() {
        let input = LintInput {
            sql: "CREATE INDEX reservations_starts_at ON reservations (starts_at)",
            dialect: Dialect::Postgres,
            set: SetKind::Tenant,
            no_transaction: false,
            batched: false,
        };
        let findings = lint(&input);
        assert_eq!(findings.len(), 1);
        assert_eq!(
            findings[0].message,
            "CREATE INDEX on existing table `reservations` without CONCURRENTLY blocks writes for \
             the whole build: move it to a `-- no-transaction` file and use CREATE INDEX \
             CONCURRENTLY IF NOT EXISTS"
        );
        assert_eq!(findings[0].severity(), Severity::Warning);
    }

    #[test]
    fn messages_name_the_objects() {
        let cases: &[(&str, &str)] = &[
            (
                "DROP TABLE IF EXISTS a, b",
                "DROP TABLE `a` and `b` permanently deletes",
            ),
            (
                "ALTER TABLE orders DROP COLUMN note",
                "ALTER TABLE `orders` DROP COLUMN `note`",
            ),
            (
                "TRUNCATE ONLY events",
                "TRUNCATE `events` deletes every row",
            ),
            (
                "DELETE FROM flags",
                "DELETE FROM `flags` has no WHERE clause",
            ),
            (
                "DELETE FROM flags WHERE a",
                "DELETE FROM `flags` deletes rows",
            ),
            ("DROP TABLE t CASCADE", "CASCADE also removes everything"),
        ];
        for (sql, expected) in cases {
            let findings = destructive_statements(sql, Dialect::Postgres);
            assert_eq!(findings.len(), 1, "{sql}");
            assert!(
                findings[0].message.contains(expected),
                "{sql}: {}",
                findings[0].message
            );
        }
        let alter = lint(&LintInput {
            sql: "ALTER TABLE accounts ALTER COLUMN balance TYPE numeric",
            dialect: Dialect::Postgres,
            set: SetKind::Platform,
            no_transaction: false,
            batched: false,
        });
        assert!(alter[0].message.contains("`accounts.balance`"), "{alter:?}");
        let cross = lint(&LintInput {
            sql: "SELECT * FROM tenant_acme.orders",
            dialect: Dialect::Postgres,
            set: SetKind::Tenant,
            no_transaction: false,
            batched: false,
        });
        assert!(
            cross[0]
                .message
                .starts_with("`tenant_acme.orders` names another tenant's schema `tenant_acme`"),
            "{cross:?}"
        );
    }

    #[test]
    fn idempotency_message_names_the_statement_kind() {
        let findings = lint(&LintInput {
            sql: "DROP INDEX CONCURRENTLY reservations_idx",
            dialect: Dialect::Postgres,
            set: SetKind::Platform,
            no_transaction: true,
            batched: false,
        });
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].message.starts_with(
                "`DROP INDEX CONCURRENTLY` without `IF EXISTS` in a `-- no-transaction` file"
            ),
            "{}",
            findings[0].message
        );
    }

    #[test]
    fn destructive_statements_only_reports_destructive() {
        let sql = "BEGIN;\nCREATE INDEX i ON t (a);\nALTER TABLE t DROP COLUMN a, DROP CONSTRAINT \
                   k;\nSELECT * FROM public.x;\nDELETE FROM t WHERE a;\nCOMMIT;";
        let got: Vec<(LintCode, usize)> = destructive_statements(sql, Dialect::Sqlite)
            .iter()
            .map(|f| (f.code, f.line))
            .collect();
        assert_eq!(
            got,
            [(LintCode::Destructive, 3), (LintCode::Destructive, 5)]
        );
        assert!(
            destructive_statements("DROP INDEX i; UPDATE t SET a = 1", Dialect::Postgres)
                .is_empty()
        );
    }

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
    fn never_panics_on_any_prefix() {
        let sql = "-- batch-size: 5\nALTER TABLE IF EXISTS ONLY t * ADD CONSTRAINT c FOREIGN KEY \
                   (a) REFERENCES p, ALTER COLUMN b SET DATA TYPE int, DROP COLUMN IF EXISTS d;\n\
                   CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY \"public\".t (a);\n\
                   WITH x AS (DELETE FROM ONLY y RETURNING *) UPDATE z SET a = :batch_size \
                   WHERE true; DO $$ SELECT set_config('search_path', 'x'); $$; TRUNCATE TABLE \
                   ONLY a, b; DROP SCHEMA IF EXISTS s; SET SCHEMA 'é'";
        for (end, _) in sql.char_indices().chain([(sql.len(), ' ')]) {
            for dialect in Dialect::ALL {
                for set in SetKind::ALL {
                    for (no_transaction, batched) in
                        [(false, false), (true, false), (false, true), (true, true)]
                    {
                        let input = LintInput {
                            sql: &sql[..end],
                            dialect,
                            set,
                            no_transaction,
                            batched,
                        };
                        for finding in lint(&input) {
                            assert!(finding.line >= 1 && finding.line <= 5, "{finding}");
                        }
                    }
                }
                let _ = destructive_statements(&sql[..end], dialect);
            }
        }
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
