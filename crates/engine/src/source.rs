//! Migration sets: which set a migration belongs to ([`SetKind`]), loading versioned up/down
//! files (from a directory or from the set built into the binary), which way a script runs
//! ([`Direction`]), their checksums, directives and approvals, the set's settings file and, in
//! the tenant-seeds set, its admin-user script.
//!
//! Parsing is pure ([`MigrationSet::from_files`]); only [`MigrationSet::load_dir`] reads the
//! file system. Nothing here talks to a database.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::admin::{ADMIN_USER_FILE, AdminUserScript, MissingAdminUser};
use super::dialect::Dialect;
use super::directives::{self, Directives};
use super::settings::{self, SETTINGS_FILE, SetSettings};
use super::sql;
use domain::version::Version;

/// SHA-256 of a script, with CRLF normalised to LF so a checkout on Windows does not look like
/// an edited file.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checksum([u8; 32]);

impl Checksum {
    pub fn of(text: &str) -> Self {
        let mut hasher = Sha256::new();
        let mut rest = text;
        while let Some(at) = rest.find("\r\n") {
            hasher.update(&rest.as_bytes()[..at]);
            hasher.update(b"\n");
            rest = &rest[at + 2..];
        }
        hasher.update(rest.as_bytes());
        Checksum(hasher.finalize().into())
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first 12 hex digits, enough to tell files apart in messages.
    pub fn short(self) -> String {
        self.to_hex()[..12].to_owned()
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.short())
    }
}

/// Which of a migration's two scripts runs: up (apply) or down (revert). `Up` sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// One SQL file.
#[derive(Debug, Clone)]
pub struct Script {
    /// Path relative to the set's directory, for messages (`sqlite/2026…_users.up.sql`).
    pub file: String,
    pub sql: Arc<str>,
    pub checksum: Checksum,
    pub directives: Directives,
}

/// The files of one version, by dialect and direction.
type Scripts = BTreeMap<(Dialect, Direction), Script>;

/// One version of a set: its up script and, unless irreversible, its down script, per dialect.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: Version,
    pub description: String,
    scripts: Scripts,
}

impl Migration {
    /// The script for `dialect` in `direction`, if the set has that file.
    pub fn script(&self, dialect: Dialect, direction: Direction) -> Option<&Script> {
        self.scripts.get(&(dialect, direction))
    }

    /// The PostgreSQL up file, which is authoritative for reversibility and approvals.
    pub fn primary(&self) -> &Script {
        // `from_files` refuses a version without a PostgreSQL up file.
        self.scripts
            .get(&(Dialect::Postgres, Direction::Up))
            .or_else(|| self.scripts.values().next())
            .expect("a loaded migration always has a PostgreSQL up script")
    }

    /// Why this migration cannot be rolled back, if it cannot: an `-- irreversible` marker, or
    /// no down file.
    pub fn irreversible_reason(&self, dialect: Dialect) -> Option<String> {
        if let Some(reason) = &self.primary().directives.irreversible {
            return Some(reason.clone());
        }
        if self.script(dialect, Direction::Down).is_none() {
            return Some(format!(
                "{} has no down file and no `-- irreversible` marker",
                self.primary().file
            ));
        }
        None
    }

    /// The file name this migration has in `dialect` (for messages when the file is missing).
    pub fn file_name(&self, dialect: Dialect, direction: Direction) -> String {
        let prefix = match dialect {
            Dialect::Postgres => "",
            Dialect::Sqlite => "sqlite/",
        };
        format!(
            "{prefix}{}_{}.{direction}.sql",
            self.version, self.description
        )
    }
}

/// An approval of a destructive migration, from the set's `approvals.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub version: Version,
    /// Checksum of the PostgreSQL up file when it was approved: an edit voids the approval.
    pub checksum: String,
    pub approver: String,
    pub reason: String,
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

/// Everything in one set directory.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    pub kind: SetKind,
    /// Where it was loaded from (`built-in` or a directory), for messages.
    pub origin: String,
    /// Sorted by version.
    pub migrations: Vec<Migration>,
    pub approvals: Vec<Approval>,
    /// From the set's `settings.conf`, else the defaults.
    pub settings: SetSettings,
    /// Whether the set has a `settings.conf` (its settings are not only the defaults).
    pub has_settings_file: bool,
    /// The tenant-seeds set's `admin_user.sql`, per dialect (empty in the other sets).
    admin_user: BTreeMap<Dialect, AdminUserScript>,
}

/// Why a set could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("cannot read migrations from {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}/{file}: {message}")]
    File {
        origin: String,
        file: String,
        message: String,
    },
}

