//! Deploy fan-out over one, two and three tenant servers (prints figures; not a timed test).
//!
//! `cargo bench -p tenantctl --bench servers -- [--tenants 10000] [--connections 16]`
//!
//! Three private PostgreSQL clusters (`testkit::cluster`) are the tenant servers. For each
//! configuration (1, 2 and 3 servers) the same number of tenant schemas, at version 1, are spread
//! evenly over that many servers, each configuration in databases of its own (its own platform
//! database on the machine's PostgreSQL, its own tenant database on each cluster); then, in the
//! same run, `tenantctl deploy --wait` deploys version 2 to each fleet end to end, with one
//! migrator process (`tenantctl up --only migrator`, `MIGRATOR_SERVER_SLOTS = --connections`
//! per server), and the same deploy again with nothing pending. Printed per configuration:
//! throughput, and the share of the CPU used by each kind of process during the deploy.
//!
//! Every server is on this two-core machine: they compete for the same CPU, so the figures show
//! what spreading costs and whether the fan-out keeps every server busy, not the speed-up that
//! one machine per server gives (docs/SCALING.md).

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use common::{
    BenchResult, V1, create_fleet, stop, tenantctl, timed_deploy, wait_for_consumer, write_sets,
};
use domain::tenant::TenantSlug;
use engine::Catalog;
use shared::bus::{Topology, WorkQueue};
use shared::config::Config;
use shared::service::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};
use testkit::bench::{CpuSnapshot, create_database, settle};
use testkit::cluster::PrivatePostgres;
use testkit::pg::drop_database;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One configuration's figures.
struct Measured {
    servers: usize,
    deploy: Duration,
    noop: Duration,
    cpu: CpuSnapshot,
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let flag = testkit::bench_flag;
    let (tenants, connections) = (flag("--tenants", 10_000), flag("--connections", 16));
    let local = PgConnectOptions::from_str(
        &std::env::var("PG_BENCH_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )?
    .disable_statement_logging();
    let amqp = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let run_id = std::process::id();
    let scratch = std::env::temp_dir().join(format!("tenancy-bench-servers-{run_id}"));
    let (base_dir, new_dir) = (scratch.join("base"), scratch.join("new"));
    write_sets(&base_dir, 1)?;
    write_sets(&new_dir, 2)?;
    let base = Catalog::load(Some(&base_dir))?;
    let clusters = [
        PrivatePostgres::start().await,
        PrivatePostgres::start().await,
        PrivatePostgres::start().await,
    ];
    println!(
        "servers benchmark: {tenants} tenant schemas per configuration, {connections} slots per server, three private PostgreSQL clusters, the platform database and RabbitMQ on this machine"
    );

    let mut results = Vec::new();
    for servers in 1..=3 {
        results.push(
            configuration(
                servers,
                tenants,
                connections,
                &clusters,
                &local,
                &amqp,
                &base,
                &new_dir,
                run_id,
            )
            .await?,
        );
    }

    let rate = |d: Duration| tenants as f64 / d.as_secs_f64();
    let one = results[0].deploy;
    for m in &results {
        let total: f64 = ["postgres", "beam.smp", "tenantctl"]
            .iter()
            .map(|name| m.cpu.of(name))
            .sum::<f64>()
            .max(f64::EPSILON);
        let share = |name: &str| 100.0 * m.cpu.of(name) / total;
        println!(
            "  {} server(s): deploy {:>6.2}s {:>6.0} tenants/s ({:.2}x one server); nothing pending {:>5.2}s {:>6.0} tenants/s; CPU: PostgreSQL {:.0}%, RabbitMQ {:.0}%, tenantctl (migrator and deploy) {:.0}% of {:.1} CPU-s",
            m.servers,
            m.deploy.as_secs_f64(),
            rate(m.deploy),
            one.as_secs_f64() / m.deploy.as_secs_f64(),
            m.noop.as_secs_f64(),
            rate(m.noop),
            share("postgres"),
            share("beam.smp"),
            share("tenantctl"),
            total
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// One configuration: `tenants` schemas over the first `servers` clusters, deployed to.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, every value named"
)]
async fn configuration(
    servers: usize,
    tenants: usize,
    connections: usize,
    clusters: &[PrivatePostgres; 3],
    local: &PgConnectOptions,
    amqp: &str,
    base: &Catalog,
    new_dir: &std::path::Path,
    run_id: u32,
) -> BenchResult<Measured> {
    let platform_database = format!("tenancy_bench_servers_{run_id}_{servers}");
    let fleet_database = format!("fleet_{servers}");
    let namespace = format!("bench-servers-{run_id}-{servers}");
    let platform_url = format!(
        "postgres://{}@{}:{}/{platform_database}",
        local.get_username(),
        local.get_host(),
        local.get_port()
    );
    let server_url = |i: usize| {
        format!(
            "postgres://postgres@127.0.0.1:{}/{fleet_database}",
            clusters[i].port()
        )
    };
    let values = HashMap::from([
        ("DATABASE_URL", platform_url.clone()),
        ("TENANT_DATABASE_URL", server_url(0)),
        ("AMQP_URL", amqp.to_owned()),
        ("TENANCY_NAMESPACE", namespace.clone()),
    ]);
    let config = Config::from_lookup(|k| values.get(k).cloned())?;
    let ctx = Context::connect(config, "servers-bench", &CancellationToken::new()).await?;
    ctx.apply_platform_migrations().await?;
    let names: Vec<String> = (0..servers)
        .map(|i| {
            if i == 0 {
                "default".to_owned()
            } else {
                format!("pg-{i}")
            }
        })
        .collect();
    for (i, name) in names.iter().enumerate().skip(1) {
        ctx.platform
            .add_tenant_server(
                &domain::server::ServerName::parse(name)?,
                &server_url(i),
                None,
            )
            .await?;
    }

    // The fleet: tenant i on server i mod `servers`, at version 1 (not measured).
    let started = Instant::now();
    let slugs: Vec<TenantSlug> = (0..tenants)
        .map(|i| TenantSlug::parse(&format!("s{servers}_{run_id}_{i:05}")))
        .collect::<Result<_, _>>()?;
    for (i, cluster) in clusters.iter().enumerate().take(servers) {
        create_database(&cluster.options(), &fleet_database).await?;
        let mine: Vec<TenantSlug> = slugs
            .iter()
            .enumerate()
            .filter(|(n, _)| n % servers == i)
            .map(|(_, s)| s.clone())
            .collect();
        create_fleet(
            cluster.options().database(&fleet_database),
            &mine,
            base,
            connections,
        )
        .await?;
    }
    let ids: Vec<Uuid> = slugs.iter().map(|_| Uuid::new_v4()).collect();
    let slug_names: Vec<&str> = slugs.iter().map(TenantSlug::as_str).collect();
    let placed: Vec<&str> = (0..tenants).map(|n| names[n % servers].as_str()).collect();
    let mut platform = PgConnectOptions::from_str(&platform_url)?.connect().await?;
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, status, isolation, schema_version, activated_at, server)
         SELECT id, slug, 'Bench', 'active', 'schema', $3, now(), server
           FROM unnest($1::uuid[], $2::text[], $4::text[]) AS t(id, slug, server)",
    )
    .bind(&ids)
    .bind(&slug_names)
    .bind(V1[..14].parse::<i64>()?)
    .bind(&placed)
    .execute(&mut platform)
    .await?;
    platform.close().await?;
    println!(
        "  {servers} server(s): fleet ready in {:.1}s (not measured)",
        started.elapsed().as_secs_f64()
    );

    let env = [
        ("DATABASE_URL", platform_url.clone()),
        ("TENANT_DATABASE_URL", server_url(0)),
        ("AMQP_URL", amqp.to_owned()),
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
    let channel = ctx.bus.channel().await?;
    wait_for_consumer(&ctx.bus, WorkQueue::MigrateTenant).await?;
    settle(&mut local.connect().await?).await?;
    for cluster in clusters.iter().take(servers) {
        settle(&mut cluster.options().connect().await?).await?;
    }
    let before = CpuSnapshot::now();
    let fan_out = timed_deploy(&env, "deploy", tenants).await?;
    let cpu = CpuSnapshot::now().since(&before);
    let noop = timed_deploy(&env, "no-op deploy", tenants).await?;

    stop(migrator).await;
    Topology::new(namespace).delete(&channel).await?;
    ctx.bus.close().await;
    drop_database(&mut local.connect().await?, &platform_database).await;
    for cluster in clusters.iter().take(servers) {
        drop_database(&mut cluster.options().connect().await?, &fleet_database).await;
    }
    Ok(Measured {
        servers,
        deploy: fan_out,
        noop,
        cpu,
    })
}
