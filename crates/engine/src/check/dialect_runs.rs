//! The dialect runs: every set applied on a scratch SQLite directory and, when a server is
//! given, on a throwaway PostgreSQL database, each reversible migration proven up → down → up;
//! then the two dialects' schemas compared.

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::admin_runs::check_admin_user;
use super::report::{
    AdminUserOutcome, AdminUserRun, CheckFinding, CheckReport, SetOutcome, SetRun,
};
use crate::backend::{MigrationBackend, SchemaSnapshot};
use crate::dialect::Dialect;
use crate::engine::Engine;
use crate::lint::Severity;
use crate::settings::{SETTINGS_FILE, SqlitePolicy};
use crate::source::{Catalog, Direction, Migration, MigrationSet, SetKind};
use crate::sql::quote_ident;
use crate::target::Target;
use domain::tenant::TenantSlug;
use domain::version::Version;

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
pub(super) async fn exercise<B: MigrationBackend>(
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
            match prove_migration(engine, &target, set, migration, previous, report).await {
                Proof::Failed => {
                    ok = false;
                    break;
                }
                Proof::Irreversible => {}
                Proof::Reversible { proven: true } => {
                    reversible += 1;
                    proven += 1;
                }
                Proof::Reversible { proven: false } => reversible += 1,
            }
            previous = migration.version;
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

/// How one migration fared in [`prove_migration`].
enum Proof {
    /// It applied; it cannot be reverted, so there is nothing more to prove.
    Irreversible,
    /// It applied, went down and up again; `proven` when both gave back the same schema.
    Reversible { proven: bool },
    /// A step failed (a finding says which): the set stops there.
    Failed,
}

/// Applies `migration` (the set's earlier migrations are applied, up to `previous`) and, if it is
/// reversible, reverts it to `previous` and applies it again: the down must restore the schema
/// it started from, and the second up must give the same schema as the first.
async fn prove_migration<B: MigrationBackend>(
    engine: &Engine<B>,
    target: &Target,
    set: &MigrationSet,
    migration: &Migration,
    previous: Version,
    report: &mut CheckReport,
) -> Proof {
    let dialect = engine.backend().dialect();
    let version = migration.version;
    let file = Some(migration.file_name(dialect, Direction::Up));
    let before = engine.snapshot(target).await;
    if let Err(e) = engine.apply(target, set, Some(version), &()).await {
        report.findings.push(runtime_finding(
            set.kind,
            dialect,
            file,
            format!("does not apply: {e}"),
        ));
        return Proof::Failed;
    }
    if migration.irreversible_reason(dialect).is_some() {
        return Proof::Irreversible;
    }
    let after = engine.snapshot(target).await;
    if let Err(e) = engine.revert(target, set, previous, true, &()).await {
        report.findings.push(runtime_finding(
            set.kind,
            dialect,
            file,
            format!("its down file fails: {e}"),
        ));
        return Proof::Failed;
    }
    let reverted = engine.snapshot(target).await;
    if let Err(e) = engine.apply(target, set, Some(version), &()).await {
        report.findings.push(runtime_finding(
            set.kind,
            dialect,
            file,
            format!("does not apply again after its down: {e}"),
        ));
        return Proof::Failed;
    }
    let again = engine.snapshot(target).await;
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
            Proof::Reversible {
                proven: reverted == before && again == after,
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
            Proof::Reversible { proven: false }
        }
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
pub(super) fn compare_dialects(report: &mut CheckReport) {
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
pub(super) struct ThrowawayDatabase {
    server: PgConnectOptions,
    name: String,
    pub(super) options: PgConnectOptions,
}

impl ThrowawayDatabase {
    pub(super) async fn create(server: &PgConnectOptions) -> Result<Self, String> {
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

    pub(super) async fn drop(self) {
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
