//! The static half of the check, pure: lints of every script (and of the admin-user script),
//! approvals of destructive migrations, dialect parity. A deploy refuses the sets when one of
//! these is an error.

use super::report::CheckFinding;
use crate::admin::ADMIN_USER_FILE;
use crate::dialect::Dialect;
use crate::lint::{self, LintInput, Severity};
use crate::settings::{SETTINGS_FILE, SqlitePolicy};
use crate::source::{APPROVALS_FILE, Catalog, Direction, MigrationSet};

/// The static half of the check: lints (of the migrations and of the admin-user script),
/// approvals, parity. Pure. A deploy refuses the sets when one of these is an error.
pub fn static_findings(catalog: &Catalog) -> Vec<CheckFinding> {
    let mut findings = Vec::new();
    for set in catalog.sets() {
        lint_set(set, &mut findings);
        lint_admin_user(set, &mut findings);
        check_parity(set, &mut findings);
        check_approvals(set, &mut findings);
    }
    findings
}

/// What the provisioner needs of the sets: the admin-user script. Pure. Not part of
/// [`static_findings`]: a deploy never runs the script, so it is not refused for lacking one
/// (the provisioner refuses to start instead, and `migrations check` fails).
pub fn provisioning_findings(catalog: &Catalog) -> Vec<CheckFinding> {
    let seeds = &catalog.tenant_seeds;
    match catalog.admin_user() {
        Ok(_) => Vec::new(),
        Err(missing) => vec![CheckFinding {
            severity: Severity::Error,
            set: seeds.kind,
            file: Some(ADMIN_USER_FILE.to_owned()),
            line: None,
            code: "missing-admin-user".into(),
            message: missing.to_string(),
        }],
    }
}

fn lint_admin_user(set: &MigrationSet, findings: &mut Vec<CheckFinding>) {
    for dialect in Dialect::ALL {
        let Some(script) = set.admin_user(dialect) else {
            continue;
        };
        let input = LintInput {
            sql: &script.sql,
            dialect,
            set: set.kind,
            no_transaction: false,
            batched: false,
        };
        for finding in lint::lint(&input) {
            findings.push(CheckFinding::of_lint(set.kind, &script.file, finding));
        }
    }
}

/// Dialect-parity findings are errors unless the set's `settings.conf` says SQLite is untested.
fn parity_finding(set: &MigrationSet, file: String, message: String) -> CheckFinding {
    let (severity, message) = match set.settings.sqlite {
        SqlitePolicy::Required => (Severity::Error, message),
        SqlitePolicy::Untested => (
            Severity::Warning,
            format!("{message} (a warning: {SETTINGS_FILE} says `sqlite = untested`)"),
        ),
    };
    CheckFinding {
        severity,
        set: set.kind,
        file: Some(file),
        line: None,
        code: "dialect-parity".into(),
        message,
    }
}

fn lint_set(set: &MigrationSet, findings: &mut Vec<CheckFinding>) {
    for migration in &set.migrations {
        if migration
            .script(Dialect::Postgres, Direction::Down)
            .is_none()
            && migration.primary().directives.irreversible.is_none()
        {
            findings.push(CheckFinding {
                severity: Severity::Error,
                set: set.kind,
                file: Some(migration.primary().file.clone()),
                line: None,
                code: "missing-down".into(),
                message: format!(
                    "no down file: add {} or mark the up file `-- irreversible: <reason>`",
                    migration.file_name(Dialect::Postgres, Direction::Down)
                ),
            });
        }
        for dialect in Dialect::ALL {
            for direction in [Direction::Up, Direction::Down] {
                let Some(script) = migration.script(dialect, direction) else {
                    continue;
                };
                let input = LintInput {
                    sql: &script.sql,
                    dialect,
                    set: set.kind,
                    no_transaction: script.directives.no_transaction,
                    batched: script.directives.batch_size.is_some(),
                };
                for finding in lint::lint(&input) {
                    // Destructive ups are reported once, with their approval status, by
                    // `check_approvals`; destructive downs are expected (they undo a create) and
                    // rollbacks ask for confirmation when they run them.
                    if finding.code.is_destructive() {
                        continue;
                    }
                    findings.push(CheckFinding::of_lint(set.kind, &script.file, finding));
                }
            }
        }
    }
}

