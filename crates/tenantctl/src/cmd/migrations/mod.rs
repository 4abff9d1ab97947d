//! `tenantctl migrations …`

mod approve;
mod check;
mod new;
mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use engine::{Catalog, SetKind};

#[derive(Debug, Subcommand)]
pub enum Migrations {
    /// Create a timestamped up/down pair (PostgreSQL and SQLite variants) in a set.
    #[command(after_long_help = new::EXAMPLES)]
    New(new::Args),
    /// Load and lint every set, check dialect parity and approvals, apply every set on SQLite
    /// and a throwaway PostgreSQL database, prove up → down → up, run the admin-user script,
    /// and print a summary per set (the full schema with --verbose).
    /// Exits non-zero when anything would stop a deploy or the provisioner.
    #[command(after_long_help = CHECK_EXAMPLES)]
    Check(check::Args),
    /// Show the platform's and every tenant's applied version, pending migrations and drift.
    #[command(after_long_help = STATUS_EXAMPLES)]
    Status(status::Args),
    /// Record the approval of a destructive migration in the set's approvals.txt.
    #[command(after_long_help = approve::EXAMPLES)]
    Approve(approve::Args),
}

pub use status::{Args as StatusArgs, EXAMPLES as STATUS_EXAMPLES};

const CHECK_EXAMPLES: &str = "Examples:
  tenantctl migrations check                 # everything, with a throwaway PostgreSQL database
  tenantctl migrations check --no-postgres --quiet
  tenantctl migrations check --verbose       # and the full resulting schema
  tenantctl migrations check --dir ./migrations";

pub const EXAMPLES: &str = "Examples:
  tenantctl migrations new add_space_booking_rules
  tenantctl migrations check
  tenantctl migrations status --tenant acme_towers
  tenantctl migrations approve 20270101000000 --by ana.sre --reason \"exported first\"";

/// `tenantctl status`: the same report as `migrations status`.
pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    status::run(args).await
}

pub async fn run(command: Migrations) -> anyhow::Result<ExitCode> {
    match command {
        Migrations::New(args) => new::run(args),
        Migrations::Check(args) => check::run(args).await,
        Migrations::Status(args) => status::run(args).await,
        Migrations::Approve(args) => approve::run(args),
    }
}

/// A migration set, as named on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SetArg {
    /// The platform database's own schema.
    Platform,
    /// Every tenant's schema or database.
    Tenant,
    /// Every tenant's reference data.
    TenantSeeds,
}

impl From<SetArg> for SetKind {
    fn from(set: SetArg) -> Self {
        match set {
            SetArg::Platform => SetKind::Platform,
            SetArg::Tenant => SetKind::Tenant,
            SetArg::TenantSeeds => SetKind::TenantSeeds,
        }
    }
}

/// The sets to read: `--dir`, else `MIGRATIONS_DIR`, else the ones built into this binary.
pub(crate) fn load_catalog(dir: Option<&Path>) -> anyhow::Result<(Catalog, String)> {
    let from_env = std::env::var_os("MIGRATIONS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let dir = dir.map(Path::to_path_buf).or(from_env);
    let catalog = Catalog::load(dir.as_deref()).context("loading the migration sets")?;
    let origin = dir.map_or_else(
        || "built into this binary".to_owned(),
        |d| d.display().to_string(),
    );
    Ok((catalog, origin))
}

/// The directory to write into: `--dir`, else `MIGRATIONS_DIR`, else `./migrations`.
fn writable_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let from_env = std::env::var_os("MIGRATIONS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let dir = dir
        .or(from_env)
        .unwrap_or_else(|| PathBuf::from("migrations"));
    anyhow::ensure!(
        dir.is_dir(),
        "no migrations directory at {}: run from the repository root, or pass --dir / set MIGRATIONS_DIR",
        dir.display()
    );
    Ok(dir)
}
