//! The provisioner as its own process. See the crate documentation.

use clap::Parser as _;

/// Consumes `tenant.registered` and drives the six provisioning steps (register, create
/// storage, migrate, seed, admin user, activate) until the tenant is active; every step is
/// idempotent and resumes after any interruption.
///
/// It takes no options: configuration comes from the environment (docs/CONFIG.md). It runs
/// until SIGTERM or SIGINT, then stops cleanly.
#[derive(Debug, clap::Parser)]
#[command(name = "provisioner", version, after_help = shared::service::ENVIRONMENT_HELP)]
struct Cli {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--help` and `--version` answer here, before anything connects.
    let Cli {} = Cli::parse();
    shared::service::main("provisioner", provisioner::run).await
}