/// Longest description in a migration file name: it is stored in every history table.
pub const DESCRIPTION_MAX: usize = 100;

/// The name of the approvals file in a set directory.
pub const APPROVALS_FILE: &str = "approvals.txt";

impl MigrationSet {
    /// Parses a set from `(relative path, contents)` pairs. Pure.
    ///
    /// # Errors
    /// A badly named `.sql` file, a duplicate or SQLite-only version, a down file without its up
    /// file, a down file next to an `-- irreversible` marker, a bad directive, unterminated SQL,
    /// a malformed `approvals.txt` or `settings.conf`, an `admin_user.sql` outside tenant-seeds,
    /// or one with an unknown parameter.
    pub fn from_files(
        kind: SetKind,
        origin: impl Into<String>,
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, LoadError> {
        let origin = origin.into();
        let fail = |file: &str, message: String| LoadError::File {
            origin: origin.clone(),
            file: file.to_owned(),
            message,
        };
        let mut by_version: BTreeMap<Version, (String, Scripts)> = BTreeMap::new();
        let mut approvals = Vec::new();
        let mut settings = None;
        let mut admin_user = BTreeMap::new();

        for (file, contents) in files {
            if file == APPROVALS_FILE {
                approvals = parse_approvals(&contents).map_err(|message| fail(&file, message))?;
                continue;
            }
            if file == SETTINGS_FILE {
                settings =
                    Some(settings::parse(&contents).map_err(|e| fail(&file, e.to_string()))?);
                continue;
            }
            let (dialect, name) = match file.strip_prefix("sqlite/") {
                Some(name) => (Dialect::Sqlite, name),
                None => (Dialect::Postgres, file.as_str()),
            };
            if name == ADMIN_USER_FILE {
                if kind != SetKind::TenantSeeds {
                    return Err(fail(
                        &file,
                        format!(
                            "{ADMIN_USER_FILE} belongs in the tenant-seeds set: the provisioner runs it in each new tenant after the seeds"
                        ),
                    ));
                }
                let script = AdminUserScript::parse(file.clone(), dialect, &contents)
                    .map_err(|e| fail(&file, e.to_string()))?;
                admin_user.insert(dialect, script);
                continue;
            }
            if !name.ends_with(".sql") || name.contains('/') {
                continue; // READMEs and other notes may live beside the migrations
            }
            let (version, description, direction) =
                parse_file_name(name).map_err(|message| fail(&file, message))?;
            let directives =
                directives::parse(&contents).map_err(|e| fail(&file, e.to_string()))?;
            sql::check_balanced(&contents).map_err(|e| fail(&file, e.to_string()))?;
            if direction == Direction::Down && directives.irreversible.is_some() {
                return Err(fail(
                    &file,
                    "`-- irreversible` belongs in the up file".into(),
                ));
            }
            let script = Script {
                file: file.clone(),
                checksum: Checksum::of(&contents),
                sql: contents.into(),
                directives,
            };
            let entry = by_version
                .entry(version)
                .or_insert_with(|| (description.to_owned(), BTreeMap::new()));
            if entry.0 != description {
                return Err(fail(
                    &file,
                    format!(
                        "version {version} is already used by `{}`: every version must be unique within the set, and a dialect variant must keep the same description",
                        entry.0
                    ),
                ));
            }
            entry.1.insert((dialect, direction), script);
        }

        let mut migrations = Vec::with_capacity(by_version.len());
        for (version, (description, scripts)) in by_version {
            let migration = Migration {
                version,
                description,
                scripts,
            };
            let expected_up = migration.file_name(Dialect::Postgres, Direction::Up);
            if !migration
                .scripts
                .contains_key(&(Dialect::Postgres, Direction::Up))
            {
                let some_file = migration
                    .scripts
                    .values()
                    .next()
                    .map(|s| s.file.clone())
                    .unwrap_or_default();
                return Err(fail(
                    &some_file,
                    format!("there is no PostgreSQL up file `{expected_up}` for this version"),
                ));
            }
            for dialect in Dialect::ALL {
                let has_down = migration.script(dialect, Direction::Down).is_some();
                let has_up = migration.script(dialect, Direction::Up).is_some();
                if has_down && !has_up {
                    return Err(fail(
                        &migration.file_name(dialect, Direction::Down),
                        format!(
                            "down file without its up file `{}`",
                            migration.file_name(dialect, Direction::Up)
                        ),
                    ));
                }
                if has_down && migration.primary().directives.irreversible.is_some() {
                    return Err(fail(
                        &migration.file_name(dialect, Direction::Down),
                        format!(
                            "{expected_up} is marked `-- irreversible`, so it must not have a down file"
                        ),
                    ));
                }
            }
            migrations.push(migration);
        }

        Ok(MigrationSet {
            kind,
            origin,
            migrations,
            approvals,
            has_settings_file: settings.is_some(),
            settings: settings.unwrap_or_default(),
            admin_user,
        })
    }

    /// Loads `<dir>` (the set's own directory, e.g. `migrations/tenant`) and its `sqlite/`
    /// sub-directory. A missing directory is an empty set.
    ///
    /// # Errors
    /// I/O errors, and everything [`MigrationSet::from_files`] refuses.
    pub fn load_dir(kind: SetKind, dir: &Path) -> Result<Self, LoadError> {
        let mut files = Vec::new();
        for (sub, prefix) in [(dir.to_path_buf(), ""), (dir.join("sqlite"), "sqlite/")] {
            let entries = match std::fs::read_dir(&sub) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(LoadError::Io { path: sub, source }),
            };
            for entry in entries {
                let entry = entry.map_err(|source| LoadError::Io {
                    path: sub.clone(),
                    source,
                })?;
                let path = entry.path();
                if !path.is_file() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let contents = std::fs::read_to_string(&path)
                    .map_err(|source| LoadError::Io { path, source })?;
                files.push((format!("{prefix}{name}"), contents));
            }
        }
        Self::from_files(kind, dir.display().to_string(), files)
    }

