//! What a token is ([`Token`], [`TokenKind`]) and [`Tokens`], a statement's tokens read keyword
//! by keyword.

use std::borrow::Cow;
use std::ops::{Deref, Range};

/// What kind of token a [`Token`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// An unquoted identifier or keyword (`CREATE`, `users`, `foo$bar`). Compare keywords with
    /// [`Token::is_word`], which is case-insensitive.
    Word,
    /// A quoted identifier: `"..."` (with `""` escapes), `` `...` `` or `U&"..."`. Its name is
    /// [`Token::ident`].
    QuotedIdent,
    /// Any string literal: `'...'`, `E'...'`, `B'...'`, `X'...'`, `N'...'`, `U&'...'` or a
    /// dollar-quoted string (`$$...$$`, `$tag$...$tag$`). Lints treat the content as opaque,
    /// except that `cross-schema` also lexes the dollar-quoted bodies of functions, procedures
    /// and `DO` blocks.
    Str,
    /// A numeric literal (`42`, `1.5e-3`, `.5`, `0x1F`, `1_000`).
    Number,
    /// A single punctuation or operator character (`.`, `,`, `(`, `)`, `;`, `=`, `:`, ...).
    Punct(char),
    /// The `::` cast operator (the only multi-character operator the lexer distinguishes).
    Op,
    /// A parameter or placeholder: a positional `$1` or a named `:name` such as `:batch_size`.
    /// `x::int` is a cast ([`TokenKind::Op`] then a word), never a placeholder.
    Param,
}

/// A token of a statement. Comments and whitespace are never tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// What kind of token this is.
    pub kind: TokenKind,
    /// The token exactly as written in the source, including quotes, prefixes and sigils
    /// (`"Foo"`, `E'a\'b'`, `$tag$body$tag$`, `:batch_size`).
    pub text: &'a str,
    /// Byte offset of the token's first character in the lexed input.
    pub offset: usize,
    /// 1-based line on which the token starts: a line of the lexed text, or of the whole
    /// script for the tokens of a [`Statement`](super::Statement) (see
    /// [`tokens_from_line`](super::tokens_from_line)).
    pub line: usize,
    /// How many parentheses are open around the token. A parenthesis has the depth of its
    /// outside (in `f(a)`, `f`, `(` and `)` are at 0 and `a` at 1); an unmatched `)` never takes
    /// it below 0.
    pub depth: usize,
}

impl<'a> Token<'a> {
    /// Byte offset just past the token's last character.
    pub fn end(&self) -> usize {
        self.offset + self.text.len()
    }

    /// Whether this is the unquoted word `keyword`, compared ASCII case-insensitively.
    pub fn is_word(&self, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    /// Whether this is an identifier: a word (keywords included) or a quoted identifier.
    pub fn is_ident(&self) -> bool {
        matches!(self.kind, TokenKind::Word | TokenKind::QuotedIdent)
    }

    /// Whether this is the punctuation character `c`.
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == TokenKind::Punct(c)
    }

    /// The identifier this token names: a word as written (not case-folded), or the content of
    /// a quoted identifier with its doubled quotes undone. `None` for any other token.
    pub fn ident(&self) -> Option<Cow<'a, str>> {
        match self.kind {
            TokenKind::Word => Some(Cow::Borrowed(self.text)),
            TokenKind::QuotedIdent => {
                let body = self.text.strip_prefix("U&").unwrap_or(self.text);
                let quote = if body.starts_with('`') { '`' } else { '"' };
                let inner = strip_quotes(body, quote);
                Some(undouble(inner, quote))
            }
            _ => None,
        }
    }

    /// The content of a string literal: the text between the quotes with doubled quotes undone
    /// (other escapes, such as backslashes in `E'...'`, are kept as written), or the body of a
    /// dollar-quoted string. `None` for any other token.
    pub fn string_value(&self) -> Option<Cow<'a, str>> {
        if self.kind != TokenKind::Str {
            return None;
        }
        if self.text.starts_with('$') {
            // `$tag$body$tag$`: the tag is everything up to and including the second `$`.
            let tag_len = self.text[1..].find('$').map_or(self.text.len(), |i| i + 2);
            let tag = &self.text[..tag_len.min(self.text.len())];
            let rest = &self.text[tag.len()..];
            let body = rest.strip_suffix(tag).unwrap_or(rest);
            return Some(Cow::Borrowed(body));
        }
        let start = self.text.find('\'').unwrap_or(self.text.len());
        Some(undouble(strip_quotes(&self.text[start..], '\''), '\''))
    }
}

