//! Embeds the repository's `migrations/` into the library, so every binary carries the sets it
//! was built with (`MIGRATIONS_DIR` overrides them at run time): every `.sql` file (migrations
//! and the tenant-seeds set's `admin_user.sql`), and each set's `approvals.txt` and
//! `settings.conf`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../../migrations");
    println!("cargo::rerun-if-changed={}", root.display());

    let mut files = Vec::new();
    for set in ["platform", "tenant", "tenant-seeds"] {
        for (dir, prefix) in [
            (root.join(set), format!("{set}/")),
            (root.join(set).join("sqlite"), format!("{set}/sqlite/")),
        ] {
            collect(&dir, &prefix, &mut files);
        }
    }
    files.sort();

    let mut out = String::from(
        "/// `(path relative to migrations/, contents)` of every embedded file.\npub static FILES: &[(&str, &str)] = &[\n",
    );
    for (relative, absolute) in files {
        writeln!(
            out,
            "    ({relative:?}, include_str!({:?})),",
            absolute.display().to_string()
        )
        .expect("writing to a String");
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("embedded_migrations.rs");
    std::fs::write(target, out).expect("writing the embedded migration list");
}

fn collect(dir: &Path, prefix: &str, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // Migrations, the admin-user script (`admin_user.sql`), approvals and settings.
        let embedded = name.ends_with(".sql") || name == "approvals.txt" || name == "settings.conf";
        if path.is_file() && embedded {
            let absolute = path.canonicalize().unwrap_or(path);
            files.push((format!("{prefix}{name}"), absolute));
        }
    }
}
