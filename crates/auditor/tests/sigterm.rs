//! The auditor binary stopped with SIGTERM in the middle of a stream, then started again:
//! every event is stored exactly once, and its logs carry no personal data.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use domain::message::{Event as _, TenantRegistered};
use shared::bus::Topology;
use shared::config::Config;
use shared::service::Context;
use sqlx::Connection as _;
use testkit::pg::TestDatabase;
use tokio_util::sync::CancellationToken;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
// Large enough that the auditor (about 20,000 events/s) is still busy when SIGTERM lands.
const EVENTS: usize = 20_000;

fn auditor(database_url: &str, namespace: &str, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_auditor"))
        .env("DATABASE_URL", database_url)
        .env("AMQP_URL", BROKER)
        .env("TENANCY_NAMESPACE", namespace)
        .env("HEALTH_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap_or_else(|e| panic!("{e}")))
        .spawn()
        .unwrap_or_else(|e| panic!("starting the auditor binary: {e}"))
}

async fn stored(database_url: &str) -> HashMap<uuid::Uuid, i64> {
    let Ok(mut conn) = sqlx::PgConnection::connect(database_url).await else {
        return HashMap::new();
    };
    sqlx::query_as::<_, (uuid::Uuid, i64)>("SELECT id, count(*) FROM audit_events GROUP BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_loses_nothing_and_stores_nothing_twice() {
    let database = TestDatabase::create().await;
    let namespace = testkit::unique_namespace();
    let values = HashMap::from([
        ("DATABASE_URL", database.url()),
        ("AMQP_URL", BROKER.to_owned()),
        ("TENANCY_NAMESPACE", namespace.clone()),
    ]);
    let config = Config::from_lookup(|k| values.get(k).cloned()).unwrap_or_else(|e| panic!("{e}"));
    let ctx = Context::connect(config, "sigterm-test", &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("is RabbitMQ running? {e}"));
    ctx.apply_platform_migrations()
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The queue is full before the auditor starts.
    let publisher = ctx.bus.publisher().clone();
    let mut ids = Vec::with_capacity(EVENTS);
    let mut publishing = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..EVENTS {
        let data = TenantRegistered::from_data(&serde_json::json!({
            "tenant_id": uuid::Uuid::new_v4(), "slug": format!("co_{i:05}"), "name": "Acme Towers",
            "admin": { "email": "ana.lima@acme.example", "name": "Ana Lima" },
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let event = publisher.event(data);
        ids.push(event.id);
        let (publisher, permit) = (
            publisher.clone(),
            permits
                .clone()
                .acquire_owned()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        publishing.spawn(async move {
            publisher
                .publish(&event)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            drop(permit);
        });
    }
    while let Some(done) = publishing.join_next().await {
        done.unwrap_or_else(|e| panic!("{e}"));
    }

    let logs = std::env::temp_dir().join(format!("auditor-sigterm-{namespace}"));
    let first_log = logs.with_extension("1.log");
    let mut first = auditor(&database.url(), &namespace, &first_log);
    testkit::wait_until(
        Duration::from_secs(60),
        "the auditor stored some events",
        || async { stored(&database.url()).await.len() >= 500 },
    )
    .await;
    let pid = first.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || first.wait())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        exit.as_ref().is_ok_and(|s| s.success()),
        "the auditor exits cleanly on SIGTERM: {exit:?}"
    );
    let after_stop = stored(&database.url()).await.len();
    assert!(
        after_stop < EVENTS,
        "stopped mid-stream ({after_stop} of {EVENTS} stored)"
    );

    let second_log = logs.with_extension("2.log");
    let mut second = auditor(&database.url(), &namespace, &second_log);
    testkit::wait_until(Duration::from_secs(120), "every event stored", || async {
        stored(&database.url()).await.len() >= EVENTS
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || second.wait()).await;

    let rows = stored(&database.url()).await;
    assert_eq!(rows.len(), EVENTS);
    assert!(
        ids.iter().all(|id| rows.get(id) == Some(&1)),
        "every event exactly once"
    );
    for log in [&first_log, &second_log] {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            text.contains("shutdown requested") || log == &second_log,
            "{text}"
        );
        assert!(
            !text.contains("ana.lima") && !text.contains("Ana Lima"),
            "no personal data in the logs"
        );
        let _ = std::fs::remove_file(log);
    }

    let channel = ctx.bus.channel().await.unwrap_or_else(|e| panic!("{e}"));
    let _ = Topology::new(namespace).delete(&channel).await;
    ctx.bus.close().await;
}
