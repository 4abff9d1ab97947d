//! Connecting a command to the broker: unlike a service, a command does not wait for a broker
//! that is down; it gives up after a while and says so.

use std::time::Duration;

use shared::bus::{Bus, Topology};
use shared::config::Config;
use tokio_util::sync::CancellationToken;

/// How long a command waits for RabbitMQ to answer.
const BROKER_WAIT: Duration = Duration::from_secs(30);

/// The bus of `config`'s broker and namespace, as the `tenantctl` process.
///
/// # Errors
/// The broker refused, or did not answer within [`BROKER_WAIT`].
pub async fn bus(config: &Config) -> anyhow::Result<Bus> {
    let shutdown = CancellationToken::new();
    let connect = Bus::connect(
        &config.amqp_url,
        Topology::new(config.namespace.clone()),
        "tenantctl",
        "tenantctl",
        &shutdown,
    );
    Ok(tokio::time::timeout(BROKER_WAIT, connect)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "RabbitMQ at {} did not answer within {}s",
                config.amqp_url,
                BROKER_WAIT.as_secs()
            )
        })??)
}
