//! The provisioner as its own process. See the crate documentation.

use clap::Parser as _;
use shared::config::Config;
use shared::service::Context;

/// Consumes `tenant.registered` and drives the six provisioning steps (register, create
/// storage, migrate, seed, admin user, activate) until the tenant is active; every step is
/// idempotent and resumes after any interruption.
///
/// It takes no options: configuration comes from the environment (docs/CONFIG.md). It runs
/// until SIGTERM or SIGINT, then stops cleanly.
#[derive(Debug, clap::Parser)]
#[command(name = "provisioner", version, after_help = ENVIRONMENT)]
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
  OTEL_EXPORTER_OTLP_ENDPOINT  where traces and metrics go (none: no export)";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--help` and `--version` answer here, before anything connects.
    let Cli {} = Cli::parse();
    let config = Config::from_env()?;
    let telemetry = shared::telemetry::init(&config.otel, "provisioner", config.log_format)?;
    let shutdown = shared::shutdown::on_signal();
    let ctx = Context::connect(config, "provisioner", &shutdown).await?;
    let health =
        shared::health::spawn(ctx.config.health_addr, ctx.health.clone(), shutdown.clone()).await?;
    ctx.wait_for_platform_schema(&shutdown).await?;
    let result = provisioner::run(ctx.clone(), shutdown.clone()).await;
    shutdown.cancel();
    let _ = health.await;
    ctx.bus.close().await;
    telemetry.shutdown();
    result
}
