//! Pure planning: given the files of a set and a target's history, what is applied, what has
//! drifted, and what to run next (forwards or backwards).
//!
//! Never touches a database or the clock; every function here is data in, decision out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::dialect::Dialect;
use super::history::AppliedMigration;
use super::lint::{self, Finding};
use super::source::{Direction, Migration, MigrationSet};
use domain::version::Version;

/// A disagreement between the files and a target's history that makes applying unsafe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// An applied migration's file was edited after it ran.
    Changed {
        version: Version,
        file: String,
        recorded: String,
        current: String,
    },
    /// The history names a version whose file no longer exists.
    Missing {
        version: Version,
        description: String,
    },
    /// A file that was never applied sorts before the newest applied version: it was written on
    /// a branch that merged late, and applying it now would run it in a different order than
    /// everywhere else.
    OutOfOrder {
        version: Version,
        file: String,
        last_applied: Version,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Changed {
                version,
                file,
                recorded,
                current,
            } => write!(
                f,
                "{file} (version {version}) was edited after it was applied (recorded checksum {}, file now {}): applied migrations are never edited; restore the file and put the change in a new migration",
                short(recorded),
                short(current)
            ),
            Drift::Missing {
                version,
                description,
            } => write!(
                f,
                "version {version} ({description}) is recorded as applied but its file is missing: restore the file (applied migrations are never deleted)"
            ),
            Drift::OutOfOrder {
                version,
                file,
                last_applied,
            } => write!(
                f,
                "{file} (version {version}) is new but sorts before the last applied version {last_applied}: give it a version newer than {last_applied} (`tenantctl migrations new` does)"
            ),
        }
    }
}

impl Drift {
    /// Whether this only says the history is ahead of these files: a version newer than every
    /// file, recorded by a newer build. During a rolling upgrade that is the previous release
    /// meeting the next one's migrations, not an edit or a deletion.
    pub fn is_ahead_of(&self, set: &MigrationSet) -> bool {
        match self {
            Drift::Missing { version, .. } => set.latest().is_none_or(|latest| *version > latest),
            Drift::Changed { .. } | Drift::OutOfOrder { .. } => false,
        }
    }
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("refusing to run: {}", list(.0))]
    Drift(Vec<Drift>),
    #[error("target version {requested} is not in this migration set (latest known: {}); is this build older than the deploy?", latest.map_or("none".to_owned(), |v| v.to_string()))]
    UnknownTarget {
        requested: Version,
        latest: Option<Version>,
    },
    #[error("{file} is missing: version {version} has no {dialect} variant")]
    MissingVariant {
        version: Version,
        file: String,
        dialect: Dialect,
    },
    #[error("cannot revert past version {version} ({file}): it is irreversible: {reason}")]
    Irreversible {
        version: Version,
        file: String,
        reason: String,
    },
}

fn list(drift: &[Drift]) -> String {
    drift
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One migration to apply.
#[derive(Debug, Clone)]
pub struct PendingStep<'a> {
    pub migration: &'a Migration,
    /// The unfinished row left by an earlier failed or interrupted attempt, if any.
    pub resumes: Option<&'a AppliedMigration>,
}

/// One migration to revert, newest first.
#[derive(Debug, Clone)]
pub struct RevertStep<'a> {
    pub migration: &'a Migration,
    /// Statements of the down script that destroy data; callers ask for confirmation.
    pub destroys_data: Vec<Finding>,
}

/// Where a target stands against a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Newest successfully applied version.
    pub applied_version: Option<Version>,
    /// Versions still to apply, oldest first (unfinished ones included).
    pub pending: Vec<Version>,
    /// Unfinished rows: a no-transaction or batched script that failed or was interrupted.
    pub unfinished: Vec<AppliedMigration>,
    pub drift: Vec<Drift>,
}

