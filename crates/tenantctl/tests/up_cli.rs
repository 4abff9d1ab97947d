//! The quick start, as a new user runs it: `tenantctl up`, publish an event, see it in
//! `tenantctl audit`, stop with SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use testkit::pg::TestDatabase;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_then_publish_then_audit_then_sigterm() {
    let database = TestDatabase::create().await;
    let namespace = testkit::unique_namespace();
    let env = [
        ("DATABASE_URL", database.url()),
        ("AMQP_URL", BROKER.to_owned()),
        ("TENANCY_NAMESPACE", namespace.clone()),
        ("HEALTH_ADDR", "127.0.0.1:0".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let tenantctl = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        command.args(args).env_remove("MIGRATIONS_DIR");
        for (key, value) in &env {
            command.env(key, value);
        }
        command
    };

    let mut up = tenantctl(&["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = up
        .stderr
        .take()
        .unwrap_or_else(|| panic!("stderr is piped"));
    let (lines, logged) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // The health address is logged once bound (port 0 picks a free one).
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        let line = logged
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no health address logged: {log:?}"));
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        log.push(line);
        if parsed["message"] == "health and metrics endpoints on /healthz, /readyz and /metrics" {
            break parsed["address"].as_str().unwrap_or_default().to_owned();
        }
    };
    testkit::wait_until(Duration::from_secs(30), "tenantctl up is ready", || {
        let address = address.clone();
        async move {
            testkit::http_get(&address, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        }
    })
    .await;

    let published = tenantctl(&[
        "event",
        "publish",
        "tenant.registered",
        "--data",
        r#"{"tenant_id":"6f1d2c3b-1111-4222-8333-944455556666","slug":"acme_towers","name":"Acme Towers","admin":{"email":"ana@acme.example","name":"Ana Lima"}}"#,
    ])
    .output()
    .unwrap_or_else(|e| panic!("{e}"));
    let out = String::from_utf8_lossy(&published.stdout).to_string();
    assert!(
        published.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let id = out.split_whitespace().last().unwrap_or_default().to_owned();

    testkit::wait_until(
        Duration::from_secs(30),
        "the event is in the audit trail",
        || {
            let (id, audit) = (
                id.clone(),
                tenantctl(&["audit", "--tenant", "6f1d2c3b-1111-4222-8333-944455556666"]).output(),
            );
            async move { audit.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&id)) }
        },
    )
    .await;
    let audit = tenantctl(&["audit", "--output", "json"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let trail = String::from_utf8_lossy(&audit.stdout);
    assert!(
        trail.contains("\"redacted\":true") && !trail.contains("ana@acme.example"),
        "{trail}"
    );

    let dlq = tenantctl(&["dlq", "list", "auditor"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        String::from_utf8_lossy(&dlq.stdout).contains(": 0 message(s)"),
        "{}",
        String::from_utf8_lossy(&dlq.stdout)
    );

    let killed = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || up.wait())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        exit.as_ref().is_ok_and(|s| s.success()),
        "tenantctl up stops cleanly: {exit:?}"
    );
    // The process has exited: its last lines are still on their way through the reader thread,
    // which ends (closing the channel) at the end of the pipe.
    let mut rest = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(line) = logged.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:?}");
    assert!(
        !rest
            .iter()
            .chain(&log)
            .any(|l| l.contains("ana@acme") || l.contains("Ana Lima")),
        "no personal data logged"
    );

    let purge = tenantctl(&["dlq", "purge", "auditor"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        String::from_utf8_lossy(&purge.stdout).contains("is empty"),
        "nothing to purge"
    );

    // Remove this test's namespace.
    let connection = lapin::Connection::connect(BROKER, lapin::ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let channel = connection
        .create_channel()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = shared::bus::Topology::new(namespace).delete(&channel).await;
}
