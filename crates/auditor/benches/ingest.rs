//! Auditor ingest: a queue pre-filled with N events, drained by the auditor binary into
//! `audit_events`. Prints events per second and the auditor process's peak resident memory.
//!
//! ```text
//! cargo bench -p auditor --bench ingest -- [--events 100000]
//! ```
//!
//! Runs against the local PostgreSQL and RabbitMQ (`PG_BENCH_URL`, `AMQP_URL`), in a database
//! and a namespace of its own, both removed at the end.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::message::{Event as _, Provisioned};
use shared::bus::Topology;
use shared::config::Config;
use shared::service::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let events: usize = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let server = PgConnectOptions::from_str(
        &std::env::var("PG_BENCH_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )?;
    let amqp = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let database = format!("tenancy_bench_audit_{}", std::process::id());
    let database_url = format!(
        "postgres://{}@{}:{}/{database}",
        server.get_username(),
        server.get_host(),
        server.get_port()
    );
    let namespace = format!("bench-audit-{}", std::process::id());

    let values = HashMap::from([
        ("DATABASE_URL", database_url.clone()),
        ("AMQP_URL", amqp.clone()),
        ("TENANCY_NAMESPACE", namespace.clone()),
    ]);
    let config = Config::from_lookup(|k| values.get(k).cloned())?;
    let ctx = Context::connect(config, "ingest-bench", &CancellationToken::new()).await?;
    ctx.apply_platform_migrations().await?;

    // Pre-fill: every event published and confirmed before the auditor starts.
    let started = Instant::now();
    let publisher = ctx.bus.publisher().clone();
    let permits = Arc::new(tokio::sync::Semaphore::new(512));
    let mut publishing = tokio::task::JoinSet::new();
    for i in 0..events {
        let data = Provisioned::from_data(&serde_json::json!({
            "tenant_id": uuid::Uuid::new_v4(), "slug": format!("tenant_{i:07}"), "isolation": "schema",
            "schema_version": 20261124110800_i64, "duration_ms": 87
        }))?;
        let event = publisher.event(data);
        let (publisher, permit) = (publisher.clone(), permits.clone().acquire_owned().await?);
        publishing.spawn(async move {
            publisher.publish(&event).await.map_err(|e| e.to_string())?;
            drop(permit);
            Ok::<_, String>(())
        });
    }
    while let Some(done) = publishing.join_next().await {
        done??;
    }
    println!(
        "auditor ingest benchmark: {events} events queued in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let binary = env!("CARGO_BIN_EXE_auditor");
    let started = Instant::now();
    let mut auditor = Command::new(binary)
        .env("DATABASE_URL", &database_url)
        .env("AMQP_URL", &amqp)
        .env("TENANCY_NAMESPACE", &namespace)
        .env("HEALTH_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = auditor.id();
    let mut conn = server.clone().database(&database).connect().await?;
    let mut first_row: Option<Instant> = None;
    let mut count: i64 = 0;
    while count < i64::try_from(events)? {
        tokio::time::sleep(Duration::from_millis(50)).await;
        count = sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&mut conn)
            .await?;
        if count > 0 && first_row.is_none() {
            first_row = Some(Instant::now());
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {count} of {events} stored after 10 minutes").into());
        }
    }
    let total = started.elapsed();
    let streaming = first_row.map_or(total, |t| t.elapsed());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    let (peak, now) = (field("VmHWM:"), field("VmRSS:"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime and stime: fields 14 and 15 of /proc/<pid>/stat (the 12th and 13th after the
    // command name), in clock ticks of 1/100 s.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (tick(11) + tick(12)) / 100.0;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = auditor.wait();

    println!(
        "  stored {events} events in {:.2}s from process start: {:.0} events/s",
        total.as_secs_f64(),
        events as f64 / total.as_secs_f64()
    );
    println!(
        "  from the first stored row: {:.2}s: {:.0} events/s",
        streaming.as_secs_f64(),
        events as f64 / streaming.as_secs_f64()
    );
    println!("  auditor peak resident memory (VmHWM): {peak:.1} MiB (at the end: {now:.1} MiB)");
    println!(
        "  auditor CPU time: {cpu:.2}s ({:.0} µs per event)",
        cpu * 1e6 / events as f64
    );

    let channel = ctx.bus.channel().await?;
    Topology::new(namespace).delete(&channel).await?;
    ctx.bus.close().await;
    let _ = conn.close().await;
    let mut admin = server.connect().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}
