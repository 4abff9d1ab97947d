//! The auditor binary exporting its traces and metrics to a local OTLP receiver over TLS, as it
//! would to a hosted back end: http/protobuf and gRPC, with a token header and gzip, and an
//! endpoint whose certificate is not trusted (nothing sent, one warning, the service unharmed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use domain::message::{Event as _, TenantRegistered};
use shared::bus::Topology;
use shared::config::Config;
use shared::service::Context;
use sqlx::Connection as _;
use testkit::otlp::{OtlpReceiver, Received, Security, Signal, Transport};
use testkit::pg::TestDatabase;
use tokio_util::sync::CancellationToken;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const TOKEN: &str = "s3cr3t-otlp-token";
const WAIT: Duration = Duration::from_secs(30);

/// A platform database and namespace of the test's own, with one event waiting in the
/// auditor's queue.
struct Fleet {
    database: TestDatabase,
    namespace: String,
    ctx: Context,
    logs: testkit::ScratchDir,
}

impl Fleet {
    async fn with_one_event() -> Self {
        let database = TestDatabase::create().await;
        let namespace = testkit::unique_namespace();
        let values = HashMap::from([
            ("DATABASE_URL", database.url()),
            ("AMQP_URL", BROKER.to_owned()),
            ("TENANCY_NAMESPACE", namespace.clone()),
        ]);
        let config =
            Config::from_lookup(|k| values.get(k).cloned()).unwrap_or_else(|e| panic!("{e}"));
        let ctx = Context::connect(config, "otlp-test", &CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("is RabbitMQ running? {e}"));
        ctx.apply_platform_migrations()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let publisher = ctx.bus.publisher().clone();
        let data = TenantRegistered::from_data(&serde_json::json!({
            "tenant_id": uuid::Uuid::new_v4(), "slug": "co_otlp", "name": "Acme Towers",
            "admin": { "email": "ana.lima@acme.example", "name": "Ana Lima" },
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        publisher
            .publish(&publisher.event(data))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Fleet {
            database,
            namespace,
            ctx,
            logs: testkit::ScratchDir::new(),
        }
    }

    /// Starts the auditor binary with `otel` on top of its usual environment.
    fn auditor(&self, otel: &[(&str, &str)]) -> Auditor {
        let log = self.logs.path().join("auditor.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_auditor"));
        command
            .env("DATABASE_URL", self.database.url())
            .env("AMQP_URL", BROKER)
            .env("TENANCY_NAMESPACE", &self.namespace)
            .env("HEALTH_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", shared::telemetry::DEFAULT_LOG_FILTER)
            // Fast enough for a test: metrics every 0.5 s, spans batched for 0.1 s.
            .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .envs(otel.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}")));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting the auditor binary: {e}"));
        Auditor { child, log }
    }

    async fn stored(&self) -> i64 {
        let Ok(mut conn) = sqlx::PgConnection::connect(&self.database.url()).await else {
            return 0;
        };
        sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0)
    }

    async fn clean_up(self) {
        let channel = self
            .ctx
            .bus
            .channel()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = Topology::new(self.namespace).delete(&channel).await;
        self.ctx.bus.close().await;
    }
}

struct Auditor {
    child: Child,
    log: PathBuf,
}

impl Auditor {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then a clean exit (after its final flush).
    async fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let exit = tokio::task::spawn_blocking(move || self.child.wait())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            exit.as_ref().is_ok_and(|s| s.success()),
            "the auditor exits cleanly: {exit:?}\n{log}"
        );
        log
    }
}

/// Waits until the receiver has the auditor's span for the event and its stored-events counter.
async fn wait_for_traces_and_metrics(receiver: &OtlpReceiver, auditor: &Auditor) -> Vec<Received> {
    let has = |signal: Signal, wanted: &dyn Fn(&Received) -> bool| {
        receiver
            .received()
            .iter()
            .any(|r| r.signal == signal && wanted(r))
    };
    testkit::wait_until(
        WAIT,
        "the auditor's process span and events counter at the receiver",
        || async {
            let done = has(Signal::Traces, &|r| {
                r.span_names.iter().any(|n| n.starts_with("process "))
            }) && has(Signal::Metrics, &|r| {
                r.metric_names.iter().any(|n| n == "tenancy.audit.events")
            });
            if !done && auditor.log().contains("OTLP export is failing") {
                panic!("export failed:\n{}", auditor.log());
            }
            done
        },
    )
    .await;
    receiver.received()
}

