//! `tenantctl migrations check`: runs the check of `engine::check` and prints, by
//! default, a summary per set (what was checked, how it applied, its findings, the size of the
//! schema it builds); the full schema with `--verbose`; only the findings and the result with
//! `--quiet`.

use std::path::PathBuf;
use std::process::ExitCode;

use engine::check::{self, AdminUserOutcome, CheckOptions, CheckReport, PostgresCheck, SetOutcome};
use engine::lint::Severity;
use engine::settings::SqlitePolicy;
use engine::{Catalog, Dialect, MigrationSet, SetKind};
use shared::config::{Config, DatabaseUrl};

use super::load_catalog;
use crate::out::outln;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory holding platform/, tenant/ and tenant-seeds/ [default: $MIGRATIONS_DIR, else the sets built into this binary].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Skip the PostgreSQL half (the lints, the parity checks and SQLite still run).
    #[arg(long)]
    no_postgres: bool,
    /// Print only the findings and the result, not the summary of each set.
    #[arg(long, short, conflicts_with = "verbose")]
    quiet: bool,
    /// Also print the full resulting schema (tables, columns, indexes, constraints).
    #[arg(long, short)]
    verbose: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (catalog, origin) = load_catalog(args.dir.as_deref())?;
    outln!("migrations: {origin}");

    let postgres = if args.no_postgres {
        None
    } else {
        // The throwaway database is created on the tenants' server, through its `postgres`
        // database (the platform database may not exist yet).
        match Config::from_env()?.tenant_database_url {
            DatabaseUrl::Postgres { options, .. } => Some(options.database("postgres")),
            DatabaseUrl::Sqlite { .. } => None,
        }
    };
    let scratch = std::env::temp_dir().join(format!("tenantctl-check-{}", std::process::id()));
    let report = check::run(&catalog, &CheckOptions { postgres }, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);

    if !args.quiet {
        for set in catalog.sets() {
            print_summary(set, &catalog, &report);
        }
    }
    if args.verbose {
        print_schemas(&report);
    }
    if !report.findings.is_empty() {
        outln!("\nfindings:");
        for finding in &report.findings {
            outln!("{finding}");
        }
    }
    print_result(&report);
    Ok(if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The dialect whose schema is shown: PostgreSQL when it ran, else SQLite.
fn shown_dialect(report: &CheckReport) -> Dialect {
    if report.postgres == PostgresCheck::Ran {
        Dialect::Postgres
    } else {
        Dialect::Sqlite
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One set: what was checked, how it applied on each dialect, its schema's size, its findings.
fn print_summary(set: &MigrationSet, catalog: &Catalog, report: &CheckReport) {
    outln!(
        "\n{}: {}, latest {}",
        set.kind,
        count(set.migrations.len(), "migration", "migrations"),
        set.latest().map_or("-".to_owned(), |v| v.to_string())
    );

    let mut checked = vec!["lints".to_owned(), "approvals".to_owned()];
    checked.push(match set.settings.sqlite {
        SqlitePolicy::Required => "dialect parity".to_owned(),
        SqlitePolicy::Untested => {
            "dialect parity as warnings (settings.conf: sqlite = untested)".to_owned()
        }
    });
    if set.kind == SetKind::TenantSeeds
        && let Ok(admin) = catalog.admin_user()
    {
        let params: Vec<String> = admin.params().iter().map(ToString::to_string).collect();
        checked.push(format!(
            "{} parameters ({})",
            admin.file,
            if params.is_empty() {
                "none".to_owned()
            } else {
                params.join(", ")
            }
        ));
    }
    outln!("  checked: {}", checked.join(", "));

    for run in report.runs.iter().filter(|r| r.set == set.kind) {
        let outcome = match &run.outcome {
            SetOutcome::Applied { reversible, proven } => format!(
                "applied; up -> down -> up gave the same schema for {proven} of {}",
                count(*reversible, "reversible migration", "reversible migrations")
            ),
            SetOutcome::Failed => "failed (see the findings)".to_owned(),
            SetOutcome::Skipped(reason) => format!("not applied: {reason}"),
        };
        outln!("  {}: {outcome}", run.dialect);
    }

    if set.kind == SetKind::TenantSeeds {
        for run in &report.admin_user {
            let outcome = match &run.outcome {
                AdminUserOutcome::Idempotent { added } if added.is_empty() => {
                    "ran twice: the first run changed rows without adding any, the second added none".to_owned()
                }
                AdminUserOutcome::Idempotent { added } => format!(
                    "ran twice: the first run added {}, the second none",
                    added
                        .iter()
                        .map(|(table, rows)| format!("{} to {table}", count(
                            usize::try_from(*rows).unwrap_or(usize::MAX),
                            "row",
                            "rows"
                        )))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                AdminUserOutcome::NoStatement => {
                    "holds no statement: tenants get no administrator".to_owned()
                }
                AdminUserOutcome::Failed => "failed (see the findings)".to_owned(),
                AdminUserOutcome::Missing => "missing (see the findings)".to_owned(),
                AdminUserOutcome::Skipped(reason) => format!("not run: {reason}"),
            };
            outln!("  admin user ({}): {outcome}", run.dialect);
        }
    }

    let shown = shown_dialect(report);
    let schema = report
        .schemas
        .iter()
        .filter(|(kind, _, _)| *kind == set.kind)
        .min_by_key(|(_, dialect, _)| *dialect != shown);
    if let Some((_, dialect, schema)) = schema {
        let size = schema.size();
        let mut parts = vec![
            count(size.tables, "table", "tables"),
            count(size.columns, "column", "columns"),
            count(size.indexes, "index", "indexes"),
        ];
        if *dialect == Dialect::Postgres {
            parts.push(count(size.constraints, "constraint", "constraints"));
        }
        outln!("  schema ({dialect}): {}", parts.join(", "));
    }

    let (errors, warnings) =
        report
            .findings
            .iter()
            .filter(|f| f.set == set.kind)
            .fold((0, 0), |(e, w), f| match f.severity {
                Severity::Error => (e + 1, w),
                _ => (e, w + 1),
            });
    if errors + warnings == 0 {
        outln!("  findings: none");
    } else {
        outln!(
            "  findings: {}, {}",
            count(errors, "error", "errors"),
            count(warnings, "warning", "warnings")
        );
    }
}

/// The full schema of the platform database and of each tenant (`--verbose`).
fn print_schemas(report: &CheckReport) {
    let shown = shown_dialect(report);
    for (set, dialect, schema) in &report.schemas {
        if *dialect == shown {
            let scope = if *set == SetKind::Platform {
                "platform database"
            } else {
                "each tenant"
            };
            outln!("\nschema of {scope} ({dialect}):\n{schema}");
        }
    }
}

/// How each dialect went, parity, and the totals.
fn print_result(report: &CheckReport) {
    outln!();
    for (dialect, proven) in &report.round_trips {
        let runs: Vec<_> = report
            .runs
            .iter()
            .filter(|r| r.dialect == *dialect)
            .collect();
        let applied = runs
            .iter()
            .filter(|r| matches!(r.outcome, SetOutcome::Applied { .. }))
            .count();
        let not = |wanted: fn(&SetOutcome) -> bool| {
            runs.iter()
                .filter(|r| wanted(&r.outcome))
                .map(|r| r.set.to_string())
                .collect::<Vec<_>>()
        };
        let failed = not(|o| matches!(o, SetOutcome::Failed));
        let skipped = not(|o| matches!(o, SetOutcome::Skipped(_)));
        let sets = if failed.is_empty() && skipped.is_empty() {
            "every set applied".to_owned()
        } else {
            let mut why = Vec::new();
            if !failed.is_empty() {
                why.push(format!("failed: {}", failed.join(", ")));
            }
            if !skipped.is_empty() {
                why.push(format!("not applied: {}", skipped.join(", ")));
            }
            format!(
                "{applied} of {} sets applied ({})",
                runs.len(),
                why.join("; ")
            )
        };
        outln!(
            "{dialect}: {sets}; up -> down -> up gave the same schema for {proven} reversible migrations"
        );
    }
    if let PostgresCheck::Skipped(reason) = &report.postgres {
        outln!("postgres: skipped: {reason}");
    }
    let parity_findings = report.findings.iter().any(|f| f.code == "dialect-parity");
    let untested: Vec<String> = report
        .runs
        .iter()
        .filter(|r| r.dialect == Dialect::Sqlite && matches!(r.outcome, SetOutcome::Skipped(_)))
        .map(|r| r.set.to_string())
        .collect();
    if !untested.is_empty() {
        outln!(
            "dialect parity: not compared for {} (not applied on SQLite)",
            untested.join(", ")
        );
    } else if !parity_findings && report.postgres == PostgresCheck::Ran {
        outln!(
            "dialect parity: same versions and the same tables and columns in PostgreSQL and SQLite"
        );
    } else if !parity_findings {
        outln!(
            "dialect parity: same versions and reversibility in PostgreSQL and SQLite (tables and columns are compared when PostgreSQL runs)"
        );
    }
    outln!(
        "result: {} error(s), {} warning(s)",
        report.errors(),
        report.warnings()
    );
}
