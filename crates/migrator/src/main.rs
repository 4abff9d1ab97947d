//! The migrator as its own process. See the crate documentation.

use shared::config::Config;
use shared::service::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let telemetry = shared::telemetry::init(&config.otel, "migrator", config.log_format)?;
    let shutdown = shared::shutdown::on_signal();
    let ctx = Context::connect(config, "migrator", &shutdown).await?;
    let health =
        shared::health::spawn(ctx.config.health_addr, ctx.health.clone(), shutdown.clone()).await?;
    ctx.wait_for_platform_schema(&shutdown).await?;
    let result = migrator::run(ctx.clone(), shutdown.clone()).await;
    shutdown.cancel();
    let _ = health.await;
    ctx.bus.close().await;
    telemetry.shutdown();
    result
}
