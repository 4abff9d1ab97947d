//! Everything `tenantctl migrations check` proves about the migration sets:
//!
//! 1. every set loads (names, directives, balanced SQL — done by [`Catalog::load`]);
//! 2. lints: missing down files, cross-schema references in tenant sets, destructive and heavy
//!    locking statements, misuse of `-- no-transaction` and batches;
//! 3. destructive up scripts are approved in `approvals.txt` (a deploy refuses them otherwise);
//! 4. dialect parity: the same versions in PostgreSQL and SQLite, with the same reversibility
//!    (errors, or warnings for a set whose `settings.conf` says `sqlite = untested`);
//! 5. every set applies on SQLite (unless it is untested there) and, when a server is given and
//!    reachable, on a throwaway PostgreSQL database; each reversible migration goes up → down →
//!    up and must give back the same schema both times;
//! 6. both dialects end with the same tables and columns;
//! 7. the tenant-seeds set has its admin-user script (`admin_user.sql`), which is linted like a
//!    migration and, on each dialect's scratch tenant after every set, runs twice: the first run
//!    must affect a row, the second must add none.

use std::fmt;
use std::path::Path;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::admin::{ADMIN_USER_FILE, AdminUserScript, AdminValues};
use super::backend::{MigrationBackend, PgSchemaBackend, SchemaSnapshot, SqliteBackend};
use super::dialect::Dialect;
use super::engine::{Engine, EngineOptions};
use super::lint::{self, LintInput, Severity};
use super::settings::{SETTINGS_FILE, SqlitePolicy};
use super::source::{Catalog, MigrationSet};
use super::source::{Direction, SetKind};
use super::target::Target;
use crate::sql::quote_ident;
use domain::tenant::TenantSlug;
use domain::version::Version;

/// One problem found by the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFinding {
    pub severity: Severity,
    pub set: SetKind,
    /// The file, relative to the set's directory, when the finding is about one file.
    pub file: Option<String>,
    pub line: Option<usize>,
    /// Stable kebab-case code (`cross-schema`, `dialect-parity`, …).
    pub code: String,
    pub message: String,
}

impl fmt::Display for CheckFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            _ => "warning",
        };
        write!(f, "{severity}[{}] {}", self.code, self.set)?;
        if let Some(file) = &self.file {
            write!(f, "/{file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Whether the PostgreSQL half of the check ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresCheck {
    Ran,
    Skipped(String),
}

/// How one set fared on one dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetRun {
    pub set: SetKind,
    pub dialect: Dialect,
    pub outcome: SetOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutcome {
    /// Every migration applied; `proven` of the `reversible` ones went up → down → up to the
    /// same schema (the others are findings).
    Applied { reversible: usize, proven: usize },
    /// A migration failed: see the findings.
    Failed,
    /// Not applied on this dialect, and why.
    Skipped(String),
}

/// How the admin-user script fared on one dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUserRun {
    pub dialect: Dialect,
    pub outcome: AdminUserOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminUserOutcome {
    /// Ran twice: the first run added these rows (table, rows), the second added none.
    Idempotent { added: Vec<(String, i64)> },
    /// The file holds no statement: tenants get no administrator.
    NoStatement,
    /// It failed a requirement: see the findings.
    Failed,
    /// The set has no file for this dialect: see the findings.
    Missing,
    /// Not run on this dialect, and why.
    Skipped(String),
}

/// The result of a check.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub findings: Vec<CheckFinding>,
    /// The schema each set produced, per dialect that ran.
    pub schemas: Vec<(SetKind, Dialect, SchemaSnapshot)>,
    pub postgres: PostgresCheck,
    /// Migrations proven to go up → down → up to the same schema, per dialect (failures are
    /// findings, not counted here).
    pub round_trips: Vec<(Dialect, usize)>,
    /// Every set on every dialect that ran, in order.
    pub runs: Vec<SetRun>,
    /// The admin-user script on every dialect that ran.
    pub admin_user: Vec<AdminUserRun>,
}

impl CheckReport {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.len() - self.errors()
    }
}