/// Compares the files with the history.
pub fn verify(set: &MigrationSet, applied: &[AppliedMigration], dialect: Dialect) -> Vec<Drift> {
    let files: BTreeMap<Version, &Migration> =
        set.migrations.iter().map(|m| (m.version, m)).collect();
    let mut drift = Vec::new();
    for row in applied {
        match files.get(&row.version) {
            None => drift.push(Drift::Missing {
                version: row.version,
                description: row.description.clone(),
            }),
            // An unfinished row may be edited to fix it: it never completed anywhere.
            Some(_) if !row.success => {}
            Some(migration) => {
                let Some(script) = migration.script(dialect, Direction::Up) else {
                    drift.push(Drift::Missing {
                        version: row.version,
                        description: row.description.clone(),
                    });
                    continue;
                };
                let current = script.checksum.to_hex();
                if current != row.checksum {
                    drift.push(Drift::Changed {
                        version: row.version,
                        file: script.file.clone(),
                        recorded: row.checksum.clone(),
                        current,
                    });
                }
            }
        }
    }
    if let Some(last_applied) = applied.iter().map(|row| row.version).max() {
        let recorded: BTreeSet<Version> = applied.iter().map(|row| row.version).collect();
        for migration in set.migrations.iter().filter(|m| m.version < last_applied) {
            if !recorded.contains(&migration.version) {
                drift.push(Drift::OutOfOrder {
                    version: migration.version,
                    file: migration.file_name(dialect, Direction::Up),
                    last_applied,
                });
            }
        }
    }
    drift
}

/// Summarises a target's standing.
pub fn standing(set: &MigrationSet, applied: &[AppliedMigration], dialect: Dialect) -> Standing {
    let done: BTreeSet<Version> = applied
        .iter()
        .filter(|r| r.success)
        .map(|r| r.version)
        .collect();
    Standing {
        applied_version: done.last().copied(),
        pending: set
            .migrations
            .iter()
            .map(|m| m.version)
            .filter(|v| !done.contains(v))
            .collect(),
        unfinished: applied.iter().filter(|r| !r.success).cloned().collect(),
        drift: verify(set, applied, dialect),
    }
}

/// What to apply, in order, to bring a target to `target` (or to the newest version).
///
/// # Errors
/// Drift, an unknown target, or a pending version without a script in `dialect`.
pub fn plan_apply<'a>(
    set: &'a MigrationSet,
    applied: &'a [AppliedMigration],
    dialect: Dialect,
    target: Option<Version>,
) -> Result<Vec<PendingStep<'a>>, PlanError> {
    if let Some(requested) = target
        && !requested.is_zero()
        && set.get(requested).is_none()
    {
        return Err(PlanError::UnknownTarget {
            requested,
            latest: set.latest(),
        });
    }
    let drift = verify(set, applied, dialect);
    if !drift.is_empty() {
        return Err(PlanError::Drift(drift));
    }
    let rows: BTreeMap<Version, &AppliedMigration> =
        applied.iter().map(|r| (r.version, r)).collect();
    let mut steps = Vec::new();
    for migration in &set.migrations {
        if target.is_some_and(|t| migration.version > t) {
            break;
        }
        let row = rows.get(&migration.version).copied();
        if row.is_some_and(|r| r.success) {
            continue;
        }
        if migration.script(dialect, Direction::Up).is_none() {
            return Err(PlanError::MissingVariant {
                version: migration.version,
                file: migration.file_name(dialect, Direction::Up),
                dialect,
            });
        }
        steps.push(PendingStep {
            migration,
            resumes: row,
        });
    }
    Ok(steps)
}

