//! The auditor as its own process. See the crate documentation.

use clap::Parser as _;

/// Stores every lifecycle event of the fleet in the audit trail (`audit_events`), exactly
/// once per event id, with personal data removed.
///
/// It takes no options: configuration comes from the environment (docs/CONFIG.md). It runs
/// until SIGTERM or SIGINT, then stops cleanly.
#[derive(Debug, clap::Parser)]
#[command(name = "auditor", version, after_help = shared::service::ENVIRONMENT_HELP)]
struct Cli {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--help` and `--version` answer here, before anything connects.
    let Cli {} = Cli::parse();
    shared::service::main("auditor", auditor::run).await
}
