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
//!
//! # Layout
//! `static_findings.rs` (1–4 and the lints of 7: pure), `dialect_runs.rs` (5 and 6),
//! `admin_runs.rs` (the runs of 7), `report.rs` (what a check returns).

mod admin_runs;
mod dialect_runs;
mod report;
mod static_findings;

use std::path::Path;

use sqlx::postgres::PgConnectOptions;

pub use dialect_runs::describe_difference;
pub use report::{
    AdminUserOutcome, AdminUserRun, CheckFinding, CheckReport, PostgresCheck, SetOutcome, SetRun,
};
pub use static_findings::{provisioning_findings, static_findings};

use super::backend::{PgSchemaBackend, SqliteBackend};
use super::engine::{Engine, EngineOptions};
use super::source::Catalog;
use dialect_runs::{ThrowawayDatabase, compare_dialects, exercise};

/// Where the check may create a throwaway PostgreSQL database, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub postgres: Option<PgConnectOptions>,
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
