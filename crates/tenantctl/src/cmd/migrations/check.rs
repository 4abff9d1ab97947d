//! `tenantctl migrations check`

use std::path::PathBuf;
use std::process::ExitCode;

use shared::config::{Config, DatabaseUrl};
use shared::migrate::check::{self, CheckOptions, PostgresCheck};
use shared::migrate::lint::Severity;
use shared::migrate::{Dialect, SetKind};

use super::load_catalog;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory holding platform/, tenant/ and tenant-seeds/ [default: $MIGRATIONS_DIR, else the sets built into this binary].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Skip the PostgreSQL half (the lints, the parity checks and SQLite still run).
    #[arg(long)]
    no_postgres: bool,
    /// Do not print the resulting schema.
    #[arg(long, short)]
    quiet: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (catalog, origin) = load_catalog(args.dir.as_deref())?;
    println!("migrations: {origin}");
    for set in catalog.sets() {
        println!(
            "  {:<13} {:>3} migrations, latest {}",
            set.kind.dir_name(),
            set.migrations.len(),
            set.latest().map_or("-".to_owned(), |v| v.to_string())
        );
    }

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

    if !report.findings.is_empty() {
        println!();
    }
    for finding in &report.findings {
        println!("{finding}");
    }

    if !args.quiet {
        let shown = if report.postgres == PostgresCheck::Ran {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        };
        for (set, dialect, schema) in &report.schemas {
            if *dialect == shown {
                let scope = if *set == SetKind::Platform {
                    "platform database"
                } else {
                    "each tenant"
                };
                println!("\nschema of {scope} ({dialect}):\n{schema}");
            }
        }
    }

    println!();
    for (dialect, proven) in &report.round_trips {
        println!(
            "{dialect}: every set applied; up -> down -> up gave the same schema for {proven} reversible migrations"
        );
    }
    if let PostgresCheck::Skipped(reason) = &report.postgres {
        println!("postgres: skipped: {reason}");
    }
    let parity_errors = report.findings.iter().any(|f| f.code == "dialect-parity");
    if !parity_errors {
        println!(
            "dialect parity: same versions and the same tables and columns in PostgreSQL and SQLite"
        );
    }
    let errors = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    println!(
        "result: {errors} error(s), {} warning(s)",
        report.findings.len() - errors
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
