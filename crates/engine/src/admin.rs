//! The admin-user script of the tenant-seeds set (`admin_user.sql`): what the provisioner's
//! `admin_user` step runs in every new tenant to invite its administrator. It lives in the set
//! because only the set knows the shape of its `users` table.
//!
//! The file names its inputs with named parameters (`:admin_email`, …: see [`Param`]). Each
//! statement is rewritten once, when the set loads, with the positional parameters of its
//! dialect (`$1` for PostgreSQL, `?1` for SQLite), and the values are sent as bind parameters:
//! they are never written into the SQL. The lexer of [`super::sql`] finds the parameters, so a
//! `::text` cast, a string, a quoted identifier or a comment is never taken for one.
//!
//! Parsing is pure; [`crate::Engine::run_admin_user`] runs a script. The format is
//! specified in `docs/MIGRATION_FORMAT.md`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

use super::backend::BindValue;
use super::dialect::Dialect;
use super::directives::{self, Directives};
use super::source::Checksum;
use super::sql::{self, TokenKind};

/// The script's file name, in the tenant-seeds set's directory (and, for SQLite, in its
/// `sqlite/` sub-directory).
pub const ADMIN_USER_FILE: &str = "admin_user.sql";

/// A named parameter of the admin-user script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Param {
    /// `:admin_email` (text): the administrator's email as registered, not lower-cased.
    AdminEmail,
    /// `:admin_name` (text): the administrator's name.
    AdminName,
    /// `:tenant_id` (PostgreSQL `uuid`, SQLite text): the tenant's id.
    TenantId,
    /// `:tenant_slug` (text): the tenant's slug.
    TenantSlug,
    /// `:tenant_name` (text): the tenant's (the condominium's) name.
    TenantName,
}

impl Param {
    pub const ALL: [Param; 5] = [
        Param::AdminEmail,
        Param::AdminName,
        Param::TenantId,
        Param::TenantSlug,
        Param::TenantName,
    ];

    /// The name as written in the file, without the colon.
    pub fn name(self) -> &'static str {
        match self {
            Param::AdminEmail => "admin_email",
            Param::AdminName => "admin_name",
            Param::TenantId => "tenant_id",
            Param::TenantSlug => "tenant_slug",
            Param::TenantName => "tenant_name",
        }
    }

    pub fn from_name(name: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.name() == name)
    }

    /// `:admin_email, :admin_name, …`, for messages.
    pub fn known() -> String {
        Param::ALL
            .iter()
            .map(|p| format!(":{}", p.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ":{}", self.name())
    }
}

/// What the parameters stand for in one run. `Debug` shows the tenant, never the administrator.
#[derive(Clone, Copy)]
pub struct AdminValues<'a> {
    pub tenant_id: Uuid,
    pub tenant_slug: &'a str,
    pub tenant_name: &'a str,
    pub admin_email: &'a str,
    pub admin_name: &'a str,
}

impl<'a> AdminValues<'a> {
    /// The value bound to `param`.
    pub fn get(&self, param: Param) -> BindValue<'a> {
        match param {
            Param::AdminEmail => BindValue::Text(self.admin_email),
            Param::AdminName => BindValue::Text(self.admin_name),
            Param::TenantId => BindValue::Uuid(self.tenant_id),
            Param::TenantSlug => BindValue::Text(self.tenant_slug),
            Param::TenantName => BindValue::Text(self.tenant_name),
        }
    }
}

impl fmt::Debug for AdminValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminValues")
            .field("tenant_id", &self.tenant_id)
            .field("tenant_slug", &self.tenant_slug)
            .finish_non_exhaustive()
    }
}

/// One statement of the script, its named parameters replaced by positional ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminStatement {
    /// The statement as sent: `$n` (PostgreSQL) or `?n` (SQLite) where the file had a name.
    pub sql: String,
    /// What the n-th positional parameter stands for (a name used twice is one parameter).
    pub params: Vec<Param>,
    /// 1-based line of the file on which the statement starts.
    pub line: usize,
}

/// A loaded `admin_user.sql` of one dialect.
#[derive(Debug, Clone)]
pub struct AdminUserScript {
    /// Path relative to the set's directory (`admin_user.sql`, `sqlite/admin_user.sql`).
    pub file: String,
    pub dialect: Dialect,
    /// The file as written.
    pub sql: Arc<str>,
    pub checksum: Checksum,
    /// Only `lock-timeout` and `statement-timeout` apply.
    pub directives: Directives,
    /// Empty when the file holds only comments: the tenants get no administrator.
    pub statements: Vec<AdminStatement>,
}

/// Why an admin-user script cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct AdminScriptError {
    pub line: usize,
    pub message: String,
}

