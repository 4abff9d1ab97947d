//! `tenantctl migrations …` as an operator runs it: the real binary, real files, real PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use domain::tenant::TenantSlug;
use engine::{Catalog, Engine, EngineOptions, MigrationBackend, PgSchemaBackend, Target};
use testkit::ScratchDir;
use testkit::output_text as text;
use testkit::pg::TestDatabase;

fn tenantctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
    command
        .args(args)
        .env_remove("MIGRATIONS_DIR")
        .env_remove("DATABASE_URL")
        .env_remove("TENANT_DATABASE_URL");
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("running tenantctl: {e}"))
}

/// A copy of the repository's migration sets to modify.
fn copy_of_the_sets() -> ScratchDir {
    let scratch = ScratchDir::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    testkit::copy_dir(&source, scratch.path())
        .unwrap_or_else(|e| panic!("copying the migration sets: {e}"));
    scratch
}

fn write(path: PathBuf, sql: &str) {
    std::fs::write(&path, sql).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[test]
fn the_repository_sets_pass_the_check_without_postgres() {
    let output = tenantctl(&["migrations", "check", "--no-postgres", "--quiet"], &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("sqlite: every set applied"),
        "{}",
        text(&output)
    );
}

#[test]
fn new_creates_both_dialects_after_the_latest_version_and_the_set_still_checks() {
    let sets = copy_of_the_sets();
    let dir = sets.path().to_str().unwrap_or_default();
    let output = tenantctl(&["migrations", "new", "add_space_rules", "--dir", dir], &[]);
    assert!(output.status.success(), "{}", text(&output));
    let created: Vec<String> = text(&output)
        .lines()
        .filter_map(|l| l.strip_prefix("created "))
        .map(str::to_owned)
        .collect();
    assert_eq!(created.len(), 4, "{}", text(&output));
    assert!(
        created
            .iter()
            .any(|f| f.contains("/tenant/sqlite/") && f.ends_with("_add_space_rules.down.sql"))
    );

    let catalog = Catalog::load(Some(sets.path())).unwrap_or_else(|e| panic!("{e}"));
    let newest = catalog
        .tenant
        .migrations
        .last()
        .map(|m| m.description.clone());
    assert_eq!(newest.as_deref(), Some("add_space_rules"));

    let check = tenantctl(
        &[
            "migrations",
            "check",
            "--no-postgres",
            "--quiet",
            "--dir",
            dir,
        ],
        &[],
    );
    assert!(check.status.success(), "{}", text(&check));

    let bad = tenantctl(&["migrations", "new", "Add Rules!", "--dir", dir], &[]);
    assert!(
        !bad.status.success() && text(&bad).contains("not a valid migration name"),
        "{}",
        text(&bad)
    );
}

#[test]
fn check_refuses_a_tenant_migration_that_reaches_another_schema() {
    let sets = copy_of_the_sets();
    let tenant = sets.path().join("tenant");
    write(
        tenant.join("20270101000000_peek.up.sql"),
        "-- Peeks at the platform.\nCREATE VIEW peek AS SELECT slug FROM public.tenants;\n",
    );
    write(
        tenant.join("20270101000000_peek.down.sql"),
        "DROP VIEW peek;\n",
    );
    write(
        tenant.join("sqlite/20270101000000_peek.up.sql"),
        "CREATE VIEW peek AS SELECT 1 AS slug;\n",
    );
    write(
        tenant.join("sqlite/20270101000000_peek.down.sql"),
        "DROP VIEW peek;\n",
    );
    let output = tenantctl(
        &[
            "migrations",
            "check",
            "--no-postgres",
            "--quiet",
            "--dir",
            sets.path().to_str().unwrap_or_default(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("error[cross-schema] tenant/20270101000000_peek.up.sql:2"),
        "{}",
        text(&output)
    );
}

#[test]
fn check_flags_missing_down_files_and_dialect_gaps() {
    let sets = copy_of_the_sets();
    let tenant = sets.path().join("tenant");
    write(
        tenant.join("20270101000000_only_up.up.sql"),
        "CREATE TABLE only_up (id integer);\n",
    );
    write(
        tenant.join("sqlite/20270101000000_only_up.up.sql"),
        "CREATE TABLE only_up (id INTEGER);\n",
    );
    write(
        tenant.join("20270101000100_no_sqlite.up.sql"),
        "CREATE TABLE no_sqlite (id integer);\n",
    );
    write(
        tenant.join("20270101000100_no_sqlite.down.sql"),
        "DROP TABLE no_sqlite;\n",
    );
    let output = tenantctl(
        &[
            "migrations",
            "check",
            "--no-postgres",
            "--quiet",
            "--dir",
            sets.path().to_str().unwrap_or_default(),
        ],
        &[],
    );
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("error[missing-down] tenant/20270101000000_only_up.up.sql"),
        "{out}"
    );
    assert!(
        out.contains("error[dialect-parity] tenant/20270101000100_no_sqlite.up.sql"),
        "{out}"
    );
}

#[test]
fn a_destructive_migration_needs_an_approval_that_an_edit_voids() {
    let sets = copy_of_the_sets();
    let dir = sets.path().to_str().unwrap_or_default();
    let tenant = sets.path().join("tenant");
    let up = "-- Drops the embeddings table: the feature moved to a search service.\nDROP TABLE embeddings;\n";
    write(tenant.join("20270101000000_drop_embeddings.up.sql"), up);
    write(
        tenant.join("sqlite/20270101000000_drop_embeddings.up.sql"),
        up,
    );
    // The down recreates the table exactly as the migration that created it did.
    for dialect_dir in ["", "sqlite/"] {
        let create = std::fs::read_to_string(tenant.join(format!(
            "{dialect_dir}20261124110500_create_embeddings.up.sql"
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        write(
            tenant.join(format!(
                "{dialect_dir}20270101000000_drop_embeddings.down.sql"
            )),
            &create,
        );
    }

    let check = |expect: Option<i32>, needle: &str| {
        let output = tenantctl(
            &[
                "migrations",
                "check",
                "--no-postgres",
                "--quiet",
                "--dir",
                dir,
            ],
            &[],
        );
        assert_eq!(output.status.code(), expect, "{}", text(&output));
        assert!(
            text(&output).contains(needle),
            "{needle}\n{}",
            text(&output)
        );
    };
    check(
        Some(1),
        "error[unapproved-destructive] tenant/20270101000000_drop_embeddings.up.sql:2",
    );

    let refused = tenantctl(
        &[
            "migrations",
            "approve",
            "20270101000000",
            "--by",
            "ana@example.com",
            "--reason",
            "x",
            "--dir",
            dir,
        ],
        &[],
    );
    assert!(
        !refused.status.success() && text(&refused).contains("not an email"),
        "{}",
        text(&refused)
    );
    let approved = tenantctl(
        &[
            "migrations",
            "approve",
            "20270101000000",
            "--by",
            "ana.sre",
            "--reason",
            "moved to the search service",
            "--dir",
            dir,
        ],
        &[],
    );
    assert!(approved.status.success(), "{}", text(&approved));
    check(Some(0), "warning[destructive-approved]");

    write(
        tenant.join("20270101000000_drop_embeddings.up.sql"),
        &format!("{up}DROP TABLE audit_log;\n"),
    );
    check(Some(1), "warning[stale-approval]");
}

/// `migrations check --no-postgres [extra…] --dir <dir>`
fn check_dir(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["migrations", "check"];
    args.extend_from_slice(extra);
    args.extend(["--dir", dir.to_str().unwrap_or_default()]);
    tenantctl(&args, env)
}

#[test]
fn check_prints_a_summary_by_default_and_the_full_schema_only_with_verbose() {
    let catalog = Catalog::load(None).unwrap_or_else(|e| panic!("{e}"));
    let summary = tenantctl(&["migrations", "check", "--no-postgres"], &[]);
    let out = text(&summary);
    assert!(summary.status.success(), "{out}");
    for set in catalog.sets() {
        let migrations = set.migrations.len();
        assert!(
            out.contains(&format!("\n{}: {migrations} migration", set.kind)),
            "{}: {out}",
            set.kind
        );
    }
    for line in [
        "  checked: lints, approvals, dialect parity\n",
        "  checked: lints, approvals, dialect parity, admin_user.sql parameters (:admin_email, :admin_name)",
        "  sqlite: applied; up -> down -> up gave the same schema for ",
        "  schema (sqlite): 6 tables, ",
        "  admin user (sqlite): ran twice: the first run added 1 row to users, the second none",
        "  findings: none",
        "result: 0 error(s), 0 warning(s)",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    // A column that only the full schema lists.
    assert!(
        !out.contains("invitation_token_hash") && !out.contains("schema of each tenant"),
        "{out}"
    );

    let verbose = tenantctl(&["migrations", "check", "--no-postgres", "--verbose"], &[]);
    let out = text(&verbose);
    assert!(verbose.status.success(), "{out}");
    assert!(
        out.contains("  checked: ")
            && out.contains("schema of each tenant (sqlite):")
            && out.contains("invitation_token_hash"),
        "{out}"
    );

    let quiet = tenantctl(&["migrations", "check", "--no-postgres", "--quiet"], &[]);
    let out = text(&quiet);
    assert!(quiet.status.success(), "{out}");
    assert!(
        !out.contains("checked:")
            && !out.contains("invitation_token_hash")
            && out.contains("sqlite: every set applied")
            && out.contains("result: 0 error(s), 0 warning(s)"),
        "{out}"
    );
}

#[test]
fn check_reports_a_broken_admin_user_file() {
    let sets = copy_of_the_sets();
    let seeds = sets.path().join("tenant-seeds");

    write(
        seeds.join("admin_user.sql"),
        "-- Invites the administrator.\nINSERT INTO users (email, full_name) VALUES (:admin_mail, :admin_name);\n",
    );
    let output = check_dir(sets.path(), &["--no-postgres"], &[]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "tenant-seeds/admin_user.sql: line 2: unknown parameter `:admin_mail`: the known parameters are :admin_email, :admin_name, :tenant_id, :tenant_slug, :tenant_name"
        ),
        "{out}"
    );

    // Runs, but not twice: on PostgreSQL the second run hits the unique email; on SQLite it
    // quietly adds a second administrator.
    write(
        seeds.join("admin_user.sql"),
        "INSERT INTO users (email, full_name, role, status)\nVALUES (lower(:admin_email), :admin_name, 'admin', 'invited');\n",
    );
    write(
        seeds.join("sqlite/admin_user.sql"),
        "INSERT INTO users (email, full_name, role, status)\nVALUES (lower(:admin_email) || hex(randomblob(4)), :admin_name, 'admin', 'invited');\n",
    );
    let server =
        std::env::var("PG_TEST_URL").unwrap_or_else(|_| testkit::pg::DEFAULT_SERVER.to_owned());
    let output = check_dir(sets.path(), &[], &[("DATABASE_URL", server.as_str())]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    for line in [
        "error[admin-user-postgres] tenant-seeds/admin_user.sql: fails when it runs a second time, as it does for a redelivered registration: ",
        "error[admin-user-sqlite] tenant-seeds/sqlite/admin_user.sql: is not idempotent: running it a second time added rows (users +1)",
        "  admin user (postgres): failed (see the findings)",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    assert!(!out.contains("postgres: skipped"), "{out}");

    std::fs::remove_file(seeds.join("admin_user.sql")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(seeds.join("sqlite/admin_user.sql")).unwrap_or_else(|e| panic!("{e}"));
    let output = check_dir(sets.path(), &["--no-postgres"], &[]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("error[missing-admin-user] tenant-seeds/admin_user.sql: ")
            && out.contains(&format!("Add {}/admin_user.sql", seeds.display())),
        "{out}"
    );
}

#[test]
fn a_set_without_sqlite_variants_checks_with_warnings_only_when_its_settings_say_so() {
    let sets = copy_of_the_sets();
    let tenant = sets.path().join("tenant");
    std::fs::remove_dir_all(tenant.join("sqlite")).unwrap_or_else(|e| panic!("{e}"));

    let output = check_dir(sets.path(), &["--no-postgres", "--quiet"], &[]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("error[dialect-parity] tenant/20261124110000_create_users.up.sql: 20261124110000_create_users.up.sql has no SQLite variant"),
        "{out}"
    );

    write(
        tenant.join("settings.conf"),
        "# This team runs PostgreSQL only.\nsqlite = untested\n",
    );
    let output = check_dir(sets.path(), &["--no-postgres"], &[]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    for line in [
        "warning[dialect-parity] tenant/20261124110000_create_users.up.sql: 20261124110000_create_users.up.sql has no SQLite variant: add sqlite/20261124110000_create_users.up.sql (a warning: settings.conf says `sqlite = untested`)",
        "  checked: lints, approvals, dialect parity as warnings (settings.conf: sqlite = untested)",
        "  sqlite: not applied: its settings.conf says `sqlite = untested`",
        "  sqlite: not applied: it builds on the tenant set, which is not tested on SQLite",
        "  admin user (sqlite): not run: the tenant set is not applied on sqlite",
        "sqlite: 1 of 3 sets applied (not applied: tenant, tenant-seeds)",
        "result: 0 error(s), ",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    assert!(!out.contains("error["), "{out}");

    write(tenant.join("settings.conf"), "sqlite = sometimes\n");
    let output = check_dir(sets.path(), &["--no-postgres"], &[]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "tenant/settings.conf: line 1: `sqlite = sometimes`: the accepted values are `required`"
        ) && out.contains("`untested`"),
        "{out}"
    );
    write(tenant.join("settings.conf"), "sqlite_variants = optional\n");
    let out = text(&check_dir(sets.path(), &["--no-postgres"], &[]));
    assert!(
        out.contains("tenant/settings.conf: line 1: unknown key `sqlite_variants`: the known keys are `sqlite` (required | untested)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_tenants_with_version_pending_and_drift() {
    let database = TestDatabase::create().await;
    let backend = PgSchemaBackend::connect(database.options(), 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let engine = Engine::new(backend, EngineOptions::default());
    let catalog = Catalog::load(None).unwrap_or_else(|e| panic!("{e}"));
    engine
        .apply(&Target::Platform, &catalog.platform, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (current, behind) = (
        TenantSlug::parse("current_co").unwrap_or_else(|e| panic!("{e}")),
        TenantSlug::parse("behind_co").unwrap_or_else(|e| panic!("{e}")),
    );
    for (slug, to) in [
        (&current, None),
        (&behind, catalog.tenant.migrations.get(2).map(|m| m.version)),
    ] {
        engine
            .backend()
            .create_storage(slug)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let target = Target::Tenant(slug.clone());
        engine
            .apply(&target, &catalog.tenant, to, &())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if to.is_none() {
            engine
                .apply(&target, &catalog.tenant_seeds, None, &())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        sqlx::query("INSERT INTO tenants (id, slug, name, status, isolation) VALUES (gen_random_uuid(), $1, 'Co', 'active', 'schema')")
            .bind(slug.as_str())
            .execute(engine.backend().pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let url = database.url();
    let env = [("DATABASE_URL", url.as_str())];

    let output = tenantctl(&["migrations", "status"], &env);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    let line = |slug: &str| {
        out.lines()
            .find(|l| l.starts_with(slug))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let latest = catalog
        .tenant
        .latest()
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert_eq!(
        line("current_co")[..6],
        ["current_co", "schema", "active", latest.as_str(), "0", "ok"],
        "{out}"
    );
    let pending = (catalog.tenant.migrations.len() - 3).to_string();
    assert_eq!(line("behind_co")[4..6], [pending.as_str(), "1"], "{out}");
    assert!(out.contains("2 tenant(s)"), "{out}");

    // An applied file edited after the fact shows up as drift, and the command fails.
    let sets = copy_of_the_sets();
    let first = &catalog.tenant.migrations[0];
    write(
        sets.path().join("tenant").join(&first.primary().file),
        "-- edited\nSELECT 1;\n",
    );
    let dir = sets.path().to_str().unwrap_or_default();
    let drifted = tenantctl(
        &["migrations", "status", "--tenant", "behind_co"],
        &[("DATABASE_URL", url.as_str()), ("MIGRATIONS_DIR", dir)],
    );
    let out = text(&drifted);
    assert_eq!(drifted.status.code(), Some(1), "{out}");
    assert!(
        out.contains("tenant behind_co") && out.contains("was edited after it was applied"),
        "{out}"
    );

    let unknown = tenantctl(&["migrations", "status", "--tenant", "nobody_here"], &env);
    assert!(
        !unknown.status.success() && text(&unknown).contains("no tenant nobody_here"),
        "{}",
        text(&unknown)
    );
    let hostile = tenantctl(
        &[
            "migrations",
            "status",
            "--tenant",
            "x'; drop table tenants; --",
        ],
        &env,
    );
    assert!(
        !hostile.status.success() && text(&hostile).contains("is not valid"),
        "{}",
        text(&hostile)
    );

    engine.backend().pool().close().await;
}