fn assert_exported_as(received: &[Received], transport: Transport, service_name: &str) {
    for request in received {
        assert_eq!(request.transport, transport, "{request:?}");
        assert_eq!(request.service_names, [service_name], "{request:?}");
        assert!(
            request
                .instance_ids
                .iter()
                .all(|id| uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4)),
            "service.instance.id is a UUID v4: {request:?}"
        );
        assert_eq!(request.instance_ids.len(), 1, "{request:?}");
        assert_eq!(
            request.headers.get("x-otlp-token").map(String::as_str),
            Some(TOKEN),
            "OTEL_EXPORTER_OTLP_HEADERS reaches the receiver: {request:?}"
        );
    }
    let instances: std::collections::BTreeSet<_> =
        received.iter().flat_map(|r| &r.instance_ids).collect();
    assert_eq!(
        instances.len(),
        1,
        "one instance id per process: {instances:?}"
    );
}

fn ca(receiver: &OtlpReceiver) -> &str {
    receiver
        .ca_file()
        .to_str()
        .unwrap_or_else(|| panic!("UTF-8"))
}

fn assert_no_secret(log: &str) {
    assert!(
        !log.contains(TOKEN),
        "the header's value is never logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_http_protobuf_with_a_token_and_gzip() {
    let receiver = OtlpReceiver::start(Security::Tls).await;
    let fleet = Fleet::with_one_event().await;
    let headers = format!("x-otlp-token={TOKEN}");
    let auditor = fleet.auditor(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_HEADERS", &headers),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("SSL_CERT_FILE", ca(&receiver)),
    ]);
    let received = wait_for_traces_and_metrics(&receiver, &auditor).await;
    let log = auditor.stop().await;

    assert_exported_as(&received, Transport::Http, "auditor");
    for request in &received {
        assert_eq!(
            request.headers.get("content-encoding").map(String::as_str),
            Some("gzip")
        );
        assert_eq!(
            request.headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf")
        );
    }
    assert!(log.contains("exporting over OTLP"), "{log}");
    assert!(!log.contains("OTLP export is failing"), "{log}");
    assert_no_secret(&log);
    fleet.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_grpc_with_a_token_and_gzip() {
    let receiver = OtlpReceiver::start(Security::Tls).await;
    let fleet = Fleet::with_one_event().await;
    let headers = format!("x-otlp-token={TOKEN}");
    let auditor = fleet.auditor(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_HEADERS", &headers),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_SERVICE_NAME", "audit-trail"),
        ("SSL_CERT_FILE", ca(&receiver)),
    ]);
    let received = wait_for_traces_and_metrics(&receiver, &auditor).await;
    let log = auditor.stop().await;

    assert_exported_as(&received, Transport::Grpc, "audit-trail");
    for request in &received {
        assert_eq!(
            request.headers.get("grpc-encoding").map(String::as_str),
            Some("gzip")
        );
    }
    assert!(!log.contains("OTLP export is failing"), "{log}");
    assert_no_secret(&log);
    fleet.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_sends_nothing_and_warns_once() {
    let receiver = OtlpReceiver::start(Security::Tls).await;
    let fleet = Fleet::with_one_event().await;
    let elsewhere = testkit::ScratchDir::new();
    let unrelated = testkit::otlp::unrelated_ca(elsewhere.path());
    let auditor = fleet.auditor(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
        ("SSL_CERT_FILE", path(&unrelated)),
    ]);

    testkit::wait_until(WAIT, "the auditor stored the event", || async {
        fleet.stored().await == 1
    })
    .await;
    testkit::wait_until(WAIT, "the export warning", || async {
        auditor.log().contains("OTLP export is failing")
    })
    .await;
    // Several more metric intervals fail meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = auditor.stop().await;

    assert!(receiver.received().is_empty(), "{:?}", receiver.received());
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning, nothing else:\n{log}");
    assert!(
        warnings[0].contains("OTLP export is failing") && warnings[0].contains("certificate"),
        "the warning says why: {}",
        warnings[0]
    );
    fleet.clean_up().await;
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("UTF-8"))
}

#[test]
fn a_bad_otlp_setting_stops_the_start_naming_the_variable() {
    for (variable, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_auditor"))
            .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
            .env(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:1/unreachable",
            )
            .env("HEALTH_ADDR", "127.0.0.1:0")
            .env(variable, value)
            .stdout(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("starting the auditor binary: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains(&format!("{variable}: ")), "{stderr}");
    }
}