    /// The set built into this binary from the repository's `migrations/` at compile time.
    ///
    /// # Errors
    /// Only if the built-in files are invalid, which `migrations check` in CI prevents.
    pub fn builtin(kind: SetKind) -> Result<Self, LoadError> {
        let prefix = format!("{}/", kind.dir_name());
        let files = super::embedded::FILES
            .iter()
            .filter_map(|(path, contents)| {
                path.strip_prefix(&prefix)
                    .map(|rest| (rest.to_owned(), (*contents).to_owned()))
            });
        Self::from_files(kind, format!("built-in {}", kind.dir_name()), files)
    }

    /// The newest version of the set.
    pub fn latest(&self) -> Option<Version> {
        self.migrations.last().map(|m| m.version)
    }

    pub fn get(&self, version: Version) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|at| &self.migrations[at])
    }

    /// The admin-user script of `dialect` (tenant-seeds only), if the set has one.
    pub fn admin_user(&self, dialect: Dialect) -> Option<&AdminUserScript> {
        self.admin_user.get(&dialect)
    }

    /// The approval of `version`, if one matches the current PostgreSQL up file.
    pub fn approval_for(&self, migration: &Migration) -> Option<&Approval> {
        let checksum = migration.primary().checksum.to_hex();
        self.approvals
            .iter()
            .find(|a| a.version == migration.version && checksum.starts_with(&a.checksum))
    }
}

/// The three sets a deployment works with.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub platform: Arc<MigrationSet>,
    pub tenant: Arc<MigrationSet>,
    pub tenant_seeds: Arc<MigrationSet>,
}

impl Catalog {
    /// Loads from `dir` (holding `platform/`, `tenant/`, `tenant-seeds/`), or the built-in sets
    /// when `dir` is `None`.
    ///
    /// # Errors
    /// See [`MigrationSet::load_dir`].
    pub fn load(dir: Option<&Path>) -> Result<Self, LoadError> {
        let load = |kind: SetKind| match dir {
            Some(dir) => MigrationSet::load_dir(kind, &dir.join(kind.dir_name())),
            None => MigrationSet::builtin(kind),
        };
        Ok(Catalog {
            platform: Arc::new(load(SetKind::Platform)?),
            tenant: Arc::new(load(SetKind::Tenant)?),
            tenant_seeds: Arc::new(load(SetKind::TenantSeeds)?),
        })
    }

    pub fn set(&self, kind: SetKind) -> &Arc<MigrationSet> {
        match kind {
            SetKind::Platform => &self.platform,
            SetKind::Tenant => &self.tenant,
            SetKind::TenantSeeds => &self.tenant_seeds,
        }
    }

    pub fn sets(&self) -> [&Arc<MigrationSet>; 3] {
        [&self.platform, &self.tenant, &self.tenant_seeds]
    }

    /// The admin-user script the provisioner runs in every new tenant (PostgreSQL).
    ///
    /// # Errors
    /// The tenant-seeds set has no `admin_user.sql`; the message says what to add.
    pub fn admin_user(&self) -> Result<&AdminUserScript, MissingAdminUser> {
        self.tenant_seeds
            .admin_user(Dialect::Postgres)
            .ok_or_else(|| MissingAdminUser::new(&self.tenant_seeds.origin, Dialect::Postgres))
    }
}

