//! A small SQL lexer and statement splitter for migration scripts.
//!
//! This module owns everything the engine needs to know about SQL *syntax*: where a script's
//! statements start and end, which parts of a statement are strings, quoted identifiers, comments
//! or parameters, and whether every string, quoted identifier, dollar quote, block comment and
//! `BEGIN ... END` body is closed. It does not parse SQL; the lints in [`super::lint`] work on the
//! token stream produced here.
//!
//! The lexer is dialect-agnostic: it accepts the union of the PostgreSQL and SQLite lexical forms
//! that matter for splitting (`'...'` with `''`, `E'...'` with backslash escapes, `"..."` and
//! `` `...` `` identifiers, `$tag$...$tag$` dollar quotes, `--` and nested `/* */` comments,
//! SQLite `CREATE TRIGGER ... BEGIN ... END` bodies and PostgreSQL `BEGIN ATOMIC ... END` bodies).
//!
//! Everything here is pure (no I/O, no global state) and never panics on malformed input: an
//! unterminated construct simply runs to the end of the input, and [`check_balanced`] reports it.

use std::borrow::Cow;
use std::fmt;

/// One statement of a script, as returned by [`split_statements`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The statement's text without its terminating `;`, from its first token to the end of its
    /// last token (leading and trailing comments and whitespace are not included; comments
    /// between tokens are kept as written).
    pub text: &'a str,
    /// 1-based line of the input on which the statement's first token starts.
    pub line: usize,
}

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
    /// 1-based line of the lexed input on which the token starts.
    pub line: usize,
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

/// Which construct [`check_balanced`] found unterminated.
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

/// An unterminated construct found by [`check_balanced`]; shown by the engine as a load error.
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
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    /// The first unterminated construct met, if any.
    error: Option<LexError>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_continue(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            line: 1,
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

    fn next_token(&mut self) -> Option<Token<'a>> {
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

/// Quotes a PostgreSQL or SQLite identifier. Names are validated before they get here; quoting
/// is the second line of defence, not the first.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The tokens of `statement` (or of any SQL text), skipping whitespace and comments. Offsets and
/// lines are relative to `statement`. Never panics: an unterminated construct becomes a last
/// token running to the end of the input.
pub fn tokens(statement: &str) -> Vec<Token<'_>> {
    Lexer::new(statement).collect()
}

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

/// Splits a script into its statements on top-level `;`.
///
/// Semicolons inside strings, quoted identifiers, dollar quotes, comments, parentheses, SQLite
/// `CREATE TRIGGER ... BEGIN ... END` bodies and PostgreSQL `BEGIN ATOMIC ... END` bodies do not
/// end a statement (`CASE ... END` inside a body does not end the body). Statements holding only
/// whitespace and comments are dropped. Malformed input never panics: see [`check_balanced`].
pub fn split_statements(sql: &str) -> Vec<Statement<'_>> {
    split(sql).0
}

