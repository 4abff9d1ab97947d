//! A private Prometheus for tests: [`PrivatePrometheus`], and [`promtool`].
//!
//! Each [`PrivatePrometheus`] is the Debian `prometheus` binary (`PROMETHEUS_BIN`, or
//! `/usr/bin/prometheus`; `.ci/run` installs the package) running in a directory of its own under
//! the system temp dir (config, TSDB, log), listening on 127.0.0.1 on a free port. Its config is
//! generated from the test's scrape targets (`host:port`, path `/metrics`) and rule files, with a
//! scrape and evaluation interval of 1 s so that a test sees its series and alerts within
//! seconds. It is killed and its directory removed on drop.
//!
//! Directories are `tenancy-prom-<pid>-<process start time>-<n>-<random>`; at start, those of
//! test processes that are gone are removed, after killing any Prometheus still running there.
//!
//! The HTTP API is read with one blocking HTTP/1.0 `GET` per call (the server then closes the
//! connection and never chunks the body), off the async runtime: no HTTP client dependency.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{blocking, free_port, owner_tag, process_runs_in, signal, stale_dirs, tail};

const DEFAULT_PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
const DIR_PREFIX: &str = "tenancy-prom-";
const PORT_ATTEMPTS: u32 = 5;
/// Start-up replays an empty TSDB and loads the rules: about a second on an idle machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// What the tests' private Prometheus scrapes and evaluates at: series and alert states move
/// within seconds.
pub const INTERVAL: &str = "1s";

/// Where a private Prometheus scrapes: `http://<address>/metrics`, under job `job`.
///
/// Give the services' production job names (`provisioner`, `migrator`, `auditor`) so that the
/// shipped alert rules that select on `job` see them as in production.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    pub job: String,
    /// `host:port`, e.g. a service's health address.
    pub address: String,
}

impl ScrapeTarget {
    pub fn new(job: &str, address: impl Into<String>) -> Self {
        ScrapeTarget {
            job: job.to_owned(),
            address: address.into(),
        }
    }
}

/// One series of a query result: its labels and its (latest) value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A query Prometheus refused, or that could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The API's answer: `error_type` is `bad_data` for an expression that does not parse,
    /// `execution` for one that fails while evaluated (e.g. many-to-many matching).
    Api { error_type: String, error: String },
    /// No usable answer from the server (connection, HTTP or JSON).
    Transport(String),
}

impl QueryError {
    /// Whether Prometheus refused the expression as malformed.
    pub fn is_parse_error(&self) -> bool {
        matches!(self, QueryError::Api { error_type, .. } if error_type == "bad_data")
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Api { error_type, error } => write!(f, "{error_type}: {error}"),
            QueryError::Transport(e) => write!(f, "no answer from Prometheus: {e}"),
        }
    }
}

impl std::error::Error for QueryError {}

/// The state of an alerting rule, as `/api/v1/rules` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Inactive,
    /// The expression holds, but not yet for the rule's `for`.
    Pending,
    Firing,
}

/// An alerting rule Prometheus loaded, with its state at the last evaluation.
#[derive(Debug, Clone)]
pub struct AlertRule {
    pub group: String,
    pub name: String,
    pub expr: String,
    pub state: AlertState,
    /// `ok`, `err` or `unknown` (not evaluated yet).
    pub health: String,
    /// Why the last evaluation failed (empty when it did not).
    pub last_error: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The labels of each alert the rule currently has (pending or firing).
    pub alerts: Vec<BTreeMap<String, String>>,
}

