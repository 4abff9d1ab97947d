//! A provisioning template: what a migration set builds in a new tenant, as data. The ordered
//! DDL that recreates the tenant's objects (with the tenant's schema and role names as a
//! placeholder), the history rows the migrations would have written, and the fingerprint the
//! result must have. Built once per set from a scratch tenant by the engine
//! ([`crate::Engine::build_template`]), then stamped onto each new tenant in one transaction
//! ([`crate::Engine::instantiate_template`]) instead of replaying every migration.
//!
//! Pure: reading the catalogs and running the DDL belong to the PostgreSQL backend.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::dialect::Dialect;
use crate::fingerprint::{Difference, Fingerprint};
use crate::source::{Direction, MigrationSet};
use crate::sql::quote_ident;
use domain::tenant::TenantSlug;
use domain::version::Version;

/// Stands for the tenant's schema and role in a template's statements: the placeholder
/// [`crate::fingerprint::Names`] puts in place of the scratch tenant's names.
pub const PLACEHOLDER: &str = "<tenant>";

/// What a set is, for templates: the hex SHA-256 of its kind and of each migration's version and
/// up-script checksum. Any added, removed or edited migration gives another identity, and so
/// another template.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetIdentity(String);

impl SetIdentity {
    pub fn of(set: &MigrationSet, dialect: Dialect) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(set.kind.dir_name().as_bytes());
        for migration in &set.migrations {
            hasher.update(migration.version.get().to_be_bytes());
            match migration.script(dialect, Direction::Up) {
                Some(script) => hasher.update(script.checksum.to_hex().as_bytes()),
                None => hasher.update(b"-"),
            }
        }
        SetIdentity(
            hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for names and logs.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for SetIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// One history row a template writes: what the migration path would have recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRow {
    pub version: Version,
    pub description: String,
    pub checksum: String,
}

/// A set's latest version as DDL, history rows and expected fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The set it was built from.
    pub identity: SetIdentity,
    /// Statements in the order they must run, each naming the tenant's schema and role as
    /// [`PLACEHOLDER`].
    pub statements: Vec<String>,
    /// One per applied migration, by version.
    pub history: Vec<TemplateRow>,
    /// What the tenant must look like afterwards: the scratch tenant the migrations built.
    pub fingerprint: Fingerprint,
}

impl Template {
    /// The newest version the template brings a tenant to.
    pub fn version(&self) -> Option<Version> {
        self.history.last().map(|row| row.version)
    }

    /// The statements for the tenant whose schema and role are both named `name`, as one
    /// multi-statement script.
    pub fn script_for(&self, name: &str) -> String {
        let quoted = quote_ident(name);
        let mut script = String::new();
        for statement in &self.statements {
            script.push_str(&statement.replace(PLACEHOLDER, &quoted));
            script.push_str(";\n");
        }
        script
    }
}

/// A set's latest version as a database on the tenant server, for database isolation: new
/// tenant databases are copies of it (`CREATE DATABASE … TEMPLATE`), finished in one
/// transaction. The database and its role are those of the tenant [`DatabaseTemplate::slug`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseTemplate {
    /// The set it was built from.
    pub identity: SetIdentity,
    /// The template's own tenant name: its database and role.
    pub slug: TenantSlug,
    /// One per applied migration, by version: what a copy's history gets.
    pub history: Vec<TemplateRow>,
    /// What a copy must look like once its grants are its tenant's.
    pub fingerprint: Fingerprint,
}