/// The tenant-seeds set has no admin-user script (for a dialect).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{origin} has no {file}: the provisioner runs it in every new tenant to invite the administrator, and only the set knows its users table. Add {origin}/{file} (see docs/MIGRATION_FORMAT.md, \"The admin-user script\"); if your tenants have no administrator, a file holding only a comment that says so"
)]
pub struct MissingAdminUser {
    /// The set's origin (its directory, or `built-in tenant-seeds`).
    pub origin: String,
    /// `admin_user.sql` or `sqlite/admin_user.sql`.
    pub file: String,
}

impl MissingAdminUser {
    pub fn new(origin: &str, dialect: Dialect) -> Self {
        let file = match dialect {
            Dialect::Postgres => ADMIN_USER_FILE.to_owned(),
            Dialect::Sqlite => format!("sqlite/{ADMIN_USER_FILE}"),
        };
        MissingAdminUser {
            origin: origin.to_owned(),
            file,
        }
    }
}

impl AdminUserScript {
    /// Parses the script `file` written in `dialect`. Pure.
    ///
    /// # Errors
    /// An unknown named parameter (the message lists the known ones), a positional parameter, a
    /// directive that does not apply (`no-transaction`, `batch-size`, `irreversible`: the script
    /// always runs as one transaction), a malformed directive, or unterminated SQL.
    pub fn parse(
        file: impl Into<String>,
        dialect: Dialect,
        text: &str,
    ) -> Result<Self, AdminScriptError> {
        let directives = directives::parse(text).map_err(|e| AdminScriptError {
            line: e.line,
            message: e.message,
        })?;
        for (applies, name) in [
            (directives.no_transaction, "no-transaction"),
            (directives.batch_size.is_some(), "batch-size"),
            (directives.irreversible.is_some(), "irreversible"),
        ] {
            if applies {
                return Err(AdminScriptError {
                    line: directive_line(text, name),
                    message: format!(
                        "`-- {name}` does not apply to {ADMIN_USER_FILE}: it always runs as one transaction (only lock-timeout and statement-timeout may be given)"
                    ),
                });
            }
        }
        sql::check_balanced(text).map_err(|e| AdminScriptError {
            line: e.line,
            message: e.to_string(),
        })?;

        let mut statements = Vec::new();
        for statement in sql::split_statements(text) {
            let mut params: Vec<Param> = Vec::new();
            for token in statement.tokens() {
                let positional = match token.kind {
                    TokenKind::Param => token.text.starts_with('$'),
                    // `?` is a positional parameter in SQLite (and an operator in PostgreSQL).
                    TokenKind::Punct('?') => dialect == Dialect::Sqlite,
                    _ => false,
                };
                if positional {
                    return Err(AdminScriptError {
                        line: token.line,
                        message: format!(
                            "positional parameter `{}`: use the named parameters, which are {}",
                            token.text,
                            Param::known()
                        ),
                    });
                }
                if token.kind != TokenKind::Param {
                    continue;
                }
                let name = &token.text[1..];
                let Some(param) = Param::from_name(name) else {
                    return Err(AdminScriptError {
                        line: token.line,
                        message: format!(
                            "unknown parameter `:{name}`: the known parameters are {}",
                            Param::known()
                        ),
                    });
                };
                if !params.contains(&param) {
                    params.push(param);
                }
            }
            let sigil = match dialect {
                Dialect::Postgres => '$',
                Dialect::Sqlite => '?',
            };
            let sql = sql::replace_named_params(statement.text, |name| {
                let param = Param::from_name(name)?;
                let index = params.iter().position(|p| *p == param)?;
                Some(format!("{sigil}{}", index + 1))
            });
            statements.push(AdminStatement {
                sql,
                params,
                line: statement.line,
            });
        }

        Ok(AdminUserScript {
            file: file.into(),
            dialect,
            checksum: Checksum::of(text),
            sql: text.into(),
            directives,
            statements,
        })
    }

    /// The parameters the script uses.
    pub fn params(&self) -> BTreeSet<Param> {
        self.statements
            .iter()
            .flat_map(|s| s.params.iter().copied())
            .collect()
    }
}

