//! `cross-schema`: a tenant-scoped migration runs inside one tenant's schema (or database) and
//! must only touch objects there: no other schema, tenant or database by name, no change of the
//! search path. Function, procedure and `DO` bodies are read too: they run in the tenant's
//! database as well.

use super::FileScope;
use super::findings::{Finding, LintCode};
use super::statement::LintedStatement;
use crate::sql::{self, Tokens};

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

/// `cross-schema`: schema statements, `ATTACH` / `DETACH`, `SET SCHEMA`, a `SCHEMA` clause
/// naming a schema off limits, and [`schema_references`] in the statement and in the bodies of
/// its routines.
pub(super) fn cross_schema(s: &LintedStatement<'_>, _: &FileScope<'_>, out: &mut Vec<Finding>) {
    let toks = &s.tokens;
    let schema_statement =
        toks.is_any_word_at(0, &["create", "alter", "drop"]) && toks.is_word_at(1, "schema");
    if schema_statement {
        let verb = format!("{} SCHEMA", toks[0].text.to_uppercase());
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
    if toks.is_any_word_at(0, &["attach", "detach"]) {
        let verb = toks[0].text.to_uppercase();
        out.push(s.finding(
            LintCode::CrossSchema,
            s.line,
            format!(
                "`{verb}` in a tenant migration opens or closes another database file; \
                 {TENANT_SCOPE}: remove it"
            ),
        ));
    }
    for (i, tok) in toks.iter().enumerate() {
        if tok.is_word("schema") && !schema_statement && i > 0 {
            if toks.is_word_at(i - 1, "set") {
                out.push(s.finding(
                    LintCode::CrossSchema,
                    tok.line,
                    format!(
                        "`SET SCHEMA` in a tenant migration moves an object (or the session) to \
                         another schema; {TENANT_SCOPE}: remove it"
                    ),
                ));
            } else if let Some(name) = toks.get(i + 1).and_then(|t| t.ident())
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
    schema_references(toks, s, out);
    // Bodies of functions, procedures and DO blocks run in the tenant's database too.
    let routine = toks.is_word_at(0, "do")
        || (toks.is_word_at(0, "create")
            && toks.is_any_word_at(
                toks.skip_words(1, &["or", "replace"]),
                &["function", "procedure"],
            ));
    if routine {
        for tok in toks.iter().filter(|t| t.text.starts_with('$')) {
            if let Some(body) = tok.string_value() {
                schema_references(&sql::tokens_from_line(&body, tok.line), s, out);
            }
        }
    }
}

/// Qualified names, `search_path` and `set_config('search_path', ...)` in `toks`.
fn schema_references(toks: &Tokens<'_>, s: &LintedStatement<'_>, out: &mut Vec<Finding>) {
    for (i, tok) in toks.iter().enumerate() {
        let after_dot = i > 0 && toks[i - 1].is_punct('.');
        let parts = if after_dot {
            Vec::new()
        } else {
            toks.dotted_name_at(i)
        };
        if parts.len() >= 2 {
            let written = parts.iter().map(|t| t.text).collect::<Vec<_>>().join(".");
            let qualifier = parts[0].ident().unwrap_or_default();
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
        let prev_show = i > 0 && toks[i - 1].is_word("show");
        if tok.is_word("search_path") && !prev_show {
            out.push(s.finding(
                LintCode::CrossSchema,
                tok.line,
                format!(
                    "`search_path` in a tenant migration: {SEARCH_PATH}; remove it and use \
                     unqualified names"
                ),
            ));
        }
        let set_config = tok.is_word("set_config")
            && toks.get(i + 1).is_some_and(|t| t.is_punct('('))
            && toks
                .get(i + 2)
                .and_then(|t| t.string_value())
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
