//! The SQL dialects a migration script is written in: PostgreSQL (production) and SQLite
//! (embedded setups and tests). Which dialect a script is in decides its file name (SQLite
//! variants live under `sqlite/`), which lints apply to it, and which backend runs it.

use std::fmt;

/// SQL dialect a script is written in. PostgreSQL is the production dialect; SQLite is the
/// embedded and test dialect (see `docs/MIGRATION_FORMAT.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub const ALL: [Dialect; 2] = [Dialect::Postgres, Dialect::Sqlite];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
