//! The migrator as its own process. See the crate documentation.

use clap::Parser as _;
use shared::config::Config;
use shared::service::Context;

/// Applies tenant migrations on `migrate.tenant` (deploys) and reverts them on
/// `rollback.tenant`, a tenant's failure never blocking another; records each result for
/// `tenantctl deploy --wait`.
///
/// It takes no options: configuration comes from the environment (docs/CONFIG.md). It runs
/// until SIGTERM or SIGINT, then stops cleanly.
#[derive(Debug, clap::Parser)]
#[command(name = "migrator", version, after_help = ENVIRONMENT)]
struct Cli {}

const ENVIRONMENT: &str = "Environment (docs/CONFIG.md):
  DATABASE_URL                 the platform database (postgres://… or sqlite://<file>)
  TENANT_DATABASE_URL          the server holding tenant schemas or databases [default: DATABASE_URL]
  TENANT_ISOLATION             schema or database, for tenants that do not say [default: schema]
  AMQP_URL                     RabbitMQ [default: amqp://guest:guest@127.0.0.1:5672/%2f]
  TENANCY_NAMESPACE            prefix of every exchange and queue name
  MIGRATIONS_DIR               migration sets replacing the ones built in
  HEALTH_ADDR                  where /healthz and /readyz are served [default: 127.0.0.1:8080]
  LOG_FORMAT, RUST_LOG         log format (auto, human, json) and filter
  OTEL_EXPORTER_OTLP_ENDPOINT  where traces and metrics go (none: no export)
  MIGRATOR_CONCURRENCY         commands handled at once [default: 64]
  MIGRATOR_SERVER_SLOTS        migrations running at once per tenant server, all replicas together [default: 16]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--help` and `--version` answer here, before anything connects.
    let Cli {} = Cli::parse();
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
