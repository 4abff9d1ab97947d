//! The shipped dashboards and alerts against a running system: `tenantctl up` (the three
//! services in one process, serving `/metrics`) scraped by a real Prometheus, through a scenario
//! with a tenant that fails to provision and a deploy with a tenant that fails. Then every
//! dashboard query must return data, every SQL panel must run on the platform database as
//! Grafana's read-only role, and the alerts about the failing tenants must fire.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};
use testkit::ScratchDir;
use testkit::dashboards::{self, PanelQuery, PanelTarget};
use testkit::output_text as text;
use testkit::pg::TestDatabase;
use testkit::prometheus::{AlertState, PrivatePrometheus, ScrapeTarget};
use uuid::Uuid;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The deploy's migration: a new table, and its down script.
const NOTICE_BOARD: &str = "20270101000000_create_notice_board";

/// The system under observation: its database, namespace, migration sets and `tenantctl up`.
struct System {
    /// `Some` until dropped: the tenants' roles go after it.
    database: Option<TestDatabase>,
    sets: ScratchDir,
    namespace: String,
    up: Child,
    /// `host:port` of `/metrics`.
    metrics: String,
    suffix: String,
}

impl System {
    async fn start() -> System {
        let database = TestDatabase::create().await;
        let sets = testkit::migration_sets_with(&[(
            NOTICE_BOARD,
            "CREATE TABLE notice_board (id bigint PRIMARY KEY, body text NOT NULL);\n",
            Some("DROP TABLE notice_board;\n"),
        )]);
        let suffix = Uuid::new_v4().simple().to_string()[..6].to_owned();
        let namespace = format!("tt{}-{suffix}", std::process::id());
        let mut up = tenantctl(&database.url(), &namespace, sets.path(), &["up"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let stderr = up.stderr.take().unwrap_or_else(|| panic!("piped"));
        let (lines, logged) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let metrics = loop {
            let line = logged
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("tenantctl up logged no health address"));
            let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if parsed["message"] == "health and metrics endpoints on /healthz, /readyz and /metrics"
            {
                break parsed["address"].as_str().unwrap_or_default().to_owned();
            }
        };
        // Keep draining the log so the process never blocks on a full pipe.
        std::thread::spawn(move || while logged.recv().is_ok() {});
        let system = System {
            database: Some(database),
            sets,
            namespace,
            up,
            metrics,
            suffix,
        };
        let address = system.metrics.clone();
        testkit::wait_until(Duration::from_secs(60), "tenantctl up is ready", || {
            let address = address.clone();
            async move {
                testkit::http_get(&address, "/readyz")
                    .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            }
        })
        .await;
        system
    }

    fn command(&self, args: &[&str]) -> Command {
        tenantctl(
            &self.database().url(),
            &self.namespace,
            self.sets.path(),
            args,
        )
    }

    async fn tenantctl(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn database(&self) -> &TestDatabase {
        self.database.as_ref().unwrap_or_else(|| panic!("dropped"))
    }

    /// A tenant slug the test sweeper recognises as this process's (`tt_<pid>_…`).
    fn slug(&self, name: &str) -> String {
        format!("tt_{}_{name}_{}", std::process::id(), self.suffix)
    }

    async fn sql(&self, statement: &str) {
        let mut conn = self.database().connect().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    async fn status_of(&self, slug: &str) -> Option<String> {
        let mut conn = self.database().connect().await;
        sqlx::query_scalar("SELECT status FROM tenants WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn register(&self, slug: &str) {
        let output = self
            .tenantctl(&[
                "tenant",
                "register",
                "--slug",
                slug,
                "--name",
                "Observed",
                "--admin-email",
                "admin@observed.example",
                "--admin-name",
                "Observed Admin",
            ])
            .await;
        assert!(
            output.status.success(),
            "register {slug}: {}",
            text(&output)
        );
    }

    async fn wait_for_status(&self, slug: &str, status: &str) {
        let wanted = Some(status.to_owned());
        testkit::wait_until(
            Duration::from_secs(90),
            &format!("{slug} is {status}"),
            || {
                let wanted = wanted.clone();
                async move { self.status_of(slug).await == wanted }
            },
        )
        .await;
    }

    /// Provisioning with one failure, then a rollback of every tenant and a deploy with one
    /// failure: what the dashboards and alerts are about.
    async fn run_the_scenario(&self) {
        // A tenant whose schema already holds a `users` table: its migrations fail for good.
        let bad = self.slug("bad");
        self.sql(&format!(
            "CREATE SCHEMA \"tenant_{bad}\"; CREATE TABLE \"tenant_{bad}\".users (id int)"
        ))
        .await;
        let good: Vec<String> = ["a", "b", "c"].iter().map(|n| self.slug(n)).collect();
        for slug in good.iter().chain([&bad]) {
            self.register(slug).await;
        }
        for slug in &good {
            self.wait_for_status(slug, "active").await;
        }
        self.wait_for_status(&bad, "failed").await;

        let base = testkit::latest_tenant_version();
        let rollback = self
            .tenantctl(&[
                "rollback",
                "--all",
                "--to",
                &base,
                "--allow-data-loss",
                "--wait",
            ])
            .await;
        assert!(rollback.status.success(), "rollback: {}", text(&rollback));

        // The deploy meets a tenant whose schema already has the table it creates. That table
        // is drift, which a deploy leaves out unless told: told here, so that the migration
        // itself fails, as the failure metrics and alerts need.
        let conflicted = &good[2];
        self.sql(&format!(
            "CREATE TABLE \"tenant_{conflicted}\".notice_board (id int)"
        ))
        .await;
        let deploy = self
            .tenantctl(&["deploy", "--allow-drift", "--wait", "--timeout", "120"])
            .await;
        assert!(
            !deploy.status.success(),
            "a deploy with a failed tenant exits non-zero: {}",
            text(&deploy)
        );
        assert!(
            text(&deploy).contains(conflicted.as_str()),
            "{}",
            text(&deploy)
        );
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.up.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.up.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
        drop(self.database.take());
        let roles = ["a", "b", "c", "bad"]
            .iter()
            .map(|name| format!("tenant_{}", self.slug(name)))
            .collect();
        testkit::pg::drop_roles_now(roles);
        testkit::broker::delete_topology_now(BROKER, &self.namespace);
    }
}

/// `tenantctl ARGS` against the system's database, namespace and migration sets.
fn tenantctl(database_url: &str, namespace: &str, sets: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
    command.args(args);
    for (key, value) in [
        ("DATABASE_URL", database_url),
        ("AMQP_URL", BROKER),
        ("TENANCY_NAMESPACE", namespace),
        ("HEALTH_ADDR", "127.0.0.1:0"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
        ("TENANCY_OPERATOR", "sre-test"),
        // Metrics and the fleet census every second, so the scenario is seen at once.
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
    ] {
        command.env(key, value);
    }
    command.env("MIGRATIONS_DIR", sets);
    command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    command
}

/// The scenario alone, its outcome read from `/metrics`: the services' view, before any
/// Prometheus or dashboard is involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_failed_tenants_the_deploy_and_the_queues() {
    let system = System::start().await;
    system.run_the_scenario().await;
    let metrics = system.metrics.clone();
    let sample = |name: &'static str, labels: &'static [&'static str]| {
        let metrics = metrics.clone();
        async move {
            let text = testkit::http_get(&metrics, "/metrics").unwrap_or_default();
            text.lines()
                .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
                .find(|line| labels.iter().all(|label| line.contains(label)))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse::<f64>().ok())
        }
    };
    for (name, labels, wanted) in [
        ("tenancy_tenants_needing_reprocessing", &[][..], 1.0),
        ("tenancy_deploy_tenants", &["status=\"failed\""][..], 1.0),
        ("tenancy_deploy_tenants", &["status=\"succeeded\""][..], 2.0),
        (
            "tenancy_queue_messages",
            &["queue=\"migrator.migrate-tenant.dlq\""][..],
            1.0,
        ),
        (
            "tenancy_queue_messages",
            &["queue=\"provisioner.tenant-registered.dlq\""][..],
            1.0,
        ),
        (
            "tenancy_provisioning_tenants_total",
            &["outcome=\"failed\""][..],
            1.0,
        ),
        (
            "tenancy_provisioning_tenants_total",
            &["outcome=\"active\""][..],
            3.0,
        ),
        ("tenancy_broker_connected", &[][..], 1.0),
    ] {
        testkit::wait_until(
            Duration::from_secs(30),
            &format!("{name}{labels:?} = {wanted}"),
            || async move { sample(name, labels).await == Some(wanted) },
        )
        .await;
    }
    let failed_tenants: f64 = {
        let text = testkit::http_get(&metrics, "/metrics").unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("tenancy_tenants{") && l.contains("status=\"failed\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(failed_tenants, 1.0, "one tenant failed to provision");
}

/// The role `deploy/grafana/platform-reader.sql` creates, which Grafana's `platform` data
/// source connects as.
const GRAFANA_ROLE: &str = "grafana_reader";

/// The alerts about the scenario's failing tenants, which must fire (the tenant changed by hand
/// before the deploy is drifted too).
const FIRING: [&str; 4] = [
    "TenancyProvisioningFailureRateHigh",
    "TenancyDeadLetters",
    "TenancyTenantsNeedReprocessing",
    "TenancySchemaDrift",
];

/// The alerts nothing in the scenario is about, which must stay quiet: no false alarms.
const QUIET: [&str; 4] = [
    "TenancyTenantStuckProvisioning",
    "TenancyDeployStalled",
    "TenancyBrokerDisconnected",
    "TenancyTargetDown",
];

/// How long a query may take to show data once the scenario is over: a few census intervals
/// and scrapes (1 s each).
const DATA_TIMEOUT: Duration = Duration::from_secs(60);

/// The shipped alert rules with every `for:` set to 0s, written into `dir`: an alert fires at
/// the first evaluation that finds its condition, so the test need not wait minutes.
fn alerts_firing_at_once(dir: &Path) -> PathBuf {
    let shipped = testkit::workspace_path("deploy/prometheus/alerts.yml");
    let text =
        std::fs::read_to_string(&shipped).unwrap_or_else(|e| panic!("{}: {e}", shipped.display()));
    let mut rewritten = 0;
    let copy: String = text
        .lines()
        .map(|line| {
            let key = line.trim_start();
            if key.starts_with("for: ") {
                rewritten += 1;
                format!("{}for: 0s\n", &line[..line.len() - key.len()])
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert!(rewritten > 0, "no `for:` in {}", shipped.display());
    let file = dir.join("alerts.yml");
    std::fs::write(&file, copy).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    file
}

/// Runs the shipped `platform-reader.sql` on the system's platform database. Roles belong to the
/// server, and tests in other processes may grant to the same role at the same moment
/// ("tuple concurrently updated"): a failed attempt is tried again.
async fn create_grafana_role(database: &TestDatabase) {
    let file = testkit::workspace_path("deploy/grafana/platform-reader.sql");
    let script =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut last_error = String::new();
    for _ in 0..5 {
        let mut conn = database.connect().await;
        match sqlx::raw_sql(AssertSqlSafe(script.clone()))
            .execute(&mut conn)
            .await
        {
            Ok(_) => return,
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{}: {last_error}", file.display());
}

/// Each Prometheus panel target that still returns no sample after [`DATA_TIMEOUT`], with what
/// Prometheus said.
async fn prometheus_panels_without_data(
    prometheus: &PrivatePrometheus,
    targets: &[&PanelTarget],
) -> Vec<String> {
    let deadline = Instant::now() + DATA_TIMEOUT;
    let mut waiting: Vec<(&PanelTarget, String)> = targets
        .iter()
        .map(|target| (*target, "not asked yet".to_owned()))
        .collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (target, _) in waiting {
            match prometheus.query(target.query.evaluated()).await {
                Ok(samples) if !samples.is_empty() => {}
                Ok(_) => still.push((target, "no sample".to_owned())),
                Err(e) => still.push((target, e.to_string())),
            }
        }
        waiting = still;
        if waiting.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    waiting
        .into_iter()
        .map(|(target, why)| {
            format!(
                "{target}\n  evaluated as `{}`\n  {why}",
                target.query.evaluated()
            )
        })
        .collect()
}

/// Each SQL panel target that fails or returns no row as Grafana's role on `database`.
async fn sql_panels_without_data(database: &TestDatabase, targets: &[&PanelTarget]) -> Vec<String> {
    let mut grafana = database
        .options()
        .username(GRAFANA_ROLE)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting as {GRAFANA_ROLE}: {e}"));
    let mut failed = Vec::new();
    for target in targets {
        let result = sqlx::raw_sql(AssertSqlSafe(target.query.evaluated().to_owned()))
            .fetch_all(&mut grafana)
            .await;
        match result {
            Ok(rows) if !rows.is_empty() => {}
            Ok(_) => failed.push(format!("{target}\n  returned no row")),
            Err(e) => failed.push(format!(
                "{target}\n  evaluated as {}\n  {e}",
                target.query.evaluated()
            )),
        }
    }
    let _ = grafana.close().await;
    failed
}

/// The shipped stack against the scenario: a private Prometheus scrapes `tenantctl up` and
/// evaluates the shipped alerts (`for:` 0s); afterwards every dashboard panel has data, every
/// SQL panel runs as Grafana's read-only role, and exactly the alerts about the failing tenants
/// fire. RabbitMQ's own endpoint (:15692) is not scraped: no panel may need it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_has_data_and_the_alerts_about_the_failing_tenants_fire() {
    let targets = dashboards::all_targets(&dashboards::shipped_dashboards_dir());
    let (promql, sql): (Vec<&PanelTarget>, Vec<&PanelTarget>) = targets
        .iter()
        .partition(|t| matches!(t.query, PanelQuery::Prometheus { .. }));
    assert!(
        promql.len() > 30 && sql.len() >= 3,
        "{} PromQL and {} SQL targets",
        promql.len(),
        sql.len()
    );
    let on_rabbitmq: Vec<String> = promql
        .iter()
        .filter(|t| t.query.raw().contains("rabbitmq_"))
        .map(|t| t.to_string())
        .collect();
    assert!(
        on_rabbitmq.is_empty(),
        "panels that need RabbitMQ's own metrics (plugin rabbitmq_prometheus):\n{}",
        on_rabbitmq.join("\n")
    );

    let system = System::start().await;
    create_grafana_role(system.database()).await;
    let rules_dir = ScratchDir::new();
    let prometheus = PrivatePrometheus::start(
        &[ScrapeTarget::new("tenantctl", system.metrics.clone())],
        &[alerts_firing_at_once(rules_dir.path())],
    )
    .await;
    prometheus
        .wait_for_targets_up(Duration::from_secs(30))
        .await;

    system.run_the_scenario().await;

    let mut missing = prometheus_panels_without_data(&prometheus, &promql).await;
    missing.extend(sql_panels_without_data(system.database(), &sql).await);
    assert!(
        missing.is_empty(),
        "{} of {} panel targets show nothing after the scenario:\n{}",
        missing.len(),
        targets.len(),
        missing.join("\n")
    );

    for alert in FIRING {
        let rule = prometheus
            .wait_for_alert(alert, &[AlertState::Firing], DATA_TIMEOUT)
            .await;
        assert_eq!(rule.health, "ok", "{rule:#?}");
    }
    let dead_letters = prometheus
        .rules()
        .await
        .into_iter()
        .find(|rule| rule.name == "TenancyDeadLetters")
        .unwrap_or_else(|| panic!("TenancyDeadLetters is loaded"));
    let queues: Vec<&str> = dead_letters
        .alerts
        .iter()
        .filter_map(|labels| labels.get("queue").map(String::as_str))
        .collect();
    for queue in [
        "migrator.migrate-tenant.dlq",
        "provisioner.tenant-registered.dlq",
    ] {
        assert!(
            queues.contains(&queue),
            "TenancyDeadLetters fires for {queues:?}, not {queue}"
        );
    }
    for rule in prometheus.rules().await {
        if QUIET.contains(&rule.name.as_str()) {
            assert_eq!(rule.state, AlertState::Inactive, "{rule:#?}");
            assert_eq!(rule.health, "ok", "{rule:#?}");
        }
    }
}