impl DatabaseTemplate {
    /// The tenant name of the template database of `identity` whose objects `owner` owns (the
    /// tenants' owner role; `None`: the connecting user): `template_<hex>`, so its database is
    /// `tenant_template_<hex>`. Owners differ in what the copies' objects belong to, so each
    /// has its own.
    pub fn slug_for(identity: &SetIdentity, owner: Option<&str>) -> TenantSlug {
        let digest =
            Sha256::digest(format!("{}/{}", identity.as_str(), owner.unwrap_or("")).as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        TenantSlug::parse(&format!("template_{hex}"))
            .unwrap_or_else(|e| unreachable!("a template slug is valid: {e}"))
    }

    /// What the template database's comment says once it is built and verified: a database
    /// without it (an interrupted build) is built again.
    pub fn ready_comment(identity: &SetIdentity) -> String {
        format!(
            "tenancy database template v1 of set {}: ready",
            identity.as_str()
        )
    }

    /// The newest version the template brings a tenant to.
    pub fn version(&self) -> Option<Version> {
        self.history.last().map(|row| row.version)
    }
}

/// Why a set has no usable template: the migration path is taken instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The migrations build something a template cannot reproduce (rows, row-level security,
    /// a kind of object it does not read).
    #[error("the tenant set cannot be templated: {0}")]
    Unsupported(String),
    /// The template, applied to a second scratch tenant, does not give the expected schema.
    #[error(
        "the template does not reproduce the schema the migrations build ({} differences: {})",
        differences.len(),
        differences.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    DoesNotVerify { differences: Vec<Difference> },
    /// Building or verifying it failed (the server, a migration, a template statement).
    #[error("building the template failed: {0}")]
    Build(#[source] crate::EngineError),
}

/// What instantiating a template on one tenant did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instantiation {
    /// Committed: the tenant is at the template's version, with its history rows.
    Applied,
    /// The tenant's storage is not empty (a previous attempt, on either path, got somewhere):
    /// nothing was done, the migration path takes it from there.
    NotEmpty,
    /// Another runner holds the tenant's migration lock: nothing was done.
    Busy,
    /// The tenant's fingerprint after the DDL was not the template's: rolled back.
    Mismatch { differences: Vec<Difference> },
    /// The template database could not be copied (it was dropped, or a session on it outlived
    /// PostgreSQL's wait): the tenant's database was created empty instead.
    TemplateUnavailable { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(&str, &str)]) -> MigrationSet {
        MigrationSet::from_files(
            crate::SetKind::Tenant,
            "test",
            files
                .iter()
                .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
                .collect::<Vec<_>>(),
        )
        .expect("a valid set")
    }

    #[test]
    fn a_changed_set_has_another_identity() {
        let one = set(&[("20260101000000_a.up.sql", "CREATE TABLE a (id int);")]);
        let same = set(&[("20260101000000_a.up.sql", "CREATE TABLE a (id int);")]);
        let edited = set(&[("20260101000000_a.up.sql", "CREATE TABLE a (id bigint);")]);
        let added = set(&[
            ("20260101000000_a.up.sql", "CREATE TABLE a (id int);"),
            ("20260102000000_b.up.sql", "CREATE TABLE b (id int);"),
        ]);
        let of = |s: &MigrationSet| SetIdentity::of(s, Dialect::Postgres);
        assert_eq!(of(&one), of(&same));
        assert_ne!(of(&one), of(&edited));
        assert_ne!(of(&one), of(&added));
        assert_eq!(of(&one).short().len(), 12);
    }

    #[test]
    fn a_template_database_is_named_after_its_set_and_owner() {
        let one = set(&[("20260101000000_a.up.sql", "CREATE TABLE a (id int);")]);
        let edited = set(&[("20260101000000_a.up.sql", "CREATE TABLE a (id bigint);")]);
        let (one, edited) = (
            SetIdentity::of(&one, Dialect::Postgres),
            SetIdentity::of(&edited, Dialect::Postgres),
        );
        let name = DatabaseTemplate::slug_for(&one, None);
        assert_eq!(name, DatabaseTemplate::slug_for(&one, None), "stable");
        assert!(name.storage_name().starts_with("tenant_template_"));
        assert_ne!(
            name,
            DatabaseTemplate::slug_for(&edited, None),
            "a changed set"
        );
        assert_ne!(
            name,
            DatabaseTemplate::slug_for(&one, Some("tenancy_tenants")),
            "another owner"
        );
        assert!(DatabaseTemplate::ready_comment(&one).contains(one.as_str()));
        assert_ne!(
            DatabaseTemplate::ready_comment(&one),
            DatabaseTemplate::ready_comment(&edited)
        );
    }

    #[test]
    fn the_script_names_the_tenant_quoted_wherever_the_placeholder_stood() {
        let template = Template {
            identity: SetIdentity("0".repeat(64)),
            statements: vec![
                "CREATE TABLE <tenant>.a (id bigint DEFAULT nextval('<tenant>.a_id_seq'::regclass))"
                    .into(),
                "GRANT SELECT ON TABLE <tenant>.a TO <tenant>".into(),
            ],
            history: Vec::new(),
            fingerprint: Fingerprint::default(),
        };
        assert_eq!(
            template.script_for("tenant_acme"),
            "CREATE TABLE \"tenant_acme\".a (id bigint DEFAULT nextval('\"tenant_acme\".a_id_seq'::regclass));\n\
             GRANT SELECT ON TABLE \"tenant_acme\".a TO \"tenant_acme\";\n"
        );
    }
}
