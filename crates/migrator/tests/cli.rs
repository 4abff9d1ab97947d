//! `migrator --help` and `--version` answer without starting the service: nothing connects, even
//! with every server unreachable.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with unreachable servers; a run that outlives `within` (the service started
/// and is waiting for them) is killed and fails the test.
fn migrator(args: &[&str], within: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_migrator"))
        .args(args)
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/unreachable",
        )
        .env(
            "TENANT_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/unreachable",
        )
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("HEALTH_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting migrator: {e}"));
    let started = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if started.elapsed() > within {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            panic!(
                "`migrator {}` was still running after {within:?}: it started instead of answering\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn help_describes_the_service_and_its_environment_without_connecting() {
    let output = migrator(&["--help"], Duration::from_secs(10));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for needle in [
        "Usage: migrator",
        "DATABASE_URL",
        "AMQP_URL",
        "TENANCY_NAMESPACE",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
}

#[test]
fn version_prints_the_version_without_connecting() {
    let output = migrator(&["--version"], Duration::from_secs(10));
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("migrator {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_flag_is_refused_without_connecting() {
    let output = migrator(&["--bogus"], Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--bogus"));
}
