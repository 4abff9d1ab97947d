//! Small vocabulary types shared by every part of the engine.

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

/// Which migration set a migration belongs to. The set decides where it runs (the platform
/// database or each tenant) and which lints apply (a tenant set never names another schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetKind {
    Platform,
    Tenant,
    TenantSeeds,
}

impl SetKind {
    pub const ALL: [SetKind; 3] = [SetKind::Platform, SetKind::Tenant, SetKind::TenantSeeds];

    /// Directory name under `migrations/`, also the value of the history table's `migration_set`.
    pub fn dir_name(self) -> &'static str {
        match self {
            SetKind::Platform => "platform",
            SetKind::Tenant => "tenant",
            SetKind::TenantSeeds => "tenant-seeds",
        }
    }

    /// Whether the set runs inside a tenant's schema or database.
    pub fn is_tenant_scoped(self) -> bool {
        matches!(self, SetKind::Tenant | SetKind::TenantSeeds)
    }
}

impl fmt::Display for SetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.dir_name())
    }
}

/// Direction a script runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
