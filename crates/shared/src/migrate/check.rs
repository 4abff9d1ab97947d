//! Everything `tenantctl migrations check` proves about the migration sets:
//!
//! 1. every set loads (names, directives, balanced SQL — done by [`Catalog::load`]);
//! 2. lints: missing down files, cross-schema references in tenant sets, destructive and heavy
//!    locking statements, misuse of `-- no-transaction` and batches;
//! 3. destructive up scripts are approved in `approvals.txt` (a deploy refuses them otherwise);
//! 4. dialect parity: the same versions in PostgreSQL and SQLite, with the same reversibility;
//! 5. every set applies on SQLite and, when a server is given and reachable, on a throwaway
//!    PostgreSQL database; each reversible migration goes up → down → up and must give back the
//!    same schema both times;
//! 6. both dialects end with the same tables and columns.

use std::fmt;
use std::path::Path;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::backend::{MigrationBackend, PgSchemaBackend, SchemaSnapshot, SqliteBackend};
use super::engine::{Engine, EngineOptions};
use super::kinds::{Dialect, Direction, SetKind};
use super::lint::{self, LintInput, Severity};
use super::source::{Catalog, MigrationSet};
use super::target::Target;
use super::version::Version;
use crate::tenant::{TenantSlug, quote_ident};

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

/// The static half of the check: lints, approvals, parity. Pure.
pub fn static_findings(catalog: &Catalog) -> Vec<CheckFinding> {
    let mut findings = Vec::new();
    for set in catalog.sets() {
        lint_set(set, &mut findings);
        check_parity(set, &mut findings);
        check_approvals(set, &mut findings);
    }
    findings
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
            findings.push(CheckFinding {
                severity: Severity::Error,
                set: set.kind,
                file: Some(migration.file_name(Dialect::Postgres, direction)),
                line: None,
                code: "dialect-parity".into(),
                message,
            });
        }
        let batch = |d| {
            migration
                .script(d, Direction::Up)
                .map(|s| s.directives.batch_size.is_some())
        };
        if let (Some(pg), Some(lite)) = (batch(Dialect::Postgres), batch(Dialect::Sqlite))
            && pg != lite
        {
            findings.push(CheckFinding {
                severity: Severity::Error,
                set: set.kind,
                file: Some(migration.primary().file.clone()),
                line: None,
                code: "dialect-parity".into(),
                message: "one dialect is a batched data migration and the other is not".into(),
            });
        }
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
    let mut report = CheckReport {
        findings: static_findings(catalog),
        schemas: Vec::new(),
        postgres: PostgresCheck::Skipped("no PostgreSQL server was given".into()),
        round_trips: Vec::new(),
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

/// Applies every set on one backend, proving up → down → up per reversible migration.
async fn exercise<B: MigrationBackend>(
    engine: &Engine<B>,
    catalog: &Catalog,
    report: &mut CheckReport,
) {
    let dialect = engine.backend().dialect();
    let tenant = Target::Tenant(TenantSlug::parse("check_tenant").expect("a valid literal slug"));
    if let Target::Tenant(slug) = &tenant {
        let _ = engine.backend().drop_storage(slug).await;
        if let Err(e) = engine.backend().create_storage(slug).await {
            report.findings.push(runtime_finding(
                SetKind::Tenant,
                dialect,
                None,
                format!("cannot create the scratch tenant: {e}"),
            ));
            return;
        }
    }
    let mut round_trips = 0;
    for set in catalog.sets() {
        let target = if set.kind.is_tenant_scoped() {
            tenant.clone()
        } else {
            Target::Platform
        };
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
                        round_trips += 1;
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
        if ok && let Ok(schema) = engine.snapshot(&target).await {
            // Tenant seeds add rows, not tables: show the schema once per target.
            if set.kind != SetKind::TenantSeeds {
                report.schemas.push((set.kind, dialect, schema));
            }
        }
    }
    report.round_trips.push((dialect, round_trips));
    if let Target::Tenant(slug) = &tenant {
        let _ = engine.backend().drop_storage(slug).await;
    }
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
