//! `tenantctl up`: the whole system in one process, for development and the quick start.

use std::net::SocketAddr;
use std::process::ExitCode;

use futures_util::FutureExt as _;
use shared::service::{self, Launch, PlatformSchema};

pub const EXAMPLES: &str = "Examples:
  tenantctl up                                   # everything, for development and the quick start
  tenantctl up --only migrator                   # one service per process, with the same binary
  tenantctl up --only auditor,provisioner --health-addr 0.0.0.0:8081";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of /healthz, /readyz and /metrics [default: $HEALTH_ADDR, else 127.0.0.1:8080].
    #[arg(long)]
    health_addr: Option<SocketAddr>,
    /// Run only these services (comma-separated), e.g. `--only migrator` for a process per
    /// service with the same binary.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Service>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Service {
    /// Stores every lifecycle event in the audit trail.
    Auditor,
    /// Drives registrations to active tenants.
    Provisioner,
    /// Applies and reverts tenant migrations.
    Migrator,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let process = Launch {
        telemetry_name: "tenancy",
        process: "tenantctl-up",
        health_addr: args.health_addr,
        platform_schema: PlatformSchema::Apply,
    }
    .start()
    .await?;

    let wanted = |service| args.only.is_empty() || args.only.contains(&service);
    let (ctx, shutdown) = (&process.ctx, &process.shutdown);
    let mut services: Vec<service::Service<anyhow::Error>> = Vec::new();
    if wanted(Service::Auditor) {
        services.push((
            "auditor",
            auditor::run(ctx.clone(), shutdown.clone()).boxed(),
        ));
    }
    if wanted(Service::Provisioner) {
        services.push((
            "provisioner",
            provisioner::run(ctx.clone(), shutdown.clone()).boxed(),
        ));
    }
    if wanted(Service::Migrator) {
        services.push((
            "migrator",
            migrator::run(ctx.clone(), shutdown.clone()).boxed(),
        ));
    }
    let names: Vec<&str> = services.iter().map(|(name, _)| *name).collect();
    tracing::info!(
        database = %ctx.config.database_url.redacted(),
        broker = %ctx.config.amqp_url,
        namespace = %ctx.config.namespace,
        services = %names.join(", "),
        "tenancy is up; stop with Ctrl-C"
    );

    let clean = service::run_together(services, shutdown).await;
    process.stop().await;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
