//! Deploys, the migrator and rollbacks, end to end: `tenantctl deploy` and `tenantctl rollback`
//! run as a user runs them (the binary), the migrator runs in-process (or inside `tenantctl up`
//! for the crash test), against the machine's PostgreSQL and RabbitMQ. Each test has its own
//! database and namespace.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use domain::Version;
use domain::tenant::TenantSlug;
use engine::{Catalog, Engine, EngineOptions, PgSchemaBackend, ProvisionedStorage as _, Target};
use shared::bus::WorkQueue;
use shared::config::Config;
use shared::service::Context;
use tenantctl::dead_letters::DeadLetterQueue;
use testkit::ScratchDir;
use testkit::broker_cluster::PrivateCluster;
use testkit::output_text as text;
use testkit::pg::TestDatabase;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The migration every deploy test ships: a new table (its down drops it: data loss).
const NOTICE_BOARD: &str = "20270101000000";
/// An irreversible one after it.
const FREEZE: &str = "20270101000100";

fn notice_board() -> (&'static str, &'static str, Option<&'static str>) {
    (
        "20270101000000_create_notice_board",
        "-- lock-timeout: 300ms\nCREATE TABLE notice_board (id bigint PRIMARY KEY, author_id uuid REFERENCES users (id), body text NOT NULL);\n",
        Some("DROP TABLE notice_board;\n"),
    )
}

fn freeze() -> (&'static str, &'static str, Option<&'static str>) {
    (
        "20270101000100_freeze_settings",
        "-- irreversible: the old settings layout is not kept\nCREATE TABLE settings_frozen (id bigint PRIMARY KEY);\n",
        None,
    )
}

struct Fleet {
    database: TestDatabase,
    namespace: String,
    /// The built-in sets: what the tenants start at.
    base: Arc<Catalog>,
    ctx: Context,
    sets: ScratchDir,
    tenants: Vec<(Uuid, TenantSlug)>,
    /// `AMQP_URL`: the machine's broker, or a private cluster's nodes.
    amqp_url: String,
}

impl Fleet {
    /// `count` active tenants in schema isolation, at the newest built-in migration, and a
    /// migrations directory with `extra` migrations on top.
    async fn new(count: usize, extra: &[(&str, &str, Option<&str>)]) -> Fleet {
        Fleet::on_broker(count, extra, BROKER).await
    }

    /// As [`Fleet::new`], with the broker (or the list of a cluster's nodes) at `amqp_url`.
    async fn on_broker(
        count: usize,
        extra: &[(&str, &str, Option<&str>)],
        amqp_url: &str,
    ) -> Fleet {
        shared::telemetry::init_for_tests();
        let database = TestDatabase::create().await;
        let namespace = testkit::unique_namespace();
        let sets = testkit::migration_sets_with(extra);
        let config = config(&database.url(), amqp_url, &namespace, Some(sets.path()));
        let ctx = Context::connect(config, "deploy-test", &CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("is RabbitMQ running? {e}"));
        ctx.apply_platform_migrations()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let base = Arc::new(Catalog::load(None).unwrap_or_else(|e| panic!("{e}")));
        let mut fleet = Fleet {
            database,
            namespace,
            base,
            ctx,
            sets,
            tenants: Vec::new(),
            amqp_url: amqp_url.to_owned(),
        };
        fleet.add_tenants(count).await;
        fleet
    }

    async fn add_tenants(&mut self, count: usize) {
        let backend = PgSchemaBackend::connect(self.database.options(), 8)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::new(backend, EngineOptions::default());
        let mut conn = self.database.connect().await;
        let mut created = Vec::new();
        for i in 0..count {
            let slug = TenantSlug::parse(&format!(
                "t{i:04}_{}",
                &Uuid::new_v4().simple().to_string()[..6]
            ))
            .unwrap_or_else(|e| panic!("{e}"));
            // With its role and grants, as provisioning leaves a tenant: the deploy checks
            // each tenant's schema against its version's before migrating it.
            engine
                .backend()
                .create_storage_with_role(&slug)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            created.push((Uuid::new_v4(), slug));
        }
        let targets = created.iter().map(|(_, s)| Target::Tenant(s.clone()));
        for (target, result) in engine
            .apply_many(targets, &self.base.tenant, None, 8, &())
            .await
        {
            result.unwrap_or_else(|e| panic!("{target}: {e}"));
        }
        let version = self.base.tenant.latest().unwrap_or(Version::ZERO).get();
        for (id, slug) in &created {
            sqlx::query("INSERT INTO tenants (id, slug, name, status, isolation, schema_version, activated_at) VALUES ($1, $2, 'Fixture', 'active', 'schema', $3, now())")
                .bind(id)
                .bind(slug.as_str())
                .bind(version)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        self.tenants.extend(created);
    }

    /// The context the migrator runs with: the extended sets (the new build).
    fn new_build(&self) -> Context {
        Context {
            catalog: Arc::new(
                Catalog::load(Some(self.sets.path())).unwrap_or_else(|e| panic!("{e}")),
            ),
            ..self.ctx.clone()
        }
    }

    fn start_migrator(&self) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(migrator::run(self.new_build(), stop.clone()));
        (stop, task)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database.url()),
            ("AMQP_URL", self.amqp_url.clone()),
            ("TENANCY_NAMESPACE", self.namespace.clone()),
            ("MIGRATIONS_DIR", self.sets.path().display().to_string()),
            ("HEALTH_ADDR", "127.0.0.1:0".to_owned()),
            ("USER", "sre-ana".to_owned()),
        ]
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        command.args(args);
        for (key, value) in self.env() {
            command.env(key, value);
        }
        command
    }

    /// Runs `tenantctl` to the end.
    async fn tenantctl(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn deploy_count(&self) -> i64 {
        let mut conn = self.database.connect().await;
        sqlx::query_scalar("SELECT count(*) FROM deploys")
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn versions(&self) -> HashMap<Uuid, i64> {
        let mut conn = self.database.connect().await;
        sqlx::query_as::<_, (Uuid, i64)>("SELECT id, schema_version FROM tenants")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .collect()
    }

    /// Every tenant's history holds one successful run of the notice board migration: none was
    /// lost, none ran twice.
    async fn assert_each_applied_the_notice_board_once(&self) {
        let mut conn = self.database.connect().await;
        for (_, slug) in &self.tenants {
            let runs: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM \"tenant_{slug}\"._tenancy_history WHERE version = {NOTICE_BOARD} AND success"
            )))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(runs, 1, "{slug} applied the migration once");
        }
    }

    /// Creates `notice_board` in a tenant's schema behind the migrations' back.
    async fn conflict(&self, slug: &TenantSlug) {
        let mut conn = self.database.connect().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE \"tenant_{slug}\".notice_board (id int)"
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // The tenants' roles hold grants in the database: it goes first.
        testkit::pg::drop_databases_now(vec![self.database.name().to_owned()]);
        testkit::pg::drop_roles_now(
            self.tenants
                .iter()
                .map(|(_, slug)| slug.storage_name())
                .collect(),
        );
        testkit::broker::delete_topology_now(&self.amqp_url, &self.namespace);
    }
}