/// The line of the header directive `name`, for messages (1 if it cannot be found).
fn directive_line(text: &str, name: &str) -> usize {
    text.lines()
        .position(|line| {
            line.trim()
                .strip_prefix("--")
                .is_some_and(|rest| rest.trim_start().starts_with(name))
        })
        .map_or(1, |index| index + 1)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn parse(dialect: Dialect, text: &str) -> Result<AdminUserScript, AdminScriptError> {
        AdminUserScript::parse(ADMIN_USER_FILE, dialect, text)
    }

    #[test]
    fn named_parameters_become_positional_ones_numbered_by_first_use() {
        let script = parse(
            Dialect::Postgres,
            "-- Invites the administrator.\n-- lock-timeout: 2s\n\
             INSERT INTO users (email, full_name, tenant, note)\n\
             VALUES (lower(:admin_email), :admin_name, :tenant_id::uuid, :admin_email || '@' || :tenant_slug)\n\
             ON CONFLICT (email) DO NOTHING;\n\
             UPDATE settings SET value = :tenant_name WHERE key = 'name';\n",
        )
        .unwrap();
        assert_eq!(
            script.directives.lock_timeout,
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(
            script.statements,
            [
                AdminStatement {
                    sql: "INSERT INTO users (email, full_name, tenant, note)\n\
                          VALUES (lower($1), $2, $3::uuid, $1 || '@' || $4)\n\
                          ON CONFLICT (email) DO NOTHING"
                        .to_owned(),
                    params: vec![
                        Param::AdminEmail,
                        Param::AdminName,
                        Param::TenantId,
                        Param::TenantSlug
                    ],
                    line: 3,
                },
                AdminStatement {
                    sql: "UPDATE settings SET value = $1 WHERE key = 'name'".to_owned(),
                    params: vec![Param::TenantName],
                    line: 6,
                },
            ]
        );
        assert_eq!(script.params().len(), 5);

        let sqlite = parse(
            Dialect::Sqlite,
            "INSERT INTO users (email, full_name) VALUES (lower(:admin_email), :admin_name);",
        )
        .unwrap();
        assert_eq!(
            sqlite.statements[0].sql,
            "INSERT INTO users (email, full_name) VALUES (lower(?1), ?2)"
        );
    }

    #[test]
    fn casts_strings_identifiers_and_comments_are_not_parameters() {
        let script = parse(
            Dialect::Postgres,
            "-- :not_a_parameter in a comment\n\
             INSERT INTO \":odd\" (a, b, c, d) VALUES (\n\
               :tenant_slug::text, -- :nor_here\n\
               ':nor_in_a_string', E'\\':nor_here', /* :nor_here */ $$:nor_in_dollars$$\n\
             )::record::text;",
        )
        .unwrap();
        assert_eq!(script.statements.len(), 1);
        assert_eq!(script.statements[0].params, [Param::TenantSlug]);
        assert!(script.statements[0].sql.contains("$1::text"));
        assert!(script.statements[0].sql.contains("':nor_in_a_string'"));
        assert!(script.statements[0].sql.contains("\":odd\""));
    }

    #[test]
    fn an_unknown_parameter_is_refused_with_its_name_line_and_the_known_ones() {
        let err = parse(
            Dialect::Postgres,
            "INSERT INTO users (email)\nVALUES (:admin_mail);",
        )
        .unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("`:admin_mail`"), "{err}");
        assert!(
            err.message
                .contains(":admin_email, :admin_name, :tenant_id, :tenant_slug, :tenant_name"),
            "{err}"
        );
        // The placeholder of batched migrations is not a parameter here.
        assert!(parse(Dialect::Postgres, "SELECT :batch_size;").is_err());
    }

    #[test]
    fn positional_parameters_and_migration_only_directives_are_refused() {
        for (dialect, text, line) in [
            (
                Dialect::Postgres,
                "INSERT INTO users (email) VALUES ($1);",
                1,
            ),
            (Dialect::Sqlite, "INSERT INTO users (email)\nVALUES (?);", 2),
            (Dialect::Postgres, "-- no-transaction\nSELECT 1;", 1),
            (
                Dialect::Postgres,
                "-- Note.\n-- batch-size: 5\nSELECT 1;",
                2,
            ),
            (Dialect::Postgres, "-- irreversible: no\nSELECT 1;", 1),
            (Dialect::Postgres, "-- lock-timeout: soon\nSELECT 1;", 1),
            (Dialect::Postgres, "SELECT 'open;", 1),
        ] {
            let err = parse(dialect, text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
        // `?` is an operator in PostgreSQL (`jsonb ? key`), not a parameter.
        assert!(parse(Dialect::Postgres, "SELECT '{}'::jsonb ? 'a';").is_ok());
    }

    #[test]
    fn a_file_of_comments_only_invites_nobody() {
        let script = parse(
            Dialect::Postgres,
            "-- Our tenants have no administrator: accounts come from the SSO.\n",
        )
        .unwrap();
        assert!(script.statements.is_empty());
    }

    #[test]
    fn values_never_show_the_administrator_in_debug() {
        let values = AdminValues {
            tenant_id: Uuid::nil(),
            tenant_slug: "acme",
            tenant_name: "Acme Towers",
            admin_email: "ana@acme.example",
            admin_name: "Ana Lima",
        };
        let shown = format!("{values:?} {:?}", values.get(Param::AdminEmail));
        assert!(!shown.contains("ana@") && !shown.contains("Ana"), "{shown}");
        assert_eq!(values.get(Param::TenantSlug), BindValue::Text("acme"));
    }
}
