//! Fleet deploy benchmark (prints figures; not a timed test).
//!
//! `cargo bench -p tenantctl --bench deploy -- [--tenants 10000] [--connections 16] [--telemetry 1]`
//!
//! Two fleets of `--tenants` schemas at version 1 of a small tenant set, each in a database of
//! its own:
//! 1. a plain-SQL baseline applies version 2's statement to every schema of the first fleet over
//!    `--connections` connections;
//! 2. `tenantctl deploy --wait` deploys version 2 to the second fleet, whose database also holds
//!    the platform tables, end to end: publish one `migrate.tenant` per tenant → the migrator
//!    (`tenantctl up --only migrator`, a process of its own with `MIGRATOR_CONCURRENCY =
//!    --connections`) applies it through the engine (lock, verify, apply, record) → every tenant
//!    acknowledged at the target, as `--wait` sees it;
//! 3. the same deploy again, with nothing pending;
//! 4. the migrator's peak resident memory;
//! 5. with `--telemetry 1`, the cost of exporting traces and metrics: four more deploys of one
//!    new version each on the same fleet, export off, on, on, off (so that neither side always
//!    runs on the fuller database), with the migrator and the auditor each a process of its
//!    own and, when on, exporting over OTLP/HTTP to a sink in this process that reads and
//!    acknowledges every request, as a collector does; then each service's peak memory with
//!    export on.
//!
//! Both measured phases start from the same place: equal fleets in equal databases, written
//! out and with the disks idle (`testkit::bench::settle`). On this kind of machine, creating a
//! relation's files costs more the more files its database's directory holds, and more again
//! right after many were deleted; one fleet undone between the phases, or both in one database,
//! would tilt the comparison against whichever phase runs second.
//!
//! Local PostgreSQL and RabbitMQ (`PG_BENCH_URL`, `AMQP_URL`); a database and a namespace of its
//! own, removed at the end.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use domain::tenant::TenantSlug;
use engine::Catalog;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use shared::bus::{Topology, WorkQueue};
use shared::config::Config;
use shared::service::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};
use testkit::bench::{CpuSnapshot, create_database, settle};
use testkit::pg::drop_database;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod common;

use common::{
    BenchResult, V1, V2_SQL, create_fleet, peak_mib, stop, tenantctl, timed_deploy,
    wait_for_consumer, write_sets,
};