/// What to revert, newest first, to bring a target back to `to` (`Version::ZERO` for all).
/// Refuses before anything runs when a migration in the range is irreversible.
///
/// # Errors
/// Drift of a migration in the range, an unknown target, an irreversible migration or a missing
/// down file in the range.
pub fn plan_revert<'a>(
    set: &'a MigrationSet,
    applied: &[AppliedMigration],
    dialect: Dialect,
    to: Version,
) -> Result<Vec<RevertStep<'a>>, PlanError> {
    if !to.is_zero() && set.get(to).is_none() {
        return Err(PlanError::UnknownTarget {
            requested: to,
            latest: set.latest(),
        });
    }
    let in_range: Vec<&AppliedMigration> = applied.iter().filter(|r| r.version > to).collect();
    let drift: Vec<Drift> = verify(set, applied, dialect)
        .into_iter()
        .filter(|d| match d {
            Drift::Changed { version, .. } | Drift::Missing { version, .. } => *version > to,
            // A never-applied file is not touched by a revert.
            Drift::OutOfOrder { .. } => false,
        })
        .collect();
    if !drift.is_empty() {
        return Err(PlanError::Drift(drift));
    }
    let mut steps = Vec::new();
    let mut versions: Vec<Version> = in_range.iter().map(|r| r.version).collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    for version in versions {
        // `verify` above guarantees the file exists.
        let Some(migration) = set.get(version) else {
            continue;
        };
        if let Some(reason) = migration.irreversible_reason(dialect) {
            return Err(PlanError::Irreversible {
                version,
                file: migration.file_name(dialect, Direction::Up),
                reason,
            });
        }
        let down = migration
            .script(dialect, Direction::Down)
            .map(|s| s.sql.as_ref())
            .unwrap_or_default();
        steps.push(RevertStep {
            migration,
            destroys_data: lint::destructive_statements(down, dialect),
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::source::Checksum;
    use crate::source::SetKind;

    const PG: Dialect = Dialect::Postgres;

    fn v(n: u8) -> Version {
        format!("202601010000{n:02}").parse().unwrap()
    }

    /// A set with versions `1..=n`; `irreversible` ones have a marker and no down.
    fn set_of(n: u8, irreversible: &[u8], destructive_down: &[u8]) -> MigrationSet {
        let mut files = Vec::new();
        for i in 1..=n {
            let up = if irreversible.contains(&i) {
                format!("-- irreversible: step {i} cannot be undone\nSELECT {i};")
            } else {
                format!("SELECT {i};")
            };
            files.push((format!("{}_m{i}.up.sql", v(i)), up));
            if !irreversible.contains(&i) {
                let down = if destructive_down.contains(&i) {
                    format!("DROP TABLE t{i};")
                } else {
                    format!("SELECT -{i};")
                };
                files.push((format!("{}_m{i}.down.sql", v(i)), down));
            }
        }
        MigrationSet::from_files(SetKind::Tenant, "test", files).unwrap()
    }

    fn applied(set: &MigrationSet, versions: &[u8]) -> Vec<AppliedMigration> {
        versions
            .iter()
            .map(|i| {
                let m = set.get(v(*i)).unwrap();
                AppliedMigration::succeeded(
                    m.version,
                    &m.description,
                    &m.primary().checksum.to_hex(),
                )
            })
            .collect()
    }

    fn versions(steps: &[PendingStep<'_>]) -> Vec<Version> {
        steps.iter().map(|s| s.migration.version).collect()
    }

    #[test]
    fn applies_everything_pending_in_order() {
        let set = set_of(3, &[], &[]);
        let plan = plan_apply(&set, &[], PG, None).unwrap();
        assert_eq!(versions(&plan), [v(1), v(2), v(3)]);
        let history = applied(&set, &[1]);
        assert_eq!(
            versions(&plan_apply(&set, &history, PG, None).unwrap()),
            [v(2), v(3)]
        );
    }

    #[test]
    fn nothing_to_do_when_up_to_date() {
        let set = set_of(3, &[], &[]);
        let history = applied(&set, &[1, 2, 3]);
        assert!(plan_apply(&set, &history, PG, None).unwrap().is_empty());
        let standing = standing(&set, &history, PG);
        assert_eq!(standing.applied_version, Some(v(3)));
        assert!(standing.pending.is_empty() && standing.drift.is_empty());
    }

    #[test]
    fn stops_at_the_target_version() {
        let set = set_of(3, &[], &[]);
        assert_eq!(
            versions(&plan_apply(&set, &[], PG, Some(v(2))).unwrap()),
            [v(1), v(2)]
        );
        assert!(
            plan_apply(&set, &[], PG, Some(Version::ZERO))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_unknown_target_is_refused() {
        let set = set_of(2, &[], &[]);
        let err = plan_apply(&set, &[], PG, Some(v(9))).unwrap_err();
        assert_eq!(
            err,
            PlanError::UnknownTarget {
                requested: v(9),
                latest: Some(v(2))
            }
        );
    }

    #[test]
    fn an_edited_applied_file_is_refused_naming_file_and_version() {
        let set = set_of(2, &[], &[]);
        let mut history = applied(&set, &[1, 2]);
        history[0].checksum = Checksum::of("SELECT 'original';").to_hex();
        let err = plan_apply(&set, &history, PG, None).unwrap_err();
        let PlanError::Drift(drift) = &err else {
            panic!("{err}")
        };
        assert!(
            matches!(&drift[..], [Drift::Changed { version, file, .. }] if *version == v(1) && file == "20260101000001_m1.up.sql")
        );
        assert!(
            err.to_string().contains("20260101000001_m1.up.sql"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_applied_file_is_refused() {
        let set = set_of(2, &[], &[]);
        let mut history = applied(&set, &[1, 2]);
        history.push(AppliedMigration::succeeded(v(3), "m3", "00"));
        let err = plan_apply(&set, &history, PG, None).unwrap_err();
        assert_eq!(
            err,
            PlanError::Drift(vec![Drift::Missing {
                version: v(3),
                description: "m3".into()
            }])
        );
    }

    #[test]
    fn only_a_version_newer_than_every_file_is_the_history_being_ahead() {
        let set = set_of(3, &[], &[]);
        let mut history = applied(&set, &[1, 2, 3]);
        history.push(AppliedMigration::succeeded(v(4), "m4", "00"));
        let older = set_of(2, &[], &[]);
        let drift = verify(&older, &history, PG);
        let ahead: Vec<bool> = drift.iter().map(|d| d.is_ahead_of(&older)).collect();
        // v3 and v4 are newer than the older build's files; nothing else is.
        assert_eq!(ahead, vec![true, true]);

        let deleted = MigrationSet::from_files(
            SetKind::Tenant,
            "test",
            vec![
                (format!("{}_m2.up.sql", v(2)), "SELECT 2;".to_owned()),
                (format!("{}_m3.up.sql", v(3)), "SELECT 3;".to_owned()),
            ],
        )
        .unwrap();
        let drift = verify(&deleted, &applied(&set, &[1, 2, 3]), PG);
        assert!(
            drift.iter().any(
                |d| matches!(d, Drift::Missing { version, .. } if *version == v(1))
                    && !d.is_ahead_of(&deleted)
            ),
            "a deleted old file is drift, not a newer build: {drift:?}"
        );
    }

    #[test]
    fn a_new_file_sorting_before_the_last_applied_is_refused() {
        let set = set_of(3, &[], &[]);
        let history = applied(&set, &[1, 3]);
        let err = plan_apply(&set, &history, PG, None).unwrap_err();
        assert_eq!(
            err,
            PlanError::Drift(vec![Drift::OutOfOrder {
                version: v(2),
                file: "20260101000002_m2.up.sql".into(),
                last_applied: v(3)
            }])
        );
    }

    #[test]
    fn an_unfinished_row_is_retried_even_if_its_file_was_fixed() {
        let set = set_of(2, &[], &[]);
        let mut history = applied(&set, &[1, 2]);
        history[1].success = false;
        history[1].checksum = "0123".into();
        history[1].batches_done = 4;
        let plan = plan_apply(&set, &history, PG, None).unwrap();
        assert_eq!(versions(&plan), [v(2)]);
        assert_eq!(plan[0].resumes.map(|r| r.batches_done), Some(4));
        assert_eq!(standing(&set, &history, PG).applied_version, Some(v(1)));
    }

    #[test]
    fn a_pending_version_without_the_dialect_variant_is_refused() {
        let set = set_of(1, &[], &[]);
        let err = plan_apply(&set, &[], Dialect::Sqlite, None).unwrap_err();
        assert!(
            matches!(
                err,
                PlanError::MissingVariant {
                    dialect: Dialect::Sqlite,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn reverts_newest_first_down_to_the_target() {
        let set = set_of(3, &[], &[3]);
        let history = applied(&set, &[1, 2, 3]);
        let plan = plan_revert(&set, &history, PG, v(1)).unwrap();
        let order: Vec<_> = plan.iter().map(|s| s.migration.version).collect();
        assert_eq!(order, [v(3), v(2)]);
        assert_eq!(
            plan[0].destroys_data.len(),
            1,
            "DROP TABLE in the down of 3 destroys data"
        );
        assert!(plan[1].destroys_data.is_empty());
        assert_eq!(
            plan_revert(&set, &history, PG, Version::ZERO)
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn an_irreversible_migration_stops_the_revert_before_anything_runs() {
        let set = set_of(3, &[2], &[]);
        let history = applied(&set, &[1, 2, 3]);
        let err = plan_revert(&set, &history, PG, Version::ZERO).unwrap_err();
        assert_eq!(
            err,
            PlanError::Irreversible {
                version: v(2),
                file: "20260101000002_m2.up.sql".into(),
                reason: "step 2 cannot be undone".into()
            }
        );
        assert_eq!(
            plan_revert(&set, &history, PG, v(2)).unwrap().len(),
            1,
            "reverting above it is fine"
        );
    }

    #[test]
    fn a_revert_ignores_versions_that_are_not_applied() {
        let set = set_of(3, &[], &[]);
        let history = applied(&set, &[1]);
        assert!(plan_revert(&set, &history, PG, v(1)).unwrap().is_empty());
    }

    #[test]
    fn a_revert_refuses_drift_in_its_range_only() {
        let set = set_of(3, &[], &[]);
        let mut history = applied(&set, &[1, 2, 3]);
        history[0].checksum = "edited".into();
        assert!(plan_revert(&set, &history, PG, v(1)).is_ok());
        assert!(matches!(
            plan_revert(&set, &history, PG, Version::ZERO),
            Err(PlanError::Drift(_))
        ));
    }
}
