//! How a tenant's data is kept apart from the others' (contract: `TENANT_ISOLATION`).

use std::fmt;
use std::str::FromStr;

/// How tenants are isolated (contract: `TENANT_ISOLATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isolation {
    Schema,
    Database,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Schema => "schema",
            Isolation::Database => "database",
        }
    }
}

impl FromStr for Isolation {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "schema" => Ok(Isolation::Schema),
            "database" => Ok(Isolation::Database),
            other => Err(format!(
                "`{other}` is not an isolation mode: use `schema` or `database`"
            )),
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
