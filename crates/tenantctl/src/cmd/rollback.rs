//! `tenantctl rollback`: revert tenants to a version, always a manual decision.
//!
//! Every tenant's down scripts are read first. An irreversible migration in any tenant's range,
//! or a tenant that cannot be read, stops the rollback before anything is published; down
//! scripts that destroy data are marked and need `--allow-data-loss`. Then one
//! `rollback.tenant` per tenant carries the operator's identity to the migrator, which reverts
//! and emits `migration.rollback` (stored in the audit trail).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use shared::config::Config;
use shared::message::RollbackTenant;
use shared::migrate::{EngineOptions, RevertPreview, Version};
use shared::storage::TenantStorage;
use shared::store::{PlatformDb, TenantRecord};
use shared::tenant::TenantSlug;
use uuid::Uuid;

use super::OutputFormat;
use super::migrations::load_catalog;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["tenant", "deploy", "all"])))]
pub struct Args {
    /// One tenant.
    #[arg(long)]
    tenant: Option<TenantSlug>,
    /// The tenants a deploy migrated.
    #[arg(long, value_name = "DEPLOY_ID")]
    deploy: Option<Uuid>,
    /// Every active or suspended tenant.
    #[arg(long)]
    all: bool,
    /// Revert every migration after this version (0 reverts them all).
    #[arg(long)]
    to: Version,
    /// List the down scripts per tenant, marking those that destroy data; publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// Allow down scripts that destroy data (DROP TABLE/COLUMN, TRUNCATE, DELETE).
    #[arg(long)]
    allow_data_loss: bool,
    /// Who decides (recorded in the audit trail) [default: $USER].
    #[arg(long)]
    operator: Option<String>,
    /// Wait until every tenant is rolled back (or failed) and print where each stands.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let json = matches!(args.output, OutputFormat::Json);
    let operator = super::dlq::operator_handle(args.operator.clone())?;
    let (catalog, _) = load_catalog(config.migrations_dir.as_deref())?;
    let to = args.to;
    anyhow::ensure!(
        to.is_zero() || catalog.tenant.migrations.iter().any(|m| m.version == to),
        "--to {to}: there is no tenant migration with this version (use 0 to revert everything)"
    );
    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    let tenants = select_tenants(&platform, &args).await?;
    let storage = TenantStorage::connect(&config, 8, EngineOptions::default()).await?;

    let previews: Vec<(TenantRecord, Result<Vec<RevertPreview>, String>)> = stream::iter(tenants)
        .map(|tenant| {
            let (storage, catalog) = (&storage, &catalog);
            async move {
                let preview = storage
                    .preview_revert(&tenant.slug, tenant.isolation, &catalog.tenant, to)
                    .await
                    .map_err(|e| e.to_string());
                (tenant, preview)
            }
        })
        .buffered(8)
        .collect()
        .await;

