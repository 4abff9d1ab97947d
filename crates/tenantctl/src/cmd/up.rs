//! `tenantctl up`: the whole system in one process, for development and the quick start.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use shared::config::Config;
use shared::service::Context;
use tokio::task::JoinSet;

pub const EXAMPLES: &str = "Examples:
  tenantctl up                                   # everything, for development and the quick start
  tenantctl up --only migrator                   # one service per process, with the same binary
  tenantctl up --only auditor,provisioner --health-addr 0.0.0.0:8081";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of /healthz and /readyz [default: $HEALTH_ADDR, else 127.0.0.1:8080].
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
    let config = Config::from_env()?;
    let telemetry = shared::telemetry::init(&config.otel, "tenancy", config.log_format)?;
    let shutdown = shared::shutdown::on_signal();
    let health_addr = args.health_addr.unwrap_or(config.health_addr);

    let ctx = Context::connect(config, "tenantctl-up", &shutdown).await?;
    let platform = ctx
        .apply_platform_migrations()
        .await
        .context("applying the platform migrations")?;
    ctx.check_released_sets().await?;
    tracing::info!(
        applied = platform.steps.len(),
        version = %platform.after.map_or("none".to_owned(), |v| v.to_string()),
        "platform database migrated"
    );
    let health = shared::health::spawn(health_addr, ctx.health.clone(), shutdown.clone()).await?;

    let wanted = |service| args.only.is_empty() || args.only.contains(&service);
    let mut services = JoinSet::new();
    let mut names = Vec::new();
    if wanted(Service::Auditor) {
        names.push("auditor");
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        services.spawn(async move { ("auditor", auditor::run(ctx, shutdown).await) });
    }
    if wanted(Service::Provisioner) {
        names.push("provisioner");
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        services.spawn(async move { ("provisioner", provisioner::run(ctx, shutdown).await) });
    }
    if wanted(Service::Migrator) {
        names.push("migrator");
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        services.spawn(async move { ("migrator", migrator::run(ctx, shutdown).await) });
    }
    tracing::info!(
        database = %ctx.config.database_url.redacted(),
        broker = %ctx.config.amqp_url,
        namespace = %ctx.config.namespace,
        services = %names.join(", "),
        "tenancy is up; stop with Ctrl-C"
    );

    let mut failed = false;
    while let Some(joined) = services.join_next().await {
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((service, Err(error))) => {
                tracing::error!(service, error = %format!("{error:#}"), "service stopped; shutting the others down");
                failed = true;
            }
            Err(error) => {
                tracing::error!(%error, "a service panicked; shutting the others down");
                failed = true;
            }
        }
        // One service ending ends all of them: a half-running system is worse than none.
        shutdown.cancel();
    }
    let _ = health.await;
    ctx.bus.close().await;
    tracing::info!("stopped");
    telemetry.shutdown();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
