//! What the fleet benchmarks share: the migration sets they deploy, a fleet of schemas at
//! version 1, running `tenantctl` (a service, a timed deploy) and stopping a service process.
#![allow(dead_code, reason = "each benchmark uses a part")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use domain::tenant::TenantSlug;
use engine::{Catalog, Engine, EngineOptions, PgSchemaBackend, ProvisionedStorage as _, Target};
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use shared::bus::{Bus, WorkQueue};
use sqlx::postgres::PgConnectOptions;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

pub const V1: &str = "20270101000000_create_notes";
pub const V1_SQL: &str = "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);\n";
pub const V2: &str = "20270102000000_create_note_tags";
pub const V2_SQL: &str = "CREATE TABLE note_tags (note_id bigint NOT NULL REFERENCES notes (id), tag text NOT NULL, PRIMARY KEY (note_id, tag));\n";

/// `slugs` as schemas of the database `options` names, each with its role, at version 1.
pub async fn create_fleet(
    options: PgConnectOptions,
    slugs: &[TenantSlug],
    base: &Catalog,
    connections: usize,
) -> BenchResult<()> {
    let engine = Engine::new(
        PgSchemaBackend::connect(options, connections as u32).await?,
        EngineOptions::default(),
    );
    // With their roles and grants, as provisioning leaves tenants: a deploy checks each tenant
    // with something to apply against its version's schema, grants included.
    stream::iter(slugs)
        .map(|slug| engine.backend().create_storage_with_role(slug))
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
    // Its connections would otherwise sit through the measurements, each one more backend for
    // every catalog invalidation to reach.
    engine.backend().pool().close().await;
    Ok(())
}

/// The built-in platform set, the first `versions` versions of the tenant set (1 and 2 as
/// above, then one small table each), no seeds and no administrator.
pub fn write_sets(dir: &Path, versions: usize) -> BenchResult<()> {
    let platform = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/platform");
    testkit::copy_dir(&platform, &dir.join("platform"))?;
    std::fs::create_dir_all(dir.join("tenant-seeds/sqlite"))?;
    for seeds in ["tenant-seeds", "tenant-seeds/sqlite"] {
        std::fs::write(
            dir.join(seeds).join("admin_user.sql"),
            "-- The benchmark's tenants have no administrator.\n",
        )?;
    }
    let mut tenant = vec![
        (
            V1.to_owned(),
            V1_SQL.to_owned(),
            "DROP TABLE notes;\n".to_owned(),
        ),
        (
            V2.to_owned(),
            V2_SQL.to_owned(),
            "DROP TABLE note_tags;\n".to_owned(),
        ),
    ];
    for n in 3..=versions {
        tenant.push((
            format!("202701{n:02}000000_create_note_log_{n}"),
            format!("CREATE TABLE note_log_{n} (note_id bigint NOT NULL REFERENCES notes (id), at timestamptz NOT NULL);\n"),
            format!("DROP TABLE note_log_{n};\n"),
        ));
    }
    tenant.truncate(versions);
    for sub in ["tenant", "tenant/sqlite"] {
        std::fs::create_dir_all(dir.join(sub))?;
        for (name, up, down) in &tenant {
            std::fs::write(dir.join(sub).join(format!("{name}.up.sql")), up)?;
            std::fs::write(dir.join(sub).join(format!("{name}.down.sql")), down)?;
        }
    }
    Ok(())
}

pub async fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
}

/// Peak resident memory of a running process, in MiB.
pub fn peak_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `tenantctl args` with the environment `env`.
pub fn tenantctl(env: &[(&str, String)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Waits until a consumer (the migrator just started) consumes `queue`, for at most a minute.
pub async fn wait_for_consumer(bus: &Bus, queue: WorkQueue) -> BenchResult<()> {
    let waiting = Instant::now();
    while bus
        .queue_depths()
        .await?
        .iter()
        .find(|d| d.queue == queue.base_name())
        .is_none_or(|d| d.consumers == 0)
    {
        if waiting.elapsed() > Duration::from_secs(60) {
            return Err(format!("nothing consumed {} within 60s", queue.base_name()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Runs `tenantctl deploy --wait` with `env` to the end and returns how long it took; an error
/// unless every one of the `tenants` reached the target.
pub async fn timed_deploy(
    env: &[(&str, String)],
    label: &str,
    tenants: usize,
) -> BenchResult<Duration> {
    let mut command = tenantctl(
        env,
        &[
            "deploy",
            "--wait",
            "--output",
            "json",
            "--operator",
            "bench",
        ],
    );
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let took = started.elapsed();
    let summary = last_json_line(&output.stdout).unwrap_or_default();
    if !output.status.success() || summary["succeeded"] != tenants {
        return Err(format!(
            "{label}: not every tenant reached the target: {summary} {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(took)
}

/// The last line of a `--output json` run: its summary.
pub fn last_json_line(stdout: &[u8]) -> Option<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
}
