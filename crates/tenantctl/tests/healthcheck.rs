//! `tenantctl healthcheck`, as a container's health check runs it: healthy while `tenantctl up`
//! is ready, unhealthy once it has stopped.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::output_text as text;
use testkit::pg::TestDatabase;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_while_the_process_is_ready_and_unhealthy_once_it_stopped() {
    let database = TestDatabase::create().await;
    let namespace = testkit::unique_namespace();
    // A free port, listened on every interface, as in a container.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let health_addr = format!("0.0.0.0:{port}");
    let env = [
        ("DATABASE_URL", database.url()),
        ("AMQP_URL", BROKER.to_owned()),
        ("TENANCY_NAMESPACE", namespace.clone()),
        ("HEALTH_ADDR", health_addr.clone()),
        ("LOG_FORMAT", "json".to_owned()),
    ];
    let tenantctl = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        command.args(args).env_remove("MIGRATIONS_DIR");
        for (key, value) in &env {
            command.env(key, value);
        }
        command
    };
    let healthcheck = |args: &[&str]| -> Output {
        let mut args = args.to_vec();
        args.insert(0, "healthcheck");
        tenantctl(&args).output().unwrap_or_else(|e| panic!("{e}"))
    };

    // Before the process runs: unhealthy, and it says why.
    let before = healthcheck(&[]);
    assert_eq!(before.status.code(), Some(1), "{}", text(&before));
    assert!(
        text(&before).contains("is the process running?"),
        "{}",
        text(&before)
    );

    let mut up = tenantctl(&["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // HEALTH_ADDR (0.0.0.0:port) is read from the environment and asked on loopback.
    testkit::wait_until(
        Duration::from_secs(60),
        "healthcheck says healthy",
        || async { healthcheck(&[]).status.success() },
    )
    .await;
    let ready = healthcheck(&[]);
    assert!(
        text(&ready).starts_with("healthy: /readyz"),
        "{}",
        text(&ready)
    );
    assert!(text(&ready).contains("\"ready\":true"), "{}", text(&ready));
    let live = healthcheck(&["--live", "--addr", &format!("127.0.0.1:{port}")]);
    assert!(live.status.success(), "{}", text(&live));
    assert!(
        text(&live).starts_with("healthy: /healthz"),
        "{}",
        text(&live)
    );

    let _ = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status();
    let stopped = tokio::task::spawn_blocking(move || up.wait())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stopped.success(), "tenantctl up stops cleanly on SIGTERM");
    let after = healthcheck(&[]);
    assert_eq!(after.status.code(), Some(1), "{}", text(&after));
    assert!(
        text(&after).starts_with("unhealthy: /readyz"),
        "{}",
        text(&after)
    );

    testkit::broker::delete_topology_now(BROKER, &namespace);
}
