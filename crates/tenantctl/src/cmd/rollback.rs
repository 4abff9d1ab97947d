//! `tenantctl rollback`: parses the arguments, takes the rollback's steps
//! (`tenantctl::rollback`) in order, and prints each tenant's down scripts (those that destroy
//! data marked), what was published, and with `--wait` where each tenant ends.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use domain::Version;
use domain::tenant::TenantSlug;
use engine::RevertPreview;
use shared::config::Config;
use shared::platform::{PlatformDb, TenantRecord};
use shared::tenant_servers::TenantServers;
use tenantctl::rollback::{self, Outcome, Plan, Scope, TenantPreview};
use uuid::Uuid;

use super::OutputFormat;
use super::migrations::load_catalog;
use super::progress::Progress;
use crate::out::{self, Table, Tone, outln};

pub const EXAMPLES: &str = "Examples:
  tenantctl rollback --tenant acme_towers --to 20261124110700 --dry-run
  tenantctl rollback --tenant acme_towers --to 20261124110700 --allow-data-loss --wait
  tenantctl rollback --deploy <DEPLOY_ID> --to 20261124110800   # the tenants that deploy migrated
  tenantctl rollback --all --server pg-2 --to 20261124110800     # one server's tenants only
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
    /// Only the tenants of this server (with `--all` or `--deploy`: a canary server).
    #[arg(long, conflicts_with = "tenant")]
    server: Option<domain::server::ServerName>,
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
    let mut tenants = rollback::select_tenants(&platform, &scope(&args)).await?;
    if let Some(server) = &args.server {
        super::servers::ensure_registered(&platform, server).await?;
        tenants.retain(|tenant| &tenant.server == server);
    }
    let servers = TenantServers::pooled(platform.clone(), std::sync::Arc::new(config.clone()), 8);
    let previews = rollback::preview(&servers, &catalog.tenant, tenants, to).await;

    print_previews(&previews, json);
    let plan = Plan::of(&previews);
    if plan.refused > 0 {
        anyhow::bail!(
            "{} tenant(s) cannot be rolled back to {to} (reasons above); nothing was published",
            plan.refused
        );
    }
    let needs_allow = plan.needs_allow_data_loss(args.allow_data_loss);
    let commands = &plan.to_publish;
    if args.dry_run {
        print_dry_run(&plan, to, needs_allow, json);
        return Ok(ExitCode::SUCCESS);
    }
    if needs_allow {
        anyhow::bail!(
            "{} down script(s) above destroy data: pass --allow-data-loss to confirm; nothing was published",
            plan.destroying
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
    rollback::publish(&bus, commands, to, &operator, args.allow_data_loss).await?;
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
        commands,
        to,
        Duration::from_secs(args.timeout),
        json,
    )
    .await
}

/// The tenants the arguments select (clap makes exactly one of them given).
fn scope(args: &Args) -> Scope {
    match (&args.tenant, args.deploy) {
        (Some(slug), _) => Scope::Tenant(slug.clone()),
        (None, Some(deploy)) => Scope::MigratedBy(deploy),
        (None, None) => Scope::All,
    }
}

/// Each tenant's down scripts (those that destroy data marked), or why it cannot be rolled back.
fn print_previews(previews: &[TenantPreview], json: bool) {
    for TenantPreview { tenant, downs } in previews {
        match downs {
            Err(reason) => {
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
            Ok(downs) => print_plan(tenant, downs, json),
        }
    }
}

fn print_dry_run(plan: &Plan<'_>, to: Version, needs_allow: bool, json: bool) {
    let (tenants, destroying) = (plan.to_publish.len(), plan.destroying);
    if json {
        out::json(&serde_json::json!({
            "type": "summary", "dry_run": true, "to_version": to.get(),
            "tenants": tenants, "destroying": destroying,
            "needs_allow_data_loss": needs_allow,
        }));
    } else {
        outln!(
            "dry run: {tenants} tenant(s) would be rolled back; {destroying} down script(s) destroy data{}",
            if needs_allow {
                " and would need --allow-data-loss"
            } else {
                ""
            }
        );
    }
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

/// Follows the rollback with progress on stderr, then prints where each tenant stands.
async fn wait(
    platform: &PlatformDb,
    tenants: &[&TenantRecord],
    to: Version,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut progress = Progress::new();
    let followed = rollback::follow(platform, tenants, to, started + timeout, |standing| {
        progress.show(standing);
    })
    .await?;
    progress.finish();
    let tally = followed.tally;
    let mut table = Table::new(&["TENANT", "VERSION", "RESULT"]).indent(2);
    for (tenant, outcome) in &followed.outcomes {
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
    if !followed.finished {
        eprintln!("gave up waiting after {}s", timeout.as_secs());
    }
    Ok(if followed.finished && tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
