//! `tenantctl tenant register|show|retry`.

use std::process::ExitCode;

use clap::Subcommand;
use shared::bus::dead_letter::{DeadLetterQueue, Selection};
use shared::bus::{Bus, Topology, WorkQueue};
use shared::config::{Config, Isolation};
use shared::message::{Event as _, TenantRegistered};
use shared::store::PlatformDb;
use shared::tenant::TenantSlug;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Register a tenant: publishes `tenant.registered`, as the platform backend does; the
    /// provisioner takes it from there. Prints the tenant id.
    Register {
        #[arg(long)]
        slug: TenantSlug,
        /// The tenant's business name.
        #[arg(long)]
        name: String,
        /// The tenant administrator's email (invited; never logged).
        #[arg(long)]
        admin_email: String,
        /// The tenant administrator's name (never logged).
        #[arg(long)]
        admin_name: String,
        /// `schema` or `database` [default: TENANT_ISOLATION].
        #[arg(long)]
        isolation: Option<String>,
        /// The plan code.
        #[arg(long)]
        plan: Option<String>,
        /// The tenant id [default: a new one].
        #[arg(long)]
        tenant_id: Option<uuid::Uuid>,
    },
    /// A tenant's state, its provisioning steps with timings and errors, and its migrations.
    Show { slug: TenantSlug },
    /// Resume a failed provisioning at its failed step: replays the tenant's dead-lettered
    /// registration.
    Retry {
        slug: TenantSlug,
        /// Who retries (recorded in the audit trail) [default: $USER].
        #[arg(long)]
        operator: Option<String>,
    },
}

pub async fn run(command: TenantCommand) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    match command {
        TenantCommand::Register {
            slug,
            name,
            admin_email,
            admin_name,
            isolation,
            plan,
            tenant_id,
        } => {
            let tenant_id = tenant_id.unwrap_or_else(uuid::Uuid::new_v4);
            let data = serde_json::json!({
                "tenant_id": tenant_id,
                "slug": slug.as_str(),
                "name": name,
                "plan": plan,
                "isolation": isolation,
                "admin": { "email": admin_email, "name": admin_name },
            });
            let registered = TenantRegistered::from_data(&data)
                .map_err(|e| anyhow::anyhow!("not a valid registration: {e}"))?;
            let bus = connect_bus(&config).await?;
            let event = bus.publisher().event(registered);
            bus.publisher().publish(&event).await?;
            bus.close().await;
            println!(
                "registered {slug} as tenant {tenant_id} (event {})",
                event.id
            );
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Show { slug } => show(&config, &slug).await,
        TenantCommand::Retry { slug, operator } => {
            let operator = super::dlq::operator_handle(operator)?;
            let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
            let detail = platform
                .tenant_detail(&slug)
                .await?
                .ok_or_else(|| anyhow::anyhow!("there is no tenant {slug}"))?;
            let bus = connect_bus(&config).await?;
            let dlq = DeadLetterQueue::new(&bus, WorkQueue::TenantRegistered);
            let publisher = bus.publisher().clone();
            let summary = dlq
                .replay(
                    &Selection::Tenant(detail.id.to_string()),
                    false,
                    &platform,
                    &CancellationToken::new(),
                    |info| {
                        let (publisher, operator) = (publisher.clone(), operator.clone());
                        async move {
                            let event = publisher.event(shared::message::DlqReplayed {
                                queue: WorkQueue::TenantRegistered.base_name().to_owned(),
                                original_message_id: info
                                    .message_id
                                    .clone()
                                    .unwrap_or_else(|| "none".to_owned()),
                                original_type: info.event_type.clone(),
                                tenant_id: info
                                    .tenant_id
                                    .as_deref()
                                    .and_then(|t| uuid::Uuid::parse_str(t).ok()),
                                operator,
                            });
                            let _ = publisher.publish(&event).await;
                        }
                    },
                )
                .await?;
            bus.close().await;
            if summary.replayed.is_empty() {
                anyhow::bail!(
                    "no dead-lettered registration of {slug} to retry (status {}): ask the platform to publish tenant.registered again",
                    detail.status
                );
            }
            println!(
                "retrying {slug}: its registration was sent back to the provisioner, which resumes at the failed step"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(super) async fn connect_bus(config: &Config) -> anyhow::Result<Bus> {
    let shutdown = CancellationToken::new();
    let connect = Bus::connect(
        &config.amqp_url,
        Topology::new(config.namespace.clone()),
        "tenantctl",
        "tenantctl",
        &shutdown,
    );
    Ok(
        tokio::time::timeout(std::time::Duration::from_secs(30), connect)
            .await
            .map_err(|_| {
                anyhow::anyhow!("RabbitMQ at {} did not answer within 30s", config.amqp_url)
            })??,
    )
}

async fn show(config: &Config, slug: &TenantSlug) -> anyhow::Result<ExitCode> {
    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    let Some(tenant) = platform.tenant_detail(slug).await? else {
        anyhow::bail!("there is no tenant {slug}");
    };
    println!("tenant {} ({})", tenant.slug, tenant.id);
    println!("  name        {}", tenant.name);
    println!("  status      {}", tenant.status);
    println!("  isolation   {}", tenant.isolation);
    println!("  plan        {}", tenant.plan.as_deref().unwrap_or("-"));
    println!(
        "  version     {}",
        if tenant.schema_version == 0 {
            "-".to_owned()
        } else {
            tenant.schema_version.to_string()
        }
    );
    println!(
        "  registered  {}",
        tenant.created_at.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );
    if let Some(at) = tenant.activated_at {
        println!(
            "  active      {} ({} ms after registration)",
            at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            (at - tenant.created_at).num_milliseconds()
        );
    }
    println!(
        "\n  {:<15} {:<10} {:>8} {:>11}  {:<24}  LAST ERROR",
        "STEP", "STATUS", "ATTEMPTS", "DURATION", "FINISHED"
    );
    for step in shared::provisioning::Step::ALL {
        match tenant.steps.iter().find(|s| s.step == step) {
            Some(row) => println!(
                "  {:<15} {:<10} {:>8} {:>9}ms  {:<24}  {}",
                step,
                row.status,
                row.attempts,
                row.duration_ms.map_or("-".to_owned(), |d| d.to_string()),
                row.finished_at.map_or("-".to_owned(), |t| t
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string()),
                row.last_error.as_deref().unwrap_or("")
            ),
            None => println!("  {step:<15} {:<10}", "pending"),
        }
    }
    if tenant.status == "active" || tenant.schema_version > 0 {
        let isolation: Isolation = tenant
            .isolation
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        let catalog = shared::migrate::Catalog::load(config.migrations_dir.as_deref())?;
        let storage = shared::storage::TenantStorage::connect(
            config,
            1,
            shared::migrate::EngineOptions::default(),
        )
        .await?;
        let standing = storage.status(slug, isolation, &catalog.tenant).await?;
        println!(
            "\n  migrations: applied {}, {} pending{}",
            standing
                .applied_version
                .map_or("nothing".to_owned(), |v| v.to_string()),
            standing.pending.len(),
            if standing.drift.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} drift problem(s): see `tenantctl migrations status --tenant {slug}`",
                    standing.drift.len()
                )
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