/// Where the check may create a throwaway PostgreSQL database, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub postgres: Option<PgConnectOptions>,
}

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
            findings.push(CheckFinding {
                severity: finding.code.severity(),
                set: set.kind,
                file: Some(script.file.clone()),
                line: Some(finding.line),
                code: finding.code.as_str().to_owned(),
                message: finding.message,
            });
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
                    findings.push(CheckFinding {
                        severity: finding.code.severity(),
                        set: set.kind,
                        file: Some(script.file.clone()),
                        line: Some(finding.line),
                        code: finding.code.as_str().to_owned(),
                        message: finding.message,
                    });
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
                file: Some(super::source::APPROVALS_FILE.to_owned()),
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

/// Runs the whole check.
pub async fn run(catalog: &Catalog, options: &CheckOptions, scratch: &Path) -> CheckReport {
    let mut findings = static_findings(catalog);
    findings.extend(provisioning_findings(catalog));
    let mut report = CheckReport {
        findings,
        schemas: Vec::new(),
        postgres: PostgresCheck::Skipped("no PostgreSQL server was given".into()),
        round_trips: Vec::new(),
        runs: Vec::new(),
        admin_user: Vec::new(),
    };

    let sqlite = Engine::new(
        SqliteBackend::new(scratch.join("sqlite-check")),
        EngineOptions::default(),
    );
    exercise(&sqlite, catalog, &mut report).await;

    if let Some(server) = &options.postgres {
        match ThrowawayDatabase::create(server).await {
            Ok(database) => {
                match PgSchemaBackend::connect(database.options.clone(), 2).await {
                    Ok(backend) => {
                        let engine = Engine::new(backend, EngineOptions::default());
                        exercise(&engine, catalog, &mut report).await;
                        engine.backend().pool().close().await;
                        report.postgres = PostgresCheck::Ran;
                    }
                    Err(e) => {
                        report.postgres = PostgresCheck::Skipped(format!(
                            "cannot connect to the throwaway database: {e}"
                        ))
                    }
                }
                database.drop().await;
            }
            Err(reason) => report.postgres = PostgresCheck::Skipped(reason),
        }
    }
    compare_dialects(&mut report);
    report
}

/// Why `set` is not applied on `dialect`, if it is not: a set untested on SQLite, or a
/// tenant-scoped set that builds on one (`skipped_tenant_set`).
fn skip_reason(
    set: &MigrationSet,
    dialect: Dialect,
    skipped_tenant_set: Option<SetKind>,
) -> Option<String> {
    if dialect != Dialect::Sqlite {
        return None;
    }
    if set.settings.sqlite == SqlitePolicy::Untested {
        return Some(format!("its {SETTINGS_FILE} says `sqlite = untested`"));
    }
    match skipped_tenant_set {
        Some(base) if set.kind.is_tenant_scoped() => Some(format!(
            "it builds on the {base} set, which is not tested on SQLite"
        )),
        _ => None,
    }
}

