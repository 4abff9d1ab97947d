//! Splitting a script into its statements, and checking that nothing in it is left open.

use super::lexer::{LexError, LexErrorKind, Lexer, tokens_from_line};
use super::token::{Token, TokenKind, Tokens};

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

impl<'a> Statement<'a> {
    /// The statement's tokens, with lines of the script (offsets stay relative to
    /// [`Statement::text`]).
    pub fn tokens(&self) -> Tokens<'a> {
        tokens_from_line(self.text, self.line)
    }
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
    let mut lexer = Lexer::new(sql, 1);
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
        // A `;` inside parentheses (a multi-action `CREATE RULE`) does not end the statement;
        // psql splits the same way.
        if tok.is_punct(';') && pending.bodies == 0 && tok.depth == 0 {
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
    use super::*;

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
}
