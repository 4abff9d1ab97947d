//! `tenantctl drift` and the deploy's drift gate on a provisioned fleet of both isolation modes:
//! a clean fleet reports nothing; a column added, an index dropped, a grant changed and a table
//! renamed by hand are each reported with their difference, and recorded; a repaired tenant is
//! clean again; a deploy leaves a drifted tenant out unless `--allow-drift`. Catalog stamps:
//! each of those changes changes a schema's stamp, vacuuming and new rows do not; a check of an
//! unchanged fleet reads no schema in full and reports what the last one found; a change after
//! a clean check is seen by the next; `--full` reads every schema again.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use domain::message::{Event as _, TenantRegistered};
use domain::tenant::TenantSlug;
use engine::fingerprint::CatalogStamp;
use engine::{Catalog, PgSchemaBackend, ProvisionedStorage as _};
use shared::config::Config;
use shared::service::Context;
use sqlx::{AssertSqlSafe, Connection as _};
use testkit::ScratchDir;
use testkit::output_text as text;
use testkit::pg::TestDatabase;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const NOTICE_BOARD: i64 = 20_270_101_000_000;

struct Fleet {
    database: TestDatabase,
    namespace: String,
    /// The built-in sets plus the notice board: the next release.
    sets: ScratchDir,
    ctx: Context,
    slugs: Vec<TenantSlug>,
}

impl Fleet {
    async fn new() -> Fleet {
        shared::telemetry::init_for_tests();
        let database = TestDatabase::create().await;
        let namespace = testkit::unique_namespace();
        let sets = testkit::migration_sets_with(&[(
            "20270101000000_create_notice_board",
            "CREATE TABLE notice_board (id bigint PRIMARY KEY, body text NOT NULL);\n",
            Some("DROP TABLE notice_board;\n"),
        )]);
        let values = HashMap::from([
            ("DATABASE_URL", database.url()),
            ("AMQP_URL", BROKER.to_owned()),
            ("TENANCY_NAMESPACE", namespace.clone()),
            ("HEALTH_ADDR", "127.0.0.1:0".to_owned()),
        ]);
        let config =
            Config::from_lookup(|key| values.get(key).cloned()).unwrap_or_else(|e| panic!("{e}"));
        let ctx = Context::connect(config, "drift-test", &CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("is RabbitMQ running? {e}"));
        ctx.set_up_platform()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Fleet {
            database,
            namespace,
            sets,
            ctx,
            slugs: Vec::new(),
        }
    }

