#![doc = include_str!("../README.md")]
//! Test support for the workspace's integration tests (never a dependency of production code).
//!
//! - [`pg::TestDatabase`]: a PostgreSQL database of the test's own, dropped afterwards; stale
//!   ones left by killed test processes are swept on the next run.
//! - [`ScratchDir`]: a temporary directory removed on drop.
//! - [`SetBuilder`]: a migration set written in the test, in both dialects.
//! - [`unique_slug`]: tenant slugs that cannot collide between tests running in parallel.
//! - [`wait_until`]: polls a condition with a deadline instead of sleeping a fixed time.
//! - [`publisher::RecordingPublisher`]: an in-memory `EventPublisher` for handlers under test:
//!   records what they publish, fails the next publishes on demand.
//! - [`cluster::PrivatePostgres`] and [`broker::PrivateBroker`]: a PostgreSQL cluster or a
//!   RabbitMQ node of the test's own, on free ports, for fault tests that stop, kill or
//!   disconnect servers without disturbing the tests running beside them.
//! - [`broker_cluster::PrivateCluster`]: three such RabbitMQ nodes joined in one cluster, for
//!   failover tests.
//! - [`otlp::OtlpReceiver`]: a local OTLP collector (HTTP and gRPC, plain or TLS) that records
//!   what a service exports.
//! - [`prometheus::PrivatePrometheus`]: a Prometheus of the test's own scraping the given
//!   targets with the given rule files; [`prometheus::promtool`].
//! - [`dashboards`]: the shipped Grafana dashboards' panel targets, ready to evaluate.

pub mod bench;
pub mod broker;
pub mod broker_cluster;
pub mod cluster;
pub mod dashboards;
pub mod otlp;
pub mod pg;
pub mod prometheus;
pub mod publisher;
pub mod service_cli;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use domain::tenant::TenantSlug;
use engine::{MigrationSet, SetKind};

/// Prefix of everything the test kit names after a process (databases, tenant slugs), so a later
/// run can tell leftovers of dead processes from the work of live ones.
pub const TEST_PREFIX: &str = "tt_";