/// Applies every set on one backend, proving up → down → up per reversible migration, then
/// runs the admin-user script on the scratch tenant.
async fn exercise<B: MigrationBackend>(
    engine: &Engine<B>,
    catalog: &Catalog,
    report: &mut CheckReport,
) {
    let dialect = engine.backend().dialect();
    let slug = TenantSlug::parse("check_tenant").expect("a valid literal slug");
    let tenant = Target::Tenant(slug.clone());
    let _ = engine.backend().drop_storage(&slug).await;
    if let Err(e) = engine.backend().create_storage(&slug).await {
        report.findings.push(runtime_finding(
            SetKind::Tenant,
            dialect,
            None,
            format!("cannot create the scratch tenant: {e}"),
        ));
        return;
    }
    let mut round_trips = 0;
    let mut skipped_tenant_set = None;
    // Whether every tenant-scoped set applied: the admin-user script runs after them.
    let mut tenant_ready = Ok(());
    for set in catalog.sets() {
        if let Some(reason) = skip_reason(set, dialect, skipped_tenant_set) {
            if set.kind.is_tenant_scoped() {
                skipped_tenant_set = skipped_tenant_set.or(Some(set.kind));
                tenant_ready = tenant_ready.and(Err(format!(
                    "the {} set is not applied on {dialect}",
                    set.kind
                )));
            }
            report.runs.push(SetRun {
                set: set.kind,
                dialect,
                outcome: SetOutcome::Skipped(reason),
            });
            continue;
        }
        let target = if set.kind.is_tenant_scoped() {
            tenant.clone()
        } else {
            Target::Platform
        };
        let (mut reversible, mut proven) = (0, 0);
        let mut previous = Version::ZERO;
        let mut ok = true;
        for migration in &set.migrations {
            let version = migration.version;
            let file = Some(migration.file_name(dialect, Direction::Up));
            let before = engine.snapshot(&target).await;
            if let Err(e) = engine.apply(&target, set, Some(version), &()).await {
                report.findings.push(runtime_finding(
                    set.kind,
                    dialect,
                    file,
                    format!("does not apply: {e}"),
                ));
                ok = false;
                break;
            }
            if migration.irreversible_reason(dialect).is_some() {
                previous = version;
                continue;
            }
            reversible += 1;
            let after = engine.snapshot(&target).await;
            if let Err(e) = engine.revert(&target, set, previous, true, &()).await {
                report.findings.push(runtime_finding(
                    set.kind,
                    dialect,
                    file,
                    format!("its down file fails: {e}"),
                ));
                ok = false;
                break;
            }
            let reverted = engine.snapshot(&target).await;
            if let Err(e) = engine.apply(&target, set, Some(version), &()).await {
                report.findings.push(runtime_finding(
                    set.kind,
                    dialect,
                    file,
                    format!("does not apply again after its down: {e}"),
                ));
                ok = false;
                break;
            }
            let again = engine.snapshot(&target).await;
            match (before, after, reverted, again) {
                (Ok(before), Ok(after), Ok(reverted), Ok(again)) => {
                    if reverted != before {
                        report.findings.push(round_trip_finding(
                            set.kind,
                            dialect,
                            &file,
                            "its down file does not restore the schema it started from",
                            &before,
                            &reverted,
                        ));
                    }
                    if again != after {
                        report.findings.push(round_trip_finding(
                            set.kind,
                            dialect,
                            &file,
                            "applying it again after its down gives a different schema",
                            &after,
                            &again,
                        ));
                    }
                    if reverted == before && again == after {
                        proven += 1;
                    }
                }
                (a, b, c, d) => {
                    let error = [a.err(), b.err(), c.err(), d.err()]
                        .into_iter()
                        .flatten()
                        .next();
                    report.findings.push(runtime_finding(
                        set.kind,
                        dialect,
                        file,
                        format!(
                            "cannot read the schema: {}",
                            error.map(|e| e.to_string()).unwrap_or_default()
                        ),
                    ));
                }
            }
            previous = version;
        }
        round_trips += proven;
        if ok && let Ok(schema) = engine.snapshot(&target).await {
            // Tenant seeds add rows, not tables: show the schema once per target.
            if set.kind != SetKind::TenantSeeds {
                report.schemas.push((set.kind, dialect, schema));
            }
        }
        if !ok && set.kind.is_tenant_scoped() {
            tenant_ready = tenant_ready.and(Err(format!("the {} set did not apply", set.kind)));
        }
        report.runs.push(SetRun {
            set: set.kind,
            dialect,
            outcome: if ok {
                SetOutcome::Applied { reversible, proven }
            } else {
                SetOutcome::Failed
            },
        });
    }
    report.round_trips.push((dialect, round_trips));

    let outcome = match (tenant_ready, catalog.tenant_seeds.admin_user(dialect)) {
        (Err(reason), _) => AdminUserOutcome::Skipped(reason),
        (Ok(()), None) => AdminUserOutcome::Missing,
        (Ok(()), Some(script)) => {
            check_admin_user(engine, &tenant, &catalog.tenant_seeds, script, report).await
        }
    };
    report.admin_user.push(AdminUserRun { dialect, outcome });
    let _ = engine.backend().drop_storage(&slug).await;
}