    /// Provisions one tenant per entry of `isolations` with the built-in sets, and waits until
    /// all are active.
    async fn provision(&mut self, isolations: &[&str]) -> Vec<TenantSlug> {
        let stop = CancellationToken::new();
        let task = tokio::spawn(provisioner::run(self.ctx.clone(), stop.clone()));
        let mut slugs = Vec::new();
        for isolation in isolations {
            let slug = testkit::unique_slug();
            self.slugs.push(slug.clone());
            let data = TenantRegistered::from_data(&serde_json::json!({
                "tenant_id": uuid::Uuid::new_v4(), "slug": slug.as_str(), "name": "Harbour View",
                "isolation": isolation,
                "admin": { "email": "bo.lee@harbour.example", "name": "Bo Lee" },
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            let event = self.ctx.bus.publisher().event(data);
            self.ctx
                .bus
                .publisher()
                .publish(&event)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            slugs.push(slug);
        }
        let wanted = self.slugs.len();
        testkit::wait_until(
            Duration::from_secs(120),
            &format!("{wanted} tenants active"),
            || async {
                let mut conn = self.database.connect().await;
                let active: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM tenants WHERE status = 'active'")
                        .fetch_one(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                usize::try_from(active).unwrap_or(0) == wanted
            },
        )
        .await;
        stop.cancel();
        let _ = task.await;
        slugs
    }

    /// A migrator of the next release.
    fn start_migrator(&self) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
        let stop = CancellationToken::new();
        let ctx = Context {
            catalog: Arc::new(
                Catalog::load(Some(self.sets.path())).unwrap_or_else(|e| panic!("{e}")),
            ),
            ..self.ctx.clone()
        };
        let task = tokio::spawn(migrator::run(ctx, stop.clone()));
        (stop, task)
    }

    async fn tenantctl(&self, args: &[&str], release: &str) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        command
            .args(args)
            .env("DATABASE_URL", self.database.url())
            .env("AMQP_URL", BROKER)
            .env("TENANCY_NAMESPACE", &self.namespace)
            .env("USER", "sre-ana");
        if release == "next" {
            command.env("MIGRATIONS_DIR", self.sets.path());
        }
        tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `sql` in a schema-mode tenant's schema (the test database).
    async fn in_schema(&self, slug: &TenantSlug, sql: &str) {
        let mut conn = self.database.connect().await;
        let sql = format!("SET search_path TO {}; {sql}", slug.storage_name());
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `sql` in a database-mode tenant's database.
    async fn in_database(&self, slug: &TenantSlug, sql: &str) {
        let url = self
            .database
            .url()
            .rsplit_once('/')
            .map(|(server, _)| format!("{server}/{}", slug.storage_name()))
            .unwrap_or_else(|| panic!("a database URL"));
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = conn.close().await;
    }

    /// The catalog stamp of a schema-mode tenant, as the drift check reads it.
    async fn stamp(&self, slug: &TenantSlug) -> CatalogStamp {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(self.database.options())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut stamps = PgSchemaBackend::new(pool.clone())
            .catalog_stamps(std::slice::from_ref(slug))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        pool.close().await;
        stamps
            .remove(slug)
            .unwrap_or_else(|| panic!("a stamp for {slug}"))
    }

    /// `tenantctl drift --output json` with `args`: its exit code, its drifted tenants (slug and
    /// difference lines, by slug) and its summary.
    async fn drift_json(
        &self,
        args: &[&str],
    ) -> (Option<i32>, Vec<(String, Vec<String>)>, serde_json::Value) {
        let mut all = vec!["drift", "--output", "json"];
        all.extend_from_slice(args);
        let output = self.tenantctl(&all, "current").await;
        let lines = json_lines(&output);
        let mut drifted: Vec<(String, Vec<String>)> = lines
            .iter()
            .filter(|l| l["type"] == "drifted")
            .map(|l| {
                let slug = l["tenant"].as_str().unwrap_or_default().to_owned();
                let tenant = TenantSlug::parse(&slug).unwrap_or_else(|e| panic!("{e}"));
                (slug, differences_of(&lines, &tenant))
            })
            .collect();
        drifted.sort();
        let summary = lines
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("a summary: {}", text(&output)));
        (output.status.code(), drifted, summary)
    }

    /// `tenant_drift` as (slug, differences).
    async fn recorded_drift(&self) -> Vec<(String, Vec<String>)> {
        let mut conn = self.database.connect().await;
        let rows: Vec<(String, sqlx::types::Json<Vec<String>>)> = sqlx::query_as(
            "SELECT t.slug, d.differences FROM tenant_drift d JOIN tenants t ON t.id = d.tenant_id ORDER BY t.slug",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        rows.into_iter()
            .map(|(slug, json)| (slug, json.0))
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let names: Vec<String> = self.slugs.iter().map(TenantSlug::storage_name).collect();
        testkit::pg::drop_databases_now(names.clone());
        testkit::pg::drop_roles_now(names);
        testkit::broker::delete_topology_now(BROKER, &self.namespace);
    }
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The difference lines `drift --output json` printed for `slug`.
fn differences_of(lines: &[serde_json::Value], slug: &TenantSlug) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["type"] == "drifted" && l["tenant"] == slug.as_str())
        .flat_map(|l| l["differences"].as_array().cloned().unwrap_or_default())
        .map(|d| d["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_fleet_of_both_modes_reports_nothing_and_each_change_by_hand_is_reported_with_its_difference()
 {
    let mut fleet = Fleet::new().await;
    let slugs = fleet
        .provision(&["schema", "schema", "schema", "database", "database"])
        .await;
    let [column, index, grant, renamed, retyped] = &slugs[..] else {
        unreachable!()
    };

    // Both modes' expectations were kept by the provisioner from its verified templates; the
    // database mode's is forgotten, so that this first check computes it on a scratch tenant
    // (and finds the templated tenants equal to it).
    let mut conn = fleet.database.connect().await;
    let kept: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT isolation FROM schema_fingerprints ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kept, ["database", "schema"]);
    sqlx::query("DELETE FROM schema_fingerprints WHERE isolation = 'database'")
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let clean = fleet.tenantctl(&["drift"], "current").await;
    assert!(clean.status.success(), "{}", text(&clean));
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(
        stdout.contains("5 tenant(s) checked on 1 server(s)")
            && stdout.contains("1 expected fingerprint(s) computed")
            && stdout.contains("no drift"),
        "{}",
        text(&clean)
    );

    fleet
        .in_schema(column, "ALTER TABLE users ADD COLUMN nickname text")
        .await;
    fleet
        .in_schema(index, "DROP INDEX reservations_user_id_idx")
        .await;
    fleet
        .in_schema(
            grant,
            &format!("REVOKE DELETE ON spaces FROM {}", grant.storage_name()),
        )
        .await;
    fleet
        .in_database(renamed, "ALTER TABLE spaces RENAME TO rooms")
        .await;
    fleet
        .in_database(
            retyped,
            "ALTER TABLE users ALTER COLUMN email TYPE varchar(320)",
        )
        .await;

    let drift = fleet
        .tenantctl(&["drift", "--output", "json"], "current")
        .await;
    assert_eq!(drift.status.code(), Some(1), "{}", text(&drift));
    let lines = json_lines(&drift);
    assert_eq!(
        differences_of(&lines, column),
        ["+ column users.nickname: text"]
    );
    assert_eq!(
        differences_of(&lines, index),
        [
            "- index reservations_user_id_idx: CREATE INDEX reservations_user_id_idx ON <tenant>.reservations USING btree (user_id)"
        ]
    );
    assert_eq!(
        differences_of(&lines, grant),
        ["~ grant spaces:<tenant>: DELETE, INSERT, SELECT, UPDATE -> INSERT, SELECT, UPDATE"]
    );
    let renamed_lines = differences_of(&lines, renamed);
    assert!(
        renamed_lines.iter().any(|l| l.starts_with("+ table rooms"))
            && renamed_lines
                .iter()
                .any(|l| l.starts_with("- table spaces")),
        "{renamed_lines:#?}"
    );
    assert_eq!(
        differences_of(&lines, retyped),
        ["~ column users.email: text NOT NULL -> character varying(320) NOT NULL"]
    );
    let summary = lines.last().unwrap_or_else(|| panic!("a summary"));
    assert_eq!(summary["checked"], 5);
    assert_eq!(summary["drifted"], 5);
    assert_eq!(summary["expected_computed"], 0, "kept from the first check");
    assert_eq!(
        summary["catalog_queries"], 3,
        "one for the three schemas, one per database"
    );
    assert_eq!(fleet.recorded_drift().await.len(), 5);

    // Repaired: clean again, and no longer recorded; the others stay.
    fleet
        .in_schema(column, "ALTER TABLE users DROP COLUMN nickname")
        .await;
    let one = fleet
        .tenantctl(&["drift", "--tenant", column.as_str()], "current")
        .await;
    assert!(one.status.success(), "{}", text(&one));
    let recorded = fleet.recorded_drift().await;
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    assert!(recorded.iter().all(|(slug, _)| slug != column.as_str()));

    let unknown = fleet
        .tenantctl(&["drift", "--tenant", "no_such_tenant"], "current")
        .await;
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("there is no active or suspended tenant no_such_tenant"),
        "{}",
        text(&unknown)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_leaves_a_drifted_tenant_out_unless_told_to_migrate_it_anyway() {
    let mut fleet = Fleet::new().await;
    let slugs = fleet.provision(&["schema", "schema"]).await;
    let [drifted, clean] = &slugs[..] else {
        unreachable!()
    };
    fleet
        .in_schema(drifted, "ALTER TABLE users ADD COLUMN nickname text")
        .await;
    let (stop, migrator) = fleet.start_migrator();

    let refused = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "120"], "next")
        .await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "{drifted} (server default): drifted, not migrated"
        )) && stderr.contains("+ column users.nickname: text")
            && stderr.contains("deploy with --allow-drift"),
        "{}",
        text(&refused)
    );
    let versions = |fleet: &Fleet| {
        let url = fleet.database.url();
        async move {
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
                "SELECT slug, schema_version, migration_error FROM tenants ORDER BY slug",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            rows.into_iter()
                .map(|(slug, version, error)| (slug, (version, error)))
                .collect::<HashMap<_, _>>()
        }
    };
    let after_refusal = versions(&fleet).await;
    assert_eq!(after_refusal[clean.as_str()], (NOTICE_BOARD, None));
    let (version, error) = &after_refusal[drifted.as_str()];
    assert!(*version < NOTICE_BOARD, "the drifted tenant was migrated");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("schema drifted") && e.contains("--allow-drift")),
        "{error:?}"
    );

    let allowed = fleet
        .tenantctl(
            &["deploy", "--allow-drift", "--wait", "--timeout", "120"],
            "next",
        )
        .await;
    assert!(allowed.status.success(), "{}", text(&allowed));
    assert!(
        String::from_utf8_lossy(&allowed.stderr).contains("drifted, migrated anyway"),
        "{}",
        text(&allowed)
    );
    assert_eq!(
        versions(&fleet).await[drifted.as_str()],
        (NOTICE_BOARD, None),
        "migrated, and no longer needing reprocessing"
    );
    stop.cancel();
    let _ = migrator.await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stamp_changes_with_every_change_by_hand_and_not_with_vacuum_or_new_rows() {
    let mut fleet = Fleet::new().await;
    let slugs = fleet.provision(&["schema"]).await;
    let tenant = &slugs[0];
    let first = fleet.stamp(tenant).await;
    assert_eq!(fleet.stamp(tenant).await, first, "read twice");

    // Rows and maintenance update no catalog row of the schema (VACUUM and ANALYZE update
    // `pg_class` in place: same `xmin`).
    fleet
        .in_schema(
            tenant,
            "INSERT INTO users (email, full_name)
             SELECT 'resident' || g || '@harbour.example', 'Resident' FROM generate_series(1, 500) g",
        )
        .await;
    // On their own: VACUUM cannot run in the implicit transaction of several statements.
    let mut conn = fleet.database.connect().await;
    for maintenance in [
        format!("VACUUM ANALYZE {}.users", tenant.storage_name()),
        "ANALYZE".to_owned(),
    ] {
        sqlx::raw_sql(AssertSqlSafe(maintenance))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(fleet.stamp(tenant).await, first, "rows, VACUUM, ANALYZE");

    // Each change by hand the drift test makes: a new stamp each time.
    let mut seen = vec![first];
    for change in [
        "ALTER TABLE users ADD COLUMN nickname text".to_owned(),
        "DROP INDEX reservations_user_id_idx".to_owned(),
        format!("REVOKE DELETE ON spaces FROM {}", tenant.storage_name()),
        "ALTER TABLE spaces RENAME TO rooms".to_owned(),
        "ALTER TABLE users ALTER COLUMN email TYPE varchar(320)".to_owned(),
        // Undoing one: the schema is as before, its catalog rows are not.
        "ALTER TABLE users DROP COLUMN nickname".to_owned(),
    ] {
        fleet.in_schema(tenant, &change).await;
        let stamp = fleet.stamp(tenant).await;
        assert!(
            !seen.contains(&stamp),
            "{change}: stamp {stamp} seen before"
        );
        seen.push(stamp);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_of_an_unchanged_fleet_reads_no_schema_and_reports_what_the_last_one_found() {
    let mut fleet = Fleet::new().await;
    let slugs = fleet
        .provision(&["schema", "schema", "schema", "database"])
        .await;
    let [column, grant, later, database] = &slugs[..] else {
        unreachable!()
    };

    // The first check reads every schema (one batch) and the database, and keeps the stamps.
    let (code, drifted, summary) = fleet.drift_json(&[]).await;
    assert_eq!(code, Some(0), "{summary}");
    assert!(drifted.is_empty());
    assert_eq!(
        (
            &summary["checked"],
            &summary["catalog_queries"],
            &summary["stamp_queries"],
            &summary["stamps_unchanged"]
        ),
        (&4.into(), &2.into(), &1.into(), &0.into()),
        "{summary}"
    );

    fleet
        .in_schema(column, "ALTER TABLE users ADD COLUMN nickname text")
        .await;
    fleet
        .in_schema(
            grant,
            &format!("REVOKE DELETE ON spaces FROM {}", grant.storage_name()),
        )
        .await;
    fleet
        .in_database(database, "ALTER TABLE spaces RENAME TO rooms")
        .await;
    let (code, changed, summary) = fleet.drift_json(&[]).await;
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(
        changed
            .iter()
            .map(|(slug, _)| slug.as_str())
            .collect::<Vec<_>>(),
        {
            let mut wanted = vec![column.as_str(), grant.as_str(), database.as_str()];
            wanted.sort_unstable();
            wanted
        }
    );
    assert_eq!(
        (&summary["catalog_queries"], &summary["stamps_unchanged"]),
        (&2.into(), &1.into()),
        "the two changed schemas in one batch, the database; the third schema's stamp is as kept: {summary}"
    );
    let recorded = fleet.recorded_drift().await;

    // Nothing changed since: no schema is read in full, the same tenants are drifted with the
    // same differences (the database is read again, as always), and recorded as before.
    let (code, again, summary) = fleet.drift_json(&[]).await;
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(again, changed);
    assert_eq!(
        (
            &summary["checked"],
            &summary["drifted"],
            &summary["catalog_queries"],
            &summary["stamp_queries"],
            &summary["stamps_unchanged"]
        ),
        (&4.into(), &3.into(), &1.into(), &1.into(), &3.into()),
        "{summary}"
    );
    assert_eq!(fleet.recorded_drift().await, recorded);
    let human = fleet.tenantctl(&["drift"], "current").await;
    assert!(
        String::from_utf8_lossy(&human.stdout)
            .contains("(1 catalog queries, 1 stamp queries, 3 stamps unchanged): 3 drifted"),
        "{}",
        text(&human)
    );

    // A change by hand after a clean check: the next check sees it, and reads only that schema.
    fleet
        .in_schema(later, "DROP INDEX reservations_user_id_idx")
        .await;
    let (code, now, summary) = fleet.drift_json(&[]).await;
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(
        now.iter()
            .find(|(slug, _)| slug == later.as_str())
            .map(|(_, lines)| lines.clone()),
        Some(vec![
            "- index reservations_user_id_idx: CREATE INDEX reservations_user_id_idx ON <tenant>.reservations USING btree (user_id)".to_owned()
        ])
    );
    assert_eq!(
        (
            &summary["drifted"],
            &summary["catalog_queries"],
            &summary["stamps_unchanged"]
        ),
        (&4.into(), &2.into(), &2.into()),
        "{summary}"
    );

    // `--full` reads every schema again, whatever the stamps say, and finds the same.
    let (code, full, summary) = fleet.drift_json(&["--full"]).await;
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(full, now);
    assert_eq!(
        (
            &summary["checked"],
            &summary["catalog_queries"],
            &summary["stamps_unchanged"]
        ),
        (&4.into(), &2.into(), &0.into()),
        "{summary}"
    );
    // And what it kept serves the next check.
    let (_, _, summary) = fleet.drift_json(&[]).await;
    assert_eq!(
        (&summary["catalog_queries"], &summary["stamps_unchanged"]),
        (&1.into(), &3.into()),
        "{summary}"
    );
}
