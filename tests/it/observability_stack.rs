//! The observability stack shipped in `deploy/`: Prometheus's config and alert rules pass
//! promtool; the dashboards reference only what Grafana's provisioning defines; every PromQL
//! expression of the dashboards and the alerts parses (asked of a private Prometheus); every SQL
//! panel runs on a freshly migrated platform database as Grafana's read-only role.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use engine::{Catalog, Engine, EngineOptions, PgSchemaBackend, Target};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};
use testkit::dashboards::{self, PanelQuery};
use testkit::pg::TestDatabase;
use testkit::prometheus::{AlertState, PrivatePrometheus, ScrapeTarget, promtool};
use testkit::workspace_path;

/// The role `deploy/grafana/platform-reader.sql` creates.
const GRAFANA_ROLE: &str = "grafana_reader";

/// The shipped alert rules, in the order of the file.
const ALERTS: [&str; 8] = [
    "TenancyProvisioningFailureRateHigh",
    "TenancyTenantStuckProvisioning",
    "TenancyDeadLetters",
    "TenancyTenantsNeedReprocessing",
    "TenancySchemaDrift",
    "TenancyDeployStalled",
    "TenancyBrokerDisconnected",
    "TenancyTargetDown",
];

fn alerts_file() -> PathBuf {
    workspace_path("deploy/prometheus/alerts.yml")
}

