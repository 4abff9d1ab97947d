//! The lexer: SQL text to [`Token`]s, skipping whitespace and comments, and the first
//! unterminated construct it meets ([`LexError`]).

use std::fmt;

use super::token::{Token, TokenKind, Tokens};

/// Which construct [`check_balanced`](super::check_balanced) found unterminated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LexErrorKind {
    /// A `'...'` (or `E'...'`, `X'...'`, ...) string literal with no closing quote.
    UnterminatedString,
    /// A `"..."` or `` `...` `` quoted identifier with no closing quote.
    UnterminatedQuotedIdent,
    /// A dollar-quoted string with no closing tag; `tag` is the opening tag, e.g. `$body$`.
    UnterminatedDollarQuote {
        /// The opening tag, including both `$`.
        tag: String,
    },
    /// A `/* ... */` comment with no matching `*/` (block comments nest).
    UnterminatedBlockComment,
    /// A `CREATE TRIGGER ... BEGIN` or `BEGIN ATOMIC` body with no matching `END`.
    UnterminatedBody,
}

/// An unterminated construct found by [`check_balanced`](super::check_balanced); shown by the engine as a load error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    /// What is unterminated.
    pub kind: LexErrorKind,
    /// 1-based line on which the unterminated construct starts.
    pub line: usize,
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.line;
        match &self.kind {
            LexErrorKind::UnterminatedString => write!(
                f,
                "unterminated string literal starting on line {line}: the closing `'` is missing \
                 (a quote inside a string is written `''`)"
            ),
            LexErrorKind::UnterminatedQuotedIdent => write!(
                f,
                "unterminated quoted identifier starting on line {line}: the closing quote is \
                 missing (a `\"` inside an identifier is written `\"\"`)"
            ),
            LexErrorKind::UnterminatedDollarQuote { tag } => write!(
                f,
                "unterminated dollar-quoted string starting on line {line}: the closing `{tag}` \
                 is missing"
            ),
            LexErrorKind::UnterminatedBlockComment => write!(
                f,
                "unterminated block comment starting on line {line}: a closing `*/` is missing \
                 (block comments nest, so every `/*` needs its own `*/`)"
            ),
            LexErrorKind::UnterminatedBody => write!(
                f,
                "unterminated BEGIN ... END body starting on line {line}: the closing `END` is \
                 missing, so the rest of the file would be one statement"
            ),
        }
    }
}

impl std::error::Error for LexError {}

/// The lexer: an iterator over the tokens of its input, skipping whitespace and comments.
pub(super) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    /// Parentheses open at `pos`.
    depth: usize,
    /// The first unterminated construct met, if any.
    pub(super) error: Option<LexError>,
}

pub(super) fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