#[tokio::main]
async fn main() -> BenchResult<()> {
    let flag = testkit::bench_flag;
    let (tenants, connections) = (flag("--tenants", 10_000), flag("--connections", 16));
    let telemetry = flag("--telemetry", 0) > 0;
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
    write_sets(&base_dir, 1)?;
    write_sets(&new_dir, 2)?;
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
        "deploy benchmark: {tenants} tenant schemas per database, {connections} connections, PostgreSQL and RabbitMQ on this machine"
    );

    // The fleets, at version 1.
    let started = Instant::now();
    let baseline_database = format!("{database}_baseline");
    create_database(&server, &baseline_database).await?;
    let fleet = |prefix: char| {
        (0..tenants)
            .map(|i| TenantSlug::parse(&format!("{prefix}{run_id}_{i:05}")))
            .collect::<Result<Vec<_>, _>>()
    };
    let (baseline_slugs, slugs) = (fleet('b')?, fleet('d')?);
    let baseline_options = server.clone().database(&baseline_database);
    create_fleet(
        baseline_options.clone(),
        &baseline_slugs,
        &base,
        connections,
    )
    .await?;
    create_fleet(
        server.clone().database(&database),
        &slugs,
        &base,
        connections,
    )
    .await?;
    let ids: Vec<Uuid> = slugs.iter().map(|_| Uuid::new_v4()).collect();
    let names: Vec<&str> = slugs.iter().map(TenantSlug::as_str).collect();
    let v1: i64 = V1[..14].parse()?;
    let mut platform = server.clone().database(&database).connect().await?;
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, status, isolation, schema_version, activated_at)
         SELECT id, slug, 'Bench', 'active', 'schema', $3, now() FROM unnest($1::uuid[], $2::text[]) AS t(id, slug)",
    )
    .bind(&ids)
    .bind(&names)
    .bind(v1)
    .execute(&mut platform)
    .await?;
    platform.close().await?;
    println!(
        "  fleets ready in {:.1}s (not measured)",
        started.elapsed().as_secs_f64()
    );
    let pool = PgPoolOptions::new()
        .max_connections(connections as u32)
        .connect_with(baseline_options)
        .await?;

    // 1. Plain SQL: the same statement in every schema, same number of connections.
    settle(&mut server.connect().await?).await?;
    let cpu_before = CpuSnapshot::now();
    let started = Instant::now();
    run_in_every_schema(&pool, &baseline_slugs, connections, V2_SQL).await?;
    let baseline = started.elapsed();
    let baseline_cpu = CpuSnapshot::now().since(&cpu_before);
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
    let migrator = tenantctl(&env, &["up", "--only", "migrator"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = migrator.id();
    let channel = ctx.bus.channel().await?;
    wait_for_consumer(&ctx.bus, WorkQueue::MigrateTenant).await?;

    settle(&mut server.connect().await?).await?;
    let cpu_before = CpuSnapshot::now();
    let fan_out = timed_deploy(&env, "deploy", tenants).await?;
    let fan_out_cpu = CpuSnapshot::now().since(&cpu_before);
    let noop = timed_deploy(&env, "no-op deploy", tenants).await?;
    let peak = peak_mib(pid);

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
    for (label, cpu) in [("baseline", &baseline_cpu), ("deploy", &fan_out_cpu)] {
        println!(
            "  CPU per tenant, {label:<8}: {}",
            cpu.per_unit(tenants, "tenantctl", "tenantctl")
        );
    }

    stop(migrator).await;
    if telemetry {
        measure_telemetry(&env, &scratch, tenants, &channel, &namespace).await?;
    }
    Topology::new(namespace).delete(&channel).await?;
    ctx.bus.close().await;
    let mut admin = server.connect().await?;
    for name in [&database, &baseline_database] {
        drop_database(&mut admin, name).await;
    }
    testkit::pg::drop_roles_now(
        slugs
            .iter()
            .chain(&baseline_slugs)
            .map(TenantSlug::storage_name)
            .collect(),
    );
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
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
                engine::sql::quote_ident(&slug.storage_name())
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

/// Phase 5: deploys with export off and on (ABBA), and the services' memory with export on.
async fn measure_telemetry(
    env: &[(&str, String)],
    scratch: &Path,
    tenants: usize,
    channel: &lapin::Channel,
    namespace: &str,
) -> BenchResult<()> {
    let sink = OtlpSink::start().await?;
    // What phases 2 and 3 published for an auditor that was not running.
    channel
        .queue_purge(
            Topology::new(namespace.to_owned())
                .queue(WorkQueue::AuditorEvents)
                .as_str()
                .into(),
            lapin::options::QueuePurgeOptions::default(),
        )
        .await?;
    let command = |args: &[&str], dir: &Path, export: bool| {
        let mut command = tenantctl(env, args);
        command.env("MIGRATIONS_DIR", dir);
        if export {
            command
                .env(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("http://{}", sink.address),
                )
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        } else {
            command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        }
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    };
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut memory = Vec::new();
    for (phase, export) in [false, true, true, false].into_iter().enumerate() {
        let dir = scratch.join(format!("telemetry-{phase}"));
        write_sets(&dir, 3 + phase)?;
        let migrator = command(&["up", "--only", "migrator"], &dir, export).spawn()?;
        let auditor = command(&["up", "--only", "auditor"], &dir, export).spawn()?;
        let provisioner = command(&["up", "--only", "provisioner"], &dir, export).spawn()?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        settle(&mut PgConnectOptions::from_str(&env[0].1)?.connect().await?).await?;
        let mut deploy = command(&["deploy", "--wait", "--operator", "bench"], &dir, export);
        let started = Instant::now();
        let status = tokio::task::spawn_blocking(move || deploy.status()).await??;
        let took = started.elapsed();
        if !status.success() {
            return Err(format!("telemetry phase {phase}: the deploy failed").into());
        }
        if export {
            on.push(took);
            memory.push([
                ("migrator", peak_mib(migrator.id())),
                ("auditor", peak_mib(auditor.id())),
                ("provisioner", peak_mib(provisioner.id())),
            ]);
        } else {
            off.push(took);
        }
        for child in [migrator, auditor, provisioner] {
            stop(child).await;
        }
    }
    let mean = |d: &[Duration]| d.iter().map(Duration::as_secs_f64).sum::<f64>() / d.len() as f64;
    let rate = |secs: f64| tenants as f64 / secs;
    let (off_s, on_s) = (mean(&off), mean(&on));
    println!("  telemetry (export off, on, on, off; one new version per deploy):");
    println!(
        "    export off: {off_s:>7.2}s  {:>7.0} tenants/s   (runs: {:.2}s, {:.2}s)",
        rate(off_s),
        off[0].as_secs_f64(),
        off[1].as_secs_f64()
    );
    println!(
        "    export on:  {on_s:>7.2}s  {:>7.0} tenants/s   (runs: {:.2}s, {:.2}s)   {:.0}% of the throughput without export",
        rate(on_s),
        on[0].as_secs_f64(),
        on[1].as_secs_f64(),
        100.0 * off_s / on_s
    );
    let (requests, bytes) = sink.received();
    println!(
        "    the sink received {requests} OTLP requests, {:.1} MiB",
        bytes as f64 / 1_048_576.0
    );
    for name in ["migrator", "auditor", "provisioner"] {
        let peaks: Vec<String> = memory
            .iter()
            .flat_map(|phase| phase.iter())
            .filter(|(service, _)| *service == name)
            .map(|(_, mib)| format!("{mib:.1}"))
            .collect();
        println!(
            "    {name:<11} peak resident memory with export on (VmHWM): {} MiB",
            peaks.join(" / ")
        );
    }
    Ok(())
}

/// An OTLP/HTTP endpoint that reads each request whole and answers 200, as a collector does,
/// counting what it received.
struct OtlpSink {
    address: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl OtlpSink {
    async fn start() -> BenchResult<OtlpSink> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (requests, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counters = (requests.clone(), bytes.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (requests, bytes) = counters.clone();
                tokio::spawn(async move {
                    let mut stream = tokio::io::BufReader::new(stream);
                    loop {
                        let mut length = 0_usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            match stream.read_line(&mut line).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some((name, value)) = line.split_once(':')
                                && name.eq_ignore_ascii_case("content-length")
                            {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0_u8; length];
                        if stream.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        requests.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(length as u64, Ordering::Relaxed);
                        let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(OtlpSink {
            address,
            requests,
            bytes,
        })
    }

    fn received(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (
            self.requests.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}
