//! The released record: which tenant migrations have reached the fleet, with the checksum they
//! had then. Applied migrations are never edited (a fix is a new migration), and a deploy with
//! nothing pending reads no tenant's history, so this record is where an edited, deleted or
//! renamed file is caught: once per deploy and once per service start, not once per tenant.
//!
//! Pure: the platform store reads and writes the record (`released_migrations`); this module
//! decides what a set may add to it and what in it the set contradicts.

use std::fmt;

use super::source::MigrationSet;
use super::source::SetKind;
use domain::version::Version;

/// One released migration: what was recorded the first time its version was deployed or
/// provisioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub set: SetKind,
    pub version: Version,
    pub description: String,
    /// Hex SHA-256 of the PostgreSQL up file: the checksum every tenant's history records.
    pub checksum: String,
}

impl Released {
    /// The PostgreSQL up file's name, for messages.
    pub fn file_name(&self) -> String {
        format!("{}/{}_{}.up.sql", self.set, self.version, self.description)
    }
}

/// The migrations of `set` up to `up_to` (all of them when `None`), as they would be recorded.
pub fn releasable(set: &MigrationSet, up_to: Option<Version>) -> Vec<Released> {
    set.migrations
        .iter()
        .filter(|m| up_to.is_none_or(|last| m.version <= last))
        .map(|m| Released {
            set: set.kind,
            version: m.version,
            description: m.description.clone(),
            checksum: m.primary().checksum.to_hex(),
        })
        .collect()
}

/// How much of the record a set must account for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Every released version (a deploy: deploying a set that lacks a released migration would
    /// leave the fleet ahead of the files).
    Everything,
    /// Released versions up to the set's newest: a service built before a later release still
    /// starts during a rolling upgrade, and those newer versions are reported apart.
    UpToNewest,
}

/// A released migration that the set contradicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseConflict {
    /// The file's contents changed since the release.
    Edited {
        released: Released,
        checksum: String,
    },
    /// The version is there under another description (the file was renamed).
    Renamed {
        released: Released,
        description: String,
    },
    /// No file has the version any more (deleted, or renamed to another version).
    Missing { released: Released },
}

impl ReleaseConflict {
    pub fn released(&self) -> &Released {
        match self {
            ReleaseConflict::Edited { released, .. }
            | ReleaseConflict::Renamed { released, .. }
            | ReleaseConflict::Missing { released } => released,
        }
    }
}

impl fmt::Display for ReleaseConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseConflict::Edited { released, checksum } => write!(
                f,
                "{}: edited after it was released (checksum {} then, {} now)",
                released.file_name(),
                &released.checksum[..released.checksum.len().min(12)],
                &checksum[..checksum.len().min(12)],
            ),
            ReleaseConflict::Renamed {
                released,
                description,
            } => write!(
                f,
                "{}: renamed to {}/{}_{description}.up.sql after it was released",
                released.file_name(),
                released.set,
                released.version,
            ),
            ReleaseConflict::Missing { released } => write!(
                f,
                "{}: released, but no file of this set has version {} any more (deleted or renamed)",
                released.file_name(),
                released.version,
            ),
        }
    }
}

/// What `set` contradicts in `recorded` (records of other sets are ignored), in version order.
pub fn conflicts(
    recorded: &[Released],
    set: &MigrationSet,
    coverage: Coverage,
) -> Vec<ReleaseConflict> {
    let newest = set.latest();
    let mut found: Vec<ReleaseConflict> = recorded
        .iter()
        .filter(|r| r.set == set.kind)
        .filter_map(|released| match set.get(released.version) {
            None => {
                let beyond = newest.is_none_or(|newest| released.version > newest);
                (coverage == Coverage::Everything || !beyond).then(|| ReleaseConflict::Missing {
                    released: released.clone(),
                })
            }
            Some(migration) if migration.description != released.description => {
                Some(ReleaseConflict::Renamed {
                    released: released.clone(),
                    description: migration.description.clone(),
                })
            }
            Some(migration) => {
                let checksum = migration.primary().checksum.to_hex();
                (checksum != released.checksum).then(|| ReleaseConflict::Edited {
                    released: released.clone(),
                    checksum,
                })
            }
        })
        .collect();
    found.sort_by_key(|c| (c.released().set, c.released().version));
    found
}

/// Released versions of `set`'s kind newer than anything `set` holds: the build is older than
/// the fleet (fine for a service during a rolling upgrade; a deploy refuses through
/// [`Coverage::Everything`]).
pub fn released_beyond(recorded: &[Released], set: &MigrationSet) -> Vec<Version> {
    let newest = set.latest();
    recorded
        .iter()
        .filter(|r| r.set == set.kind && newest.is_none_or(|newest| r.version > newest))
        .map(|r| r.version)
        .collect()
}

