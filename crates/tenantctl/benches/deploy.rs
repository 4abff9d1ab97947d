//! Fleet deploy benchmark (prints figures; not a timed test).
//!
//! `cargo bench -p tenantctl --bench deploy -- [--tenants 10000] [--connections 16]`
//!
//! In one PostgreSQL database, `--tenants` schemas at version 1 of a small tenant set:
//! 1. a plain-SQL baseline applies version 2's statement to every schema over `--connections`
//!    connections (then it is undone, untimed);
//! 2. `tenantctl deploy --wait` deploys version 2 end to end: publish one `migrate.tenant` per
//!    tenant → the migrator (`tenantctl up --only migrator`, a process of its own with
//!    `MIGRATOR_CONCURRENCY = --connections`) applies it through the engine (lock, verify,
//!    apply, record) → every tenant acknowledged at the target, as `--wait` sees it;
//! 3. the same deploy again, with nothing pending;
//! 4. the migrator's peak resident memory.
//!
//! Local PostgreSQL and RabbitMQ (`PG_BENCH_URL`, `AMQP_URL`); a database and a namespace of its
//! own, removed at the end.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use shared::bus::{Topology, WorkQueue};
use shared::config::Config;
use shared::migrate::{
    Catalog, Engine, EngineOptions, MigrationBackend as _, PgSchemaBackend, Target,
};
use shared::service::Context;
use shared::tenant::TenantSlug;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions as _};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const V1: &str = "20270101000000_create_notes";
const V1_SQL: &str = "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);\n";
const V2: &str = "20270102000000_create_note_tags";
const V2_SQL: &str = "CREATE TABLE note_tags (note_id bigint NOT NULL REFERENCES notes (id), tag text NOT NULL, PRIMARY KEY (note_id, tag));\n";

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> BenchResult<()> {
    let flag = testkit::bench_flag;
    let (tenants, connections) = (flag("--tenants", 10_000), flag("--connections", 16));
    let server = PgConnectOptions::from_str(
        &std::env::var("PG_BENCH_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )?
    .disable_statement_logging();
    let amqp = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let run_id = std::process::id();
    let database = format!("tenancy_bench_deploy_{run_id}");
    let database_url = format!(
        "postgres://{}@{}:{}/{database}",
        server.get_username(),
        server.get_host(),
        server.get_port()
    );
    let namespace = format!("bench-deploy-{run_id}");
    let scratch = std::env::temp_dir().join(format!("tenancy-bench-deploy-{run_id}"));
    let (base_dir, new_dir) = (scratch.join("base"), scratch.join("new"));
    write_sets(&base_dir, false)?;
    write_sets(&new_dir, true)?;
    let base = Catalog::load(Some(&base_dir))?;

    let values = HashMap::from([
        ("DATABASE_URL", database_url.clone()),
        ("AMQP_URL", amqp.clone()),
        ("TENANCY_NAMESPACE", namespace.clone()),
    ]);
    let config = Config::from_lookup(|k| values.get(k).cloned())?;
    let ctx = Context::connect(config, "deploy-bench", &CancellationToken::new()).await?;
    ctx.apply_platform_migrations().await?;
    println!(
        "deploy benchmark: {tenants} tenant schemas in one database, {connections} connections, PostgreSQL and RabbitMQ on this machine"
    );

    // The fleet, at version 1.
    let started = Instant::now();
    let engine = Engine::new(
        PgSchemaBackend::connect(server.clone().database(&database), connections as u32).await?,
        EngineOptions::default(),
    );
    let slugs: Vec<TenantSlug> = (0..tenants)
        .map(|i| TenantSlug::parse(&format!("d{run_id}_{i:05}")))
        .collect::<Result<_, _>>()?;
    stream::iter(&slugs)
        .map(|slug| engine.backend().create_storage(slug))
        .buffer_unordered(connections)
        .try_collect::<()>()
        .await?;
    for (target, result) in engine
        .apply_many(
            slugs.iter().map(|s| Target::Tenant(s.clone())),
            &base.tenant,
            None,
            connections,
            &(),
        )
        .await
    {
        result.map_err(|e| format!("{target}: {e}"))?;
    }
    let ids: Vec<Uuid> = slugs.iter().map(|_| Uuid::new_v4()).collect();
    let names: Vec<&str> = slugs.iter().map(TenantSlug::as_str).collect();
    let v1: i64 = V1[..14].parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(connections as u32)
        .connect_with(server.clone().database(&database))
        .await?;
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, status, isolation, schema_version, activated_at)
         SELECT id, slug, 'Bench', 'active', 'schema', $3, now() FROM unnest($1::uuid[], $2::text[]) AS t(id, slug)",
    )
    .bind(&ids)
    .bind(&names)
    .bind(v1)
    .execute(&pool)
    .await?;
    println!(
        "  fleet ready in {:.1}s (not measured)",
        started.elapsed().as_secs_f64()
    );
    // The fixture's connections would otherwise sit through both measurements, each one more
    // backend for every catalog invalidation to reach.
    engine.backend().pool().close().await;
    drop(engine);

    // 1. Plain SQL: the same statement in every schema, same number of connections.
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    run_in_every_schema(&pool, &slugs, connections, V2_SQL).await?;
    let baseline = started.elapsed();
    let baseline_cpu = cpu_seconds().since(&cpu_before);
    run_in_every_schema(&pool, &slugs, connections, "DROP TABLE note_tags").await?;
    // The baseline's connections are done: closed, as the deploy's are absent from the baseline.
    pool.close().await;

    // 2. The deploy, end to end.
    let env = [
        ("DATABASE_URL", database_url.clone()),
        ("AMQP_URL", amqp.clone()),
        ("TENANCY_NAMESPACE", namespace.clone()),
        ("MIGRATIONS_DIR", new_dir.display().to_string()),
        ("MIGRATOR_SERVER_SLOTS", connections.to_string()),
        ("HEALTH_ADDR", "127.0.0.1:0".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let tenantctl = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        command.args(args);
        for (key, value) in &env {
            command.env(key, value);
        }
        command
    };
    let mut migrator = tenantctl(&["up", "--only", "migrator"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = migrator.id();
    let channel = ctx.bus.channel().await?;
    let queue = Topology::new(namespace.clone()).queue(WorkQueue::MigrateTenant);
    let ready = Instant::now();
    loop {
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await?;
        if declared.consumer_count() > 0 {
            break;
        }
        if ready.elapsed() > Duration::from_secs(60) {
            return Err("the migrator did not start within 60s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let deploy = |label: &'static str| {
        let mut command = tenantctl(&[
            "deploy",
            "--wait",
            "--output",
            "json",
            "--operator",
            "bench",
        ]);
        async move {
            let started = Instant::now();
            let output = tokio::task::spawn_blocking(move || command.output()).await??;
            let took = started.elapsed();
            let summary: serde_json::Value = String::from_utf8_lossy(&output.stdout)
                .lines()
                .last()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_default();
            if !output.status.success() || summary["succeeded"] != tenants {
                return Err(format!(
                    "{label}: not every tenant reached the target: {summary} {}",
                    String::from_utf8_lossy(&output.stderr)
                )
                .into());
            }
            Ok::<_, Box<dyn std::error::Error>>(took)
        }
    };
    let cpu_before = cpu_seconds();
    let fan_out = deploy("deploy").await?;
    let fan_out_cpu = cpu_seconds().since(&cpu_before);
    let noop = deploy("no-op deploy").await?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0);

    let rate = |d: Duration| tenants as f64 / d.as_secs_f64();
    println!(
        "  baseline (plain SQL):     {:>7.2}s  {:>7.0} tenants/s",
        baseline.as_secs_f64(),
        rate(baseline)
    );
    println!(
        "  deploy, end to end:       {:>7.2}s  {:>7.0} tenants/s   {:.0}% of the baseline's throughput",
        fan_out.as_secs_f64(),
        rate(fan_out),
        100.0 * baseline.as_secs_f64() / fan_out.as_secs_f64()
    );
    println!(
        "  deploy, nothing pending:  {:>7.2}s  {:>7.0} tenants/s",
        noop.as_secs_f64(),
        rate(noop)
    );
    println!("  migrator peak resident memory (VmHWM): {peak:.1} MiB");
    let per_tenant = |cpu: &Cpu, name: &str| 1000.0 * cpu.of(name) / tenants as f64;
    for (label, cpu) in [("baseline", &baseline_cpu), ("deploy", &fan_out_cpu)] {
        println!(
            "  CPU per tenant, {label:<8}: PostgreSQL {:.2} ms, RabbitMQ {:.2} ms, tenantctl {:.2} ms",
            per_tenant(cpu, "postgres"),
            per_tenant(cpu, "beam.smp"),
            per_tenant(cpu, "tenantctl"),
        );
    }

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || migrator.wait()).await;
    Topology::new(namespace).delete(&channel).await?;
    ctx.bus.close().await;
    let mut admin = server.connect().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE \"{database}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// CPU seconds used so far by the processes of each command name (this machine's services,
/// from `/proc`; processes that ended in between are not counted).
struct Cpu(HashMap<(String, u32), f64>);

fn cpu_seconds() -> Cpu {
    let mut seen = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        // utime and stime: the 12th and 13th fields after the name, in 1/100 s.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks: f64 = fields[11..13]
            .iter()
            .filter_map(|f| f.parse::<f64>().ok())
            .sum();
        seen.insert((name, pid), ticks / 100.0);
    }
    Cpu(seen)
}

impl Cpu {
    fn since(&self, before: &Cpu) -> Cpu {
        Cpu(self
            .0
            .iter()
            .map(|(key, now)| (key.clone(), now - before.0.get(key).copied().unwrap_or(0.0)))
            .collect())
    }

    fn of(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, s)| s)
            .sum()
    }
}

async fn run_in_every_schema(
    pool: &sqlx::PgPool,
    slugs: &[TenantSlug],
    connections: usize,
    sql: &str,
) -> BenchResult<()> {
    stream::iter(slugs)
        .map(|slug| async move {
            let statement = format!(
                "SET search_path TO {}; {sql}; RESET search_path",
                shared::tenant::quote_ident(&slug.storage_name())
            );
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(pool)
                .await
                .map(|_| ())
        })
        .buffer_unordered(connections)
        .try_collect::<()>()
        .await?;
    Ok(())
}

/// The built-in platform set, a two-version tenant set (`with_v2`: both versions), no seeds.
fn write_sets(dir: &Path, with_v2: bool) -> BenchResult<()> {
    let platform = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/platform");
    testkit::copy_dir(&platform, &dir.join("platform"))?;
    std::fs::create_dir_all(dir.join("tenant-seeds/sqlite"))?;
    let mut tenant = vec![(V1, V1_SQL, "DROP TABLE notes;\n")];
    if with_v2 {
        tenant.push((V2, V2_SQL, "DROP TABLE note_tags;\n"));
    }
    for sub in ["tenant", "tenant/sqlite"] {
        std::fs::create_dir_all(dir.join(sub))?;
        for (name, up, down) in &tenant {
            std::fs::write(dir.join(sub).join(format!("{name}.up.sql")), up)?;
            std::fs::write(dir.join(sub).join(format!("{name}.down.sql")), down)?;
        }
    }
    Ok(())
}
