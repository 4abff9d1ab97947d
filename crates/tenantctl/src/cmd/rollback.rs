//! `tenantctl rollback`: revert tenants to a version, always a manual decision.
//!
//! Every tenant's down scripts are read first. An irreversible migration in any tenant's range,
//! or a tenant that cannot be read, stops the rollback before anything is published; down
//! scripts that destroy data are marked and need `--allow-data-loss`. Then one
//! `rollback.tenant` per tenant carries the operator's identity to the migrator, which reverts
//! and emits `migration.rollback` (stored in the audit trail).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use domain::Version;
use domain::message::RollbackTenant;
use domain::tenant::TenantSlug;
use engine::{EngineOptions, RevertPreview};
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use shared::config::Config;
use shared::platform::{PlatformDb, TenantRecord};
use shared::tenant_storage::TenantStorage;
use uuid::Uuid;

use super::OutputFormat;
use super::migrations::load_catalog;
use super::progress::{Progress, Tally};
use crate::out::{self, Table, Tone, outln};

pub const EXAMPLES: &str = "Examples:
  tenantctl rollback --tenant acme_towers --to 20261124110700 --dry-run
  tenantctl rollback --tenant acme_towers --to 20261124110700 --allow-data-loss --wait
  tenantctl rollback --deploy <DEPLOY_ID> --to 20261124110800   # the tenants that deploy migrated
  TENANCY_OPERATOR=ana.sre tenantctl rollback --all --to 20261124110800 --output json";

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
    /// Who decides, a handle recorded in the audit trail [default: $TENANCY_OPERATOR, else
    /// $USER, else $LOGNAME].
    #[arg(long)]
    operator: Option<String>,
    /// Wait until every tenant is rolled back (or failed) and print where each stands.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// `text` for people; `json`: one JSON object per line, each with a `type`
    /// (docs/OPERATIONS.md, "Machine-readable output").
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let json = matches!(args.output, OutputFormat::Json);
    let operator = super::operator::handle(args.operator.clone())?;
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
                    out::json(&serde_json::json!({
                        "type": "refused", "tenant_id": tenant.id, "slug": tenant.slug.as_str(),
                        "reason": reason,
                    }));
                } else {
                    outln!(
                        "{}: {}",
                        tenant.slug,
                        Tone::Bad.paint(format_args!("REFUSED: {reason}"))
                    );
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
    let needs_allow = destroying > 0 && !args.allow_data_loss;
    if args.dry_run {
        if json {
            out::json(&serde_json::json!({
                "type": "summary", "dry_run": true, "to_version": to.get(),
                "tenants": commands.len(), "destroying": destroying,
                "needs_allow_data_loss": needs_allow,
            }));
        } else {
            outln!(
                "dry run: {} tenant(s) would be rolled back; {destroying} down script(s) destroy data{}",
                commands.len(),
                if needs_allow {
                    " and would need --allow-data-loss"
                } else {
                    ""
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if needs_allow {
        anyhow::bail!(
            "{destroying} down script(s) above destroy data: pass --allow-data-loss to confirm; nothing was published"
        );
    }
    if commands.is_empty() {
        if json {
            out::json(&serde_json::json!({
                "type": "published", "to_version": to.get(), "tenants": 0, "operator": operator,
            }));
        } else {
            outln!("nothing to roll back: every selected tenant is at or before {to}");
        }
        return Ok(ExitCode::SUCCESS);
    }

    let bus = super::connect::bus(&config).await?;
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
    if json {
        out::json(&serde_json::json!({
            "type": "published", "to_version": to.get(), "tenants": commands.len(),
            "operator": operator,
        }));
    } else {
        outln!(
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
        out::json(&serde_json::json!({
            "type": "plan", "tenant_id": tenant.id, "slug": tenant.slug.as_str(),
            "from_version": tenant.schema_version.get(), "downs": downs,
        }));
        return;
    }
    if steps.is_empty() {
        outln!("{}: nothing to revert", tenant.slug);
        return;
    }
    outln!("{} (at {}):", tenant.slug, tenant.schema_version);
    for step in steps {
        if step.destroys_data.is_empty() {
            outln!("  down {}", step.file);
        } else {
            outln!("  down {}  {}", step.file, Tone::Bad.paint("DESTROYS DATA"));
        }
        for finding in &step.destroys_data {
            outln!("      {finding}");
        }
    }
}

/// Polls until every tenant is at or before `to`, or marked failed, with progress on stderr;
/// then where each stands.
async fn wait(
    platform: &PlatformDb,
    tenants: &[&TenantRecord],
    to: Version,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut progress = Progress::new();
    loop {
        // One read of the registry per poll, whatever the number of tenants.
        let now: std::collections::HashMap<Uuid, TenantRecord> = platform
            .tenants(None)
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let states: Vec<(&TenantRecord, Outcome)> = tenants
            .iter()
            .map(|t| (*t, Outcome::of(now.get(&t.id), to)))
            .collect();
        let mut tally = Tally {
            total: states.len() as u64,
            ..Tally::default()
        };
        for (_, outcome) in &states {
            match outcome {
                Outcome::RolledBack(_) | Outcome::Gone => tally.succeeded += 1,
                Outcome::Failed(..) => tally.failed += 1,
                Outcome::Pending(_) => tally.unfinished += 1,
            }
        }
        progress.show(&tally);
        let done = tally.unfinished == 0;
        if !done && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        progress.finish();
        let mut table = Table::new(&["TENANT", "VERSION", "RESULT"]).indent(2);
        for (tenant, outcome) in &states {
            let (version, result, error, tone) = match outcome {
                Outcome::RolledBack(v) => (Some(*v), "rolled back".to_owned(), None, Tone::Good),
                Outcome::Gone => (None, "no longer registered".to_owned(), None, Tone::Warn),
                Outcome::Failed(v, e) => (Some(*v), format!("FAILED: {e}"), Some(e), Tone::Bad),
                Outcome::Pending(v) => (Some(*v), "pending".to_owned(), None, Tone::Warn),
            };
            if json {
                out::json(&serde_json::json!({
                    "type": "tenant", "tenant_id": tenant.id, "slug": tenant.slug.as_str(),
                    "version": version.map(Version::get), "status": outcome.status(),
                    "error": error,
                }));
            } else {
                table.row(
                    tone,
                    [
                        tenant.slug.to_string(),
                        version.map_or("-".to_owned(), |v| v.to_string()),
                        result,
                    ],
                );
            }
        }
        if json {
            out::json(&serde_json::json!({
                "type": "summary", "dry_run": false, "to_version": to.get(),
                "tenants": tally.total, "rolled_back": tally.succeeded, "failed": tally.failed,
                "unfinished": tally.unfinished, "seconds": started.elapsed().as_secs_f64(),
            }));
        } else {
            table.print();
            outln!(
                "{} tenant(s): {} rolled back, {} failed, {} unfinished",
                tally.total,
                tally.succeeded,
                tally.failed,
                tally.unfinished
            );
        }
        if !done {
            eprintln!("gave up waiting after {}s", timeout.as_secs());
        }
        return Ok(if done && tally.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
}

/// Where a tenant being rolled back stands.
enum Outcome {
    /// At or before the target.
    RolledBack(Version),
    /// Marked as needing reprocessing: its rollback (or an earlier migration) failed.
    Failed(Version, String),
    /// Still after the target.
    Pending(Version),
    /// Its row is gone.
    Gone,
}

impl Outcome {
    fn of(now: Option<&TenantRecord>, to: Version) -> Self {
        match now {
            None => Outcome::Gone,
            Some(t) => match &t.migration_error {
                Some(error) => Outcome::Failed(t.schema_version, error.clone()),
                None if t.schema_version <= to => Outcome::RolledBack(t.schema_version),
                None => Outcome::Pending(t.schema_version),
            },
        }
    }

    fn status(&self) -> &'static str {
        match self {
            Outcome::RolledBack(_) => "rolled_back",
            Outcome::Failed(..) => "failed",
            Outcome::Pending(_) => "pending",
            Outcome::Gone => "gone",
        }
    }
}