/// Checks that every string, quoted identifier, dollar quote, block comment and `BEGIN ... END`
/// body in `sql` is closed.
///
/// # Errors
///
/// The first unterminated construct, with the line on which it starts.
pub fn check_balanced(sql: &str) -> Result<(), LexError> {
    match split(sql).1 {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// State of the statement being accumulated by [`split`].
#[derive(Default)]
struct Pending {
    /// Offset and line of the first token.
    start: Option<(usize, usize)>,
    /// End of the last token.
    end: usize,
    /// Words seen so far.
    words: usize,
    /// Every word so far was `CREATE` followed by modifiers that may precede `TRIGGER`.
    create_head: bool,
    /// The statement is a `CREATE ... TRIGGER`, so its `BEGIN` opens a body.
    trigger: bool,
    /// The previous token was the word `BEGIN` (which `ATOMIC` turns into a body).
    after_begin: bool,
    /// Nesting of open `BEGIN ... END` bodies, and the line of the outermost `BEGIN`.
    bodies: usize,
    body_line: usize,
    /// Open `CASE ... END` expressions inside a body.
    cases: usize,
    /// Open parentheses (a `;` inside them, as in a multi-action `CREATE RULE`, does not end
    /// the statement; psql splits the same way).
    parens: usize,
}

/// Words that may stand between `CREATE` and `TRIGGER`.
const TRIGGER_MODIFIERS: [&str; 5] = ["or", "replace", "temp", "temporary", "constraint"];

impl Pending {
    fn feed(&mut self, tok: &Token<'_>) {
        if self.start.is_none() {
            self.start = Some((tok.offset, tok.line));
        }
        self.end = tok.end();
        let after_begin = std::mem::take(&mut self.after_begin);
        if tok.is_punct('(') {
            self.parens += 1;
        } else if tok.is_punct(')') {
            self.parens = self.parens.saturating_sub(1);
        }
        if tok.kind != TokenKind::Word {
            return;
        }
        self.words += 1;
        if self.words == 1 {
            self.create_head = tok.is_word("create");
        } else if self.create_head {
            self.trigger = tok.is_word("trigger");
            self.create_head = TRIGGER_MODIFIERS.iter().any(|m| tok.is_word(m));
        }
        if tok.is_word("begin") {
            if self.trigger && self.bodies == 0 {
                self.open_body(tok.line);
            } else {
                self.after_begin = true;
            }
        } else if after_begin && tok.is_word("atomic") {
            self.open_body(tok.line);
        } else if self.bodies > 0 {
            if tok.is_word("case") {
                self.cases += 1;
            } else if tok.is_word("end") {
                if self.cases > 0 {
                    self.cases -= 1;
                } else {
                    self.bodies -= 1;
                }
            }
        }
    }

    fn open_body(&mut self, line: usize) {
        if self.bodies == 0 {
            self.body_line = line;
        }
        self.bodies += 1;
    }
}

/// Splits `sql` and reports the first unterminated construct.
fn split<'a>(sql: &'a str) -> (Vec<Statement<'a>>, Option<LexError>) {
    let mut lexer = Lexer::new(sql);
    let mut statements = Vec::new();
    let mut pending = Pending::default();
    let finish = |pending: &mut Pending, statements: &mut Vec<Statement<'a>>| {
        let done = std::mem::take(pending);
        if let Some((start, line)) = done.start {
            statements.push(Statement {
                text: &sql[start..done.end],
                line,
            });
        }
    };
    while let Some(tok) = lexer.next_token() {
        if tok.is_punct(';') && pending.bodies == 0 && pending.parens == 0 {
            finish(&mut pending, &mut statements);
        } else {
            pending.feed(&tok);
        }
    }
    let unterminated_body = (pending.bodies > 0).then_some(LexError {
        kind: LexErrorKind::UnterminatedBody,
        line: pending.body_line,
    });
    finish(&mut pending, &mut statements);
    (statements, lexer.error.or(unterminated_body))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("tenant_a"), "\"tenant_a\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    /// Expected statements as `(text, line)`.
    type Expected = &'static [(&'static str, usize)];

    /// `(name, input, expected statements)`.
    const SPLIT_CASES: &[(&str, &str, Expected)] = &[
        ("empty", "", &[]),
        ("whitespace only", "  \n\t\n", &[]),
        (
            "simple",
            "SELECT 1; SELECT 2;",
            &[("SELECT 1", 1), ("SELECT 2", 1)],
        ),
        (
            "no final semicolon",
            "SELECT 1;\nSELECT 2",
            &[("SELECT 1", 1), ("SELECT 2", 2)],
        ),
        (
            "single-quoted string with doubled quotes",
            "INSERT INTO t VALUES ('a;b''c;');SELECT 2",
            &[("INSERT INTO t VALUES ('a;b''c;')", 1), ("SELECT 2", 1)],
        ),
        (
            "standard string keeps backslash literal",
            r"SELECT 'C:\'; SELECT 2",
            &[(r"SELECT 'C:\'", 1), ("SELECT 2", 1)],
        ),
        (
            "E string with backslash escapes",
            r"SELECT E'it\'s; here'; SELECT e'\\'; SELECT 3",
            &[
                (r"SELECT E'it\'s; here'", 1),
                (r"SELECT e'\\'", 1),
                ("SELECT 3", 1),
            ],
        ),
        (
            "prefixed strings",
            "SELECT X'3B', B'101', N'a;b', U&'d;0061'; SELECT 2",
            &[
                ("SELECT X'3B', B'101', N'a;b', U&'d;0061'", 1),
                ("SELECT 2", 1),
            ],
        ),
        (
            "double-quoted identifier with doubled quotes",
            r#"SELECT "a;""b" FROM t; SELECT 2"#,
            &[(r#"SELECT "a;""b" FROM t"#, 1), ("SELECT 2", 1)],
        ),
        (
            "backtick identifier",
            "SELECT `a;b` FROM t; SELECT 2",
            &[("SELECT `a;b` FROM t", 1), ("SELECT 2", 1)],
        ),
        (
            "dollar quote",
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; SELECT 2",
            &[
                (
                    "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql",
                    1,
                ),
                ("SELECT 2", 1),
            ],
        ),
        (
            "tagged dollar quote containing $$ and ;",
            "DO $body$ BEGIN EXECUTE $$x;$$; END $body$;\nSELECT 2",
            &[
                ("DO $body$ BEGIN EXECUTE $$x;$$; END $body$", 1),
                ("SELECT 2", 2),
            ],
        ),
        (
            "$1 is a parameter, not a dollar quote",
            "PREPARE p AS SELECT $1, $2; SELECT 3",
            &[("PREPARE p AS SELECT $1, $2", 1), ("SELECT 3", 1)],
        ),
        (
            "dollar inside a word is not a tag",
            "SELECT a$b$ FROM t; SELECT 2",
            &[("SELECT a$b$ FROM t", 1), ("SELECT 2", 1)],
        ),
        (
            "line comment hides semicolon",
            "SELECT 1 -- not; a split\n, 2; SELECT 3",
            &[("SELECT 1 -- not; a split\n, 2", 1), ("SELECT 3", 2)],
        ),
        (
            "nested block comment hides semicolon",
            "SELECT /* a /* b; */ c; */ 1; SELECT 2",
            &[("SELECT /* a /* b; */ c; */ 1", 1), ("SELECT 2", 1)],
        ),
        (
            "comment-only statements are dropped",
            "-- only a comment\n; ; /* another */ ;\nSELECT 1",
            &[("SELECT 1", 3)],
        ),
        (
            "leading and trailing comments are not part of the text",
            "-- header\n/* note */ SELECT 1 -- trailing\n;",
            &[("SELECT 1", 2)],
        ),
        (
            "line is the first token's line",
            "\n\n-- comment\nSELECT\n  1;\n\n  SELECT 2;",
            &[("SELECT\n  1", 4), ("SELECT 2", 7)],
        ),
        (
            "CRLF line endings",
            "SELECT 1;\r\nSELECT 2;\r\n",
            &[("SELECT 1", 1), ("SELECT 2", 2)],
        ),
        (
            "SQLite trigger body",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE u SET n = n + 1;\n  \
             DELETE FROM v;\nEND;\nSELECT 2",
            &[
                (
                    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE u SET n = n + 1;\n  \
                     DELETE FROM v;\nEND",
                    1,
                ),
                ("SELECT 2", 5),
            ],
        ),
        (
            "SQLite temp trigger with CASE ... END in its body",
            "CREATE TEMP TRIGGER IF NOT EXISTS tr AFTER INSERT ON t BEGIN UPDATE t SET x = \
             CASE WHEN new.a THEN 1 ELSE 2 END; END; SELECT 2",
            &[
                (
                    "CREATE TEMP TRIGGER IF NOT EXISTS tr AFTER INSERT ON t BEGIN UPDATE t SET \
                     x = CASE WHEN new.a THEN 1 ELSE 2 END; END",
                    1,
                ),
                ("SELECT 2", 1),
            ],
        ),
        (
            "PostgreSQL BEGIN ATOMIC body with CASE",
            "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE \
             WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nSELECT 3;",
            &[
                (
                    "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT \
                     CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND",
                    1,
                ),
                ("SELECT 3", 6),
            ],
        ),
        (
            "transaction statements are ordinary statements",
            "BEGIN; SELECT 1; COMMIT; END;",
            &[("BEGIN", 1), ("SELECT 1", 1), ("COMMIT", 1), ("END", 1)],
        ),
        (
            "semicolons inside parentheses (multi-action rule)",
            "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); \
             DELETE FROM b);\nSELECT 2",
            &[
                (
                    "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); \
                     DELETE FROM b)",
                    1,
                ),
                ("SELECT 2", 2),
            ],
        ),
        (
            "a column named trigger does not make a trigger",
            "CREATE TABLE t (trigger text, begin int);\nSELECT 2",
            &[
                ("CREATE TABLE t (trigger text, begin int)", 1),
                ("SELECT 2", 2),
            ],
        ),
        (
            "PostgreSQL constraint trigger has no body",
            "CREATE OR REPLACE CONSTRAINT TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE \
             FUNCTION f(); SELECT 2",
            &[
                (
                    "CREATE OR REPLACE CONSTRAINT TRIGGER tr AFTER INSERT ON t FOR EACH ROW \
                     EXECUTE FUNCTION f()",
                    1,
                ),
                ("SELECT 2", 1),
            ],
        ),
        (
            "CASE outside a body does not matter",
            "SELECT CASE WHEN a THEN 1 END FROM t; SELECT 2",
            &[("SELECT CASE WHEN a THEN 1 END FROM t", 1), ("SELECT 2", 1)],
        ),
        (
            "unterminated string runs to the end",
            "SELECT 1;\nSELECT 'abc; SELECT 2",
            &[("SELECT 1", 1), ("SELECT 'abc; SELECT 2", 2)],
        ),
        (
            "unterminated block comment runs to the end",
            "SELECT 1; /* SELECT 2;",
            &[("SELECT 1", 1)],
        ),
        (
            "non-ASCII text",
            "SELECT 'é;ü', ñandú FROM t; SELECT 2",
            &[("SELECT 'é;ü', ñandú FROM t", 1), ("SELECT 2", 1)],
        ),
    ];

    #[test]
    fn split_statements_cases() {
        for (name, input, expected) in SPLIT_CASES {
            let got: Vec<(&str, usize)> = split_statements(input)
                .iter()
                .map(|s| (s.text, s.line))
                .collect();
            assert_eq!(got, *expected, "case {name:?}");
        }
    }

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
    fn check_balanced_cases() {
        let dollar = |tag: &str| LexErrorKind::UnterminatedDollarQuote {
            tag: tag.to_owned(),
        };
        let cases: Vec<(&str, Option<(LexErrorKind, usize)>)> = vec![
            (
                "SELECT 'a''b', \"c\", $$d$$, $1 /* e /* f */ */; -- 'g",
                None,
            ),
            (
                "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END",
                None,
            ),
            (
                "SELECT 1;\nSELECT 'abc",
                Some((LexErrorKind::UnterminatedString, 2)),
            ),
            (
                "SELECT E'abc\\'",
                Some((LexErrorKind::UnterminatedString, 1)),
            ),
            (
                "\n\nSELECT \"abc",
                Some((LexErrorKind::UnterminatedQuotedIdent, 3)),
            ),
            ("DO $x$ BEGIN\nEND $y$", Some((dollar("$x$"), 1))),
            ("SELECT 1;\nDO $$\n", Some((dollar("$$"), 2))),
            (
                "SELECT 1 /* a /* b */",
                Some((LexErrorKind::UnterminatedBlockComment, 1)),
            ),
            (
                "SELECT 1;\n\nCREATE TRIGGER t AFTER INSERT ON x\nBEGIN\n  SELECT 1;",
                Some((LexErrorKind::UnterminatedBody, 4)),
            ),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\nSELECT 1;",
                Some((LexErrorKind::UnterminatedBody, 2)),
            ),
        ];
        for (sql, expected) in cases {
            let got = check_balanced(sql).err().map(|e| (e.kind, e.line));
            assert_eq!(got, expected, "{sql:?}");
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
