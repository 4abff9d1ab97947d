//! A small SQL lexer and statement splitter for migration scripts.
//!
//! This module owns everything the engine needs to know about SQL *syntax*: where a script's
//! statements start and end, which parts of a statement are strings, quoted identifiers, comments
//! or parameters, and whether every string, quoted identifier, dollar quote, block comment and
//! `BEGIN ... END` body is closed. It does not parse SQL; the lints in [`super::lint`] read the
//! token stream produced here, keyword by keyword, through [`Tokens`].
//!
//! The lexer is dialect-agnostic: it accepts the union of the PostgreSQL and SQLite lexical forms
//! that matter for splitting (`'...'` with `''`, `E'...'` with backslash escapes, `"..."` and
//! `` `...` `` identifiers, `$tag$...$tag$` dollar quotes, `--` and nested `/* */` comments,
//! SQLite `CREATE TRIGGER ... BEGIN ... END` bodies and PostgreSQL `BEGIN ATOMIC ... END` bodies).
//!
//! Everything here is pure (no I/O, no global state) and never panics on malformed input: an
//! unterminated construct simply runs to the end of the input, and [`check_balanced`] reports it.
//!
//! Files: `token.rs` (what a token is, and [`Tokens`]), `lexer.rs` (text to tokens, and what is
//! unterminated), `split.rs` (statements), `params.rs` (named parameters and their binding).

mod lexer;
mod params;
mod split;
mod token;

pub use lexer::{LexError, LexErrorKind, tokens, tokens_from_line};
pub use params::{BATCH_SIZE_PLACEHOLDER, bind_batch_size, named_params, replace_named_params};
pub use split::{Statement, check_balanced, split_statements};
pub use token::{Token, TokenKind, Tokens};

/// Quotes a PostgreSQL or SQLite identifier. Names are validated before they get here; quoting
/// is the second line of defence, not the first.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("tenant_a"), "\"tenant_a\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let sql = "CREATE TRIGGER tr BEGIN SELECT 'é''x', E'\\'', \"q\"\"\", `b`, $t$ü$t$, $1, \
                   :n, x::int /* a /* b */ */ -- c\n; END; BEGIN ATOMIC CASE END; U&'x' X'0' 1e+";
        for (end, _) in sql.char_indices().chain([(sql.len(), ' ')]) {
            let prefix = &sql[..end];
            for statement in split_statements(prefix) {
                assert!(!statement.text.is_empty());
                let _ = tokens(statement.text);
            }
            let _ = check_balanced(prefix);
            for t in tokens(prefix) {
                let _ = (t.ident(), t.string_value());
            }
        }
    }
}
