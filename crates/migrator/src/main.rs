//! The migrator as its own process. See the crate documentation.

use clap::Parser as _;

/// Applies tenant migrations on `migrate.tenant` (deploys) and reverts them on
/// `rollback.tenant`, a tenant's failure never blocking another; records each result for
/// `tenantctl deploy --wait`.
///
/// It takes no options: configuration comes from the environment (docs/CONFIG.md). It runs
/// until SIGTERM or SIGINT, then stops cleanly.
#[derive(Debug, clap::Parser)]
#[command(name = "migrator", version, after_help = format!("{}\n{ENVIRONMENT}", shared::service::ENVIRONMENT_HELP))]
struct Cli {}

/// The migrator's own variables, after those of every service.
const ENVIRONMENT: &str = "  MIGRATOR_CONCURRENCY         commands handled at once [default: 64]
  MIGRATOR_SERVER_SLOTS        migrations running at once per tenant server, all replicas together [default: 16]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--help` and `--version` answer here, before anything connects.
    let Cli {} = Cli::parse();
    shared::service::main("migrator", migrator::run).await
}