    let mut refused = 0;
    let mut destroying = 0;
    let mut commands = Vec::new();
    for (tenant, preview) in &previews {
        match preview {
            Err(reason) => {
                refused += 1;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "slug": tenant.slug.as_str(), "tenant_id": tenant.id, "refused": reason })
                    );
                } else {
                    println!("{}: REFUSED: {reason}", tenant.slug);
                }
            }
            Ok(steps) => {
                destroying += steps.iter().filter(|s| !s.destroys_data.is_empty()).count();
                if !steps.is_empty() {
                    commands.push(tenant);
                }
                print_plan(tenant, steps, json);
            }
        }
    }
    if refused > 0 {
        anyhow::bail!(
            "{refused} tenant(s) cannot be rolled back to {to} (reasons above); nothing was published"
        );
    }
    if args.dry_run {
        if !json {
            println!(
                "dry run: {} tenant(s) would be rolled back; {destroying} down script(s) destroy data{}",
                commands.len(),
                if destroying > 0 && !args.allow_data_loss {
                    " and would need --allow-data-loss"
                } else {
                    ""
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if destroying > 0 && !args.allow_data_loss {
        anyhow::bail!(
            "{destroying} down script(s) above destroy data: pass --allow-data-loss to confirm; nothing was published"
        );
    }
    if commands.is_empty() {
        println!("nothing to roll back: every selected tenant is at or before {to}");
        return Ok(ExitCode::SUCCESS);
    }

    let bus = super::tenant::connect_bus(&config).await?;
    let publisher = bus.publisher();
    stream::iter(&commands)
        .map(|tenant| {
            let operator = operator.clone();
            async move {
                let command = publisher.event(RollbackTenant {
                    tenant_id: tenant.id,
                    to_version: to,
                    operator,
                    allow_data_loss: args.allow_data_loss,
                });
                publisher.publish(&command).await
            }
        })
        .buffer_unordered(64)
        .try_collect::<()>()
        .await?;
    bus.close().await;
    if !json {
        println!(
            "published {} rollback command(s) to {to} as {operator}",
            commands.len()
        );
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    wait(
        &platform,
        &commands,
        to,
        Duration::from_secs(args.timeout),
        json,
    )
    .await
}

async fn select_tenants(platform: &PlatformDb, args: &Args) -> anyhow::Result<Vec<TenantRecord>> {
    if let Some(slug) = &args.tenant {
        let tenants = platform.tenants(Some(slug)).await?;
        anyhow::ensure!(!tenants.is_empty(), "there is no tenant {slug}");
        return Ok(tenants);
    }
    let all = platform.tenants(None).await?;
    if let Some(deploy) = args.deploy {
        anyhow::ensure!(
            platform.deploy(deploy).await?.is_some(),
            "there is no deploy {deploy}"
        );
        let migrated: std::collections::HashSet<Uuid> = platform
            .deploy_results(deploy, None)
            .await?
            .into_iter()
            .filter(|r| r.applied > 0)
            .map(|r| r.tenant_id)
            .collect();
        return Ok(all
            .into_iter()
            .filter(|t| migrated.contains(&t.id))
            .collect());
    }
    Ok(all
        .into_iter()
        .filter(|t| matches!(t.status.as_str(), "active" | "suspended"))
        .collect())
}

fn print_plan(tenant: &TenantRecord, steps: &[RevertPreview], json: bool) {
    if json {
        let downs: Vec<_> = steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "version": s.version.get(), "file": s.file,
                    "destroys_data": s.destroys_data.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "slug": tenant.slug.as_str(), "tenant_id": tenant.id, "from_version": tenant.schema_version.get(), "downs": downs })
        );
        return;
    }
    if steps.is_empty() {
        println!("{}: nothing to revert", tenant.slug);
        return;
    }
    println!("{} (at {}):", tenant.slug, tenant.schema_version);
    for step in steps {
        let mark = if step.destroys_data.is_empty() {
            ""
        } else {
            "  DESTROYS DATA"
        };
        println!("  down {}{mark}", step.file);
        for finding in &step.destroys_data {
            println!("      {finding}");
        }
    }
}

/// Polls until every tenant is at or before `to`, or marked failed.
async fn wait(
    platform: &PlatformDb,
    tenants: &[&TenantRecord],
    to: Version,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + timeout;
    loop {
        // One read of the registry per poll, whatever the number of tenants.
        let now: std::collections::HashMap<Uuid, TenantRecord> = platform
            .tenants(None)
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let states: Vec<(&&TenantRecord, Option<&TenantRecord>)> =
            tenants.iter().map(|t| (t, now.get(&t.id))).collect();
        let done = states.iter().all(|(_, state)| {
            state.is_none_or(|s| s.schema_version <= to || s.migration_error.is_some())
        });
        if done || Instant::now() >= deadline {
            let mut ok = done;
            for (tenant, state) in states {
                let (version, error) = state.map_or((None, None), |s| {
                    (Some(s.schema_version), s.migration_error.clone())
                });
                ok &= error.is_none();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "slug": tenant.slug.as_str(), "version": version.map(Version::get), "error": error })
                    );
                } else {
                    println!(
                        "  {:<40} at {}{}",
                        tenant.slug,
                        version.map_or("-".to_owned(), |v| v.to_string()),
                        error.map(|e| format!(": FAILED: {e}")).unwrap_or_default()
                    );
                }
            }
            if !done {
                eprintln!("gave up waiting after {}s", timeout.as_secs());
            }
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