/// Removes the opening quote and, when present, the closing one.
fn strip_quotes(s: &str, quote: char) -> &str {
    let inner = s.strip_prefix(quote).unwrap_or(s);
    if !inner.is_empty() && inner.ends_with(quote) {
        &inner[..inner.len() - quote.len_utf8()]
    } else {
        inner
    }
}

/// Replaces every doubled `quote` by a single one.
fn undouble(s: &str, quote: char) -> Cow<'_, str> {
    let doubled: String = [quote, quote].iter().collect();
    if s.contains(&doubled) {
        Cow::Owned(s.replace(&doubled, &quote.to_string()))
    } else {
        Cow::Borrowed(s)
    }
}

/// The tokens of a statement (or of any SQL text) in order, as [`tokens`](super::tokens) returns
/// them, read keyword by keyword: whether given words follow each other, optional words to skip,
/// dotted names. An index past the end matches nothing, so a rule never has to check bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens<'a>(Vec<Token<'a>>);

impl<'a> Tokens<'a> {
    pub(super) fn new(tokens: Vec<Token<'a>>) -> Self {
        Tokens(tokens)
    }

    /// Whether the token at `i` is the unquoted word `keyword` (ASCII case-insensitive).
    pub fn is_word_at(&self, i: usize, keyword: &str) -> bool {
        self.0.get(i).is_some_and(|t| t.is_word(keyword))
    }

    /// Whether the token at `i` is one of the unquoted words `keywords`.
    pub fn is_any_word_at(&self, i: usize, keywords: &[&str]) -> bool {
        keywords.iter().any(|k| self.is_word_at(i, k))
    }

    /// Whether the token at `i` is the punctuation character `c`.
    pub fn is_punct_at(&self, i: usize, c: char) -> bool {
        self.0.get(i).is_some_and(|t| t.is_punct(c))
    }

    /// Whether the words `keywords` follow each other from `i` (`["if", "not", "exists"]`).
    pub fn has_words_at(&self, i: usize, keywords: &[&str]) -> bool {
        keywords
            .iter()
            .enumerate()
            .all(|(n, k)| self.is_word_at(i + n, k))
    }

    /// `i` moved past `keywords` when they follow each other from `i`, else `i`: skips an
    /// optional clause such as `IF EXISTS`.
    pub fn skip_words(&self, i: usize, keywords: &[&str]) -> usize {
        if self.has_words_at(i, keywords) {
            i + keywords.len()
        } else {
            i
        }
    }

    /// `i` moved past any run of the single words in `keywords` (modifiers such as `TEMP` or
    /// `UNLOGGED`, in any order).
    pub fn skip_any_words(&self, mut i: usize, keywords: &[&str]) -> usize {
        while self.is_any_word_at(i, keywords) {
            i += 1;
        }
        i
    }

    /// The first index in `range` at which `keywords` follow each other, starting outside any
    /// parentheses.
    pub fn find_top_level_words(&self, range: Range<usize>, keywords: &[&str]) -> Option<usize> {
        range.into_iter().find(|&i| {
            self.0.get(i).is_some_and(|t| t.depth == 0) && self.has_words_at(i, keywords)
        })
    }

    /// The identifiers of the dotted name starting at `i` (`a`, `a.b`, `"A".b.c`), in order;
    /// empty when the token at `i` is no identifier.
    pub fn dotted_name_at(&self, i: usize) -> Vec<&Token<'a>> {
        let mut parts = Vec::new();
        let Some(first) = self.0.get(i).filter(|t| t.is_ident()) else {
            return parts;
        };
        parts.push(first);
        let mut j = i + 1;
        while let (Some(dot), Some(next)) = (self.0.get(j), self.0.get(j + 1)) {
            if !dot.is_punct('.') || !next.is_ident() {
                break;
            }
            parts.push(next);
            j += 2;
        }
        parts
    }
}

