//! A private PostgreSQL cluster for fault tests: [`PrivatePostgres`].
//!
//! Tests that stop, kill or restart the database server cannot use the machine's shared server
//! (other tests run against it at the same time). Each [`PrivatePostgres`] is a throwaway cluster
//! of its own: `initdb` into a fresh directory under the system temp dir, trust authentication,
//! listening on 127.0.0.1 only on a free port, its unix socket inside its own directory.
//!
//! `initdb` and `postgres` refuse to run as root, so when the tests run as root every server
//! command goes through `runuser -u postgres --`, and the directory belongs to `postgres`.
//! The binaries are taken from `PG_BIN_DIR`, or `/usr/lib/postgresql/15/bin`.
//!
//! The directory is `tenancy-pg-<pid>-<process start time>-<n>-<random>`: a later run removes
//! those whose process is gone (a killed test cannot clean up after itself), stopping any server
//! still running there first. The start time tells a reused pid from the process that made it.
//!
//! The process helpers at the end of this file are shared with [`crate::broker`].

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PG_USER: &str = "postgres";
const DIR_PREFIX: &str = "tenancy-pg-";
const PORT_ATTEMPTS: u32 = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL cluster of the test's own, removed on drop.
///
/// Every fault operation waits for its effect: after [`stop`](Self::stop) and
/// [`kill`](Self::kill) the port refuses connections, after [`start_again`](Self::start_again)
/// a connection succeeds.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl PrivatePostgres {
    /// Creates and starts a new cluster; panics with the tail of the server log if it cannot.
    pub async fn start() -> PrivatePostgres {
        blocking(sweep_stale).await;
        let dir = blocking(create_cluster).await;
        let mut cluster = PrivatePostgres {
            dir,
            port: 0,
            running: false,
        };
        let mut clashes = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            cluster.port = free_port();
            let port_conf = format!("port = {}\n", cluster.port);
            std::fs::write(cluster.data_dir().join("port.conf"), port_conf)
                .unwrap_or_else(|e| panic!("writing port.conf of {}: {e}", cluster.dir.display()));
            match cluster.pg_ctl_start().await {
                Ok(()) => {
                    cluster.running = true;
                    cluster.wait_ready().await;
                    return cluster;
                }
                Err(failure) if is_port_clash(&failure) => clashes.push(cluster.port),
                Err(failure) => panic!(
                    "private PostgreSQL in {} did not start on port {}:\n{failure}",
                    cluster.dir.display(),
                    cluster.port
                ),
            }
        }
        panic!(
            "private PostgreSQL in {}: every port tried was taken ({clashes:?})",
            cluster.dir.display()
        )
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Options for connecting to the `postgres` database as `postgres`.
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url())
            .unwrap_or_else(|e| panic!("private cluster URL {}: {e}", self.url()))
            .disable_statement_logging()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (data directory in `data/`, server log in `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the server is meant to be up (started and not stopped or killed since).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Connects to the `postgres` database, or panics.
    pub async fn connect(&self) -> PgConnection {
        self.options()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to private PostgreSQL {}: {e}", self.url()))
    }

    /// Fast shutdown (`pg_ctl -m fast stop`): sessions are disconnected, a checkpoint is written.
    pub async fn stop(&mut self) {
        self.pg_ctl_stop("fast").await;
    }

    /// Immediate shutdown (`pg_ctl -m immediate stop`), as after a crash: no checkpoint, the
    /// next start runs crash recovery.
    pub async fn kill(&mut self) {
        self.pg_ctl_stop("immediate").await;
    }

    /// Starts the stopped or killed cluster again, with the same data directory and port.
    pub async fn start_again(&mut self) {
        assert!(
            !self.running,
            "private PostgreSQL on port {} is already running",
            self.port
        );
        if let Err(failure) = self.pg_ctl_start().await {
            panic!(
                "private PostgreSQL in {} did not start again on port {}:\n{failure}",
                self.dir.display(),
                self.port
            );
        }
        self.running = true;
        self.wait_ready().await;
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_file(), lines)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// `pg_ctl start`; on failure, what the server logged during this attempt and what
    /// `pg_ctl` said.
    async fn pg_ctl_start(&self) -> Result<(), String> {
        let log = self.log_file();
        let log_offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = pg_command(&self.dir, "pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]);
        let out = output(cmd).await;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "pg_ctl start: {}\n{}{}--- server log ({}) ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log.display(),
            read_from(&log, log_offset),
        ))
    }

    async fn pg_ctl_stop(&mut self, mode: &str) {
        assert!(
            self.running,
            "private PostgreSQL on port {} is not running",
            self.port
        );
        let mut cmd = pg_command(&self.dir, "pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        let out = output(cmd).await;
        assert!(
            out.status.success(),
            "pg_ctl -m {mode} stop of {}: {}\n{}{}\n--- server log ---\n{}",
            self.dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(30)
        );
        self.running = false;
        let port = self.port;
        wait_for(Duration::from_secs(10), move || !accepts_connections(port))
            .await
            .unwrap_or_else(|()| {
                panic!("private PostgreSQL still accepts connections on {port} after pg_ctl stop")
            });
    }

    /// `pg_ctl -w` has seen the server ready; this also checks a real login works.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.options().connect().await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return;
                }
                Err(e) if Instant::now() >= deadline => panic!(
                    "private PostgreSQL on port {} started but refuses logins ({e})\n\
                     --- server log ---\n{}",
                    self.port,
                    self.log_tail(30)
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let mut cmd = pg_command(&self.dir, "pg_ctl");
            cmd.arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
            let stopped = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !stopped {
                stop_leftover_postgres(&self.dir);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes `<temp>/tenancy-pg-…` owned by the server user and runs `initdb` in `data/`.
fn create_cluster() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{n}-{random}", owner_tag()));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    if is_root() {
        let status = Command::new("chown")
            .arg(format!("{PG_USER}:"))
            .arg(&dir)
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "chown {PG_USER}: {}: {status:?}",
            dir.display()
        );
    }
    let started = Instant::now();
    let mut cmd = pg_command(&dir, "initdb");
    cmd.arg("-D").arg(dir.join("data")).args([
        "-U",
        PG_USER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running initdb ({}): {e}", pg_bin().display()));
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        out.status.success(),
        "initdb into {} failed after {:?} ({}):\n{}{}",
        dir.display(),
        started.elapsed(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let socket_dir = dir.display().to_string().replace('\'', "''");
    let settings = format!(
        "\n# private test cluster (testkit::cluster)\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{socket_dir}'\n\
         max_connections = 50\n\
         shared_buffers = 16MB\n\
         fsync = on\n\
         log_line_prefix = '%m [%p] '\n\
         include 'port.conf'\n"
    );
    let conf = dir.join("data").join("postgresql.conf");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut f| std::io::Write::write_all(&mut f, settings.as_bytes()))
        .unwrap_or_else(|e| panic!("appending to {}: {e}", conf.display()));
    dir
}

fn is_port_clash(failure: &str) -> bool {
    failure.contains("could not bind") || failure.contains("Address already in use")
}

fn pg_bin() -> PathBuf {
    std::env::var_os("PG_BIN_DIR").map_or_else(|| PathBuf::from(DEFAULT_PG_BIN), PathBuf::from)
}

/// A PostgreSQL tool run as the server user (through `runuser` when we are root), in `dir`,
/// with a clean environment (no `PGDATA`, `PGPORT`… from the test's).
fn pg_command(dir: &Path, tool: &str) -> Command {
    let program = pg_bin().join(tool);
    let mut cmd = if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", PG_USER, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    };
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", SYSTEM_PATH)
        .env("LANG", "C")
        .stdin(Stdio::null());
    cmd
}

/// Removes the clusters of test processes that are gone, stopping their servers first.
fn sweep_stale() {
    for dir in stale_dirs(DIR_PREFIX) {
        stop_leftover_postgres(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Stops the postmaster of `dir` if one still runs there: SIGQUIT (immediate shutdown), then
/// SIGKILL if it lingers. The pid comes from `postmaster.pid`, and must be a process whose
/// command line names this directory (so a reused pid is left alone).
fn stop_leftover_postgres(dir: &Path) {
    let Some(pid) = std::fs::read_to_string(dir.join("data").join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
    else {
        return;
    };
    if !process_runs_in(pid, dir, "cmdline") {
        return;
    }
    signal(pid, "QUIT");
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if process_running(pid) {
        signal(pid, "KILL");
    }
}

// ---------------------------------------------------------------------------------------------
// Process and file helpers, shared with `broker.rs`.

/// `PATH` of the commands the kit runs (their environment is cleared).
pub(crate) const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `<pid>-<start time>` of this process, the owner part of the kit's directory names.
pub(crate) fn owner_tag() -> String {
    let pid = std::process::id();
    format!("{pid}-{}", process_start_time(pid).unwrap_or(0))
}

/// The fields of `/proc/<pid>/stat` after the command name: `[0]` is the state, `[19]` the
/// start time (field 22 of proc(5)).
fn proc_stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn process_start_time(pid: u32) -> Option<u64> {
    proc_stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` is a live process (a zombie is not).
pub(crate) fn process_running(pid: u32) -> bool {
    proc_stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Whether `pid` runs and `/proc/<pid>/<file>` (`cmdline`, `environ`) mentions `dir`.
pub(crate) fn process_runs_in(pid: u32, dir: &Path, file: &str) -> bool {
    if !process_running(pid) {
        return false;
    }
    let needle = dir.as_os_str().as_encoded_bytes();
    std::fs::read(format!("/proc/{pid}/{file}"))
        .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

/// Directories `<temp>/<prefix><pid>-<start>-…` whose creating process is gone.
pub(crate) fn stale_dirs(prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
                return false;
            };
            let mut parts = rest.split('-');
            let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
            let start = parts.next().and_then(|s| s.parse::<u64>().ok());
            match (pid, start) {
                (Some(pid), Some(start)) => {
                    !(process_running(pid) && process_start_time(pid) == Some(start))
                }
                _ => false,
            }
        })
        .map(|entry| entry.path())
        .collect()
}

