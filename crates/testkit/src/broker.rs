//! A private RabbitMQ node for fault tests: [`PrivateBroker`].
//!
//! Tests that drop connections or stop the broker cannot use the machine's shared broker
//! (`rabbit@localhost`, AMQP 5672), which other tests use at the same time. Each
//! [`PrivateBroker`] is a second node of its own: node name `tenancy-test-<pid>-<n>@localhost`,
//! its own AMQP and distribution ports (free ports, 127.0.0.1 only), its own directory under the
//! system temp dir for the database, logs, config, enabled plugins (none) and Erlang cookie.
//!
//! How it is run:
//! - `/usr/lib/rabbitmq/bin/rabbitmq-server -detached` directly, as the current user (root works).
//!   Not `/usr/sbin/rabbitmq-server`: as root that wrapper switches to the `rabbitmq` user, `cd`s
//!   to `/var/lib/rabbitmq` and writes `/var/log/rabbitmq/startup_log`, the shared node's file.
//! - Every command gets a cleared environment naming this node and its files (never
//!   `std::env::set_var`), including `RABBITMQ_CONF_ENV_FILE` and `RABBITMQ_CONFIG_FILE`: the
//!   machine's `/etc/rabbitmq/rabbitmq-env.conf` and `rabbitmq.conf` name the shared node and its
//!   listener, and must not be read. `HOME` is the node's directory, so the node and its
//!   `rabbitmqctl` share a cookie of their own.
//! - `rabbitmqctl` always gets `-n <node>`, so the shared node is never addressed. Its own
//!   distribution port is left to the OS (the default range 35672-35682 is small when many
//!   tests call `rabbitmqctl` at once).
//! - The node registers with the machine's epmd (port 4369, shared with the shared node). A
//!   private epmd would outlive the node (epmd daemonizes) and gains nothing: node names differ.
//!
//! Directories are `tenancy-rmq-<pid>-<process start time>-<n>-<random>`; at start, those of test
//! processes that are gone are removed, after killing any node still running there.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};

use crate::cluster::{
    SYSTEM_PATH, accepts_connections, blocking, free_port, output, owner_tag, process_running,
    process_runs_in, signal, stale_dirs, tail, wait_for,
};

const DEFAULT_RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";
const DIR_PREFIX: &str = "tenancy-rmq-";
const NODE_PREFIX: &str = "tenancy-test-";
const BOOT_ATTEMPTS: u32 = 3;
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const EFFECT_TIMEOUT: Duration = Duration::from_secs(30);
const LOOPBACK_DIST: &str = "-kernel inet_dist_use_interface {127,0,0,1}";

/// A RabbitMQ node of the test's own, stopped and removed on drop.
///
/// Every fault operation waits for its effect before returning.
#[derive(Debug)]
pub struct PrivateBroker {
    dir: PathBuf,
    node: String,
    amqp_port: u16,
    dist_port: u16,
    /// The beam process while the node runs.
    beam_pid: Option<u32>,
}

/// Why a boot failed, and whether another port may help.
struct BootFailure {
    port_clash: bool,
    report: String,
}

impl PrivateBroker {
    /// Starts a new node and waits until `rabbitmqctl await_startup` succeeds and a guest AMQP
    /// connection opens (3-4 s on an idle two-core machine, up to 8 s under load). Panics with
    /// the node's log if it cannot.
    pub async fn start() -> PrivateBroker {
        Self::start_with_cookie(None).await
    }

