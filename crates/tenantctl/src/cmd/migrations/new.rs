//! `tenantctl migrations new <name>`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use domain::Version;
use engine::{MigrationSet, SetKind};

use super::{SetArg, writable_dir};
use crate::out::outln;

pub const EXAMPLES: &str = "Examples:
  tenantctl migrations new add_space_booking_rules
  tenantctl migrations new seed_default_plans --set platform
  tenantctl migrations new drop_legacy_settings --irreversible \"the old layout is not kept\"";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What the migration does, in snake_case: it becomes part of the file names
    /// (e.g. add_spaces_booking_rules).
    name: String,
    /// The set to add it to.
    #[arg(long, value_enum, default_value = "tenant")]
    set: SetArg,
    /// Directory holding platform/, tenant/ and tenant-seeds/ [default: $MIGRATIONS_DIR, else ./migrations].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Create no down files and mark the up file irreversible with this reason.
    #[arg(long, value_name = "REASON")]
    irreversible: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let name = args.name.trim();
    anyhow::ensure!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "`{name}` is not a valid migration name: use lower-case letters, digits and `_` (e.g. add_spaces_booking_rules)"
    );
    let kind = SetKind::from(args.set);
    let set_dir = writable_dir(args.dir)?.join(kind.dir_name());
    let existing = MigrationSet::load_dir(kind, &set_dir)
        .context("the set must load before a migration is added to it")?;

    // A version newer than every existing one, even if the clock is behind a teammate's.
    let now = Version::from_datetime(chrono::Utc::now().naive_utc());
    let version = match existing.latest() {
        Some(latest) if latest >= now => latest.successor(),
        _ => now,
    };
    let stem = format!("{version}_{name}");
    let sentence = name.replace('_', " ");
    let header = |dialect: &str, direction: &str| {
        let purpose = match direction {
            "up" => format!("Up: {sentence}."),
            _ => format!("Down: undoes {sentence}."),
        };
        let irreversible = match (&args.irreversible, direction) {
            (Some(reason), "up") => format!("-- irreversible: {reason}\n"),
            _ => String::new(),
        };
        format!(
            "-- {purpose} ({dialect})\n{irreversible}-- Directives go in this header, see docs/MIGRATION_FORMAT.md.\n\n"
        )
    };

    let mut files = vec![
        (
            set_dir.join(format!("{stem}.up.sql")),
            header("PostgreSQL", "up"),
        ),
        (
            set_dir.join("sqlite").join(format!("{stem}.up.sql")),
            header("SQLite", "up"),
        ),
    ];
    if args.irreversible.is_none() {
        files.push((
            set_dir.join(format!("{stem}.down.sql")),
            header("PostgreSQL", "down"),
        ));
        files.push((
            set_dir.join("sqlite").join(format!("{stem}.down.sql")),
            header("SQLite", "down"),
        ));
    }
    std::fs::create_dir_all(set_dir.join("sqlite"))
        .with_context(|| format!("creating {}", set_dir.join("sqlite").display()))?;
    for (path, contents) in &files {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        std::io::Write::write_all(&mut file, contents.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        outln!("created {}", path.display());
    }
    outln!("next: write both dialects, then run `tenantctl migrations check`");
    Ok(ExitCode::SUCCESS)
}