pub(super) fn is_ident_continue(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

impl<'a> Lexer<'a> {
    /// A lexer of `src`, whose first line is line `first_line` of its script.
    pub(super) fn new(src: &'a str, first_line: usize) -> Self {
        Lexer {
            src,
            pos: 0,
            line: first_line,
            depth: 0,
            error: None,
        }
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.src.as_bytes().get(at).copied()
    }

    /// Moves to `end` (clamped to the input), counting the newlines passed.
    fn advance_to(&mut self, end: usize) {
        let end = end.min(self.src.len());
        let passed = &self.src.as_bytes()[self.pos.min(end)..end];
        self.line += passed.iter().filter(|&&b| b == b'\n').count();
        self.pos = end;
    }

    fn fail(&mut self, kind: LexErrorKind, line: usize) {
        if self.error.is_none() {
            self.error = Some(LexError { kind, line });
        }
    }

    /// Position just past the closing `quote` of a quoted run whose content starts at `from`;
    /// doubled quotes are escapes, and so is a backslash when `backslash` is set. `None` when
    /// the input ends first.
    fn scan_quoted(&self, from: usize, quote: u8, backslash: bool) -> Option<usize> {
        let bytes = self.src.as_bytes();
        let mut i = from;
        while i < bytes.len() {
            let b = bytes[i];
            if backslash && b == b'\\' {
                i += 2;
            } else if b == quote {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            } else {
                i += 1;
            }
        }
        None
    }

    /// Position just past the `*/` closing the (nested) block comment opened at `from`.
    fn scan_block_comment(&self, from: usize) -> Option<usize> {
        let bytes = self.src.as_bytes();
        let mut depth = 0usize;
        let mut i = from;
        while i + 1 < bytes.len() {
            match (bytes[i], bytes[i + 1]) {
                (b'/', b'*') => {
                    depth += 1;
                    i += 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => i += 1,
            }
        }
        None
    }

    /// Emits the token `[start, end)` (or to the end of input when `end` is `None`, recording
    /// `unterminated` as the error) and moves past it.
    fn emit(
        &mut self,
        kind: TokenKind,
        start: usize,
        end: Option<usize>,
        unterminated: LexErrorKind,
    ) -> Token<'a> {
        let line = self.line;
        let end = match end {
            Some(end) => end.min(self.src.len()),
            None => {
                self.fail(unterminated, line);
                self.src.len()
            }
        };
        self.advance_to(end);
        Token {
            kind,
            text: &self.src[start..end],
            offset: start,
            line,
            depth: self.depth,
        }
    }

    fn simple(&mut self, kind: TokenKind, start: usize, end: usize) -> Token<'a> {
        let line = self.line;
        self.advance_to(end);
        Token {
            kind,
            text: &self.src[start..self.pos],
            offset: start,
            line,
            depth: self.depth,
        }
    }

    fn scan_number(&self, start: usize) -> usize {
        let bytes = self.src.as_bytes();
        let digits = |mut i: usize| {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                i += 1;
            }
            i
        };
        if bytes[start] == b'0'
            && matches!(
                self.byte(start + 1),
                Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
            )
        {
            let mut i = start + 2;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            return i;
        }
        let mut i = digits(start);
        if self.byte(i) == Some(b'.') && self.byte(i + 1) != Some(b'.') {
            i = digits(i + 1);
        }
        if matches!(self.byte(i), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.byte(i + 1), Some(b'+' | b'-')));
            if self.byte(i + 1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                i = digits(i + 1 + sign);
            }
        }
        i
    }

    /// The next token, with its parenthesis depth.
    pub(super) fn next_token(&mut self) -> Option<Token<'a>> {
        let mut token = self.scan()?;
        if token.is_punct(')') {
            self.depth = self.depth.saturating_sub(1);
            token.depth = self.depth;
        } else if token.is_punct('(') {
            self.depth += 1;
        }
        Some(token)
    }

    /// The next token, its depth being the parentheses open before it.
    fn scan(&mut self) -> Option<Token<'a>> {
        let bytes = self.src.as_bytes();
        loop {
            let mut i = self.pos;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            self.advance_to(i);
            let start = self.pos;
            let b = self.byte(start)?;
            let next = self.byte(start + 1);
            match b {
                b'-' if next == Some(b'-') => {
                    let end = self.src[start..]
                        .find('\n')
                        .map_or(bytes.len(), |n| start + n);
                    self.advance_to(end);
                }
                b'/' if next == Some(b'*') => {
                    let line = self.line;
                    match self.scan_block_comment(start) {
                        Some(end) => self.advance_to(end),
                        None => {
                            self.fail(LexErrorKind::UnterminatedBlockComment, line);
                            self.advance_to(bytes.len());
                        }
                    }
                }
                b'\'' => {
                    let end = self.scan_quoted(start + 1, b'\'', false);
                    return Some(self.emit(
                        TokenKind::Str,
                        start,
                        end,
                        LexErrorKind::UnterminatedString,
                    ));
                }
                b'"' | b'`' => {
                    let end = self.scan_quoted(start + 1, b, false);
                    return Some(self.emit(
                        TokenKind::QuotedIdent,
                        start,
                        end,
                        LexErrorKind::UnterminatedQuotedIdent,
                    ));
                }
                b'$' => return Some(self.dollar(start)),
                b':' if next == Some(b':') => {
                    return Some(self.simple(TokenKind::Op, start, start + 2));
                }
                b':' if next.is_some_and(is_ident_start) => {
                    let mut end = start + 1;
                    while self.byte(end).is_some_and(is_ident_continue) {
                        end += 1;
                    }
                    return Some(self.simple(TokenKind::Param, start, end));
                }
                b'0'..=b'9' => {
                    let end = self.scan_number(start);
                    return Some(self.simple(TokenKind::Number, start, end));
                }
                b'.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                    let end = self.scan_number(start);
                    return Some(self.simple(TokenKind::Number, start, end));
                }
                _ if is_ident_start(b) => return Some(self.word(start)),
                _ => {
                    return Some(self.simple(TokenKind::Punct(char::from(b)), start, start + 1));
                }
            }
        }
    }

    /// A word, or a prefixed string / identifier (`E'...'`, `X'...'`, `U&'...'`, `U&"..."`).
    fn word(&mut self, start: usize) -> Token<'a> {
        let mut end = start + 1;
        while self.byte(end).is_some_and(is_ident_continue) {
            end += 1;
        }
        let word = &self.src[start..end];
        if self.byte(end) == Some(b'\'') {
            if word.eq_ignore_ascii_case("e") {
                let close = self.scan_quoted(end + 1, b'\'', true);
                return self.emit(
                    TokenKind::Str,
                    start,
                    close,
                    LexErrorKind::UnterminatedString,
                );
            }
            if ["b", "x", "n"].iter().any(|p| word.eq_ignore_ascii_case(p)) {
                let close = self.scan_quoted(end + 1, b'\'', false);
                return self.emit(
                    TokenKind::Str,
                    start,
                    close,
                    LexErrorKind::UnterminatedString,
                );
            }
        }
        if word.eq_ignore_ascii_case("u") && self.byte(end) == Some(b'&') {
            match self.byte(end + 1) {
                Some(b'\'') => {
                    let close = self.scan_quoted(end + 2, b'\'', false);
                    return self.emit(
                        TokenKind::Str,
                        start,
                        close,
                        LexErrorKind::UnterminatedString,
                    );
                }
                Some(b'"') => {
                    let close = self.scan_quoted(end + 2, b'"', false);
                    return self.emit(
                        TokenKind::QuotedIdent,
                        start,
                        close,
                        LexErrorKind::UnterminatedQuotedIdent,
                    );
                }
                _ => {}
            }
        }
        self.simple(TokenKind::Word, start, end)
    }

    /// `$1` (a parameter), `$tag$...$tag$` / `$$...$$` (a dollar-quoted string) or a lone `$`.
    fn dollar(&mut self, start: usize) -> Token<'a> {
        if self.byte(start + 1).is_some_and(|b| b.is_ascii_digit()) {
            let mut end = start + 1;
            while self.byte(end).is_some_and(|b| b.is_ascii_digit()) {
                end += 1;
            }
            return self.simple(TokenKind::Param, start, end);
        }
        let mut tag_end = start + 1;
        if self.byte(tag_end).is_some_and(is_ident_start) {
            while self
                .byte(tag_end)
                .is_some_and(|b| is_ident_continue(b) && b != b'$')
            {
                tag_end += 1;
            }
        }
        if self.byte(tag_end) != Some(b'$') {
            return self.simple(TokenKind::Punct('$'), start, start + 1);
        }
        let tag = &self.src[start..=tag_end];
        let body = tag_end + 1;
        let close = self.src[body..].find(tag).map(|i| body + i + tag.len());
        let kind = LexErrorKind::UnterminatedDollarQuote {
            tag: tag.to_owned(),
        };
        self.emit(TokenKind::Str, start, close, kind)
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        self.next_token()
    }
}

