//! A RabbitMQ cluster: `AMQP_URL` lists its nodes, the services fail over between them, and
//! the quorum queues keep every message when a node dies. The test runs on a private three-node
//! cluster (`testkit::broker_cluster`).

use std::time::Instant;

use testkit::broker_cluster::PrivateCluster;
use testkit::pg::TestDatabase;

use crate::faults::survives;
use crate::support::{Env, LogCapture};

/// Events of the flow the node dies in: enough that the publishing is still under way when the
/// first 100 are stored.
const EVENTS: usize = 1_000;

/// The node the services are connected to is killed (SIGKILL) while events are published and
/// audited: the services fail over to another node, and every event is stored exactly once.
/// The failover is reported as a warning naming the nodes, never as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_flow_loses_nothing_and_duplicates_nothing() {
    let logs = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(logs.clone())
        .with_env_filter(shared::telemetry::DEFAULT_LOG_FILTER)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);

    let started = Instant::now();
    let mut cluster = PrivateCluster::start().await;
    let formed_in = started.elapsed();
    let database = TestDatabase::create().await;
    let url = database.url();
    let env = Env::on(Some(database), &url, &cluster.amqp_urls()).await;

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
    let errors: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        errors.is_empty(),
        "a failover logged errors:\n{}",
        errors.join("\n")
    );
    let lost_node = format!("127.0.0.1:{}", cluster.node(killed).amqp_port());
    assert!(
        text.lines().any(|line| line.contains("\"level\":\"WARN\"")
            && line.contains("the connection to RabbitMQ was lost")
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