/// Runs promtool in `deploy/prometheus` and asserts it succeeded, showing what it said.
fn assert_promtool(args: &[&str]) {
    let out = promtool(&workspace_path("deploy/prometheus"), args);
    assert!(
        out.status.success(),
        "promtool {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_prometheus_config() {
    assert_promtool(&["check", "config", "prometheus.yml"]);
}

#[test]
fn promtool_accepts_the_alert_rules() {
    assert_promtool(&["check", "rules", "alerts.yml"]);
}

#[test]
fn alert_rule_unit_tests_pass() {
    assert_promtool(&["test", "rules", "alerts.test.yml"]);
}

#[test]
fn every_alert_has_a_runbook_section_in_the_docs() {
    let rules = std::fs::read_to_string(alerts_file()).unwrap_or_else(|e| panic!("{e}"));
    let docs = std::fs::read_to_string(workspace_path("docs/OBSERVABILITY.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    for alert in ALERTS {
        let anchor = alert.to_lowercase();
        assert!(
            rules.contains(&format!("runbook_url: docs/OBSERVABILITY.md#{anchor}\n")),
            "{alert} has no runbook_url to docs/OBSERVABILITY.md#{anchor}"
        );
        assert!(
            docs.contains(&format!("\n### {alert}\n")),
            "docs/OBSERVABILITY.md has no section `### {alert}` (the anchor #{anchor})"
        );
    }
}

#[test]
fn dashboards_use_only_provisioned_data_sources_and_defined_variables() {
    let provisioned: BTreeSet<String> = dashboards::provisioned_datasources(&workspace_path(
        "deploy/grafana/provisioning/datasources/tenancy.yaml",
    ))
    .into_iter()
    .map(|(uid, _)| uid)
    .collect();
    assert_eq!(
        provisioned,
        BTreeSet::from(["platform", "prometheus", "tempo"].map(str::to_owned)),
        "the provisioned data sources"
    );
    let all = dashboards::load(&dashboards::shipped_dashboards_dir());
    let titles: BTreeSet<&str> = all.iter().map(|d| d.title.as_str()).collect();
    assert_eq!(
        titles,
        BTreeSet::from([
            "Tenancy / Bus",
            "Tenancy / Deploys",
            "Tenancy / Fleet",
            "Tenancy / Provisioning"
        ])
    );
    let mut problems = Vec::new();
    for dashboard in &all {
        for uid in dashboard.datasource_uids() {
            if !provisioned.contains(&uid) {
                problems.push(format!(
                    "{}: data source {uid:?} is not provisioned",
                    dashboard.title
                ));
            }
        }
        let defined: BTreeSet<String> =
            dashboard.variables.iter().map(|v| v.name.clone()).collect();
        for name in dashboard.variable_references() {
            if !defined.contains(&name) {
                problems.push(format!(
                    "{}: variable ${name} is not defined",
                    dashboard.title
                ));
            }
        }
        for target in &dashboard.targets {
            let expected = match target.query {
                PanelQuery::Prometheus { .. } => "prometheus",
                PanelQuery::Sql { .. } => "platform",
            };
            if target.datasource_uid != expected {
                problems.push(format!("{target}: should query {expected}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_expression_parses() {
    let prometheus = PrivatePrometheus::start(&[], &[alerts_file()]).await;

    let rules = prometheus.rules().await;
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ALERTS, "the alert rules Prometheus loaded");

    let mut expressions: Vec<(String, String)> = rules
        .iter()
        .map(|rule| (format!("alert {}", rule.name), rule.expr.clone()))
        .collect();
    let targets = dashboards::all_targets(&dashboards::shipped_dashboards_dir());
    expressions.extend(targets.iter().filter_map(|target| match &target.query {
        PanelQuery::Prometheus { expr, .. } => Some((target.to_string(), expr.clone())),
        PanelQuery::Sql { .. } => None,
    }));
    assert!(
        expressions.len() > 40,
        "only {} expressions",
        expressions.len()
    );

    let mut refused = Vec::new();
    for (what, expr) in &expressions {
        if let Err(e) = prometheus.query(expr).await {
            refused.push(format!("{what}\n  evaluated as `{expr}`\n  {e}"));
        }
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}

/// Serves `body` as `/metrics` on 127.0.0.1 until the test ends; returns `host:port`.
fn serve_metrics(body: &'static str) -> String {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap_or_else(|e| panic!("{e}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0_u8; 4096];
            let _ = stream.read(&mut request);
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    address
}

/// The kit end to end: a scraped series shows up in queries and fires a shipped alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_prometheus_scrapes_targets_and_fires_the_shipped_alerts() {
    let address = serve_metrics(
        "# TYPE tenancy_tenants_needing_reprocessing gauge\n\
         tenancy_tenants_needing_reprocessing{service_name=\"migrator\",service_instance_id=\"m1\"} 2\n",
    );
    let prometheus =
        PrivatePrometheus::start(&[ScrapeTarget::new("migrator", address)], &[alerts_file()]).await;
    prometheus
        .wait_for_targets_up(Duration::from_secs(30))
        .await;
    let samples = prometheus
        .wait_for_samples(
            "max without (instance, service_instance_id) (tenancy_tenants_needing_reprocessing)",
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert_eq!(samples[0].value, 2.0);
    assert_eq!(samples[0].labels["job"], "migrator");

    let rule = prometheus
        .wait_for_alert(
            "TenancyTenantsNeedReprocessing",
            &[AlertState::Firing],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(rule.alerts.len(), 1, "{rule:#?}");
    assert_eq!(rule.health, "ok", "{rule:#?}");

    let refused = prometheus.query("sum(rate(x[1m])").await;
    assert!(
        refused.as_ref().is_err_and(|e| e.is_parse_error()),
        "{refused:?}"
    );
}

/// A platform database at the newest platform version with Grafana's role set up by the shipped
/// SQL file, and one deploy with a succeeded and a failed tenant (so joins and percentiles see
/// rows).
async fn platform_with_grafana_role() -> TestDatabase {
    let database = TestDatabase::create().await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(database.options())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let catalog = Catalog::load(None).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(PgSchemaBackend::new(pool.clone()), EngineOptions::default())
        .apply(&Target::Platform, &catalog.platform, None, &())
        .await
        .unwrap_or_else(|e| panic!("platform migrations: {e}"));
    let role_sql = std::fs::read_to_string(workspace_path("deploy/grafana/platform-reader.sql"))
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::raw_sql(AssertSqlSafe(role_sql))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("deploy/grafana/platform-reader.sql: {e}"));
    sqlx::raw_sql(
        "INSERT INTO tenants (id, slug, name, status, isolation, schema_version) VALUES
           ('6f1d2c3b-1111-4222-8333-944455556666', 'acme_towers', 'Acme Towers', 'active', 'schema', 2),
           ('0b6f5a2e-2f8e-4a55-9d8e-3c1f0f6a7b11', 'zeta_towers', 'Zeta Towers', 'active', 'schema', 1);
         INSERT INTO deploys (id, target_version, operator, status, published_at)
           VALUES ('9e1b2c3d-0000-4000-8000-000000000001', 2, 'ci', 'published', now());
         INSERT INTO deploy_tenants (deploy_id, tenant_id, status, from_version, to_version, attempts, error, finished_at, duration_ms) VALUES
           ('9e1b2c3d-0000-4000-8000-000000000001', '6f1d2c3b-1111-4222-8333-944455556666', 'succeeded', 1, 2, 1, NULL, now(), 120),
           ('9e1b2c3d-0000-4000-8000-000000000001', '0b6f5a2e-2f8e-4a55-9d8e-3c1f0f6a7b11', 'failed', 1, 1, 5, 'relation \"x\" already exists', now(), 80);",
    )
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("sample rows: {e}"));
    // Twice, as after a later migration: it must not fail on the role that now exists.
    let role_sql = std::fs::read_to_string(workspace_path("deploy/grafana/platform-reader.sql"))
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::raw_sql(AssertSqlSafe(role_sql))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("platform-reader.sql a second time: {e}"));
    pool.close().await;
    database
}

async fn connect_as_grafana(database: &TestDatabase) -> sqlx::PgConnection {
    database
        .options()
        .username(GRAFANA_ROLE)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting as {GRAFANA_ROLE}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_panel_runs_as_grafanas_read_only_role() {
    let database = platform_with_grafana_role().await;
    let mut grafana = connect_as_grafana(&database).await;
    let targets: Vec<_> = dashboards::all_targets(&dashboards::shipped_dashboards_dir())
        .into_iter()
        .filter(|t| matches!(t.query, PanelQuery::Sql { .. }))
        .collect();
    assert!(targets.len() >= 3, "SQL panels: {targets:?}");
    let mut failed = Vec::new();
    for target in &targets {
        match sqlx::raw_sql(AssertSqlSafe(target.query.evaluated().to_owned()))
            .fetch_all(&mut grafana)
            .await
        {
            Ok(rows) if rows.is_empty() => failed.push(format!("{target}\n  returned no row")),
            Ok(_) => {}
            Err(e) => failed.push(format!(
                "{target}\n  evaluated as {}\n  {e}",
                target.query.evaluated()
            )),
        }
    }
    let _ = grafana.close().await;
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafanas_role_reads_no_tenant_name_and_writes_nothing() {
    let database = platform_with_grafana_role().await;
    let mut grafana = connect_as_grafana(&database).await;
    let allowed = sqlx::raw_sql("SELECT id, slug, status, schema_version FROM tenants")
        .fetch_all(&mut grafana)
        .await;
    assert!(allowed.is_ok_and(|rows| rows.len() == 2));
    for refused in [
        "SELECT name FROM tenants",
        "SELECT * FROM tenants",
        "SELECT count(*) FROM audit_events",
        "UPDATE deploys SET status = 'published'",
        "DELETE FROM deploy_tenants",
        "CREATE TABLE grafana_scratch (x int)",
    ] {
        let result = sqlx::raw_sql(refused).execute(&mut grafana).await;
        assert!(
            result.is_err(),
            "{GRAFANA_ROLE} was allowed to run `{refused}`"
        );
    }
    let _ = grafana.close().await;
}
