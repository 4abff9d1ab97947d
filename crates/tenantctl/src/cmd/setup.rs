//! `tenantctl setup`: what a least-privileged install needs done once, and again first in every
//! upgrade, by its owners: the platform database created if missing and migrated, the service
//! roles' grants on its tables, and the RabbitMQ topology declared. The services themselves then
//! need neither DDL nor `configure` rights (docs/DEPLOYMENT.md, "Users and roles").

use std::process::ExitCode;

use shared::config::Config;
use shared::service::Context;

use crate::cmd::OutputFormat;
use crate::out::outln;

pub const EXAMPLES: &str = "Examples:
  DATABASE_URL=postgres://tenancy_owner@db/tenancy AMQP_URL=amqp://tenancy-setup@mq/tenancy tenantctl setup
  tenantctl setup --output json        # one JSON object, for a job's log";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// text for people, json for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let namespace = config.namespace.clone();
    // Waits for a database or broker that is still starting, as the services do: a setup job
    // may start beside them. Ctrl-C or SIGTERM ends the wait.
    let shutdown = shared::shutdown::on_signal();
    let ctx = Context::connect(config, "tenantctl-setup", &shutdown).await?;
    anyhow::ensure!(
        ctx.platform.owns_platform_tables().await?,
        "tenantctl setup grants the service roles their rights on the platform tables, which only their owner may do: run it with DATABASE_URL naming the owner (tenancy_owner in deploy/postgres/roles.sql)"
    );
    let platform = ctx.set_up_platform().await?;
    ctx.bus.close().await;
    let version = platform.after.map(|v| v.to_string());
    match args.output {
        OutputFormat::Text => {
            outln!(
                "platform database: {} migration(s) applied, at version {}",
                platform.steps.len(),
                version.as_deref().unwrap_or("none")
            );
            outln!("platform grants: applied to the service roles that exist");
            outln!(
                "RabbitMQ topology{}: in place",
                if namespace.is_empty() {
                    String::new()
                } else {
                    format!(" of namespace `{namespace}`")
                }
            );
        }
        OutputFormat::Json => outln!(
            "{}",
            serde_json::json!({
                "platform_migrations_applied": platform.steps.len(),
                "platform_version": version,
                "namespace": namespace,
                "topology": "in place",
            })
        ),
    }
    Ok(ExitCode::SUCCESS)
}
