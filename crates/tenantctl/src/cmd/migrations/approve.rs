//! `tenantctl migrations approve <version>`

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use domain::Version;
use engine::lint;
use engine::source::APPROVALS_FILE;
use engine::{Dialect, MigrationSet, SetKind};

use super::{SetArg, writable_dir};
use crate::out::outln;

pub const EXAMPLES: &str = "Examples:
  tenantctl migrations approve 20270101000000 --by ana.sre --reason \"exported to the warehouse first\"
  tenantctl migrations approve 20270101000000 --set platform --by ana.sre --reason \"table unused since 2025\"";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Version of the destructive migration.
    #[arg(value_name = "VERSION")]
    migration: Version,
    /// Who approves (an operator handle, not an email).
    #[arg(long)]
    by: String,
    /// Why the data loss is acceptable (e.g. "exported to the warehouse on 2026-11-30").
    #[arg(long)]
    reason: String,
    /// The set the migration belongs to.
    #[arg(long, value_enum, default_value = "tenant")]
    set: SetArg,
    /// Directory holding platform/, tenant/ and tenant-seeds/ [default: $MIGRATIONS_DIR, else ./migrations].
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kind = SetKind::from(args.set);
    let set_dir = writable_dir(args.dir)?.join(kind.dir_name());
    let set = MigrationSet::load_dir(kind, &set_dir)?;
    let migration = set.get(args.migration).with_context(|| {
        format!(
            "there is no migration {} in {}",
            args.migration,
            set_dir.display()
        )
    })?;
    let by = args.by.trim();
    anyhow::ensure!(
        !by.is_empty() && !by.contains(char::is_whitespace) && !by.contains('@'),
        "--by takes an operator handle without spaces (not an email address)"
    );
    let reason = args.reason.split_whitespace().collect::<Vec<_>>().join(" ");
    anyhow::ensure!(
        !reason.is_empty(),
        "--reason must say why the data loss is acceptable"
    );

    let script = migration.primary();
    let destructive = lint::destructive_statements(&script.sql, Dialect::Postgres);
    anyhow::ensure!(
        !destructive.is_empty(),
        "{} destroys no data: it needs no approval",
        script.file
    );
    if let Some(existing) = set.approval_for(migration) {
        outln!(
            "{} is already approved by {}: {}",
            script.file,
            existing.approver,
            existing.reason
        );
        return Ok(ExitCode::SUCCESS);
    }
    let path = set_dir.join(APPROVALS_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if file.metadata().map(|m| m.len() == 0).unwrap_or(false) {
        writeln!(
            file,
            "# Destructive migrations approved for deploy: <version> <sha256 of the up file> <approver> <reason>"
        )?;
    }
    writeln!(
        file,
        "{} {} {by} {reason}",
        migration.version,
        script.checksum.to_hex()
    )?;
    outln!(
        "approved {} ({} destructive statement(s)) in {}",
        script.file,
        destructive.len(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