/// `<VERSION>_<description>.<up|down>.sql`
fn parse_file_name(name: &str) -> Result<(Version, &str, Direction), String> {
    let shape = "name migration files `<YYYYMMDDHHMMSS>_<description>.up.sql` / `.down.sql`, description in [a-z0-9_], at most 100 characters";
    let (stem, direction) = if let Some(stem) = name.strip_suffix(".up.sql") {
        (stem, Direction::Up)
    } else if let Some(stem) = name.strip_suffix(".down.sql") {
        (stem, Direction::Down)
    } else {
        return Err(format!("not an up or down file: {shape}"));
    };
    let (version, description) = stem
        .split_once('_')
        .ok_or_else(|| format!("no `_` between version and description: {shape}"))?;
    let version: Version = version.parse().map_err(|e| format!("{e}"))?;
    let valid = !description.is_empty()
        && description.len() <= DESCRIPTION_MAX
        && description
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(format!("description `{description}` is not valid: {shape}"));
    }
    Ok((version, description, direction))
}

fn parse_approvals(text: &str) -> Result<Vec<Approval>, String> {
    let mut approvals = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line
            .splitn(4, char::is_whitespace)
            .filter(|f| !f.is_empty());
        let (Some(version), Some(checksum), Some(approver)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "line {line_no}: expected `<version> <checksum> <approver> <reason>`"
            ));
        };
        let reason = fields.next().map(str::trim).unwrap_or_default();
        let version: Version = version
            .parse()
            .map_err(|e| format!("line {line_no}: {e}"))?;
        let hex = checksum.len() >= 12
            && checksum.len() <= 64
            && checksum
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if !hex {
            return Err(format!(
                "line {line_no}: `{checksum}` is not a checksum (12 to 64 lower-case hex digits of the up file's SHA-256)"
            ));
        }
        if reason.is_empty() {
            return Err(format!("line {line_no}: an approval needs a reason"));
        }
        approvals.push(Approval {
            version,
            checksum: checksum.to_owned(),
            approver: approver.to_owned(),
            reason: reason.to_owned(),
        });
    }
    Ok(approvals)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn loads_pairs_and_dialect_variants_in_version_order() {
        let set = MigrationSet::from_files(
            SetKind::Tenant,
            "t",
            files(&[
                ("20260102000000_b.up.sql", "SELECT 2;"),
                ("20260101000000_a.up.sql", "SELECT 1;"),
                ("20260101000000_a.down.sql", "SELECT -1;"),
                ("sqlite/20260101000000_a.up.sql", "SELECT 1;"),
                ("README.md", "notes"),
            ]),
        )
        .unwrap();
        let versions: Vec<_> = set
            .migrations
            .iter()
            .map(|m| m.version.to_string())
            .collect();
        assert_eq!(versions, ["20260101000000", "20260102000000"]);
        let first = &set.migrations[0];
        assert!(first.script(Dialect::Sqlite, Direction::Up).is_some());
        assert!(first.script(Dialect::Sqlite, Direction::Down).is_none());
        assert_eq!(first.irreversible_reason(Dialect::Postgres), None);
        assert!(first.irreversible_reason(Dialect::Sqlite).is_some());
    }

    #[test]
    fn refuses_malformed_sets_naming_the_file() {
        let cases: &[&[(&str, &str)]] = &[
            &[("2026_a.up.sql", "")],
            &[("20260101000000-a.up.sql", "")],
            &[("20260101000000_A.up.sql", "")],
            &[("20260101000000_a.sql", "")],
            &[
                ("20260101000000_a.up.sql", ""),
                ("20260101000000_b.up.sql", ""),
            ],
            &[("sqlite/20260101000000_a.up.sql", "")],
            &[("20260101000000_a.down.sql", "")],
            &[
                ("20260101000000_a.up.sql", "-- irreversible: gone\n"),
                ("20260101000000_a.down.sql", ""),
            ],
            &[("20260101000000_a.up.sql", "-- no-transactoin\n")],
            &[("20260101000000_a.up.sql", "SELECT 'unterminated;")],
            &[("approvals.txt", "20260101000000 nothex ana because")],
        ];
        for case in cases {
            let err = MigrationSet::from_files(SetKind::Tenant, "t", files(case)).unwrap_err();
            let LoadError::File { file, .. } = &err else {
                panic!("{err}")
            };
            assert!(
                case.iter().any(|(name, _)| name == file) || file.ends_with(".sql"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_built_in_sets_carry_their_settings_and_admin_user_script() {
        let embedded: Vec<&str> = crate::embedded::FILES
            .iter()
            .map(|(path, _)| *path)
            .collect();
        for file in [
            "tenant/settings.conf",
            "tenant-seeds/admin_user.sql",
            "tenant-seeds/sqlite/admin_user.sql",
        ] {
            assert!(embedded.contains(&file), "{file} is not embedded");
        }
        let catalog = Catalog::load(None).unwrap();
        assert!(catalog.tenant.has_settings_file);
        assert_eq!(
            catalog.tenant.settings.sqlite,
            crate::settings::SqlitePolicy::Required
        );
        let admin = catalog.admin_user().unwrap();
        assert_eq!(admin.file, "admin_user.sql");
        assert!(admin.statements[0].sql.contains("lower($1)"));
        assert!(
            catalog
                .tenant_seeds
                .admin_user(Dialect::Sqlite)
                .is_some_and(|s| s.statements[0].sql.contains("lower(?1)"))
        );
    }

    #[test]
    fn settings_and_admin_user_scripts_are_loaded_or_refused_naming_the_file() {
        let set = MigrationSet::from_files(
            SetKind::TenantSeeds,
            "seeds",
            files(&[
                ("settings.conf", "sqlite = untested\n"),
                (
                    "admin_user.sql",
                    "INSERT INTO users (email) VALUES (:admin_email);",
                ),
            ]),
        )
        .unwrap();
        assert!(set.has_settings_file);
        assert_eq!(set.settings.sqlite, crate::settings::SqlitePolicy::Untested);
        assert!(set.admin_user(Dialect::Postgres).is_some());
        assert!(set.admin_user(Dialect::Sqlite).is_none());

        let cases: &[(SetKind, &str, &str, &str)] = &[
            (
                SetKind::TenantSeeds,
                "settings.conf",
                "sqlite = sometimes",
                "the accepted values are",
            ),
            (
                SetKind::Tenant,
                "settings.conf",
                "postgres = only",
                "unknown key `postgres`",
            ),
            (
                SetKind::TenantSeeds,
                "admin_user.sql",
                "INSERT INTO users (email) VALUES (:email);",
                "unknown parameter `:email`: the known parameters are :admin_email",
            ),
            (
                SetKind::TenantSeeds,
                "sqlite/admin_user.sql",
                "INSERT INTO users (email) VALUES (?);",
                "positional parameter",
            ),
            (
                SetKind::Tenant,
                "admin_user.sql",
                "SELECT 1;",
                "belongs in the tenant-seeds set",
            ),
        ];
        for (kind, file, contents, needle) in cases {
            let err = MigrationSet::from_files(*kind, "dir", files(&[(file, contents)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("dir/{file}: line 1: "))
                    || err.starts_with(&format!("dir/{file}: ")),
                "{err}"
            );
            assert!(err.contains(needle), "{err}");
        }

        let missing = Catalog {
            tenant_seeds: Arc::new(
                MigrationSet::from_files(SetKind::TenantSeeds, "/srv/migrations/tenant-seeds", [])
                    .unwrap(),
            ),
            ..Catalog::load(None).unwrap()
        };
        let message = missing.admin_user().unwrap_err().to_string();
        assert!(
            message.contains("Add /srv/migrations/tenant-seeds/admin_user.sql"),
            "{message}"
        );
    }

    #[test]
    fn checksums_ignore_line_endings_but_not_content() {
        assert_eq!(Checksum::of("a\r\nb\r\n"), Checksum::of("a\nb\n"));
        assert_ne!(Checksum::of("a\nb\n"), Checksum::of("a\nb \n"));
        assert_eq!(
            Checksum::of("").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn approvals_match_the_current_checksum_only() {
        let up = "DROP TABLE legacy;";
        let sum = Checksum::of(up).to_hex();
        let approvals = format!(
            "# approved\n20260101000000 {} ana.sre exported first\n",
            &sum[..16]
        );
        let set = MigrationSet::from_files(
            SetKind::Tenant,
            "t",
            files(&[
                ("20260101000000_drop_legacy.up.sql", up),
                ("approvals.txt", &approvals),
            ]),
        )
        .unwrap();
        assert_eq!(
            set.approval_for(&set.migrations[0])
                .map(|a| a.approver.as_str()),
            Some("ana.sre")
        );

        let edited = MigrationSet::from_files(
            SetKind::Tenant,
            "t",
            files(&[
                (
                    "20260101000000_drop_legacy.up.sql",
                    "DROP TABLE legacy CASCADE;",
                ),
                ("approvals.txt", &approvals),
            ]),
        )
        .unwrap();
        assert!(edited.approval_for(&edited.migrations[0]).is_none());
    }
}