impl<'a> Deref for Tokens<'a> {
    type Target = [Token<'a>];

    fn deref(&self) -> &[Token<'a>] {
        &self.0
    }
}

impl<'a> IntoIterator for Tokens<'a> {
    type Item = Token<'a>;
    type IntoIter = std::vec::IntoIter<Token<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'t, 'a> IntoIterator for &'t Tokens<'a> {
    type Item = &'t Token<'a>;
    type IntoIter = std::slice::Iter<'t, Token<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use crate::sql::tokens;

    #[test]
    fn keyword_comparison_is_case_insensitive() {
        let toks = tokens("dRoP \"drop\" 'drop'");
        assert!(toks[0].is_word("DROP"));
        assert!(toks[0].is_word("drop"));
        assert!(!toks[1].is_word("drop"));
        assert!(!toks[2].is_word("drop"));
    }

    #[test]
    fn ident_and_string_values() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("users", Some("users"), None),
            ("\"My \"\"T\"\"\"", Some("My \"T\""), None),
            ("`x`", Some("x"), None),
            ("U&\"d\\0061\"", Some("d\\0061"), None),
            ("'it''s'", None, Some("it's")),
            ("E'a\\'b'", None, Some("a\\'b")),
            ("$$ a; b $$", None, Some(" a; b ")),
            ("$fn$body$fn$", None, Some("body")),
            ("'open", None, Some("open")),
            ("42", None, None),
        ];
        for (sql, ident, string) in cases {
            let toks = tokens(sql);
            assert_eq!(toks.len(), 1, "{sql:?}");
            assert_eq!(toks[0].ident().as_deref(), *ident, "{sql:?}");
            assert_eq!(toks[0].string_value().as_deref(), *string, "{sql:?}");
        }
    }

    #[test]
    fn depth_counts_the_parentheses_around_a_token() {
        let got: Vec<(&str, usize)> = tokens("f(a, (b)) ) c (")
            .iter()
            .map(|t| (t.text, t.depth))
            .collect();
        assert_eq!(
            got,
            [
                ("f", 0),
                ("(", 0),
                ("a", 1),
                (",", 1),
                ("(", 1),
                ("b", 2),
                (")", 1),
                (")", 0),
                (")", 0),
                ("c", 0),
                ("(", 0),
            ]
        );
    }

    #[test]
    fn tokens_read_keyword_by_keyword() {
        let toks = tokens("CREATE TEMP UNLOGGED TABLE IF NOT EXISTS s.\"T\" (a int, IF int) ;");
        assert!(toks.is_word_at(0, "create"));
        assert!(
            !toks.is_word_at(99, "create"),
            "past the end matches nothing"
        );
        assert!(toks.is_any_word_at(1, &["unlogged", "temp"]));
        assert_eq!(toks.skip_any_words(1, &["temp", "unlogged"]), 3);
        assert!(toks.has_words_at(4, &["if", "not", "exists"]));
        assert!(!toks.has_words_at(4, &["if", "exists"]));
        assert_eq!(toks.skip_words(4, &["if", "not", "exists"]), 7);
        assert_eq!(toks.skip_words(4, &["if", "exists"]), 4);
        let name: Vec<&str> = toks.dotted_name_at(7).iter().map(|t| t.text).collect();
        assert_eq!(name, ["s", "\"T\""]);
        assert!(toks.dotted_name_at(10).is_empty(), "`(` is no identifier");
        assert!(toks.is_punct_at(10, '('));
        assert_eq!(
            toks.find_top_level_words(5..toks.len(), &["if"]),
            None,
            "the IF inside the parentheses is not at the top level"
        );
        assert_eq!(toks.find_top_level_words(0..toks.len(), &["if"]), Some(4));
    }
}