/// The values the check binds to the admin-user script: no one's personal data.
const CHECK_ADMIN: AdminValues<'static> = AdminValues {
    tenant_id: uuid::Uuid::from_u128(0x7e57_c4ec_0000_4000_8000_0000_0000_0001),
    tenant_slug: "check_tenant",
    tenant_name: "Check Tenant",
    admin_email: "Check.Admin@example.invalid",
    admin_name: "Check Admin",
};

/// Runs the admin-user script twice on the scratch tenant (every tenant set applied): the first
/// run must affect a row, the second must add none (a redelivered registration).
async fn check_admin_user<B: MigrationBackend>(
    engine: &Engine<B>,
    tenant: &Target,
    seeds: &MigrationSet,
    script: &AdminUserScript,
    report: &mut CheckReport,
) -> AdminUserOutcome {
    if script.statements.is_empty() {
        return AdminUserOutcome::NoStatement;
    }
    let dialect = engine.backend().dialect();
    let mut fail = |message: String| {
        report.findings.push(CheckFinding {
            severity: Severity::Error,
            set: seeds.kind,
            file: Some(script.file.clone()),
            line: None,
            code: format!("admin-user-{dialect}"),
            message,
        });
        AdminUserOutcome::Failed
    };
    let before = match engine.row_counts(tenant).await {
        Ok(counts) => counts,
        Err(e) => return fail(format!("cannot count the scratch tenant's rows: {e}")),
    };
    let affected = match engine.run_admin_user(tenant, seeds, &CHECK_ADMIN).await {
        Ok(rows) => rows,
        Err(e) => {
            return fail(format!(
                "does not run on a tenant with every tenant migration and seed applied: {e}"
            ));
        }
    };
    if affected == 0 {
        return fail(
            "affected no row: it must invite the administrator (a file holding only comments means the tenants have none)"
                .into(),
        );
    }
    let once = match engine.row_counts(tenant).await {
        Ok(counts) => counts,
        Err(e) => return fail(format!("cannot count the scratch tenant's rows: {e}")),
    };
    if let Err(e) = engine.run_admin_user(tenant, seeds, &CHECK_ADMIN).await {
        return fail(format!(
            "fails when it runs a second time, as it does for a redelivered registration: {e}"
        ));
    }
    let twice = match engine.row_counts(tenant).await {
        Ok(counts) => counts,
        Err(e) => return fail(format!("cannot count the scratch tenant's rows: {e}")),
    };
    let grew = added_rows(&once, &twice);
    if !grew.is_empty() {
        let detail = grew
            .iter()
            .map(|(table, rows)| format!("{table} +{rows}"))
            .collect::<Vec<_>>()
            .join(", ");
        return fail(format!(
            "is not idempotent: running it a second time added rows ({detail}), so a redelivered registration would add a second administrator; skip what exists (e.g. `ON CONFLICT … DO NOTHING`)"
        ));
    }
    AdminUserOutcome::Idempotent {
        added: added_rows(&before, &once),
    }
}

/// The tables that have more rows in `after` than in `before`, and how many more.
fn added_rows(
    before: &std::collections::BTreeMap<String, i64>,
    after: &std::collections::BTreeMap<String, i64>,
) -> Vec<(String, i64)> {
    after
        .iter()
        .filter_map(|(table, rows)| {
            let more = rows - before.get(table).copied().unwrap_or(0);
            (more > 0).then(|| (table.clone(), more))
        })
        .collect()
}

fn runtime_finding(
    set: SetKind,
    dialect: Dialect,
    file: Option<String>,
    message: String,
) -> CheckFinding {
    CheckFinding {
        severity: Severity::Error,
        set,
        file,
        line: None,
        code: format!("apply-{dialect}"),
        message,
    }
}