/// A Prometheus server of the test's own, killed and removed on drop.
#[derive(Debug)]
pub struct PrivatePrometheus {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivatePrometheus {
    /// Writes the config for `targets` and `rule_files` (absolute, or relative to the current
    /// directory), starts Prometheus on a free port and waits until `/-/ready` answers. Panics
    /// with the server's log if it does not start (a rule file that does not load, say).
    pub async fn start(targets: &[ScrapeTarget], rule_files: &[PathBuf]) -> PrivatePrometheus {
        let rule_files = rule_files
            .iter()
            .map(|file| {
                std::fs::canonicalize(file)
                    .unwrap_or_else(|e| panic!("rule file {}: {e}", file.display()))
            })
            .collect::<Vec<_>>();
        blocking(sweep_stale).await;
        let config = config_yaml(targets, &rule_files);
        let dir = blocking(create_dir).await;
        std::fs::write(dir.join("prometheus.yml"), config)
            .unwrap_or_else(|e| panic!("writing the config in {}: {e}", dir.display()));
        let mut prometheus = PrivatePrometheus {
            dir,
            port: 0,
            child: None,
        };
        let mut clashes = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            prometheus.port = free_port();
            prometheus.spawn();
            match prometheus.wait_ready().await {
                Ok(()) => return prometheus,
                Err(exited) if exited && prometheus.log_has("address already in use") => {
                    clashes.push(prometheus.port);
                }
                Err(_) => panic!(
                    "private Prometheus in {} did not become ready on port {}:\n{}",
                    prometheus.dir.display(),
                    prometheus.port,
                    prometheus.log_tail(40)
                ),
            }
        }
        panic!(
            "private Prometheus in {}: every port tried was taken ({clashes:?})",
            prometheus.dir.display()
        )
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its directory (`prometheus.yml`, `data/`, `prometheus.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("prometheus.log"), lines)
    }

    /// Evaluates `expr` now (`/api/v1/query`). A vector gives one sample per series, a scalar
    /// one sample without labels, a range vector each series' latest value.
    ///
    /// # Errors
    /// What Prometheus said (`bad_data` for an expression that does not parse), or that it did
    /// not answer.
    pub async fn query(&self, expr: &str) -> Result<Vec<Sample>, QueryError> {
        let data = self
            .api(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .await?;
        samples(&data).map_err(QueryError::Transport)
    }

    /// Polls `expr` until it returns at least one sample, and returns them; panics after
    /// `timeout` (or at once if Prometheus refuses the expression), saying what the scrape
    /// targets look like.
    pub async fn wait_for_samples(&self, expr: &str, timeout: Duration) -> Vec<Sample> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.query(expr).await {
                Ok(found) if !found.is_empty() => return found,
                Ok(_) | Err(QueryError::Transport(_)) if Instant::now() < deadline => {}
                Ok(_) => panic!(
                    "no sample of `{expr}` after {timeout:?}; scrape targets: {}",
                    self.targets_summary().await
                ),
                Err(e) => panic!("`{expr}`: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every scrape target is up (`up == 1`); panics after `timeout` with each
    /// target's health and last scrape error.
    pub async fn wait_for_targets_up(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let all_up = matches!(
                self.query("min(up)").await.as_deref(),
                Ok([sample]) if sample.value == 1.0
            );
            if all_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "scrape targets not all up after {timeout:?}: {}",
                self.targets_summary().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every alerting rule loaded, in file order, with its state (`/api/v1/rules`).
    pub async fn rules(&self) -> Vec<AlertRule> {
        let data = self
            .api("/api/v1/rules?type=alert")
            .await
            .unwrap_or_else(|e| panic!("/api/v1/rules: {e}\n{}", self.log_tail(20)));
        alert_rules(&data).unwrap_or_else(|e| panic!("/api/v1/rules: {e}"))
    }

    /// Polls until alert `name` is in one of `states`, and returns the rule; panics after
    /// `timeout` with the rule as last seen (or if no such rule is loaded).
    pub async fn wait_for_alert(
        &self,
        name: &str,
        states: &[AlertState],
        timeout: Duration,
    ) -> AlertRule {
        let deadline = Instant::now() + timeout;
        loop {
            let rule = self
                .rules()
                .await
                .into_iter()
                .find(|rule| rule.name == name)
                .unwrap_or_else(|| panic!("no alert rule named {name} is loaded"));
            if states.contains(&rule.state) {
                return rule;
            }
            assert!(
                Instant::now() < deadline,
                "alert {name} not {states:?} after {timeout:?}: {rule:#?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `<job> <instance>: <health> <last error>` for every scrape target.
    async fn targets_summary(&self) -> String {
        let Ok(data) = self.api("/api/v1/targets?state=active").await else {
            return "(the targets API did not answer)".to_owned();
        };
        let targets = data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if targets.is_empty() {
            return "none configured".to_owned();
        }
        targets
            .iter()
            .map(|t| {
                format!(
                    "{} {}: {} {}",
                    t["labels"]["job"].as_str().unwrap_or("?"),
                    t["labels"]["instance"].as_str().unwrap_or("?"),
                    t["health"].as_str().unwrap_or("?"),
                    t["lastError"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `GET path` on the API; the `data` member of a `success` answer.
    async fn api(&self, path: &str) -> Result<Value, QueryError> {
        let port = self.port;
        let path = path.to_owned();
        let (status, body) = blocking(move || http_get(port, &path))
            .await
            .map_err(QueryError::Transport)?;
        let answer: Value = serde_json::from_str(&body)
            .map_err(|e| QueryError::Transport(format!("HTTP {status}, not JSON ({e}): {body}")))?;
        if answer["status"] == "success" {
            return Ok(answer["data"].clone());
        }
        Err(QueryError::Api {
            error_type: answer["errorType"].as_str().unwrap_or("unknown").to_owned(),
            error: answer["error"].as_str().unwrap_or(&body).to_owned(),
        })
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("prometheus.log"))
            .unwrap_or_else(|e| panic!("creating the log in {}: {e}", self.dir.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("prometheus log: {e}"));
        let bin = prometheus_bin();
        let child = Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {}: {e}. Install Debian's prometheus package (`.ci/run` does it \
                     without starting its daemon) or set PROMETHEUS_BIN.",
                    bin.display()
                )
            });
        // Lets a later run kill it if this process dies without dropping it.
        let _ = std::fs::write(self.dir.join("prometheus.pid"), child.id().to_string());
        self.child = Some(child);
    }

    /// `Ok` once `/-/ready` answers 200; `Err(true)` if the process exited first,
    /// `Err(false)` on timeout.
    async fn wait_ready(&mut self) -> Result<(), bool> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return Err(true);
            }
            let port = self.port;
            let ready = blocking(move || http_get(port, "/-/ready"))
                .await
                .is_ok_and(|(status, _)| status == 200);
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_has(&self, text: &str) -> bool {
        std::fs::read_to_string(self.dir.join("prometheus.log")).is_ok_and(|log| log.contains(text))
    }
}

impl Drop for PrivatePrometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `promtool` with `args` in `dir`; panics, saying how to install it, if it is missing.
pub fn promtool(dir: &Path, args: &[&str]) -> Output {
    let bin = std::env::var_os("PROMTOOL_BIN").unwrap_or_else(|| "promtool".into());
    Command::new(&bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {}: {e}. Install Debian's prometheus package (`.ci/run` does it without \
                 starting its daemon) or set PROMTOOL_BIN.",
                bin.to_string_lossy()
            )
        })
}

fn prometheus_bin() -> PathBuf {
    std::env::var_os("PROMETHEUS_BIN").map_or_else(|| DEFAULT_PROMETHEUS_BIN.into(), PathBuf::from)
}

/// The generated `prometheus.yml`. Strings are written as JSON strings, which YAML reads as
/// they are.
fn config_yaml(targets: &[ScrapeTarget], rule_files: &[PathBuf]) -> String {
    let quote = |s: &str| Value::from(s).to_string();
    let mut yaml = format!(
        "global:\n  scrape_interval: {INTERVAL}\n  scrape_timeout: {INTERVAL}\n  \
         evaluation_interval: {INTERVAL}\n"
    );
    yaml.push_str("rule_files:\n");
    for file in rule_files {
        yaml.push_str(&format!("  - {}\n", quote(&file.to_string_lossy())));
    }
    if rule_files.is_empty() {
        yaml.truncate(yaml.len() - "rule_files:\n".len());
    }
    let mut jobs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for target in targets {
        jobs.entry(&target.job).or_default().push(&target.address);
    }
    yaml.push_str("scrape_configs:\n");
    for (job, addresses) in jobs {
        let addresses = addresses.iter().map(|a| quote(a)).collect::<Vec<_>>();
        yaml.push_str(&format!(
            "  - job_name: {}\n    metrics_path: /metrics\n    static_configs:\n      \
             - targets: [{}]\n",
            quote(job),
            addresses.join(", ")
        ));
    }
    if targets.is_empty() {
        yaml.push_str("  []\n");
    }
    yaml
}

/// `<temp>/tenancy-prom-<owner>-<n>-<random>`, created.
fn create_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{n}-{random}", owner_tag()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Removes the directories of test processes that are gone, killing their Prometheus first.
fn sweep_stale() {
    for dir in stale_dirs(DIR_PREFIX) {
        let pid = std::fs::read_to_string(dir.join("prometheus.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        if let Some(pid) = pid
            && process_runs_in(pid, &dir, "cmdline")
        {
            signal(pid, "KILL");
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// One `GET` on 127.0.0.1:`port`: the status code and the body.
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The samples of a query's `data` (`resultType` and `result`).
fn samples(data: &Value) -> Result<Vec<Sample>, String> {
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("vector") => result
            .as_array()
            .ok_or("vector without result")?
            .iter()
            .map(|series| {
                Ok(Sample {
                    labels: string_map(&series["metric"]),
                    value: sample_value(&series["value"])?,
                })
            })
            .collect(),
        Some("matrix") => result
            .as_array()
            .ok_or("matrix without result")?
            .iter()
            .map(|series| {
                let last = series["values"]
                    .as_array()
                    .and_then(|values| values.last())
                    .ok_or("a series without values")?;
                Ok(Sample {
                    labels: string_map(&series["metric"]),
                    value: sample_value(last)?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: sample_value(result)?,
        }]),
        other => Err(format!("unexpected result type {other:?}: {data}")),
    }
}

/// The value of `[<time>, "<value>"]`.
fn sample_value(pair: &Value) -> Result<f64, String> {
    pair[1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("not a sample: {pair}"))
}

fn string_map(object: &Value) -> BTreeMap<String, String> {
    object
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn alert_rules(data: &Value) -> Result<Vec<AlertRule>, String> {
    let mut rules = Vec::new();
    for group in data["groups"].as_array().ok_or("no groups")? {
        let group_name = group["name"].as_str().unwrap_or_default();
        for rule in group["rules"].as_array().ok_or("a group without rules")? {
            if rule["type"] != "alerting" {
                continue;
            }
            let state = match rule["state"].as_str() {
                Some("firing") => AlertState::Firing,
                Some("pending") => AlertState::Pending,
                _ => AlertState::Inactive,
            };
            rules.push(AlertRule {
                group: group_name.to_owned(),
                name: rule["name"].as_str().unwrap_or_default().to_owned(),
                expr: rule["query"].as_str().unwrap_or_default().to_owned(),
                state,
                health: rule["health"].as_str().unwrap_or_default().to_owned(),
                last_error: rule["lastError"].as_str().unwrap_or_default().to_owned(),
                labels: string_map(&rule["labels"]),
                annotations: string_map(&rule["annotations"]),
                alerts: rule["alerts"]
                    .as_array()
                    .map(|alerts| alerts.iter().map(|a| string_map(&a["labels"])).collect())
                    .unwrap_or_default(),
            });
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_groups_targets_by_job_and_quotes_everything() {
        let config = config_yaml(
            &[
                ScrapeTarget::new("migrator", "127.0.0.1:1"),
                ScrapeTarget::new("auditor", "127.0.0.1:2"),
                ScrapeTarget::new("migrator", "127.0.0.1:3"),
            ],
            &[PathBuf::from("/x/alerts.yml")],
        );
        assert!(
            config.contains("rule_files:\n  - \"/x/alerts.yml\"\n"),
            "{config}"
        );
        assert!(
            config.contains("job_name: \"migrator\"\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"127.0.0.1:1\", \"127.0.0.1:3\"]"),
            "{config}"
        );
        assert!(config.contains("scrape_interval: 1s"), "{config}");
    }

    #[test]
    fn config_without_targets_or_rules_is_still_a_config() {
        let config = config_yaml(&[], &[]);
        assert!(!config.contains("rule_files"), "{config}");
        assert!(config.ends_with("scrape_configs:\n  []\n"), "{config}");
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(
            percent_encode(r#"sum(rate(x{a=~".*\\.dlq"}[1m]))"#),
            "sum%28rate%28x%7Ba%3D~%22.%2A%5C%5C.dlq%22%7D%5B1m%5D%29%29"
        );
    }

    #[test]
    fn samples_of_every_result_type() {
        let vector = serde_json::json!({"resultType": "vector", "result": [
            {"metric": {"queue": "a"}, "value": [1.0, "3"]}]});
        assert_eq!(
            samples(&vector),
            Ok(vec![Sample {
                labels: BTreeMap::from([("queue".to_owned(), "a".to_owned())]),
                value: 3.0
            }])
        );
        let scalar = serde_json::json!({"resultType": "scalar", "result": [1.0, "NaN"]});
        assert!(samples(&scalar).is_ok_and(|s| s.len() == 1 && s[0].value.is_nan()));
        let matrix = serde_json::json!({"resultType": "matrix", "result": [
            {"metric": {}, "values": [[1.0, "1"], [2.0, "+Inf"]]}]});
        assert!(samples(&matrix).is_ok_and(|s| s[0].value == f64::INFINITY));
    }
}