    /// [`start`](Self::start), with the Erlang cookie `cookie` (nodes that are to form a
    /// cluster share one) or, when `None`, a cookie of its own.
    pub(crate) async fn start_with_cookie(cookie: Option<String>) -> PrivateBroker {
        blocking(sweep_stale).await;
        let mut failures = Vec::new();
        for _ in 0..BOOT_ATTEMPTS {
            let cookie = cookie.clone();
            let mut broker = blocking(move || PrivateBroker::prepare(cookie.as_deref())).await;
            match broker.boot().await {
                Ok(()) => return broker,
                Err(failure) if failure.port_clash => failures.push(failure.report),
                Err(failure) => panic!(
                    "private RabbitMQ node {} did not start:\n{}",
                    broker.node, failure.report
                ),
            }
        }
        panic!(
            "private RabbitMQ node: every port tried was taken:\n{}",
            failures.join("\n")
        )
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// The Erlang node name, `tenancy-test-<pid>-<n>@localhost`.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn amqp_port(&self) -> u16 {
        self.amqp_port
    }

    /// The node's directory (logs in `log/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the node is meant to be up (started and not stopped or killed since; after
    /// [`stop_app`](Self::stop_app) the node is still up).
    pub fn is_running(&self) -> bool {
        self.beam_pid.is_some()
    }