fn config(
    database_url: &str,
    amqp_url: &str,
    namespace: &str,
    migrations: Option<&Path>,
) -> Config {
    let mut values = HashMap::from([
        ("DATABASE_URL", database_url.to_owned()),
        ("AMQP_URL", amqp_url.to_owned()),
        ("TENANCY_NAMESPACE", namespace.to_owned()),
        ("HEALTH_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    if let Some(dir) = migrations {
        values.insert("MIGRATIONS_DIR", dir.display().to_string());
    }
    let mut config =
        Config::from_lookup(|key| values.get(key).cloned()).unwrap_or_else(|e| panic!("{e}"));
    // The fixtures' own sets are in `catalog`; the services get theirs through `Context`.
    config.migrations_dir = None;
    config
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_over_200_tenants_with_3_conflicts_then_fixed_replayed_and_repeated() {
    let fleet = Fleet::new(200, &[notice_board()]).await;
    let conflicting: Vec<TenantSlug> = fleet.tenants[..3].iter().map(|(_, s)| s.clone()).collect();
    for slug in &conflicting {
        fleet.conflict(slug).await;
    }
    let migrator = fleet.start_migrator();

    // The conflicting tables are drift: told to migrate those tenants anyway, so that their
    // migrations fail as this test needs.
    let deploy = fleet
        .tenantctl(&[
            "deploy",
            "--allow-drift",
            "--wait",
            "--timeout",
            "240",
            "--output",
            "json",
        ])
        .await;
    assert!(!deploy.status.success(), "{}", text(&deploy));
    let lines = json_lines(&deploy);
    let summary = lines.last().unwrap_or_else(|| panic!("{}", text(&deploy)));
    assert_eq!(summary["tenants"], 200, "{summary}");
    assert_eq!(summary["succeeded"], 197, "{summary}");
    assert_eq!(summary["failed"], 3, "{summary}");
    let failed: Vec<&str> = lines
        .iter()
        .filter(|l| l["status"] == "failed")
        .filter_map(|l| l["slug"].as_str())
        .collect();
    let mut expected: Vec<&str> = conflicting.iter().map(TenantSlug::as_str).collect();
    expected.sort_unstable();
    assert_eq!(failed, expected);
    assert!(
        lines
            .iter()
            .filter(|l| l["status"] == "failed")
            .all(|l| l["error"]
                .as_str()
                .unwrap_or_default()
                .contains("already exists")),
        "the reason is recorded: {lines:?}"
    );
    let versions = fleet.versions().await;
    let target: i64 = NOTICE_BOARD.parse().unwrap_or_default();
    assert_eq!(versions.values().filter(|v| **v == target).count(), 197);

    // In the dead-letter queue and in `tenantctl status`.
    let dlq = DeadLetterQueue::new(&fleet.ctx.bus, WorkQueue::MigrateTenant);
    testkit::wait_until(
        Duration::from_secs(30),
        "3 commands dead-lettered",
        || async { dlq.count().await.unwrap_or(0) == 3 },
    )
    .await;
    let status = fleet.tenantctl(&["status"]).await;
    assert!(!status.status.success());
    assert_eq!(
        text(&status).matches("needs reprocessing").count(),
        3,
        "{}",
        text(&status)
    );

    // Fix the three, replay: every tenant at the target, nobody needing reprocessing.
    let mut conn = fleet.database.connect().await;
    for slug in &conflicting {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP TABLE \"tenant_{slug}\".notice_board"
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let replay = fleet
        .tenantctl(&["dlq", "replay", "migrator", "--all"])
        .await;
    assert!(replay.status.success(), "{}", text(&replay));
    testkit::wait_until(Duration::from_secs(60), "all 200 at the target", || async {
        fleet.versions().await.values().all(|v| *v == target)
    })
    .await;
    let status = fleet.tenantctl(&["status"]).await;
    assert!(status.status.success(), "{}", text(&status));

    // The same deploy again: every tenant acknowledged, nothing applied.
    let again = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "120", "--output", "json"])
        .await;
    assert!(again.status.success(), "{}", text(&again));
    let lines = json_lines(&again);
    assert_eq!(
        lines.last().map(|s| s["succeeded"].clone()),
        Some(200.into())
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.get("slug").is_some())
            .all(|l| l["applied"] == 0),
        "nothing applied the second time"
    );
    testkit::stop_service(migrator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrators_share_a_deploy_and_no_tenant_is_migrated_twice() {
    let fleet = Fleet::new(60, &[notice_board()]).await;
    let first = fleet.start_migrator();
    // The second instance has connections of its own, as another replica would.
    let other = Context::connect(
        config(&fleet.database.url(), BROKER, &fleet.namespace, None),
        "deploy-test-2",
        &CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stop_second = CancellationToken::new();
    let second = tokio::spawn(migrator::run(
        Context {
            catalog: fleet.new_build().catalog,
            ..other
        },
        stop_second.clone(),
    ));
    let deploy = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "120", "--output", "json"])
        .await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    let lines = json_lines(&deploy);
    let per_tenant: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("slug").is_some()).collect();
    assert_eq!(per_tenant.len(), 60);
    // `applied` adds up over every run of a tenant's command: 1 means it ran exactly once.
    assert!(
        per_tenant.iter().all(|l| l["applied"] == 1),
        "{per_tenant:?}"
    );
    let mut conn = fleet.database.connect().await;
    for (_, slug) in &fleet.tenants {
        let runs: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"tenant_{slug}\"._tenancy_history WHERE version = {NOTICE_BOARD}"
        )))
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(runs, 1);
    }
    testkit::stop_service(first).await;
    testkit::stop_service((stop_second, second)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failure_stops_the_rollout_before_the_rest_is_published() {
    let fleet = Fleet::new(20, &[notice_board()]).await;
    // Canary tenants are the first by slug.
    let mut slugs: Vec<TenantSlug> = fleet.tenants.iter().map(|(_, s)| s.clone()).collect();
    slugs.sort();
    fleet.conflict(&slugs[0]).await;
    let migrator = fleet.start_migrator();
    let deploy = fleet
        .tenantctl(&[
            "deploy",
            "--canary",
            "2",
            "--allow-drift",
            "--timeout",
            "120",
        ])
        .await;
    assert!(!deploy.status.success(), "{}", text(&deploy));
    assert!(text(&deploy).contains("canary failed"), "{}", text(&deploy));
    let mut conn = fleet.database.connect().await;
    let statuses: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM deploy_tenants GROUP BY status ORDER BY status",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        statuses,
        vec![
            ("canceled".to_owned(), 18),
            ("failed".to_owned(), 1),
            ("succeeded".to_owned(), 1)
        ]
    );
    // Nothing else was ever published: the queue is empty and the 18 never moved.
    let queue = fleet
        .ctx
        .bus
        .channel()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let name = shared::bus::Topology::new(fleet.namespace.clone()).queue(WorkQueue::MigrateTenant);
    let declared = queue
        .queue_declare(
            name.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(declared.message_count(), 0);
    let base: i64 = fleet.base.tenant.latest().map_or(0, Version::get);
    assert_eq!(
        fleet
            .versions()
            .await
            .values()
            .filter(|v| **v == base)
            .count(),
        19
    );
    testkit::stop_service(migrator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_needs_allow_data_loss_refuses_irreversible_and_is_audited() {
    let fleet = Fleet::new(3, &[notice_board(), freeze()]).await;
    let migrator = fleet.start_migrator();
    let auditor_stop = CancellationToken::new();
    let auditor = tokio::spawn(auditor::run(fleet.ctx.clone(), auditor_stop.clone()));
    let deploy = fleet
        .tenantctl(&["deploy", "--to", NOTICE_BOARD, "--wait", "--timeout", "60"])
        .await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    let (tenant, slug) = fleet.tenants[0].clone();
    let base = fleet
        .base
        .tenant
        .latest()
        .unwrap_or(Version::ZERO)
        .to_string();

    // The dry run lists the down and marks it.
    let dry = fleet
        .tenantctl(&[
            "rollback",
            "--tenant",
            slug.as_str(),
            "--to",
            &base,
            "--dry-run",
        ])
        .await;
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("20270101000000_create_notice_board.down.sql  DESTROYS DATA"),
        "{}",
        text(&dry)
    );

    // Without --allow-data-loss: refused, nothing published, nothing changed.
    let refused = fleet
        .tenantctl(&["rollback", "--tenant", slug.as_str(), "--to", &base])
        .await;
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("--allow-data-loss"),
        "{}",
        text(&refused)
    );
    let target: i64 = NOTICE_BOARD.parse().unwrap_or_default();
    assert_eq!(fleet.versions().await[&tenant], target);

    // With it: rolled back, and the audit trail says who did it.
    let done = fleet
        .tenantctl(&[
            "rollback",
            "--tenant",
            slug.as_str(),
            "--to",
            &base,
            "--allow-data-loss",
            "--operator",
            "sre-bruno",
            "--wait",
            "--timeout",
            "60",
        ])
        .await;
    assert!(done.status.success(), "{}", text(&done));
    assert_eq!(
        fleet.versions().await[&tenant],
        base.parse::<i64>().unwrap_or_default()
    );
    let mut conn = fleet.database.connect().await;
    testkit::wait_until(
        Duration::from_secs(30),
        "the rollback is audited",
        || async {
            let rows: Vec<serde_json::Value> = sqlx::query_scalar(
            "SELECT data FROM audit_events WHERE type = 'migration.rollback' AND tenant_id = $1",
        )
        .bind(tenant)
        .fetch_all(&mut fleet.database.connect().await)
        .await
        .unwrap_or_default();
            rows.iter().any(|d| {
                d["operator"] == "sre-bruno"
                    && d["allow_data_loss"] == true
                    && d["reverted"] == serde_json::json!([target])
            })
        },
    )
    .await;
    let table: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_regclass('\"tenant_{slug}\".notice_board')::text"
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table, None, "the down ran");

    // An irreversible migration in the range stops the rollback before anything is published.
    let deploy = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "60"])
        .await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    let irreversible = fleet
        .tenantctl(&["rollback", "--all", "--to", &base, "--allow-data-loss"])
        .await;
    assert!(!irreversible.status.success());
    assert!(
        text(&irreversible).contains("the old settings layout is not kept"),
        "{}",
        text(&irreversible)
    );
    assert!(text(&irreversible).contains("nothing was published"));
    let latest: i64 = FREEZE.parse().unwrap_or_default();
    assert!(fleet.versions().await.values().all(|v| *v == latest));

    auditor_stop.cancel();
    let _ = auditor.await;
    testkit::stop_service(migrator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_provisioned_during_a_deploy_ends_at_the_latest_version() {
    let fleet = Fleet::new(2, &[notice_board()]).await;
    let migrator = fleet.start_migrator();
    // The provisioner is the old build: it knows only the built-in migrations.
    let provisioner_stop = CancellationToken::new();
    let provisioner = tokio::spawn(provisioner::run(
        Context {
            catalog: fleet.base.clone(),
            ..fleet.ctx.clone()
        },
        provisioner_stop.clone(),
    ));
    let deploy = fleet.tenantctl(&["deploy"]).await;
    assert!(deploy.status.success(), "{}", text(&deploy));

    // Registered after the deploy listed the fleet.
    let slug = testkit::unique_slug();
    let tenant = Uuid::new_v4();
    let data = domain::message::TenantRegistered {
        tenant_id: tenant,
        slug: slug.clone(),
        name: "Late Towers".into(),
        plan: None,
        isolation: None,
        server: None,
        admin: domain::message::Admin {
            email: "late.admin@example.org".into(),
            name: "Late Admin".into(),
        },
    };
    let event = fleet.ctx.bus.publisher().event(data);
    fleet
        .ctx
        .bus
        .publisher()
        .publish(&event)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let target: i64 = NOTICE_BOARD.parse().unwrap_or_default();
    testkit::wait_until(
        Duration::from_secs(60),
        "the late tenant reaches the deploy's target",
        || async { fleet.versions().await.get(&tenant) == Some(&target) },
    )
    .await;
    let mut conn = fleet.database.connect().await;
    let joined: String =
        sqlx::query_scalar("SELECT status FROM deploy_tenants WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(joined, "succeeded");

    provisioner_stop.cancel();
    let _ = provisioner.await;
    testkit::stop_service(migrator).await;
    testkit::pg::drop_roles_now(vec![format!("tenant_{slug}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_blocked_by_a_lock_times_out_and_fails_while_the_others_finish() {
    let fleet = Fleet::new(6, &[notice_board()]).await;
    let (blocked_id, blocked) = fleet.tenants[0].clone();
    // A long transaction holds the table the new migration references.
    let mut holder = fleet.database.connect().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; LOCK TABLE \"tenant_{blocked}\".users IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut holder)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let migrator = fleet.start_migrator();
    let deploy = fleet.tenantctl(&["deploy"]).await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    let target: i64 = NOTICE_BOARD.parse().unwrap_or_default();
    testkit::wait_until(Duration::from_secs(60), "the other 5 finish", || async {
        fleet
            .versions()
            .await
            .values()
            .filter(|v| **v == target)
            .count()
            == 5
    })
    .await;
    testkit::wait_until(
        Duration::from_secs(60),
        "the blocked tenant's timeout is on record",
        || async {
            let row: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT status, error FROM deploy_tenants WHERE tenant_id = $1")
                    .bind(blocked_id)
                    .fetch_optional(&mut fleet.database.connect().await)
                    .await
                    .unwrap_or_default();
            row.is_some_and(|(status, error)| {
                matches!(status.as_str(), "retrying" | "failed")
                    && error.is_some_and(|e| e.contains("lock"))
            })
        },
    )
    .await;
    assert_ne!(fleet.versions().await[&blocked_id], target);

    // Once the lock is gone, its retries go through.
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    testkit::wait_until(
        Duration::from_secs(120),
        "the blocked tenant completes",
        || async { fleet.versions().await[&blocked_id] == target },
    )
    .await;
    testkit::stop_service(migrator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_unknown_to_the_migrator_is_never_acknowledged() {
    let fleet = Fleet::new(1, &[notice_board()]).await;
    // The migrator is the old build: the deploy's target is newer than anything it knows.
    let stop_old = CancellationToken::new();
    let old = tokio::spawn(migrator::run(
        Context {
            catalog: fleet.base.clone(),
            ..fleet.ctx.clone()
        },
        stop_old.clone(),
    ));
    let deploy = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "3", "--output", "json"])
        .await;
    assert!(!deploy.status.success(), "{}", text(&deploy));
    let lines = json_lines(&deploy);
    let row = lines
        .iter()
        .find(|l| l.get("slug").is_some())
        .unwrap_or_else(|| panic!("{}", text(&deploy)));
    assert_ne!(row["status"], "succeeded");
    assert!(
        row["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown to this migrator"),
        "{row}"
    );
    stop_old.cancel();
    let _ = old.await;

    // The new build takes the same command and completes it (from the queue, or from the
    // dead-letter queue if the old build gave it back past the delivery limit).
    let migrator = fleet.start_migrator();
    let replay = fleet
        .tenantctl(&["dlq", "replay", "migrator", "--all"])
        .await;
    assert!(replay.status.success(), "{}", text(&replay));
    let (tenant, _) = fleet.tenants[0].clone();
    let target: i64 = NOTICE_BOARD.parse().unwrap_or_default();
    testkit::wait_until(
        Duration::from_secs(60),
        "the new build applies it",
        || async { fleet.versions().await[&tenant] == target },
    )
    .await;
    testkit::stop_service(migrator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrator_killed_mid_deploy_is_redelivered_and_the_deploy_completes() {
    let slow = (
        "20270101000000_create_notice_board",
        // At 4 slots the deploy takes 7.5 s at least: the kill lands mid-deploy even when the
        // whole suite loads the machine.
        "CREATE TABLE notice_board (id bigint PRIMARY KEY);\nSELECT pg_sleep(0.5);\n",
        Some("DROP TABLE notice_board;\n"),
    );
    let fleet = Fleet::new(60, &[slow]).await;
    let migrator = |log: &str| {
        let mut command = fleet.command(&["up", "--only", "migrator"]);
        command
            .env("MIGRATOR_SERVER_SLOTS", "4")
            .env("LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(
                    std::env::temp_dir().join(format!("{}-{log}.log", fleet.namespace)),
                )
                .unwrap_or_else(|e| panic!("{e}")),
            );
        testkit::KillOnDrop(command.spawn().unwrap_or_else(|e| panic!("{e}")))
    };
    let mut first = migrator("1");
    let deploy = fleet.tenantctl(&["deploy", "--output", "json"]).await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    let deploy_id = json_lines(&deploy)
        .last()
        .and_then(|l| l["deploy_id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{}", text(&deploy)));
    let target: i64 = NOTICE_BOARD.parse().unwrap_or_default();
    testkit::wait_until(
        Duration::from_secs(60),
        "some tenants are migrated",
        || async {
            fleet
                .versions()
                .await
                .values()
                .filter(|v| **v == target)
                .count()
                >= 8
        },
    )
    .await;
    first.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = first.wait();
    let done_before = fleet
        .versions()
        .await
        .values()
        .filter(|v| **v == target)
        .count();
    assert!(
        done_before < 60,
        "killed mid-deploy ({done_before} of 60 done)"
    );

    let mut second = migrator("2");
    let follow = fleet
        .tenantctl(&[
            "deploy",
            "--follow",
            &deploy_id,
            "--timeout",
            "120",
            "--output",
            "json",
        ])
        .await;
    assert!(follow.status.success(), "{}", text(&follow));
    let per_tenant: Vec<serde_json::Value> = json_lines(&follow)
        .into_iter()
        .filter(|l| l.get("slug").is_some())
        .collect();
    assert_eq!(per_tenant.len(), 60);
    // Every tenant succeeded; one the kill caught after its commit but before its record is
    // found at the target on redelivery (applied 0): the migration itself ran once.
    let unfinished: Vec<&serde_json::Value> = per_tenant
        .iter()
        .filter(|l| l["status"] != "succeeded")
        .collect();
    assert!(unfinished.is_empty(), "{unfinished:?}");
    let applied: i64 = per_tenant
        .iter()
        .filter_map(|l| l["applied"].as_i64())
        .sum();
    assert!(applied <= 60);
    fleet.assert_each_applied_the_notice_board_once().await;
    assert!(fleet.versions().await.values().all(|v| *v == target));
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let _ = second.wait();
}

/// A RabbitMQ node killed (SIGKILL) in the middle of a 500-tenant deploy, on a private
/// three-node cluster: the node the migrator is connected to dies while tenants are migrating.
/// The migrator (and the deploy, if it was on that node) fail over to a surviving node, the
/// quorum queue keeps every command, and every tenant is migrated, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_node_killed_mid_deploy_of_500_tenants_loses_and_repeats_no_tenant() {
    const TENANTS: usize = 500;
    let mut cluster = PrivateCluster::start().await;
    let slow = (
        "20270101000000_create_notice_board",
        // 0.2 s a tenant at 16 slots: 6 s at least in all, so the kill lands mid-deploy.
        "CREATE TABLE notice_board (id bigint PRIMARY KEY);\nSELECT pg_sleep(0.2);\n",
        Some("DROP TABLE notice_board;\n"),
    );
    let fleet = Fleet::on_broker(TENANTS, &[slow], &cluster.amqp_urls()).await;
    // Only the fleet's connection, which the in-process migrator shares, is open yet.
    let migrators = cluster.connected_nodes().await;
    assert_eq!(
        migrators.len(),
        1,
        "one connection, to one node: {migrators:?}"
    );
    let (stop, migrator) = fleet.start_migrator();

    let mut command = fleet.command(&[
        "deploy",
        "--canary",
        "50",
        "--wait",
        "--timeout",
        "300",
        "--output",
        "json",
    ]);
    command.stdout(std::process::Stdio::piped());
    command.stderr(std::process::Stdio::piped());
    let deploy = command.spawn().unwrap_or_else(|e| panic!("{e}"));
    let target: i64 = NOTICE_BOARD.parse().unwrap_or_default();
    let migrated = || async {
        fleet
            .versions()
            .await
            .values()
            .filter(|v| **v == target)
            .count()
    };
    testkit::wait_until(Duration::from_secs(120), "20 tenants migrated", || async {
        migrated().await >= 20
    })
    .await;
    cluster.kill_node(migrators[0]).await;
    let done_at_kill = migrated().await;
    assert!(
        done_at_kill < TENANTS,
        "the node died mid-deploy ({done_at_kill} of {TENANTS} done): slow the migration down"
    );

    let deploy = tokio::task::spawn_blocking(move || deploy.wait_with_output())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(deploy.status.success(), "{}", text(&deploy));
    let per_tenant: HashMap<String, String> = json_lines(&deploy)
        .into_iter()
        .filter(|l| l["type"] == "tenant")
        .filter_map(|l| {
            Some((
                l["slug"].as_str()?.to_owned(),
                l["status"].as_str()?.to_owned(),
            ))
        })
        .collect();
    assert_eq!(per_tenant.len(), TENANTS, "{}", text(&deploy));
    assert!(
        per_tenant.values().all(|status| status == "succeeded"),
        "{per_tenant:?}"
    );
    fleet.assert_each_applied_the_notice_board_once().await;
    assert!(fleet.versions().await.values().all(|v| *v == target));
    eprintln!("{done_at_kill} of {TENANTS} tenants migrated when the node was killed");
    testkit::stop_service((stop, migrator)).await;
    // The cluster goes first: deleting the namespace's quorum queues would wait for the killed
    // member.
    drop(cluster);
    drop(fleet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_lists_the_work_and_an_unapproved_destructive_migration_stops_the_deploy() {
    let drop_settings = (
        "20270101000100_drop_condominium_settings",
        "DROP TABLE condominium_settings;\n",
        Some("CREATE TABLE condominium_settings (id bigint PRIMARY KEY);\n"),
    );
    let fleet = Fleet::new(3, &[notice_board(), drop_settings]).await;

    // The dry run shows the work and the problem, and fails as the deploy would.
    let dry = fleet
        .tenantctl(&["deploy", "--dry-run", "--to", NOTICE_BOARD])
        .await;
    assert!(!dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("a deploy would refuse"),
        "{}",
        text(&dry)
    );
    // One row per tenant: TENANT, VERSION, WOULD APPLY.
    let would_apply = String::from_utf8_lossy(&dry.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(NOTICE_BOARD))
        .count();
    assert_eq!(would_apply, 3, "{}", text(&dry));

    let refused = fleet.tenantctl(&["deploy", "--wait"]).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("refusing to deploy"),
        "{}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("20270101000100_drop_condominium_settings"),
        "the refusal names the migration: {}",
        text(&refused)
    );
    let mut conn = fleet.database.connect().await;
    let deploys: i64 = sqlx::query_scalar("SELECT count(*) FROM deploys")
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deploys, 0, "nothing recorded, nothing published");
}

/// Applied migrations are never edited: once a deploy has released them, an edited, renamed or
/// deleted file is refused by the next deploy (and its dry run) and by a service's start,
/// although nothing is pending and no tenant's history is read; nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_released_migration_is_refused_by_deploys_and_services() {
    let fleet = Fleet::new(3, &[notice_board()]).await;
    let migrator = fleet.start_migrator();
    let first = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "120"])
        .await;
    assert!(first.status.success(), "{}", text(&first));

    let tenant_dir = fleet.sets.path().join("tenant");
    let mut files: Vec<String> = std::fs::read_dir(&tenant_dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".up.sql"))
        .collect();
    files.sort();
    let first_file = tenant_dir.join(&files[0]);
    let original = std::fs::read_to_string(&first_file).unwrap_or_else(|e| panic!("{e}"));
    let deploys_before = fleet.deploy_count().await;

    // One comment appended to the first, long-applied file.
    std::fs::write(&first_file, format!("{original}-- a harmless comment\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let edited = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "60"])
        .await;
    assert!(!edited.status.success(), "{}", text(&edited));
    let said = text(&edited);
    assert!(
        said.contains(&format!(
            "tenant/{}: edited after it was released",
            files[0]
        )) && said.contains("new migration"),
        "{said}"
    );
    assert!(!said.contains("already at the target"), "{said}");
    let dry = fleet.tenantctl(&["deploy", "--dry-run"]).await;
    assert!(!dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("edited after it was released"),
        "{}",
        text(&dry)
    );
    // A service carrying the edited set does not start.
    let refused = fleet.new_build().check_released_sets().await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("edited after it was released")),
        "{refused:?}"
    );

    // Deleted: refused the same way.
    std::fs::remove_file(&first_file).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(tenant_dir.join("sqlite").join(&files[0]));
    let _ = std::fs::remove_file(tenant_dir.join(files[0].replace(".up.sql", ".down.sql")));
    let _ = std::fs::remove_file(
        tenant_dir
            .join("sqlite")
            .join(files[0].replace(".up.sql", ".down.sql")),
    );
    let deleted = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "60"])
        .await;
    assert!(!deleted.status.success(), "{}", text(&deleted));
    assert!(
        text(&deleted).contains("deleted or renamed"),
        "{}",
        text(&deleted)
    );
    assert_eq!(
        fleet.deploy_count().await,
        deploys_before,
        "a refused deploy records and publishes nothing"
    );

    // Restored as released: deploys again, nothing pending.
    let restored_sets = testkit::migration_sets_with(&[notice_board()]);
    testkit::copy_dir(restored_sets.path(), fleet.sets.path()).unwrap_or_else(|e| panic!("{e}"));
    let again = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "120"])
        .await;
    assert!(again.status.success(), "{}", text(&again));
    testkit::stop_service(migrator).await;
}

