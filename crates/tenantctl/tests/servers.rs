//! Tenants over several PostgreSQL servers: the machine's server (`default`) and two private
//! clusters (`testkit::cluster`) registered with `tenantctl servers add`. The provisioner places
//! and creates each tenant on its server, the migrator and `tenantctl deploy` reach each on its
//! own, draining stops placements, a registration may pin a server.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use domain::message::{Event as _, TenantRegistered};
use domain::tenant::TenantSlug;
use engine::Catalog;
use shared::config::{Config, MigratorConfig};
use shared::service::Context;
use sqlx::Connection as _;
use testkit::ScratchDir;
use testkit::cluster::PrivatePostgres;
use testkit::output_text as text;
use testkit::pg::TestDatabase;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const NOTICE_BOARD: &str = "20270101000000";

struct Fleet {
    database: TestDatabase,
    namespace: String,
    /// The built-in sets plus one migration: what the deploy brings.
    sets: ScratchDir,
    /// Provisions with the built-in sets.
    ctx: Context,
    /// Tenants on `default`, whose roles live on the machine's server.
    slugs: std::sync::Mutex<Vec<TenantSlug>>,
}

impl Fleet {
    /// A fleet whose next release creates `notice_board`, after `before` (SQL run first).
    async fn new(before: &str) -> Fleet {
        shared::telemetry::init_for_tests();
        let database = TestDatabase::create().await;
        let namespace = testkit::unique_namespace();
        let up = format!(
            "{before}CREATE TABLE notice_board (id bigint PRIMARY KEY, body text NOT NULL);\n"
        );
        let sets = testkit::migration_sets_with(&[(
            "20270101000000_create_notice_board",
            &up,
            Some("DROP TABLE notice_board;\n"),
        )]);
        let ctx = Context::connect(
            config(&database.url(), &namespace),
            "servers-test",
            &CancellationToken::new(),
        )
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
            slugs: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database.url()),
            ("AMQP_URL", BROKER.to_owned()),
            ("TENANCY_NAMESPACE", self.namespace.clone()),
            ("MIGRATIONS_DIR", self.sets.path().display().to_string()),
            ("HEALTH_ADDR", "127.0.0.1:0".to_owned()),
            ("USER", "sre-ana".to_owned()),
        ]
    }

    async fn tenantctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        command.args(args);
        for (key, value) in self.env() {
            command.env(key, value);
        }
        tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn start_provisioner(&self) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(provisioner::run(self.ctx.clone(), stop.clone()));
        (stop, task)
    }

    /// A migrator of the new build (the built-in sets and the notice board).
    fn start_migrator(&self) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
        self.start_migrator_with(MigratorConfig::default())
    }

    /// As [`Fleet::start_migrator`], handling `settings.concurrency` commands at once.
    fn start_migrator_with(
        &self,
        settings: MigratorConfig,
    ) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
        let stop = CancellationToken::new();
        let mut config = (*self.ctx.config).clone();
        config.migrator = settings;
        let ctx = Context {
            catalog: Arc::new(
                Catalog::load(Some(self.sets.path())).unwrap_or_else(|e| panic!("{e}")),
            ),
            config: Arc::new(config),
            ..self.ctx.clone()
        };
        let task = tokio::spawn(migrator::run(ctx, stop.clone()));
        (stop, task)
    }

    async fn register(&self, isolation: &str, server: Option<&str>) -> Uuid {
        let tenant = Uuid::new_v4();
        let slug = testkit::unique_slug();
        self.slugs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slug.clone());
        let data = TenantRegistered::from_data(&serde_json::json!({
            "tenant_id": tenant, "slug": slug.as_str(), "name": "Harbour View",
            "isolation": isolation, "server": server,
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
        tenant
    }

    /// Every tenant: (id, slug, server, status, isolation).
    async fn tenants(&self) -> Vec<(Uuid, String, Option<String>, String, String)> {
        let mut conn = self.database.connect().await;
        sqlx::query_as("SELECT id, slug, server, status, isolation FROM tenants ORDER BY slug")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn wait_until_settled(&self, count: usize) {
        testkit::wait_until(
            Duration::from_secs(120),
            &format!("{count} tenants active or failed"),
            || async {
                let tenants = self.tenants().await;
                tenants.len() == count && tenants.iter().all(|t| t.3 == "active" || t.3 == "failed")
            },
        )
        .await;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let names: Vec<String> =
            std::mem::take(&mut *self.slugs.lock().unwrap_or_else(|e| e.into_inner()))
                .iter()
                .map(TenantSlug::storage_name)
                .collect();
        testkit::pg::drop_databases_now(names.clone());
        testkit::pg::drop_roles_now(names);
        testkit::broker::delete_topology_now(BROKER, &self.namespace);
    }
}

fn config(database_url: &str, namespace: &str) -> Config {
    let values = HashMap::from([
        ("DATABASE_URL", database_url.to_owned()),
        ("AMQP_URL", BROKER.to_owned()),
        ("TENANCY_NAMESPACE", namespace.to_owned()),
        ("HEALTH_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    Config::from_lookup(|key| values.get(key).cloned()).unwrap_or_else(|e| panic!("{e}"))
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether `tenant_<slug>` exists on the server at `url` (a schema of its database, or a
/// database), and whether its `notice_board` table does.
async fn storage_on(url: &str, slug: &str, isolation: &str) -> (bool, bool) {
    let storage = format!("tenant_{slug}");
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    if isolation == "schema" {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(&storage)
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        let board: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("{storage}.notice_board"))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        return (exists, board);
    }
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&storage)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    if !exists {
        return (false, false);
    }
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    let mut tenant = sqlx::PgConnection::connect(&format!("{base}/{storage}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let board: bool = sqlx::query_scalar("SELECT to_regclass('notice_board') IS NOT NULL")
        .fetch_one(&mut tenant)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (true, board)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_spread_over_three_servers_and_each_path_reaches_them_on_their_own() {
    let fleet = Fleet::new("").await;
    let (a, b) = tokio::join!(PrivatePostgres::start(), PrivatePostgres::start());
    let urls: HashMap<&str, String> = HashMap::from([
        ("default", fleet.database.url()),
        ("pg-a", a.url()),
        ("pg-b", b.url()),
    ]);
    for (name, extra) in [("pg-a", None), ("pg-b", Some("3"))] {
        let mut args = vec!["servers", "add", name, urls[name].as_str()];
        if let Some(capacity) = extra {
            args.extend(["--capacity", capacity]);
        }
        let added = fleet.tenantctl(&args).await;
        assert!(added.status.success(), "{}", text(&added));
    }
    let refused = fleet
        .tenantctl(&[
            "servers",
            "add",
            "pg-c",
            "postgres://postgres:secret@127.0.0.1:1/x",
        ])
        .await;
    assert!(
        !refused.status.success() && text(&refused).contains("PGPASSFILE"),
        "a URL with a password is refused, saying where the password goes: {}",
        text(&refused)
    );

    // Nine unpinned tenants, one pinned database-mode tenant, one pinned to a server that does
    // not exist.
    let provisioner = fleet.start_provisioner();
    for _ in 0..9 {
        fleet.register("schema", None).await;
    }
    let pinned = fleet.register("database", Some("pg-a")).await;
    let lost = fleet.register("schema", Some("pg-z")).await;
    fleet.wait_until_settled(10).await;

    let tenants = fleet.tenants().await;
    let on = |server: &str| {
        tenants
            .iter()
            .filter(|t| t.3 == "active" && t.2.as_deref() == Some(server))
            .count()
    };
    // Least loaded first: pg-b is filled to its capacity, the other two share the rest evenly
    // (the pinned tenant counts for pg-a, wherever its turn came).
    let (on_default, on_a) = (on("default"), on("pg-a"));
    assert!(
        on("pg-b") == 3 && on_default + on_a == 7 && on_default.abs_diff(on_a) <= 1,
        "{tenants:?}"
    );
    // A registration pinned to a server that does not exist creates nothing: it waits in the
    // dead-letter queue, saying which server is missing and how to add it.
    assert!(tenants.iter().all(|t| t.0 != lost), "{tenants:?}");
    let dead = fleet
        .tenantctl(&["dlq", "list", "provisioner", "--output", "json"])
        .await;
    assert!(
        text(&dead).contains(&lost.to_string())
            && text(&dead).contains("pg-z")
            && text(&dead).contains("tenantctl servers add"),
        "{}",
        text(&dead)
    );
    assert!(
        tenants
            .iter()
            .any(|t| t.0 == pinned && t.2.as_deref() == Some("pg-a")),
        "{tenants:?}"
    );

    // pg-b is full: list says so. Drain pg-a: the next two go to default.
    let listed = fleet
        .tenantctl(&["servers", "list", "--output", "json"])
        .await;
    assert!(listed.status.success(), "{}", text(&listed));
    let counts: HashMap<String, u64> = json_lines(&listed)
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap_or_default().to_owned(),
                l["tenants"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(counts.get("pg-b"), Some(&3), "{}", text(&listed));
    let drained = fleet.tenantctl(&["servers", "drain", "pg-a"]).await;
    assert!(drained.status.success(), "{}", text(&drained));
    fleet.register("schema", None).await;
    fleet.register("schema", None).await;
    fleet.wait_until_settled(12).await;
    let tenants = fleet.tenants().await;
    let on = |server: &str| {
        tenants
            .iter()
            .filter(|t| t.3 == "active" && t.2.as_deref() == Some(server))
            .count()
    };
    assert_eq!(
        (on("default"), on("pg-a"), on("pg-b")),
        (on_default + 2, on_a, 3),
        "pg-a drains and pg-b is full: both go to default: {tenants:?}"
    );
    testkit::stop_service(provisioner).await;

    // Each tenant's storage is on its own server, and on no other.
    for (_, slug, server, status, isolation) in &tenants {
        let Some(server) = server.as_deref().filter(|_| status == "active") else {
            continue;
        };
        for (name, url) in &urls {
            let (exists, _) = storage_on(url, slug, isolation).await;
            assert_eq!(exists, *name == server, "tenant_{slug} on {name}");
        }
    }

    // A canary server first: only pg-b's tenants. Then one deploy reaches every active tenant
    // on its own server, and its summary counts each server.
    let migrator = fleet.start_migrator();
    let canary = fleet
        .tenantctl(&[
            "deploy",
            "--server",
            "pg-b",
            "--wait",
            "--timeout",
            "120",
            "--output",
            "json",
        ])
        .await;
    let summary = json_lines(&canary).pop().unwrap_or_default();
    assert_eq!(
        (
            summary["tenants"].clone(),
            summary["servers"][0]["server"].clone()
        ),
        (3.into(), "pg-b".into()),
        "{}",
        text(&canary)
    );
    let unknown = fleet.tenantctl(&["deploy", "--server", "pg-q"]).await;
    assert!(
        !unknown.status.success() && text(&unknown).contains("no tenant server pg-q"),
        "{}",
        text(&unknown)
    );
    let deploy = fleet
        .tenantctl(&["deploy", "--wait", "--timeout", "120", "--output", "json"])
        .await;
    let summary = json_lines(&deploy).pop().unwrap_or_default();
    assert_eq!(
        (summary["tenants"].clone(), summary["succeeded"].clone()),
        (12.into(), 12.into()),
        "{}",
        text(&deploy)
    );
    let per_server: HashMap<String, (u64, u64)> = summary["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["server"].as_str().unwrap_or_default().to_owned(),
                (
                    s["tenants"].as_u64().unwrap_or_default(),
                    s["migrated"].as_u64().unwrap_or_default(),
                ),
            )
        })
        .collect();
    assert_eq!(
        per_server.get("pg-b"),
        Some(&(3, 0)),
        "pg-b's tenants were already at the target: {summary}"
    );
    assert_eq!(per_server.len(), 3, "{summary}");
    // The progress on stderr counts each server (its last line: everything done).
    let stderr = String::from_utf8_lossy(&deploy.stderr);
    let last_progress = stderr
        .lines()
        .rfind(|line| line.contains(" done: "))
        .unwrap_or_else(|| panic!("no progress line:\n{stderr}"));
    assert!(
        last_progress.ends_with("| default 5/5, pg-a 4/4, pg-b 3/3"),
        "{last_progress}"
    );
    for (_, slug, server, status, isolation) in &tenants {
        let Some(server) = server.as_deref().filter(|_| status == "active") else {
            continue;
        };
        let (_, board) = storage_on(&urls[server], slug, isolation).await;
        assert!(board, "tenant_{slug} on {server} was migrated");
    }
    let status = fleet.tenantctl(&["status", "--output", "json"]).await;
    let rows: Vec<serde_json::Value> = json_lines(&status)
        .into_iter()
        .filter(|l| l["type"] == "tenant" && l["status"] == "active")
        .collect();
    assert_eq!(rows.len(), 12, "{}", text(&status));
    assert!(
        rows.iter().all(
            |r| r["schema_version"] == NOTICE_BOARD.parse::<u64>().unwrap_or_default()
                && r["error"].is_null()
        ),
        "status reads every tenant on its own server: {}",
        text(&status)
    );
    let table = fleet.tenantctl(&["status"]).await;
    let header = text(&table)
        .lines()
        .find(|l| l.starts_with("TENANT"))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
    assert_eq!(
        header.as_deref(),
        Some("TENANT SERVER"),
        "tenants on several servers: status shows where each lives: {}",
        text(&table)
    );
    testkit::stop_service(migrator).await;
}

/// A server down during a deploy: the other servers' tenants finish meanwhile; the stopped
/// server's commands are given back until they wait in the dead-letter queue with the reason,
/// and complete once it is back and they are replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_during_a_deploy_holds_back_only_its_own_tenants() {
    let fleet = Fleet::new("SELECT pg_sleep(0.2);\n").await;
    let (a, mut b) = tokio::join!(PrivatePostgres::start(), PrivatePostgres::start());
    for (name, url) in [("pg-a", a.url()), ("pg-b", b.url())] {
        let added = fleet.tenantctl(&["servers", "add", name, &url]).await;
        assert!(added.status.success(), "{}", text(&added));
    }
    let provisioner = fleet.start_provisioner();
    for _ in 0..12 {
        fleet.register("schema", None).await;
    }
    fleet.wait_until_settled(12).await;
    testkit::stop_service(provisioner).await;
    let tenants = fleet.tenants().await;
    let on_b: Vec<Uuid> = tenants
        .iter()
        .filter(|t| t.2.as_deref() == Some("pg-b"))
        .map(|t| t.0)
        .collect();
    assert_eq!(on_b.len(), 4, "{tenants:?}");

    // pg-b goes down as the deploy starts (stopping it once the deploy runs would race with
    // its four tenants' few hundred milliseconds of work).
    b.stop().await;
    let migrator = fleet.start_migrator();
    let deploy = fleet.tenantctl(&["deploy", "--output", "json"]).await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    let deploy_id = json_lines(&deploy)
        .iter()
        .find_map(|l| l["deploy_id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{}", text(&deploy)));

    // Every tenant of default and pg-a reaches the target while pg-b is down; pg-b's end in
    // the dead-letter queue, with a reason naming their server.
    let results = |status: &'static str| {
        let database = &fleet.database;
        let deploy_id = deploy_id.clone();
        async move {
            let mut conn = database.connect().await;
            sqlx::query_scalar::<_, Uuid>(
                "SELECT tenant_id FROM deploy_tenants WHERE deploy_id = $1::uuid AND status = $2",
            )
            .bind(deploy_id)
            .bind(status)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    testkit::wait_until(
        Duration::from_secs(90),
        "the other servers' 8 tenants succeeded",
        || async {
            results("succeeded")
                .await
                .iter()
                .filter(|t| !on_b.contains(t))
                .count()
                == 8
        },
    )
    .await;
    assert!(!b.is_running(), "pg-b was down all along");
    testkit::wait_until(
        Duration::from_secs(120),
        "pg-b's commands dead-lettered",
        || async {
            let failed = results("failed").await;
            on_b.iter().all(|t| failed.contains(t))
        },
    )
    .await;
    let dead = fleet
        .tenantctl(&["dlq", "list", "migrator", "--output", "json"])
        .await;
    assert!(text(&dead).contains("pg-b"), "{}", text(&dead));

    b.start_again().await;
    let replay = fleet
        .tenantctl(&["dlq", "replay", "migrator", "--all"])
        .await;
    assert!(replay.status.success(), "{}", text(&replay));
    testkit::wait_until(Duration::from_secs(60), "all 12 succeeded", || async {
        results("succeeded").await.len() == 12
    })
    .await;
    for (_, slug, server, _, isolation) in &fleet.tenants().await {
        let url = match server.as_deref() {
            Some("pg-a") => a.url(),
            Some("pg-b") => b.url(),
            _ => fleet.database.url(),
        };
        let (_, board) = storage_on(&url, slug, isolation).await;
        assert!(board, "tenant_{slug} migrated");
    }
    testkit::stop_service(migrator).await;
}

/// One slow server in a deploy over two: its commands do not take every command the migrator
/// may hold at once. Beyond its share, a command of the slow server goes back to the end of
/// the queue while the other server has work, so the other server's tenants finish first
/// instead of waiting for the slow server's slots one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_does_not_hold_back_the_other_servers_tenants() {
    const EACH: usize = 24;
    let slow = PrivatePostgres::start().await;
    // Only on pg-b does the migration take long: two seconds, against milliseconds on default
    // (a few hundred when the machine is loaded).
    let fleet = Fleet::new(&format!(
        "DO $$ BEGIN IF current_setting('port') = '{}' THEN PERFORM pg_sleep(2); END IF; END $$;\n",
        slow.port()
    ))
    .await;
    let added = fleet
        .tenantctl(&["servers", "add", "pg-b", &slow.url()])
        .await;
    assert!(added.status.success(), "{}", text(&added));
    let provisioner = fleet.start_provisioner();
    let mut on = HashMap::from([("default", Vec::new()), ("pg-b", Vec::new())]);
    for _ in 0..EACH {
        for server in ["default", "pg-b"] {
            let tenant = fleet.register("schema", Some(server)).await;
            on.entry(server).or_default().push(tenant);
        }
    }
    fleet.wait_until_settled(2 * EACH).await;
    testkit::stop_service(provisioner).await;

    // 4 slots a server and 12 commands at once: without shares, pg-b's commands would fill
    // all 12 (4 running, 8 waiting for a slot) and default's would pass one per pg-b tenant
    // done.
    let migrator = fleet.start_migrator_with(MigratorConfig {
        concurrency: 12,
        server_slots: 4,
    });
    let deploy = fleet.tenantctl(&["deploy", "--output", "json"]).await;
    assert!(deploy.status.success(), "{}", text(&deploy));
    let succeeded = || async {
        let mut conn = fleet.database.connect().await;
        sqlx::query_scalar::<_, Uuid>(
            "SELECT tenant_id FROM deploy_tenants WHERE status = 'succeeded'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let done_on =
        |server: &str, done: &[Uuid]| on[server].iter().filter(|t| done.contains(t)).count();
    let mut slow_done_when_fast_finished = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done = succeeded().await;
        if slow_done_when_fast_finished.is_none() && done_on("default", &done) == EACH {
            slow_done_when_fast_finished = Some(done_on("pg-b", &done));
        }
        if done.len() == 2 * EACH {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} tenants migrated after 120 s",
            done.len(),
            2 * EACH
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slow_done = slow_done_when_fast_finished.unwrap_or(EACH);
    eprintln!(
        "pg-b had {slow_done} of {EACH} tenants migrated when default's {EACH} were all done"
    );
    assert!(
        slow_done <= EACH / 4,
        "default's tenants waited for pg-b's: {slow_done} of pg-b's {EACH} were done first"
    );
    testkit::stop_service(migrator).await;
}
