//! Faults: the broker dropping every connection or restarting, PostgreSQL going away, a broker
//! that is not up yet. Each test runs against servers of its own (`testkit::broker`,
//! `testkit::cluster`), so stopping them disturbs no other test.

use std::sync::Arc;
use std::time::Duration;

use shared::bus::{Bus, Topology};
use shared::config::SecretUrl;
use testkit::broker::PrivateBroker;
use testkit::cluster::PrivatePostgres;
use testkit::pg::TestDatabase;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::{Env, publish_many, registration};

/// Publishes `total` events while `fault` strikes once `strike_at` of them are stored, then
/// checks every published event is stored exactly once. Returns whether the publishing was
/// still under way when the fault struck (else only the consuming was).
pub(crate) async fn survives(
    env: &Env,
    total: usize,
    strike_at: i64,
    fault: impl std::future::Future<Output = ()>,
) -> bool {
    let (stop, auditor) = env.start_auditor();
    let bus = env.ctx.bus.clone();
    let publishing = tokio::spawn(async move {
        publish_many(&bus, total, |i| registration(&format!("co_{i:05}"))).await
    });
    env.wait_for_audit_count(strike_at, Duration::from_secs(120))
        .await;
    let struck_while_publishing = !publishing.is_finished();
    fault.await;
    let published = publishing
        .await
        .unwrap_or_else(|e| panic!("publishing failed: {e}"));
    let expected = i64::try_from(total).unwrap_or(i64::MAX);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let stored = env.audit_count().await;
        if stored >= expected {
            break;
        }
        // An auditor that gave up never catches up: say so now, with its reason.
        if auditor.is_finished() {
            let ended = auditor.await;
            panic!("the auditor stopped with {stored} of {expected} events stored: {ended:?}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stored} of {expected} events stored after 180 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_stored_exactly_once(env, &published).await;
    testkit::stop_service((stop, auditor)).await;
    struck_while_publishing
}

/// Every event of `published`, and nothing else, is in the audit trail once (after a moment
/// for a late duplicate to show).
async fn assert_stored_exactly_once(env: &Env, published: &[Uuid]) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = env.audit_ids().await;
    let missing = published
        .iter()
        .filter(|id| !stored.contains_key(id))
        .count();
    let duplicated = stored.values().filter(|n| **n > 1).count();
    assert_eq!(
        (missing, duplicated, stored.len()),
        (0, 0, published.len()),
        "every event stored exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_broker_connections_closed_while_ten_thousand_events_flow() {
    let broker = PrivateBroker::start().await;
    let env = Env::with_broker(&broker.amqp_url()).await;
    survives(&env, 10_000, 2_000, async {
        let closed = broker.close_all_connections().await;
        assert!(
            closed >= 1,
            "the publisher's and the consumer's connection were closed"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_stopped_and_started_while_events_flow() {
    let broker = PrivateBroker::start().await;
    let env = Env::with_broker(&broker.amqp_url()).await;
    survives(&env, 10_000, 2_000, async {
        broker.stop_app().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        broker.start_app().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_unavailable_for_a_while_loses_nothing() {
    let mut postgres = PrivatePostgres::start().await;
    let url = format!("postgres://postgres@127.0.0.1:{}/tenancy", postgres.port());
    let env = Env::on(None, &url, crate::support::SHARED_BROKER).await;
    survives(&env, 3_000, 500, async {
        postgres.stop().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        postgres.start_again().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_at_start_is_waited_for() {
    let broker = PrivateBroker::start().await;
    broker.stop_app().await;
    let url = SecretUrl::new(broker.amqp_url());
    let shutdown = CancellationToken::new();
    let namespace = crate::support::unique_namespace();
    let connecting = tokio::spawn({
        let (url, shutdown, namespace) = (url.clone(), shutdown.clone(), namespace.clone());
        async move { Bus::connect(&url, Topology::new(namespace), "e2e", "e2e", &shutdown).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !connecting.is_finished(),
        "still waiting while the broker is down"
    );
    broker.start_app().await;
    let bus = tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .unwrap_or_else(|_| panic!("connected once the broker came up"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let bus = Arc::new(bus);
    let ids = publish_many(&bus, 3, |_| {
        registration(&format!(
            "late_{}",
            &Uuid::new_v4().simple().to_string()[..8]
        ))
    })
    .await;
    assert_eq!(ids.len(), 3);
    bus.close().await;

    // And a shutdown while waiting ends the wait.
    broker.stop_app().await;
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let refused = Bus::connect(&url, Topology::new(namespace), "e2e", "e2e", &cancelled).await;
    assert!(
        matches!(refused, Err(shared::bus::BusError::Cancelled)),
        "{refused:?}"
    );
}

/// A broker restart that the services recover from by themselves is a warning, not an error:
/// nothing in the default log configuration says ERROR (lapin's own I/O-loop errors included),
/// and the lost connection is reported once, as a WARN, by the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_broker_restart_logs_warnings_not_errors() {
    let logs = crate::support::LogCapture::install(shared::telemetry::DEFAULT_LOG_FILTER);

    let broker = PrivateBroker::start().await;
    let env = Env::with_broker(&broker.amqp_url()).await;
    survives(&env, 2_000, 500, async {
        broker.restart_app().await;
    })
    .await;

    let errors = logs.lines_at("ERROR");
    assert!(
        errors.is_empty(),
        "a recovered outage logged errors:\n{}",
        errors.join("\n")
    );
    assert!(
        logs.lines_at("WARN")
            .iter()
            .any(|line| line.contains("RabbitMQ")),
        "the outage is reported as a warning:\n{}",
        logs.text()
    );
}

/// `AMQP_URL` listing two nodes: when the node the services are connected to stops, they
/// connect to the other (declaring the topology there) and carry on; nothing published after
/// the failover is lost or stored twice. The nodes are not clustered, so each phase lets the
/// auditor catch up before a node stops (a cluster's quorum queues would keep what a stopped
/// node held).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_nodes_listed_the_services_fail_over_when_theirs_stops() {
    let (first, second) = tokio::join!(PrivateBroker::start(), PrivateBroker::start());
    let database = TestDatabase::create().await;
    let url = database.url();
    let nodes = format!("{},{}", first.amqp_url(), second.amqp_url());
    let env = Env::on(Some(database), &url, &nodes).await;
    let (stop, auditor) = env.start_auditor();
    let mut published = Vec::new();
    let phase = |round: usize| {
        let bus = env.ctx.bus.clone();
        async move { publish_many(&bus, 100, |i| registration(&format!("fo_{round}_{i:03}"))).await }
    };
    published.extend(phase(0).await);
    env.wait_for_audit_count(100, Duration::from_secs(60)).await;
    // Whichever node the services use, after these two stops they have used the other.
    first.stop_app().await;
    published.extend(phase(1).await);
    env.wait_for_audit_count(200, Duration::from_secs(60)).await;
    first.start_app().await;
    second.stop_app().await;
    published.extend(phase(2).await);
    env.wait_for_audit_count(300, Duration::from_secs(60)).await;
    assert_stored_exactly_once(&env, &published).await;
    testkit::stop_service((stop, auditor)).await;
}
