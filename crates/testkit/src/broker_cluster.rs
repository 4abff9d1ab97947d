//! A private three-node RabbitMQ cluster for failover tests: [`PrivateCluster`].
//!
//! Three [`PrivateBroker`] nodes (each with its own name, ports and directory, see
//! [`crate::broker`]) sharing one Erlang cookie, the second and third joined to the first with
//! `rabbitmqctl join_cluster`. [`PrivateCluster::start`] returns once `cluster_status` shows the
//! three nodes running: quorum queues declared before that would get fewer replicas than the
//! cluster has nodes, and a node loss could then take a queue's majority with it.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::broker::PrivateBroker;

/// How long the joined nodes may take to all show as running.
const FORMING_TIMEOUT: Duration = Duration::from_secs(60);

/// Three RabbitMQ nodes of the test's own forming one cluster, killed and removed on drop.
#[derive(Debug)]
pub struct PrivateCluster {
    nodes: Vec<PrivateBroker>,
}

impl PrivateCluster {
    /// How many nodes: the smallest cluster in which a quorum queue survives losing one.
    pub const SIZE: usize = 3;

    /// Boots the nodes (at once), joins them and waits until all three run as one cluster.
    /// Panics, with the nodes' logs, if they cannot form it.
    pub async fn start() -> PrivateCluster {
        let cookie = uuid::Uuid::new_v4().simple().to_string();
        let nodes = join_all(
            (0..Self::SIZE).map(|_| PrivateBroker::start_with_cookie(Some(cookie.clone()))),
        )
        .await;
        let cluster = PrivateCluster { nodes };
        let first = cluster.nodes[0].node().to_owned();
        let joining = &cluster.nodes[1..];
        // A node joins with its broker application stopped; `join_cluster` itself is one
        // at a time, as each changes the cluster's membership.
        join_all(joining.iter().map(PrivateBroker::stop_app)).await;
        for node in joining {
            node.rabbitmqctl(&["join_cluster", &first]).await;
        }
        join_all(joining.iter().map(PrivateBroker::start_app)).await;
        cluster.wait_formed().await;
        cluster
    }

    /// Every node's URL, comma-separated, in node order: what `AMQP_URL` is set to.
    pub fn amqp_urls(&self) -> String {
        self.nodes
            .iter()
            .map(PrivateBroker::amqp_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i` (0, 1 or 2).
    pub fn node(&self, i: usize) -> &PrivateBroker {
        &self.nodes[i]
    }

    /// Kills node `i` (SIGKILL), as a crash would; returns once it is gone.
    pub async fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill().await;
    }

    /// Stops node `i` cleanly (`rabbitmqctl stop`); returns once it is gone.
    pub async fn stop_node(&mut self, i: usize) {
        self.nodes[i].stop().await;
    }

    /// Starts node `i` again after [`kill_node`](Self::kill_node) or
    /// [`stop_node`](Self::stop_node); it rejoins the cluster with its data.
    pub async fn start_node(&mut self, i: usize) {
        self.nodes[i].start_again().await;
    }

    /// The nodes that hold client connections right now, by index (the AMQP port each
    /// connection came in on tells the node).
    pub async fn connected_nodes(&self) -> Vec<usize> {
        let out = self
            .any_running()
            .rabbitmqctl(&["list_connections", "--no-table-headers", "port"])
            .await;
        let ports: Vec<u16> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        (0..Self::SIZE)
            .filter(|&i| ports.contains(&self.nodes[i].amqp_port()))
            .collect()
    }

    /// The node names `cluster_status` reports running.
    pub async fn running_nodes(&self) -> Vec<String> {
        let out = self
            .any_running()
            .rabbitmqctl(&["cluster_status", "--formatter", "json"])
            .await;
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|status| {
                status["running_nodes"].as_array().map(|nodes| {
                    nodes
                        .iter()
                        .filter_map(|node| node.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    fn any_running(&self) -> &PrivateBroker {
        self.nodes
            .iter()
            .find(|node| node.is_running())
            .unwrap_or_else(|| panic!("no node of the private cluster is running"))
    }

    async fn wait_formed(&self) {
        let deadline = Instant::now() + FORMING_TIMEOUT;
        loop {
            let running = self.running_nodes().await;
            if running.len() == Self::SIZE {
                return;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|node| format!("--- {} ---\n{}", node.node(), node.log_tail(20)))
                    .collect();
                panic!(
                    "the private RabbitMQ cluster did not form within {FORMING_TIMEOUT:?}: running {running:?}\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for PrivateCluster {
    /// Kills every node at once: a clean `stop` of three clustered nodes one after the other
    /// takes seconds each, and their data is removed anyway.
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill_without_waiting();
        }
    }
}