/// A mistyped `DATABASE_URL` never starts an empty fleet: `deploy` refuses a platform database
/// that does not exist, naming it and how to create one, and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_against_a_missing_platform_database_creates_nothing() {
    let fleet = Fleet::new(0, &[]).await;
    let missing = format!("tenancy_typo_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let url = format!("postgres://postgres@127.0.0.1:5432/{missing}?password=s3cret");
    for args in [
        &["deploy", "--wait", "--timeout", "10"][..],
        &["deploy", "--dry-run"][..],
        &["status"][..],
    ] {
        let mut command = fleet.command(args);
        command.env("DATABASE_URL", &url);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let said = text(&output);
        assert!(!output.status.success(), "{args:?}: {said}");
        assert!(
            said.contains(&format!("`{missing}` does not exist")),
            "{args:?}: {said}"
        );
        assert!(said.contains("createdb"), "{args:?}: {said}");
        assert!(!said.contains("s3cret"), "{args:?}: {said}");
    }
    let mut conn = fleet.database.connect().await;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&missing)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(!exists, "the mistyped database was created");
}

/// `tenantctl` carries trace context: a deploy is one trace (its commands carry it), and each
/// tenant's migration is a trace of its own linked to it (a child of it for 10,000 tenants would
/// be one unreadable trace). What the CLI publishes never carries an empty `tracestate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_is_one_trace_that_each_tenants_migration_links_to() {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;
    // nextest runs each test in its own process: this test owns the global subscriber.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")));
    let _ = tracing::subscriber::set_global_default(subscriber);

    let fleet = Fleet::new(3, &[notice_board()]).await;
    let migrator = fleet.start_migrator();
    let deploy = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "120"])
        .await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    testkit::stop_service(migrator).await;
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().unwrap_or_default();
    let migrations: Vec<_> = spans
        .iter()
        .filter(|s| s.name == format!("process {}.migrator.migrate-tenant", fleet.namespace))
        .collect();
    assert_eq!(
        migrations.len(),
        3,
        "{:?}",
        spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
    );
    let deploy_traces: std::collections::HashSet<_> = migrations
        .iter()
        .map(|span| {
            assert_eq!(
                span.parent_span_id,
                opentelemetry::trace::SpanId::INVALID,
                "each migration is the root of its own trace"
            );
            assert_eq!(span.links.links.len(), 1, "linked to the deploy's command");
            let linked = &span.links.links[0].span_context;
            assert!(linked.is_valid() && linked.is_remote());
            assert_ne!(linked.trace_id(), span.span_context.trace_id());
            linked.trace_id()
        })
        .collect();
    assert_eq!(
        deploy_traces.len(),
        1,
        "every command is in the deploy's one trace"
    );

    // `event publish` runs in a root span too: its message carries `traceparent`, and no
    // empty `tracestate`.
    let published = fleet
        .tenantctl(&[
            "event",
            "publish",
            "tenant.provisioned",
            "--data",
            &serde_json::json!({
                "tenant_id": Uuid::new_v4(), "slug": "traced_towers", "isolation": "schema",
                "schema_version": 0, "duration_ms": 1
            })
            .to_string(),
        ])
        .await;
    assert!(published.status.success(), "{}", text(&published));
    let connection = lapin::Connection::connect(BROKER, lapin::ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let channel = connection
        .create_channel()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let queue = shared::bus::Topology::new(fleet.namespace.clone()).queue(WorkQueue::AuditorEvents);
    let mut headers = None;
    for _ in 0..50 {
        if let Some(message) = channel
            .basic_get(
                queue.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        {
            headers = message.delivery.properties.headers().clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let headers = headers.unwrap_or_else(|| panic!("the event reached {queue} with headers"));
    let header = |name: &str| headers.inner().get(name).cloned();
    assert!(
        matches!(header("traceparent"), Some(lapin::types::AMQPValue::LongString(v)) if v.to_string().starts_with("00-")),
        "{headers:?}"
    );
    assert_eq!(header("tracestate"), None, "{headers:?}");
    let _ = connection.close(200, "done".into()).await;
}

/// Every command logs as `LOG_FORMAT` says (JSON lines here), not only `up`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_log_in_the_format_log_format_asks_for() {
    let fleet = Fleet::new(1, &[]).await;
    let mut command = fleet.command(&["status"]);
    // An invalid filter is reported as a warning: one log line to look at.
    command
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "not[a(filter");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warning = stderr
        .lines()
        .find(|line| line.contains("RUST_LOG is not a valid filter"))
        .unwrap_or_else(|| panic!("no warning about RUST_LOG: {stderr}"));
    let parsed: serde_json::Value =
        serde_json::from_str(warning).unwrap_or_else(|e| panic!("{e}: {warning}"));
    assert_eq!(parsed["level"], "WARN", "{parsed}");
    assert!(!stderr.contains("\u{1b}["), "no colour codes: {stderr}");
}

/// Every stdout line of a `--output json` run: each must be a JSON object with a `type` (the
/// test fails on anything else, so nothing but JSON reaches stdout).
fn typed_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", text(output)));
            assert!(value["type"].is_string(), "no type: {line}");
            value
        })
        .collect()
}

