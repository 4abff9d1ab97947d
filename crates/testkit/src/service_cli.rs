//! The command line every service binary answers without starting: `--help`, `--version`, and a
//! refusal of unknown flags. Each service's `tests/cli.rs` checks its
//! [`ServiceBinary`] (`env!("CARGO_BIN_EXE_<name>")`, known only inside that crate's tests).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a binary may take to answer: far more than printing needs, far less than a service
/// waiting for its servers.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Runs `binary` with every server unreachable; a run that outlives [`ANSWER_WITHIN`] (the
/// service started and is waiting for them) is killed and fails the test.
fn run(binary: &str, name: &str, args: &[&str]) -> Output {
    let unreachable = "postgres://postgres@127.0.0.1:1/unreachable";
    let mut child = Command::new(binary)
        .args(args)
        .env("DATABASE_URL", unreachable)
        .env("TENANT_DATABASE_URL", unreachable)
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("HEALTH_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let started = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if started.elapsed() > ANSWER_WITHIN {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            panic!(
                "`{name} {}` was still running after {ANSWER_WITHIN:?}: it started instead of answering\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

/// A service binary, as its crate's tests see it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceBinary<'a> {
    /// `env!("CARGO_BIN_EXE_<name>")`.
    pub path: &'a str,
    pub name: &'a str,
    /// `env!("CARGO_PKG_VERSION")`.
    pub version: &'a str,
}

impl ServiceBinary<'_> {
    /// `--help` describes the service and the environment it reads, without connecting.
    pub fn assert_help(&self) {
        let help = run(self.path, self.name, &["--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{text}");
        for needle in [
            &format!("Usage: {}", self.name)[..],
            "DATABASE_URL",
            "AMQP_URL",
            "TENANCY_NAMESPACE",
        ] {
            assert!(text.contains(needle), "{needle} in:\n{text}");
        }
    }

    /// `--version` prints `<name> <version>`, without connecting.
    pub fn assert_version(&self) {
        let printed = run(self.path, self.name, &["--version"]);
        assert!(printed.status.success());
        assert_eq!(
            String::from_utf8_lossy(&printed.stdout).trim(),
            format!("{} {}", self.name, self.version)
        );
    }

    /// An unknown flag is refused (exit 2) naming it, without connecting.
    pub fn assert_refuses_unknown_flags(&self) {
        let refused = run(self.path, self.name, &["--bogus"]);
        assert_eq!(refused.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("--bogus"));
    }
}