/// The tokens of `text` (a statement, or any SQL text), skipping whitespace and comments.
/// Offsets and lines are relative to `text`. Never panics: an unterminated construct becomes a
/// last token running to the end of the input.
pub fn tokens(text: &str) -> Tokens<'_> {
    tokens_from_line(text, 1)
}

/// As [`tokens`], for a text that starts on line `first_line` of its script (a statement, or the
/// body of a function inside one): the tokens' lines are lines of the script; their offsets stay
/// relative to `text`.
pub fn tokens_from_line(text: &str, first_line: usize) -> Tokens<'_> {
    Tokens::new(Lexer::new(text, first_line).collect())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::sql::check_balanced;

    #[test]
    fn tokens_kinds_and_texts() {
        let sql = "SELECT x::int, :batch_size, $1, 'a''b', E'\\'', $t$x;$t$, \"Q\"\"x\", \
                   1.5e3, .5, t.col -- c\n /* d */ ; a[1:2] := ?";
        let got: Vec<(TokenKind, &str)> = tokens(sql).iter().map(|t| (t.kind, t.text)).collect();
        let expected = vec![
            (TokenKind::Word, "SELECT"),
            (TokenKind::Word, "x"),
            (TokenKind::Op, "::"),
            (TokenKind::Word, "int"),
            (TokenKind::Punct(','), ","),
            (TokenKind::Param, ":batch_size"),
            (TokenKind::Punct(','), ","),
            (TokenKind::Param, "$1"),
            (TokenKind::Punct(','), ","),
            (TokenKind::Str, "'a''b'"),
            (TokenKind::Punct(','), ","),
            (TokenKind::Str, "E'\\''"),
            (TokenKind::Punct(','), ","),
            (TokenKind::Str, "$t$x;$t$"),
            (TokenKind::Punct(','), ","),
            (TokenKind::QuotedIdent, "\"Q\"\"x\""),
            (TokenKind::Punct(','), ","),
            (TokenKind::Number, "1.5e3"),
            (TokenKind::Punct(','), ","),
            (TokenKind::Number, ".5"),
            (TokenKind::Punct(','), ","),
            (TokenKind::Word, "t"),
            (TokenKind::Punct('.'), "."),
            (TokenKind::Word, "col"),
            (TokenKind::Punct(';'), ";"),
            (TokenKind::Word, "a"),
            (TokenKind::Punct('['), "["),
            (TokenKind::Number, "1"),
            (TokenKind::Punct(':'), ":"),
            (TokenKind::Number, "2"),
            (TokenKind::Punct(']'), "]"),
            (TokenKind::Punct(':'), ":"),
            (TokenKind::Punct('='), "="),
            (TokenKind::Punct('?'), "?"),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn cast_is_not_a_placeholder() {
        for sql in ["SELECT x::int", "SELECT x ::batch_size", "SELECT '1'::text"] {
            assert!(
                tokens(sql).iter().all(|t| t.kind != TokenKind::Param),
                "{sql:?}"
            );
        }
        let params: Vec<&str> = tokens("SELECT a::int + :n, $12")
            .iter()
            .filter(|t| t.kind == TokenKind::Param)
            .map(|t| t.text)
            .collect();
        assert_eq!(params, [":n", "$12"]);
    }

    #[test]
    fn token_offsets_and_lines() {
        let sql = "SELECT\n  'a\nb' AS x, -- c\n  \"y\"";
        let got: Vec<(&str, usize, usize)> = tokens(sql)
            .iter()
            .map(|t| (t.text, t.offset, t.line))
            .collect();
        assert_eq!(
            got,
            [
                ("SELECT", 0, 1),
                ("'a\nb'", 9, 2),
                ("AS", 15, 3),
                ("x", 18, 3),
                (",", 19, 3),
                ("\"y\"", 28, 4),
            ]
        );
        for t in tokens(sql) {
            assert_eq!(&sql[t.offset..t.end()], t.text);
        }
    }

    #[test]
    fn lex_error_messages_name_the_line() {
        let err = check_balanced("SELECT 1;\n/* open").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unterminated block comment starting on line 2: a closing `*/` is missing (block \
             comments nest, so every `/*` needs its own `*/`)"
        );
        let err = check_balanced("SELECT $tag$ x").unwrap_err();
        assert!(
            err.to_string().contains("the closing `$tag$` is missing"),
            "{err}"
        );
    }
}