/// `relative` inside this workspace (e.g. `deploy/prometheus/alerts.yml`).
pub fn workspace_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// `GET path` from a service's health port (`host:port`), as one HTTP/1.1 request on a fresh
/// connection: the whole response (status line, headers, body), or `None` when nothing answers.
pub fn http_get(address: &str, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// A RabbitMQ namespace (`TENANCY_NAMESPACE`) no other test, and no earlier run, uses:
/// `tt<pid>-<random>`.
pub fn unique_namespace() -> String {
    format!(
        "tt{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A finished command's stdout then stderr, for assertions and their messages.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A tenant slug unique to this process and call: `tt_<pid>_<n><random>`.
pub fn unique_slug() -> TenantSlug {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let slug = format!("{TEST_PREFIX}{}_{n}{random}", std::process::id());
    TenantSlug::parse(&slug).unwrap_or_else(|e| panic!("generated slug {slug}: {e}"))
}

/// A benchmark's numeric flag (`--tenants 1000`) from the command line, or `default`.
///
/// # Panics
/// When the value is missing or not a number: a benchmark run with a typo must not measure
/// something else.
pub fn bench_flag(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => default,
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a whole number, e.g. `{name} {default}`")),
    }
}

/// Stops a service started in-process (its stop token and task) and asserts that it neither
/// panicked nor failed.
pub async fn stop_service<E: std::fmt::Display>(
    (stop, task): (
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<Result<(), E>>,
    ),
) {
    stop.cancel();
    task.await
        .unwrap_or_else(|e| panic!("the service panicked: {e}"))
        .unwrap_or_else(|e| panic!("the service failed: {e:#}"));
}

/// Copies the directory tree `from` into `to` (created if missing).
///
/// # Errors
/// A file that cannot be read or written.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)?.flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The repository's migration sets plus `extra` tenant migrations (name, up, down or `None`), in
/// a scratch directory (a `MIGRATIONS_DIR`); the same SQL serves both dialects.
pub fn migration_sets_with(extra: &[(&str, &str, Option<&str>)]) -> ScratchDir {
    let dir = ScratchDir::new();
    copy_dir(&workspace_path("migrations"), dir.path())
        .unwrap_or_else(|e| panic!("copying the migration sets: {e}"));
    for (name, up, down) in extra {
        for sub in ["tenant", "tenant/sqlite"] {
            let base = dir.path().join(sub);
            std::fs::write(base.join(format!("{name}.up.sql")), up)
                .unwrap_or_else(|e| panic!("{e}"));
            if let Some(down) = down {
                std::fs::write(base.join(format!("{name}.down.sql")), down)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
    dir
}

/// The newest tenant migration built into the binaries, as `tenantctl` takes it (`--to`).
pub fn latest_tenant_version() -> String {
    engine::source::Catalog::load(None)
        .unwrap_or_else(|e| panic!("the built-in migration sets: {e}"))
        .tenant
        .latest()
        .unwrap_or_else(|| panic!("no tenant migration"))
        .to_string()
}

/// A temporary directory, removed with its contents on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "tenancy-test-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        ScratchDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for ScratchDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Builds a migration set in the test. SQL given once runs on both dialects; `dialects` gives
/// each its own.
#[derive(Debug, Clone)]
pub struct SetBuilder {
    kind: SetKind,
    files: Vec<(String, String)>,
}

impl SetBuilder {
    pub fn new(kind: SetKind) -> Self {
        SetBuilder {
            kind,
            files: Vec::new(),
        }
    }

    /// Version `2026010100MMSS` from a small number, so tests read `m(1)`, `m(2)`.
    pub fn version(n: u32) -> String {
        format!("20260101{:02}{:02}{:02}", n / 3600, (n / 60) % 60, n % 60)
    }

    /// A reversible migration whose SQL is the same in both dialects.
    pub fn migration(self, n: u32, name: &str, up: &str, down: &str) -> Self {
        self.dialects(n, name, (up, up), Some((down, down)))
    }

    /// A migration without a down file (its up should carry `-- irreversible: …`).
    pub fn irreversible(self, n: u32, name: &str, up: &str) -> Self {
        self.dialects(n, name, (up, up), None)
    }

    /// A migration with `(postgres, sqlite)` SQL for up and, optionally, down.
    pub fn dialects(
        mut self,
        n: u32,
        name: &str,
        up: (&str, &str),
        down: Option<(&str, &str)>,
    ) -> Self {
        let stem = format!("{}_{name}", Self::version(n));
        self.files.push((format!("{stem}.up.sql"), up.0.to_owned()));
        self.files
            .push((format!("sqlite/{stem}.up.sql"), up.1.to_owned()));
        if let Some((pg, lite)) = down {
            self.files.push((format!("{stem}.down.sql"), pg.to_owned()));
            self.files
                .push((format!("sqlite/{stem}.down.sql"), lite.to_owned()));
        }
        self
    }

    /// Replaces the contents of every file of migration `n` in `direction` (`"up"`/`"down"`).
    pub fn edit(mut self, n: u32, direction: &str, sql: &str) -> Self {
        let prefix = Self::version(n);
        for (name, contents) in &mut self.files {
            let file = name.rsplit('/').next().unwrap_or(name);
            if file.starts_with(&prefix) && file.ends_with(&format!(".{direction}.sql")) {
                *contents = sql.to_owned();
            }
        }
        self
    }

    /// Removes every file of migration `n`.
    pub fn without(mut self, n: u32) -> Self {
        let prefix = Self::version(n);
        self.files
            .retain(|(name, _)| !name.rsplit('/').next().unwrap_or(name).starts_with(&prefix));
        self
    }

    pub fn build(&self) -> MigrationSet {
        MigrationSet::from_files(self.kind, "test", self.files.clone())
            .unwrap_or_else(|e| panic!("test set: {e}"))
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; panics with `what` then.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process killed when the test lets go of it, also when an assertion fails first (a
/// service left running would keep consuming another test's namespace, and the machine's CPU).
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