    /// Connects with `ConnectionProperties::default()`, or panics.
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.amqp_url(), ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("connecting to private RabbitMQ {}: {e}", self.amqp_url()))
    }

    /// `rabbitmqctl close_all_connections`, then waits until every connection that existed
    /// before is gone. Returns how many there were. (Clients that recover may already be back.)
    pub async fn close_all_connections(&self) -> usize {
        let before = self.connection_pids().await;
        self.ctl_ok(&["close_all_connections", "--global", "test"])
            .await;
        let closed = wait_for_async(EFFECT_TIMEOUT, || async {
            let now = self.connection_pids().await;
            !before.iter().any(|pid| now.contains(pid))
        })
        .await;
        assert!(
            closed,
            "connections to {} were still open {EFFECT_TIMEOUT:?} after close_all_connections",
            self.node
        );
        before.len()
    }

    /// `rabbitmqctl stop_app`: the node stays up, the broker application (and its AMQP
    /// listener) stops. Returns once the port refuses connections.
    pub async fn stop_app(&self) {
        self.ctl_ok(&["stop_app"]).await;
        let port = self.amqp_port;
        wait_for(EFFECT_TIMEOUT, move || !accepts_connections(port))
            .await
            .unwrap_or_else(|()| {
                panic!(
                    "{} still accepts AMQP connections after stop_app",
                    self.node
                )
            });
    }

    /// `rabbitmqctl start_app`; returns once an AMQP connection opens.
    pub async fn start_app(&self) {
        self.ctl_ok(&["start_app"]).await;
        self.ctl_ok(&["await_startup"]).await;
        self.wait_amqp(EFFECT_TIMEOUT).await.unwrap_or_else(|e| {
            panic!(
                "{} accepts no AMQP connection after start_app: {e}\n{}",
                self.node,
                self.log_tail(30)
            )
        });
    }

    /// [`stop_app`](Self::stop_app) then [`start_app`](Self::start_app).
    pub async fn restart_app(&self) {
        self.stop_app().await;
        self.start_app().await;
    }

    /// Kills the node's beam process (SIGKILL), as a crash would; returns once it is gone and
    /// the port refuses connections. [`start_again`](Self::start_again) brings it back.
    pub async fn kill(&mut self) {
        let pid = self
            .beam_pid
            .take()
            .unwrap_or_else(|| panic!("private RabbitMQ node {} is not running", self.node));
        signal(pid, "KILL");
        self.wait_gone(pid).await;
    }

    /// Sends SIGKILL to the node's beam without waiting for it to go: for tearing down many
    /// nodes at once (the drop then waits for each and removes its directory).
    pub(crate) fn kill_without_waiting(&mut self) {
        if let Some(pid) = self.beam_pid.take() {
            signal(pid, "KILL");
        }
    }

    /// Stops the whole node cleanly (`rabbitmqctl stop`); returns once its process is gone.
    pub async fn stop(&mut self) {
        let pid = self
            .beam_pid
            .take()
            .unwrap_or_else(|| panic!("private RabbitMQ node {} is not running", self.node));
        self.ctl_ok(&["stop"]).await;
        self.wait_gone(pid).await;
    }

    /// Starts the node again after [`kill`](Self::kill) or [`stop`](Self::stop): same name,
    /// ports and data (durable queues and messages are still there).
    pub async fn start_again(&mut self) {
        assert!(
            self.beam_pid.is_none(),
            "private RabbitMQ node {} is already running",
            self.node
        );
        if let Err(failure) = self.boot().await {
            panic!(
                "private RabbitMQ node {} did not start again:\n{}",
                self.node, failure.report
            );
        }
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_file(), lines)
    }

    /// Creates the directory and its files, and picks the node name and ports.
    fn prepare(cookie: Option<&str>) -> PrivateBroker {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let random = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{n}-{random}", owner_tag()));
        let amqp_port = free_port();
        let dist_port = loop {
            let port = free_port();
            if port != amqp_port {
                break port;
            }
        };
        let broker = PrivateBroker {
            node: format!("{NODE_PREFIX}{pid}-{n}@localhost"),
            dir,
            amqp_port,
            dist_port,
            beam_pid: None,
        };
        let write = |name: &str, contents: &str| {
            let path = broker.dir.join(name);
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        };
        std::fs::create_dir(&broker.dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", broker.dir.display()));
        for sub in ["mnesia", "log"] {
            let path = broker.dir.join(sub);
            std::fs::create_dir(&path)
                .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        }
        write("enabled_plugins", "[].\n");
        write(
            "rabbitmq-env.conf",
            "# private test node: settings come from the environment\n",
        );
        write(
            "rabbitmq.conf",
            &format!(
                "# private test node (testkit::broker)\n\
                 listeners.tcp.local = 127.0.0.1:{amqp_port}\n\
                 disk_free_limit.absolute = 1MB\n\
                 log.console = false\n\
                 log.file.level = info\n"
            ),
        );
        // Erlang refuses a cookie file that others can read.
        let cookie_file = broker.dir.join(".erlang.cookie");
        let own_cookie = uuid::Uuid::new_v4().simple().to_string();
        write(".erlang.cookie", cookie.unwrap_or(&own_cookie));
        std::fs::set_permissions(
            &cookie_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o400),
        )
        .unwrap_or_else(|e| panic!("chmod {}: {e}", cookie_file.display()));
        broker
    }

    /// A RabbitMQ script with the environment of this node (and nothing inherited).
    fn command(&self, script: &str) -> Command {
        let bin = std::env::var_os("RABBITMQ_BIN_DIR")
            .map_or_else(|| PathBuf::from(DEFAULT_RABBITMQ_BIN), PathBuf::from);
        let mut cmd = Command::new(bin.join(script));
        let dir = &self.dir;
        cmd.current_dir(dir)
            .env_clear()
            .stdin(Stdio::null())
            .env("PATH", SYSTEM_PATH)
            .env("LANG", "C.UTF-8")
            .env("HOME", dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", Ipv4Addr::LOCALHOST.to_string())
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_ADDRESS", Ipv4Addr::LOCALHOST.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_PID_FILE", dir.join("beam.pid"))
            .env("ERL_CRASH_DUMP", dir.join("erl_crash.dump"))
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", LOOPBACK_DIST)
            .env("RABBITMQ_CTL_ERL_ARGS", LOOPBACK_DIST)
            .env("RABBITMQ_CTL_DIST_PORT_MIN", "0")
            .env("RABBITMQ_CTL_DIST_PORT_MAX", "0");
        cmd
    }

    /// `rabbitmqctl -n <node> -q <args…>`.
    async fn ctl(&self, args: &[&str]) -> Output {
        let mut cmd = self.command("rabbitmqctl");
        cmd.args(["-n", &self.node, "-q"]).args(args);
        output(cmd).await
    }

    /// `rabbitmqctl -n <node> -q <args…>`, which must succeed (else a panic with its output).
    pub async fn rabbitmqctl(&self, args: &[&str]) -> Output {
        self.ctl_ok(args).await
    }

    async fn ctl_ok(&self, args: &[&str]) -> Output {
        let out = self.ctl(args).await;
        assert!(
            out.status.success(),
            "rabbitmqctl -n {} {}: {}\n{}{}",
            self.node,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    async fn connection_pids(&self) -> Vec<String> {
        let out = self
            .ctl_ok(&["list_connections", "--no-table-headers", "pid"])
            .await;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("log").join(format!("{}.log", self.node))
    }

    /// `rabbitmq-server -detached`, then waits until the node is up and takes AMQP logins.
    async fn boot(&mut self) -> Result<(), BootFailure> {
        let crash_dump = self.dir.join("erl_crash.dump");
        let _ = std::fs::remove_file(&crash_dump);
        let pid_file = self.dir.join("beam.pid");
        let _ = std::fs::remove_file(&pid_file);
        let startup_log = self.dir.join("startup.log");
        let mut cmd = self.command("rabbitmq-server");
        cmd.arg("-detached");
        // The detached node inherits the script's stdout and stderr: a pipe would keep
        // `output()` waiting until the node exits, so they go to a file.
        let log = std::fs::File::create(&startup_log)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| self.failure(false, &format!("creating startup.log: {e}")))?;
        cmd.stdout(log.0).stderr(log.1);
        let status = blocking(move || cmd.status())
            .await
            .map_err(|e| self.failure(false, &format!("running rabbitmq-server: {e}")))?;
        if !status.success() {
            return Err(self.failure(false, &format!("rabbitmq-server -detached: {status}")));
        }
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if self.beam_pid.is_none() {
                self.beam_pid = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            }
            if crash_dump.exists() {
                // The dying VM is still writing it; its last line is `=end`.
                let dump = crash_dump.clone();
                let _ = wait_for(Duration::from_secs(10), move || {
                    std::fs::read(&dump).is_ok_and(|bytes| bytes.ends_with(b"=end\n"))
                })
                .await;
                self.beam_pid = None;
                return Err(self.failure(true, "the node crashed while booting"));
            }
            if let Some(pid) = self.beam_pid
                && !process_running(pid)
            {
                self.beam_pid = None;
                return Err(self.failure(true, "the node exited while booting"));
            }
            let port = self.amqp_port;
            // The listener opens late in the boot; `await_startup` then proves that it is this
            // node's (a node that cannot bind its port does not finish booting).
            if blocking(move || accepts_connections(port)).await
                && self.ctl(&["await_startup"]).await.status.success()
                && self.wait_amqp(Duration::from_secs(10)).await.is_ok()
            {
                if self.beam_pid.is_none() {
                    self.beam_pid = self.os_pid().await;
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.failure(false, &format!("not up after {BOOT_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The beam's pid from the node itself (if the pid file was not there).
    async fn os_pid(&self) -> Option<u32> {
        let out = self.ctl(&["eval", "os:getpid()."]).await;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_matches('"')
            .parse()
            .ok()
    }

    /// Retries an AMQP login (guest/guest) until it works or `timeout` passes.
    async fn wait_amqp(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                Connection::connect(&self.amqp_url(), ConnectionProperties::default()),
            )
            .await;
            let error = match attempt {
                Ok(Ok(conn)) => {
                    let _ = conn.close(200, "testkit readiness probe".into()).await;
                    return Ok(());
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connection attempt timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                return Err(error);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the beam `pid` is gone, its AMQP port closed and its name unregistered.
    async fn wait_gone(&self, pid: u32) {
        let port = self.amqp_port;
        let name = self.node.split('@').next().unwrap_or_default().to_owned();
        let gone = wait_for(EFFECT_TIMEOUT, move || {
            !process_running(pid) && !accepts_connections(port) && !epmd_lists(&name)
        })
        .await;
        assert!(
            gone.is_ok(),
            "private RabbitMQ node {} (pid {pid}) still there after {EFFECT_TIMEOUT:?}",
            self.node
        );
    }

    fn failure(&self, may_be_port_clash: bool, what: &str) -> BootFailure {
        let crash_dump = self.dir.join("erl_crash.dump");
        let slogan = std::fs::read(&crash_dump)
            .ok()
            .and_then(|bytes| {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(16384)]).into_owned();
                text.lines()
                    .find(|line| line.starts_with("Slogan:"))
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let log = self.log_tail(40);
        // A taken AMQP port shows as `eaddrinuse` in the log (the slogan only says
        // `could_not_start_listener`), a taken distribution port as `dist_port_already_used`.
        let whole_log = std::fs::read(self.log_file()).unwrap_or_default();
        let whole_log = String::from_utf8_lossy(&whole_log);
        let port_clash = may_be_port_clash
            && ["eaddrinuse", "dist_port_already_used"]
                .iter()
                .any(|sign| slogan.contains(sign) || whole_log.contains(sign));
        BootFailure {
            port_clash,
            report: format!(
                "{what} (AMQP port {}, distribution port {}, directory {})\n{slogan}\n\
                 --- startup output ---\n{}--- node log ---\n{log}",
                self.amqp_port,
                self.dist_port,
                self.dir.display(),
                tail(&self.dir.join("startup.log"), 20),
            ),
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(pid) = self.beam_pid.take() {
            let stopped = self
                .command("rabbitmqctl")
                .args(["-n", &self.node, "-q", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let deadline = Instant::now() + Duration::from_secs(if stopped { 10 } else { 0 });
            while process_running(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if process_running(pid) {
                signal(pid, "KILL");
            }
        } else {
            kill_leftover_node(&self.dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls an async condition every 100 ms until it holds or `timeout` passes.
async fn wait_for_async<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the machine's epmd has a node registered under `name` (the part before `@`).
fn epmd_lists(name: &str) -> bool {
    Command::new("epmd")
        .arg("-names")
        .env("PATH", SYSTEM_PATH)
        .env("ERL_EPMD_ADDRESS", Ipv4Addr::LOCALHOST.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|line| line.split_whitespace().nth(1) == Some(name))
        })
}

/// Removes the nodes of test processes that are gone, killing any still running.
fn sweep_stale() {
    for dir in stale_dirs(DIR_PREFIX) {
        kill_leftover_node(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Kills the beam of `dir` if one still runs: its pid comes from `beam.pid`, and its
/// environment must name this directory (so a reused pid is left alone).
fn kill_leftover_node(dir: &Path) {
    let Some(pid) = std::fs::read_to_string(dir.join("beam.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return;
    };
    if process_runs_in(pid, dir, "environ") {
        signal(pid, "KILL");
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Deletes the exchanges and queues of `namespace` on the broker at `amqp_url` (a URL, or a
/// cluster's comma-separated list: the first node that answers), from a thread of its own (so
/// it can run in `Drop` inside a runtime). Quorum queues are never auto-deleted: a test that
/// declared a topology removes it, or the broker fills up with them. Best effort.
pub fn delete_topology_now(amqp_url: &str, namespace: &str) {
    let (urls, namespace) = (amqp_url.to_owned(), namespace.to_owned());
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            let mut connection = None;
            for url in urls.split(',').map(str::trim) {
                let attempt = tokio::time::timeout(
                    Duration::from_secs(5),
                    lapin::Connection::connect(url, lapin::ConnectionProperties::default()),
                );
                if let Ok(Ok(connected)) = attempt.await {
                    connection = Some(connected);
                    break;
                }
            }
            let connection = connection?;
            let channel = connection.create_channel().await.ok()?;
            let _ = shared::bus::Topology::new(namespace).delete(&channel).await;
            let _ = connection.close(200, "test done".into()).await;
            Some(())
        })
    });
    let _ = worker.join();
}
