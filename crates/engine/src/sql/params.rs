//! Named parameters (`:name`): finding them as tokens and binding them, for the batch size of
//! a batched migration and the admin-user script's values.

use super::lexer::{is_ident_continue, tokens};
use super::token::{Token, TokenKind};

/// The placeholder a `-- batch-size: n` file uses for the batch size.
pub const BATCH_SIZE_PLACEHOLDER: &str = ":batch_size";

/// `statement` with every [`BATCH_SIZE_PLACEHOLDER`] token replaced by `batch_size`.
///
/// Only the placeholder as a token is replaced: not inside strings, quoted identifiers or
/// comments, not the cast `x::batch_size`, not a longer name such as `:batch_sizes`. When the
/// placeholder directly follows a word or number (`a[1:batch_size]`) a space is put before the
/// number so the two never merge into one token.
pub fn bind_batch_size(statement: &str, batch_size: u32) -> String {
    let value = batch_size.to_string();
    replace_named_params(statement, |name| {
        (BATCH_SIZE_PLACEHOLDER.strip_prefix(':') == Some(name)).then(|| value.clone())
    })
}

/// The named parameters (`:name`) of `sql` as tokens, in order: never inside strings, quoted
/// identifiers or comments, never the cast `x::name`. Positional `$1` parameters are not named.
pub fn named_params(sql: &str) -> Vec<Token<'_>> {
    tokens(sql)
        .into_iter()
        .filter(|tok| tok.kind == TokenKind::Param && tok.text.starts_with(':'))
        .collect()
}

/// `statement` with each named parameter (`:name`) for which `replace(name)` (the name without
/// its colon) gives a text replaced by that text; other parameters stay as written.
///
/// Only parameter tokens are replaced (see [`named_params`]). When a parameter directly
/// follows a word or number (`a[1:n]`) a space is put before the replacement so the two never
/// merge into one token. Newlines are kept, so lines of the result are lines of the input.
pub fn replace_named_params(
    statement: &str,
    mut replace: impl FnMut(&str) -> Option<String>,
) -> String {
    let mut replaced = String::with_capacity(statement.len());
    let mut copied = 0;
    for tok in named_params(statement) {
        let Some(value) = replace(&tok.text[1..]) else {
            continue;
        };
        replaced.push_str(&statement[copied..tok.offset]);
        let glued = statement[..tok.offset]
            .bytes()
            .next_back()
            .is_some_and(is_ident_continue);
        if glued {
            replaced.push(' ');
        }
        replaced.push_str(&value);
        copied = tok.end();
    }
    replaced.push_str(&statement[copied..]);
    replaced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_batch_size_replaces_only_the_placeholder() {
        let cases: &[(&str, &str)] = &[
            (
                "UPDATE t SET a = 1 WHERE id IN (SELECT id FROM t LIMIT :batch_size)",
                "UPDATE t SET a = 1 WHERE id IN (SELECT id FROM t LIMIT 500)",
            ),
            (
                "SELECT :batch_size, ':batch_size', \":batch_size\" -- :batch_size\n, \
                 /* :batch_size */ $$:batch_size$$, x::batch_size, :batch_sizes, :batch_size",
                "SELECT 500, ':batch_size', \":batch_size\" -- :batch_size\n, \
                 /* :batch_size */ $$:batch_size$$, x::batch_size, :batch_sizes, 500",
            ),
            ("SELECT a[1:batch_size]", "SELECT a[1 500]"),
            ("SELECT 1", "SELECT 1"),
            ("", ""),
        ];
        for (sql, expected) in cases {
            assert_eq!(bind_batch_size(sql, 500), *expected, "{sql:?}");
        }
    }

    #[test]
    fn named_params_skip_casts_strings_identifiers_and_comments() {
        let sql = "SELECT :a, ':b', \":c\", x::d, $$:e$$, E'\\':f', -- :g\n /* :h */ \
                   :i::text, $1, a[1:j], :a";
        let names: Vec<(&str, usize)> =
            named_params(sql).iter().map(|t| (t.text, t.line)).collect();
        assert_eq!(names, [(":a", 1), (":i", 2), (":j", 2), (":a", 2)]);
    }

    #[test]
    fn replace_named_params_numbers_only_what_it_is_asked_to() {
        let sql = "INSERT INTO t VALUES (lower(:email), :name::text, ':email', 1:email)\n-- :email";
        let replaced = replace_named_params(sql, |name| match name {
            "email" => Some("$1".to_owned()),
            _ => None,
        });
        assert_eq!(
            replaced,
            "INSERT INTO t VALUES (lower($1), :name::text, ':email', 1 $1)\n-- :email"
        );
    }
}