/// A set that contradicts the released record: what differs, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the migrations ({origin}) contradict what was already released to tenants:\n  - {}\n\
     Applied migrations are never edited: restore each file as it was released (`git log` on \
     it shows when it changed) and put the change in a new migration (`tenantctl migrations new`)",
    conflicts.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - ")
)]
pub struct ReleaseRefused {
    /// Where the set was loaded from (`built-in` or a directory).
    pub origin: String,
    pub conflicts: Vec<ReleaseConflict>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(&str, &str)]) -> MigrationSet {
        MigrationSet::from_files(
            SetKind::Tenant,
            "test",
            files
                .iter()
                .map(|(f, c)| ((*f).to_owned(), (*c).to_owned())),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn v(n: i64) -> Version {
        Version::new(n).unwrap_or_else(|e| panic!("{e}"))
    }

    const A: (&str, &str) = ("20260101000000_a.up.sql", "CREATE TABLE a (id int);\n");
    const B: (&str, &str) = ("20260102000000_b.up.sql", "CREATE TABLE b (id int);\n");

    #[test]
    fn a_set_as_released_has_no_conflicts() {
        let released = releasable(&set(&[A, B]), None);
        assert_eq!(released.len(), 2);
        assert!(conflicts(&released, &set(&[A, B]), Coverage::Everything).is_empty());
        // A newer migration is not a conflict: it is what a deploy releases next.
        let older = releasable(&set(&[A]), None);
        assert!(conflicts(&older, &set(&[A, B]), Coverage::Everything).is_empty());
    }

    #[test]
    fn releasable_stops_at_the_target() {
        let released = releasable(&set(&[A, B]), Some(v(20260101000000)));
        assert_eq!(
            released.iter().map(|r| r.version).collect::<Vec<_>>(),
            vec![v(20260101000000)]
        );
        assert_eq!(released[0].file_name(), "tenant/20260101000000_a.up.sql");
    }

    #[test]
    fn an_edited_file_is_a_conflict_even_by_one_comment() {
        let released = releasable(&set(&[A, B]), None);
        let edited = set(&[
            (
                "20260101000000_a.up.sql",
                "CREATE TABLE a (id int);\n-- x\n",
            ),
            B,
        ]);
        let found = conflicts(&released, &edited, Coverage::UpToNewest);
        assert!(
            matches!(found.as_slice(), [ReleaseConflict::Edited { released, .. }] if released.version == v(20260101000000)),
            "{found:?}"
        );
        assert!(
            found[0]
                .to_string()
                .contains("tenant/20260101000000_a.up.sql: edited")
        );
    }

    #[test]
    fn a_line_ending_change_is_not_an_edit() {
        let released = releasable(&set(&[A]), None);
        let crlf = set(&[("20260101000000_a.up.sql", "CREATE TABLE a (id int);\r\n")]);
        assert!(conflicts(&released, &crlf, Coverage::Everything).is_empty());
    }

    #[test]
    fn renamed_and_deleted_files_are_conflicts() {
        let released = releasable(&set(&[A, B]), None);
        let renamed = set(&[("20260101000000_a_renamed.up.sql", A.1), B]);
        assert!(matches!(
            conflicts(&released, &renamed, Coverage::UpToNewest).as_slice(),
            [ReleaseConflict::Renamed { description, .. }] if description == "a_renamed"
        ));
        let deleted = set(&[B]);
        assert!(matches!(
            conflicts(&released, &deleted, Coverage::UpToNewest).as_slice(),
            [ReleaseConflict::Missing { released }] if released.version == v(20260101000000)
        ));
        // Renamed to another version: the old one is missing.
        let moved = set(&[("20260103000000_a.up.sql", A.1), B]);
        assert_eq!(conflicts(&released, &moved, Coverage::UpToNewest).len(), 1);
    }

    #[test]
    fn an_older_build_is_a_conflict_for_a_deploy_only() {
        let released = releasable(&set(&[A, B]), None);
        let older = set(&[A]);
        assert!(conflicts(&released, &older, Coverage::UpToNewest).is_empty());
        assert_eq!(released_beyond(&released, &older), vec![v(20260102000000)]);
        assert!(matches!(
            conflicts(&released, &older, Coverage::Everything).as_slice(),
            [ReleaseConflict::Missing { .. }]
        ));
    }

    #[test]
    fn other_sets_records_are_ignored() {
        let mut released = releasable(&set(&[A]), None);
        released[0].set = SetKind::TenantSeeds;
        assert!(conflicts(&released, &set(&[B]), Coverage::Everything).is_empty());
    }

    #[test]
    fn the_refusal_says_what_differs_and_what_to_do() {
        let released = releasable(&set(&[A]), None);
        let refused = ReleaseRefused {
            origin: "built-in".into(),
            conflicts: conflicts(&released, &set(&[B]), Coverage::Everything),
        };
        let text = refused.to_string();
        assert!(text.contains("tenant/20260101000000_a.up.sql"), "{text}");
        assert!(text.contains("restore each file"), "{text}");
        assert!(text.contains("new migration"), "{text}");
    }
}