fn check_parity(set: &MigrationSet, findings: &mut Vec<CheckFinding>) {
    for migration in &set.migrations {
        for direction in [Direction::Up, Direction::Down] {
            let postgres = migration.script(Dialect::Postgres, direction).is_some();
            let sqlite = migration.script(Dialect::Sqlite, direction).is_some();
            let message = match (postgres, sqlite) {
                (true, false) => format!(
                    "{} has no SQLite variant: add {}",
                    migration.file_name(Dialect::Postgres, direction),
                    migration.file_name(Dialect::Sqlite, direction)
                ),
                (false, true) => format!(
                    "{} exists but {} does not: both dialects must be equally reversible",
                    migration.file_name(Dialect::Sqlite, direction),
                    migration.file_name(Dialect::Postgres, direction)
                ),
                _ => continue,
            };
            findings.push(parity_finding(
                set,
                migration.file_name(Dialect::Postgres, direction),
                message,
            ));
        }
        let batch = |d| {
            migration
                .script(d, Direction::Up)
                .map(|s| s.directives.batch_size.is_some())
        };
        if let (Some(pg), Some(lite)) = (batch(Dialect::Postgres), batch(Dialect::Sqlite))
            && pg != lite
        {
            findings.push(parity_finding(
                set,
                migration.primary().file.clone(),
                "one dialect is a batched data migration and the other is not".into(),
            ));
        }
    }
    let postgres = set.admin_user(Dialect::Postgres).is_some();
    let sqlite = set.admin_user(Dialect::Sqlite).is_some();
    let sqlite_file = format!("sqlite/{ADMIN_USER_FILE}");
    match (postgres, sqlite) {
        (true, false) => findings.push(parity_finding(
            set,
            ADMIN_USER_FILE.to_owned(),
            format!("{ADMIN_USER_FILE} has no SQLite variant: add {sqlite_file}"),
        )),
        (false, true) => findings.push(parity_finding(
            set,
            sqlite_file.clone(),
            format!("{sqlite_file} exists but {ADMIN_USER_FILE} does not"),
        )),
        _ => {}
    }
}