/// Runs `tenantctl ARGS --output json`, which must succeed; its typed lines.
async fn json_run(fleet: &Fleet, args: &[&str]) -> Vec<serde_json::Value> {
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    let output = fleet.tenantctl(&args).await;
    assert!(output.status.success(), "{args:?}: {}", text(&output));
    typed_lines(&output)
}

fn types(lines: &[serde_json::Value]) -> Vec<&str> {
    lines.iter().filter_map(|l| l["type"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_command_prints_json_lines_with_a_type() {
    let fleet = Fleet::new(2, &[notice_board()]).await;
    let migrator = fleet.start_migrator();
    let auditor_stop = CancellationToken::new();
    let auditor = tokio::spawn(auditor::run(fleet.ctx.clone(), auditor_stop.clone()));
    let target: i64 = NOTICE_BOARD.parse().unwrap_or_default();
    let base: i64 = fleet.base.tenant.latest().map_or(0, Version::get);
    let (tenant, slug) = fleet.tenants[0].clone();
    // deploy --dry-run: the platform, each tenant, a summary.
    let dry = json_run(&fleet, &["deploy", "--dry-run"]).await;
    assert_eq!(types(&dry), ["platform", "tenant", "tenant", "summary"]);
    assert!(
        dry[1..3]
            .iter()
            .all(|t| t["would_apply"] == serde_json::json!([target]))
    );
    assert_eq!(dry[3]["dry_run"], true);
    assert_eq!(dry[3]["to_migrate"], 2);

    // deploy --wait: the deploy, each tenant, a summary; --follow: the same without the deploy.
    let deploy = json_run(&fleet, &["deploy", "--wait", "--timeout", "60"]).await;
    assert_eq!(types(&deploy), ["deploy", "tenant", "tenant", "summary"]);
    assert_eq!(deploy[0]["target_version"], target);
    assert_eq!(deploy[0]["tenants"], 2);
    assert!(
        deploy[1..3]
            .iter()
            .all(|t| t["status"] == "succeeded" && t["applied"] == 1)
    );
    assert_eq!(deploy[3]["stage"], "deploy");
    assert_eq!(deploy[3]["succeeded"], 2);
    let deploy_id = deploy[0]["deploy_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let follow = json_run(&fleet, &["deploy", "--follow", &deploy_id]).await;
    assert_eq!(types(&follow), ["tenant", "tenant", "summary"]);
    assert_eq!(follow[2]["deploy_id"], deploy_id.as_str());
    // Without --wait: the deploy, then what was published.
    let again = json_run(&fleet, &["deploy"]).await;
    assert_eq!(types(&again), ["deploy", "published"]);
    assert_eq!(again[1]["tenants"], 2);

    // status and migrations status: the platform, each tenant, a summary.
    for command in [&["status"][..], &["migrations", "status"]] {
        let status = json_run(&fleet, command).await;
        assert_eq!(
            types(&status),
            ["platform", "tenant", "tenant", "summary"],
            "{command:?}"
        );
        assert!(status[0]["applied_version"].is_i64());
        assert!(status[1..3].iter().all(|t| t["schema"]["applied_version"] == target
            && t["migration_error"].is_null()));
        assert_eq!(status[3]["healthy"], true);
    }
    let one = json_run(&fleet, &["status", "--tenant", slug.as_str()]).await;
    assert_eq!(types(&one), ["platform", "tenant", "summary"]);
    assert_eq!(one[1]["tenant_id"], tenant.to_string());

    // tenant show: one object, its steps inside.
    let show = json_run(&fleet, &["tenant", "show", slug.as_str()]).await;
    assert_eq!(types(&show), ["tenant"]);
    assert_eq!(show[0]["slug"], slug.as_str());
    assert_eq!(show[0]["schema_version"], target);
    assert_eq!(show[0]["steps"].as_array().map(Vec::len), Some(6));
    assert_eq!(show[0]["migrations"]["applied_version"], target);

    // rollback --dry-run: the plan per tenant, a summary; then for real, waiting.
    let to = base.to_string();
    let plan = json_run(
        &fleet,
        &[
            "rollback",
            "--tenant",
            slug.as_str(),
            "--to",
            &to,
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(types(&plan), ["plan", "summary"]);
    assert_eq!(plan[0]["downs"][0]["version"], target);
    assert_eq!(plan[1]["needs_allow_data_loss"], true);
    let rollback = json_run(
        &fleet,
        &[
            "rollback",
            "--tenant",
            slug.as_str(),
            "--to",
            &to,
            "--allow-data-loss",
            "--wait",
            "--timeout",
            "60",
        ],
    )
    .await;
    assert_eq!(types(&rollback), ["plan", "published", "tenant", "summary"]);
    assert_eq!(rollback[1]["operator"], "sre-ana");
    assert_eq!(rollback[2]["status"], "rolled_back");
    assert_eq!(rollback[2]["version"], base);
    assert_eq!(rollback[3]["rolled_back"], 1);

    // audit: the events, a summary.
    testkit::wait_until(
        Duration::from_secs(30),
        "the rollback is in the audit trail",
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM audit_events WHERE type = 'migration.rollback' AND tenant_id = $1",
            )
            .bind(tenant)
            .fetch_one(&mut fleet.database.connect().await)
            .await
            .unwrap_or(0)
                > 0
        },
    )
    .await;
    let audit = json_run(&fleet, &["audit", "--tenant", slug.as_str()]).await;
    let (summary, events) = audit.split_last().unwrap_or_else(|| panic!("no lines"));
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["events"], events.len());
    assert!(events.iter().all(|e| e["type"] == "event"));
    assert!(
        events
            .iter()
            .any(|e| e["event_type"] == "migration.rollback")
    );

    // dlq list: nothing dead-lettered, a summary alone.
    let dlq = json_run(&fleet, &["dlq", "list", "migrator"]).await;
    assert_eq!(types(&dlq), ["summary"]);
    assert_eq!(dlq[0]["total"], 0);

    auditor_stop.cancel();
    let _ = auditor.await;
    testkit::stop_service(migrator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenancy_operator_names_the_operator_of_a_job_without_user() {
    let fleet = Fleet::new(1, &[notice_board()]).await;
    let migrator = fleet.start_migrator();
    // As in a CI job or a container: no USER, no LOGNAME.
    let job = |args: &[&str], operator: &str| {
        let mut command = fleet.command(args);
        command
            .env_remove("USER")
            .env_remove("LOGNAME")
            .env("TENANCY_OPERATOR", operator);
        async move {
            tokio::task::spawn_blocking(move || command.output())
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let operators = || async {
        sqlx::query_scalar::<_, String>("SELECT operator FROM deploys ORDER BY created_at")
            .fetch_all(&mut fleet.database.connect().await)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };

    // Validated as --operator is: not an email address.
    let refused = job(&["deploy"], "ci@example.com").await;
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("TENANCY_OPERATOR must be a handle"),
        "{}",
        text(&refused)
    );
    assert!(operators().await.is_empty(), "nothing recorded");

    let deployed = job(&["deploy", "--wait", "--timeout", "60"], "release-bot").await;
    assert!(deployed.status.success(), "{}", text(&deployed));
    assert_eq!(operators().await, ["release-bot"]);
    // --operator still wins.
    let flagged = job(&["deploy", "--operator", "sre-bruno"], "release-bot").await;
    assert!(flagged.status.success(), "{}", text(&flagged));
    assert_eq!(operators().await, ["release-bot", "sre-bruno"]);

    // A rollback carries it to the migrator.
    let base = fleet
        .base
        .tenant
        .latest()
        .unwrap_or(Version::ZERO)
        .to_string();
    let rollback = job(
        &[
            "rollback",
            "--all",
            "--to",
            &base,
            "--allow-data-loss",
            "--output",
            "json",
        ],
        "release-bot",
    )
    .await;
    assert!(rollback.status.success(), "{}", text(&rollback));
    let published = typed_lines(&rollback)
        .into_iter()
        .find(|l| l["type"] == "published")
        .unwrap_or_else(|| panic!("{}", text(&rollback)));
    assert_eq!(published["operator"], "release-bot");
    assert_eq!(published["tenants"], 1);
    testkit::stop_service(migrator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_shows_each_tenants_slug_beside_its_id() {
    let fleet = Fleet::new(1, &[]).await;
    let (tenant, slug) = fleet.tenants[0].clone();
    let unknown = Uuid::new_v4();
    // Dead letters of a tenant with a row, of one without, and of none.
    let channel = fleet
        .ctx
        .bus
        .channel()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let queue = shared::bus::Topology::new(fleet.namespace.clone())
        .dead_letter_queue(WorkQueue::MigrateTenant);
    let mut ids = Vec::new();
    for tenant_id in [Some(tenant), Some(unknown), None] {
        let id = Uuid::new_v4().to_string();
        let body = serde_json::json!({
            "specversion": "1.0", "id": id, "type": "migrate.tenant", "source": "test",
            "data": { "tenant_id": tenant_id, "deploy_id": Uuid::new_v4() },
        });
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                lapin::options::BasicPublishOptions::default(),
                &serde_json::to_vec(&body).unwrap_or_default(),
                lapin::BasicProperties::default()
                    .with_message_id(id.as_str().into())
                    .with_delivery_mode(2),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ids.push(id);
    }

    let listed = fleet.tenantctl(&["dlq", "list", "migrator"]).await;
    assert!(listed.status.success(), "{}", text(&listed));
    let stdout = String::from_utf8_lossy(&listed.stdout).into_owned();
    // MESSAGE ID, TYPE, TENANT, SLUG, …
    let row = |id: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{stdout}"))
            .split_whitespace()
            .take(4)
            .map(str::to_owned)
            .collect()
    };
    let (tenant_text, unknown_text) = (tenant.to_string(), unknown.to_string());
    assert_eq!(row(&ids[0])[2..], [tenant_text.as_str(), slug.as_str()]);
    assert_eq!(row(&ids[1])[2..], [unknown_text.as_str(), "-"]);
    assert_eq!(row(&ids[2])[2..], ["-", "-"]);

    let json = fleet
        .tenantctl(&["dlq", "list", "migrator", "--output", "json"])
        .await;
    assert!(json.status.success(), "{}", text(&json));
    let lines = typed_lines(&json);
    assert_eq!(types(&lines), ["message", "message", "message", "summary"]);
    let slug_of = |id: &str| {
        lines
            .iter()
            .find(|l| l["message_id"] == id)
            .map(|l| l["slug"].clone())
    };
    assert_eq!(slug_of(&ids[0]), Some(slug.as_str().into()));
    assert_eq!(slug_of(&ids[1]), Some(serde_json::Value::Null));
    assert_eq!(slug_of(&ids[2]), Some(serde_json::Value::Null));
    assert_eq!(lines[3]["total"], 3);
}

/// Backup and restore as docs/DEPLOYMENT.md describes it: `pg_dump --format=custom` of the
/// platform database (schema-mode tenants live in it), `pg_restore` into an empty database, and
/// the services and the deploy job pointed at the copy carry on: every tenant is there at its
/// version, the next deploy reaches them all, and the original is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_database_restored_from_pg_dump_takes_the_next_deploy() {
    let fleet = Fleet::new(6, &[notice_board()]).await;
    let backup = ScratchDir::new();
    let file = backup.path().join("platform.dump");
    let dumped = Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&file)
        .args(["--dbname", &fleet.database.url()])
        .output()
        .unwrap_or_else(|e| panic!("pg_dump: {e}"));
    assert!(dumped.status.success(), "{}", text(&dumped));
    let restored = TestDatabase::create().await;
    let loaded = Command::new("pg_restore")
        .args(["--exit-on-error", "--dbname", &restored.url()])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("pg_restore: {e}"));
    assert!(loaded.status.success(), "{}", text(&loaded));

    let namespace = testkit::unique_namespace();
    let ctx = Context::connect(
        config(&restored.url(), BROKER, &namespace, Some(fleet.sets.path())),
        "restore-test",
        &CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let ctx = Context {
        catalog: fleet.new_build().catalog,
        ..ctx
    };
    let stop = CancellationToken::new();
    let migrator = (
        stop.clone(),
        tokio::spawn(migrator::run(ctx.clone(), stop.clone())),
    );
    let mut deploy = fleet.command(&["deploy", "--wait", "--timeout", "120", "--output", "json"]);
    deploy
        .env("DATABASE_URL", restored.url())
        .env("TENANCY_NAMESPACE", &namespace);
    let deployed = tokio::task::spawn_blocking(move || deploy.output())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(deployed.status.success(), "{}", text(&deployed));
    let summary = json_lines(&deployed).pop().unwrap_or_default();
    assert_eq!(
        (summary["tenants"].clone(), summary["succeeded"].clone()),
        (6.into(), 6.into()),
        "{summary}"
    );
    let target: i64 = NOTICE_BOARD.parse().unwrap_or_default();
    let mut conn = restored.connect().await;
    let versions: Vec<i64> = sqlx::query_scalar("SELECT schema_version FROM tenants")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(versions, vec![target; 6]);
    for (_, slug) in &fleet.tenants {
        let exists: bool = sqlx::query_scalar(
            "SELECT to_regclass(format('%I.notice_board', 'tenant_' || $1)) IS NOT NULL",
        )
        .bind(slug.as_str())
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            exists,
            "tenant_{slug} in the restored database was migrated"
        );
    }
    assert!(
        fleet.versions().await.values().all(|v| *v != target),
        "the original database was not touched"
    );
    testkit::stop_service(migrator).await;
    testkit::broker::delete_topology_now(BROKER, &namespace);
}
