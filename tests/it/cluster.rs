//! A RabbitMQ cluster: `AMQP_URL` lists its nodes, the services fail over between them, and
//! the quorum queues keep every message when a node dies. Each test runs on a private three-node
//! cluster of its own (`testkit::broker_cluster`): a node dies while events are audited, while
//! tenants are provisioned (and in `tenantctl`'s deploy tests, while a deploy runs).

use std::time::{Duration, Instant};

use domain::tenant::TenantSlug;
use testkit::broker_cluster::PrivateCluster;
use uuid::Uuid;

use crate::faults::survives;
use crate::provisioning::assert_provisioned;
use crate::support::{Env, LogCapture, registration};

/// Events of the flow the node dies in: enough that the publishing is still under way when the
/// first 100 are stored.
const EVENTS: usize = 1_000;

/// The node the services are connected to is killed (SIGKILL) while events are published and
/// audited: the services fail over to another node, and every event is stored exactly once.
/// The failover is reported as a warning naming the nodes, never as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_flow_loses_nothing_and_duplicates_nothing() {
    let logs = LogCapture::install(shared::telemetry::DEFAULT_LOG_FILTER);

    let started = Instant::now();
    let mut cluster = PrivateCluster::start().await;
    let formed_in = started.elapsed();
    let env = Env::with_broker(&cluster.amqp_urls()).await;

    let mut killed = None;
    let struck_while_publishing = survives(&env, EVENTS, 100, async {
        let connected = cluster.connected_nodes().await;
        assert_eq!(
            connected.len(),
            1,
            "the services share one connection, to one node: {connected:?}"
        );
        cluster.kill_node(connected[0]).await;
        killed = connected.first().copied();
    })
    .await;
    let killed = killed.unwrap_or_else(|| panic!("a node was killed"));
    assert!(
        struck_while_publishing,
        "the node died after the publishing ended: raise EVENTS"
    );

    let now = cluster.connected_nodes().await;
    assert!(
        !now.is_empty() && !now.contains(&killed),
        "connected to a surviving node after the kill of node {killed}: {now:?}"
    );
    let text = logs.text();
    let errors = logs.lines_at("ERROR");
    assert!(
        errors.is_empty(),
        "a failover logged errors:\n{}",
        errors.join("\n")
    );
    let lost_node = format!("127.0.0.1:{}", cluster.node(killed).amqp_port());
    assert!(
        logs.lines_at("WARN")
            .iter()
            .any(|line| line.contains("the connection to RabbitMQ was lost")
                && line.contains(&lost_node)),
        "the failover is a warning naming the lost node:\n{text}"
    );
    assert!(
        !text.contains("guest:guest@"),
        "a log line shows a password"
    );
    eprintln!(
        "cluster formed in {formed_in:?}; whole test {:?}",
        started.elapsed()
    );
    // The cluster goes first, and the namespace with it: the environment would otherwise delete
    // its quorum queues, and each deletion waits for the killed member (40 s in all, measured).
    drop(cluster);
    drop(env);
}

/// Registrations published and provisioned when the node the services are connected to is
/// killed: the publisher and the provisioner fail over, and every tenant ends active with each
/// step done, one admin and its schema at the latest version; no registration is lost, none
/// provisioned twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_provisioning_loses_no_tenant_and_provisions_none_twice() {
    const TENANTS: i64 = 150;
    let started = Instant::now();
    let mut cluster = PrivateCluster::start().await;
    let formed_in = started.elapsed();
    let env = Env::with_broker(&cluster.amqp_urls()).await;
    let (stop, provisioner) = env.start_provisioner();
    // Registrations arrive over a few seconds, as sign-ups do: the kill strikes while some
    // are still to be published.
    let bus = env.ctx.bus.clone();
    let publishing = tokio::spawn(async move {
        for i in 0..TENANTS {
            let event = bus.publisher().event(registration(&format!("kp_{i:03}")));
            bus.publisher()
                .publish(&event)
                .await
                .unwrap_or_else(|e| panic!("publishing registration {i}: {e}"));
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    });
    let active = || async {
        let mut conn = env.sql().await;
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tenants WHERE status = 'active'")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0)
    };
    testkit::wait_until(Duration::from_secs(120), "10 tenants active", || async {
        active().await >= 10
    })
    .await;
    let connected = cluster.connected_nodes().await;
    assert_eq!(
        connected.len(),
        1,
        "one connection, to one node: {connected:?}"
    );
    let struck_while_publishing = !publishing.is_finished();
    cluster.kill_node(connected[0]).await;
    let killed_at = started.elapsed();
    let active_at_kill = active().await;
    assert!(
        struck_while_publishing && active_at_kill < TENANTS,
        "the node died mid-provisioning ({active_at_kill} of {TENANTS} active, publishing \
         under way: {struck_while_publishing})"
    );
    publishing
        .await
        .unwrap_or_else(|e| panic!("publishing failed: {e}"));

    testkit::wait_until(Duration::from_secs(180), "every tenant active", || async {
        active().await == TENANTS
    })
    .await;
    let all_active_at = started.elapsed();
    let mut conn = env.sql().await;
    let tenants: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, slug FROM tenants")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        tenants.len() as i64,
        TENANTS,
        "one tenant row per registration"
    );
    for (tenant, slug) in &tenants {
        let slug = TenantSlug::parse(slug).unwrap_or_else(|e| panic!("{e}"));
        assert_provisioned(&env, *tenant, &slug).await;
    }
    eprintln!(
        "{active_at_kill} of {TENANTS} tenants active when the node was killed at {killed_at:?}; \
         cluster formed in {formed_in:?}; all active at {all_active_at:?}"
    );
    testkit::stop_service((stop, provisioner)).await;
    drop(cluster);
    drop(env);
}