fn round_trip_finding(
    set: SetKind,
    dialect: Dialect,
    file: &Option<String>,
    what: &str,
    expected: &SchemaSnapshot,
    actual: &SchemaSnapshot,
) -> CheckFinding {
    CheckFinding {
        severity: Severity::Error,
        set,
        file: file.clone(),
        line: None,
        code: format!("round-trip-{dialect}"),
        message: format!("{what}: {}", describe_difference(expected, actual)),
    }
}

/// A short description of how two snapshots differ.
pub fn describe_difference(expected: &SchemaSnapshot, actual: &SchemaSnapshot) -> String {
    let mut differences = Vec::new();
    for name in expected
        .tables
        .keys()
        .filter(|t| !actual.tables.contains_key(*t))
    {
        differences.push(format!("table {name} is missing"));
    }
    for name in actual
        .tables
        .keys()
        .filter(|t| !expected.tables.contains_key(*t))
    {
        differences.push(format!("table {name} is left over"));
    }
    for (name, table) in &expected.tables {
        let Some(other) = actual.tables.get(name) else {
            continue;
        };
        if table.columns != other.columns {
            differences.push(format!("columns of {name} differ"));
        }
        if table.indexes != other.indexes {
            differences.push(format!("indexes of {name} differ"));
        }
        if table.constraints != other.constraints {
            differences.push(format!("constraints of {name} differ"));
        }
    }
    if differences.is_empty() {
        "no difference".to_owned()
    } else {
        differences.join(", ")
    }
}

/// Both dialects must produce the same tables with the same columns, in the same order.
fn compare_dialects(report: &mut CheckReport) {
    let mut findings = Vec::new();
    for (set, dialect, postgres) in &report.schemas {
        if *dialect != Dialect::Postgres {
            continue;
        }
        let Some((_, _, sqlite)) = report
            .schemas
            .iter()
            .find(|(s, d, _)| s == set && *d == Dialect::Sqlite)
        else {
            continue;
        };
        let names = |schema: &SchemaSnapshot| -> Vec<(String, Vec<String>)> {
            schema
                .tables
                .iter()
                .map(|(t, shape)| {
                    (
                        t.clone(),
                        shape.columns.iter().map(|c| c.name.clone()).collect(),
                    )
                })
                .collect()
        };
        let (pg, lite) = (names(postgres), names(sqlite));
        if pg != lite {
            let pg_tables: Vec<&String> = pg.iter().map(|(t, _)| t).collect();
            let lite_tables: Vec<&String> = lite.iter().map(|(t, _)| t).collect();
            let detail = if pg_tables != lite_tables {
                format!("tables differ: postgres {pg_tables:?}, sqlite {lite_tables:?}")
            } else {
                pg.iter()
                    .zip(&lite)
                    .filter(|(a, b)| a != b)
                    .map(|((t, a), (_, b))| format!("{t}: postgres {a:?}, sqlite {b:?}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            findings.push(CheckFinding {
                severity: Severity::Error,
                set: *set,
                file: None,
                line: None,
                code: "dialect-parity".into(),
                message: format!("the dialects produce different tables or columns: {detail}"),
            });
        }
    }
    report.findings.extend(findings);
}

/// A database created for the check and dropped after it.
struct ThrowawayDatabase {
    server: PgConnectOptions,
    name: String,
    options: PgConnectOptions,
}

impl ThrowawayDatabase {
    async fn create(server: &PgConnectOptions) -> Result<Self, String> {
        let name = format!("tenancy_check_{}", uuid::Uuid::new_v4().simple());
        let unreachable = |e: sqlx::Error| {
            format!(
                "PostgreSQL at {}:{} is not reachable ({e})",
                server.get_host(),
                server.get_port()
            )
        };
        let mut admin = server.connect().await.map_err(unreachable)?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE {}",
            quote_ident(&name)
        )))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("cannot create a throwaway database: {e}"))?;
        let _ = admin.close().await;
        Ok(ThrowawayDatabase {
            server: server.clone(),
            options: server.clone().database(&name),
            name,
        })
    }

    async fn drop(self) {
        if let Ok(mut admin) = self.server.connect().await {
            let sql = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            );
            let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut admin).await;
            let _ = admin.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use std::sync::Arc;

    use super::*;

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