fn check_approvals(set: &MigrationSet, findings: &mut Vec<CheckFinding>) {
    for migration in &set.migrations {
        let script = migration.primary();
        let destructive = lint::destructive_statements(&script.sql, Dialect::Postgres);
        if destructive.is_empty() {
            continue;
        }
        if let Some(approval) = set.approval_for(migration) {
            findings.push(CheckFinding {
                severity: Severity::Warning,
                set: set.kind,
                file: Some(script.file.clone()),
                line: destructive.first().map(|f| f.line),
                code: "destructive-approved".into(),
                message: format!(
                    "destroys data; approved by {}: {}",
                    approval.approver, approval.reason
                ),
            });
        } else {
            findings.push(CheckFinding {
                severity: Severity::Error,
                set: set.kind,
                file: Some(script.file.clone()),
                line: destructive.first().map(|f| f.line),
                code: "unapproved-destructive".into(),
                message: format!(
                    "destroys data ({}) and is not approved, so no deploy will apply it: review it, then run `tenantctl migrations approve {} --by <you> --reason <why>`",
                    destructive.iter().map(|f| f.statement.as_str()).collect::<Vec<_>>().join("; "),
                    migration.version
                ),
            });
        }
    }
    for approval in &set.approvals {
        let current = set.get(approval.version);
        if current.is_none_or(|m| set.approval_for(m).is_none()) {
            findings.push(CheckFinding {
                severity: Severity::Warning,
                set: set.kind,
                file: Some(APPROVALS_FILE.to_owned()),
                line: None,
                code: "stale-approval".into(),
                message: format!(
                    "the approval of {} does not match any current file (edited or removed since): it approves nothing",
                    approval.version
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use std::sync::Arc;

    use super::*;
    use crate::source::SetKind;

    /// The built-in sets with `tenant` replaced by a set of PostgreSQL files only (plus `extra`
    /// files, e.g. a settings file).
    fn postgres_only_tenant_set(extra: &[(&str, &str)]) -> Catalog {
        let mut files = vec![
            (
                "20270101000000_members.up.sql".to_owned(),
                "CREATE TABLE members (id bigint PRIMARY KEY);\n".to_owned(),
            ),
            (
                "20270101000000_members.down.sql".to_owned(),
                "DROP TABLE members;\n".to_owned(),
            ),
        ];
        files.extend(
            extra
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
        );
        let tenant = MigrationSet::from_files(SetKind::Tenant, "team/tenant", files).unwrap();
        Catalog {
            tenant: Arc::new(tenant),
            ..Catalog::load(None).unwrap()
        }
    }

    fn parity(findings: &[CheckFinding]) -> Vec<&CheckFinding> {
        findings
            .iter()
            .filter(|f| f.code == "dialect-parity")
            .collect()
    }

    #[test]
    fn a_set_without_sqlite_variants_is_refused_unless_it_says_it_is_untested() {
        let required = static_findings(&postgres_only_tenant_set(&[]));
        assert_eq!(parity(&required).len(), 2, "{required:?}");
        assert!(
            parity(&required)
                .iter()
                .all(|f| f.severity == Severity::Error)
        );

        let untested = static_findings(&postgres_only_tenant_set(&[(
            "settings.conf",
            "sqlite = untested\n",
        )]));
        let warnings = parity(&untested);
        assert_eq!(warnings.len(), 2, "still shown: {untested:?}");
        assert!(
            warnings.iter().all(|f| f.severity == Severity::Warning
                && f.message.contains("settings.conf says `sqlite = untested`")),
            "{warnings:?}"
        );
        assert!(
            untested.iter().all(|f| f.severity != Severity::Error),
            "a deploy proceeds: {untested:?}"
        );

        let explicit = static_findings(&postgres_only_tenant_set(&[(
            "settings.conf",
            "sqlite = required\n",
        )]));
        assert_eq!(explicit, required);
    }

    #[test]
    fn the_admin_user_script_is_linted_and_needs_its_sqlite_variant() {
        let seeds = |files: &[(&str, &str)]| {
            let files = files
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()));
            Catalog {
                tenant_seeds: Arc::new(
                    MigrationSet::from_files(SetKind::TenantSeeds, "team/tenant-seeds", files)
                        .unwrap(),
                ),
                ..Catalog::load(None).unwrap()
            }
        };
        let reaching = seeds(&[
            (
                "admin_user.sql",
                "INSERT INTO public.users (email) VALUES (:admin_email);",
            ),
            (
                "sqlite/admin_user.sql",
                "INSERT INTO users (email) VALUES (:admin_email);",
            ),
        ]);
        let findings = static_findings(&reaching);
        assert!(
            findings.iter().any(|f| f.code == "cross-schema"
                && f.severity == Severity::Error
                && f.file.as_deref() == Some("admin_user.sql")),
            "{findings:?}"
        );

        let no_variant = seeds(&[(
            "admin_user.sql",
            "INSERT INTO users (email) VALUES (:admin_email);",
        )]);
        let findings = static_findings(&no_variant);
        assert!(
            findings.iter().any(|f| f.code == "dialect-parity"
                && f.severity == Severity::Error
                && f.message.contains("add sqlite/admin_user.sql")),
            "{findings:?}"
        );
        assert!(provisioning_findings(&no_variant).is_empty());

        let without = seeds(&[]);
        assert!(
            static_findings(&without)
                .iter()
                .all(|f| f.set != SetKind::TenantSeeds)
        );
        let missing = provisioning_findings(&without);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].code, "missing-admin-user");
        assert!(
            missing[0]
                .message
                .contains("Add team/tenant-seeds/admin_user.sql"),
            "{}",
            missing[0].message
        );
    }
}