/// A port on 127.0.0.1 that was free a moment ago (the caller retries on a clash).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("finding a free port on 127.0.0.1: {e}"))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn accepts_connections(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// Whether we run as root (the owner of `/proc/self` is the effective uid).
pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Sends `SIG<name>` to `pid` with kill(1).
pub(crate) fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs blocking work (processes, files) off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| panic!("blocking test-kit task: {e}"))
}

/// Runs `cmd` to completion, capturing its output; panics if it cannot be started.
pub(crate) async fn output(mut cmd: Command) -> Output {
    let program = cmd.get_program().to_owned();
    blocking(move || cmd.output())
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", program_name(&program)))
}

fn program_name(program: &OsStr) -> String {
    program.to_string_lossy().into_owned()
}

/// Polls the blocking `condition` every 50 ms until it holds (`Ok`) or `timeout` passes.
pub(crate) async fn wait_for(
    timeout: Duration,
    condition: impl Fn() -> bool + Send + Sync + Clone + 'static,
) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    loop {
        if blocking(condition.clone()).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last `lines` lines of a text file (or a note that it cannot be read).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let mut out = String::new();
            for line in &all[all.len().saturating_sub(lines)..] {
                let _ = writeln!(out, "{line}");
            }
            out
        }
        Err(e) => format!("({}: {e})\n", path.display()),
    }
}

/// A file's contents from byte `offset` on (at most the last 8 KiB of them).
fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("({} cannot be read)\n", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = offset.max(len.saturating_sub(8192));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return format!("({} cannot be read)\n", path.display());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
