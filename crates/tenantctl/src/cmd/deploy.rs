//! `tenantctl deploy`: parses the arguments, takes the deploy's steps (`tenantctl::deploy`) in
//! order, and prints what each did: progress and a per-tenant summary with `--wait`, JSON Lines
//! with `--output json`. The exit code is 0 only if every tenant reached the target (with
//! `--wait`), or everything was published.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use domain::Version;
use domain::server::ServerName;
use engine::Catalog;
use engine::release::ReleaseRefused;
use shared::config::Config;
use shared::platform::PlatformDb;
use shared::platform::deploys::DeployResultRow;
use shared::service::Context;
use tenantctl::deploy::{self, Counts, DryRun, Started, TenantPreview};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::OutputFormat;
use super::migrations::load_catalog;
use super::progress::Progress;
use crate::out::{self, Table, Tone, outln};

pub const EXAMPLES: &str = "Examples:
  tenantctl deploy --dry-run                   # what each tenant would run; nothing applied or published
  tenantctl deploy --wait                      # every tenant, with progress and a per-tenant summary
  tenantctl deploy --canary 20 --wait          # 20 tenants first; any failure stops the rollout
  tenantctl deploy --to 20270101000000 --wait  # up to a version
  tenantctl deploy --server pg-2 --wait        # one server's tenants first (a canary server)
  tenantctl deploy --follow <DEPLOY_ID>        # attach to a running deploy
  tenantctl deploy --allow-drift --wait        # migrate tenants changed by hand too
  tenantctl deploy --wait --output json | jq 'select(.type == \"summary\")'";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Migrate tenants up to this version [default: the newest tenant migration].
    #[arg(long)]
    to: Option<Version>,
    /// Publish to this many tenants first and wait for them; any failure among them stops the
    /// rollout before the rest is published.
    #[arg(long, default_value_t = 0)]
    canary: u32,
    /// Follow the deploy until every tenant is done: a progress line, then a per-tenant summary.
    /// The exit code is 0 only if every tenant reached the target.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (the deploy goes on without us).
    #[arg(long)]
    timeout: Option<u64>,
    /// Print what each tenant would run; apply and publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// Follow an earlier deploy instead of starting one (as `--wait` does).
    #[arg(long, value_name = "DEPLOY_ID", conflicts_with_all = ["to", "canary", "dry_run"])]
    follow: Option<Uuid>,
    /// Only the tenants of this server (a canary server); a tenant activated on it while the
    /// deploy runs joins it, one on another server does not.
    #[arg(long, conflicts_with = "follow")]
    server: Option<ServerName>,
    /// Who deploys, a handle recorded with the deploy [default: $TENANCY_OPERATOR, else $USER,
    /// else $LOGNAME].
    #[arg(long)]
    operator: Option<String>,
    /// Migrate tenants whose schema drifted from their version's (`tenantctl drift`) too; by
    /// default they are left out, recorded as failed with their first difference.
    #[arg(long, conflicts_with = "follow")]
    allow_drift: bool,
    /// Commands published between two bookkeeping writes.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// `text` for people; `json`: one JSON object per line, each with a `type`
    /// (docs/OPERATIONS.md, "Machine-readable output").
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    if let Some(deploy) = args.follow {
        return follow_earlier(&config, deploy, &args).await;
    }
    let (catalog, origin) = load_catalog(config.migrations_dir.as_deref())?;
    let errors = deploy::static_errors(&catalog);
    for error in &errors {
        eprintln!("{error}");
    }
    if !errors.is_empty() && !args.dry_run {
        anyhow::bail!(
            "refusing to deploy: the migrations ({origin}) fail {} check(s) listed above; nothing was applied or published (see `tenantctl migrations check`)",
            errors.len()
        );
    }
    let target = target_version(&catalog, args.to)?;
    if !args.dry_run {
        return roll_out(config, &catalog, target, &args).await;
    }
    let dry_run = deploy::dry_run(&config, &catalog, target).await?;
    let code = print_dry_run(&catalog, &dry_run, target, args.output);
    if !errors.is_empty() {
        eprintln!(
            "a deploy would refuse: the migrations ({origin}) fail {} check(s) listed above",
            errors.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(code)
}

/// `--follow`: follows an earlier deploy as `--wait` does.
async fn follow_earlier(config: &Config, deploy: Uuid, args: &Args) -> anyhow::Result<ExitCode> {
    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    let record = platform
        .deploy(deploy)
        .await?
        .ok_or_else(|| anyhow::anyhow!("there is no deploy {deploy}"))?;
    follow(&platform, deploy, record.target_version, None, args).await
}

/// The deploy itself: started (platform migrations applied, deploy recorded), the canary
/// published and followed, the rest published, and with `--wait` followed.
async fn roll_out(
    config: Config,
    catalog: &Catalog,
    target: Version,
    args: &Args,
) -> anyhow::Result<ExitCode> {
    let operator = super::operator::handle(args.operator.clone())?;
    let shutdown = CancellationToken::new();
    let ctx = Context::connect_existing(config, "tenantctl", &shutdown)
        .await
        .context("connecting to PostgreSQL and RabbitMQ")?;
    if let Some(server) = &args.server {
        super::servers::ensure_registered(&ctx.platform, server).await?;
    }
    let mut started = deploy::start(
        &ctx,
        catalog,
        target,
        operator,
        args.canary,
        args.server.clone(),
    )
    .await?;
    let gate = deploy::refuse_drifted(&ctx, &catalog.tenant, &mut started, args.allow_drift)
        .await
        .context("checking the tenants to migrate for drift")?;
    print_started(&started, args.output);
    print_gate(&gate, args.allow_drift, args.output);
    let refused = if args.allow_drift {
        0
    } else {
        gate.drifted.len()
    };

    let (canary, rest) = started.canary_split();
    if !canary.is_empty() {
        deploy::publish(&ctx, &started, canary, args.batch_size).await?;
        eprintln!("canary: published to {} tenant(s); waiting", canary.len());
        let ids: Vec<Uuid> = canary.iter().map(|t| t.id).collect();
        let code = follow(&ctx.platform, started.id, target, Some(&ids), args).await?;
        if code != ExitCode::SUCCESS {
            deploy::finish_publishing(&ctx.platform, started.id, true).await?;
            ctx.bus.close().await;
            eprintln!(
                "{}",
                Tone::Bad.paint_stderr(format_args!(
                    "canary failed: the other {} tenant(s) were not published; fix and deploy again",
                    rest.len()
                ))
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    deploy::publish(&ctx, &started, rest, args.batch_size).await?;
    deploy::finish_publishing(&ctx.platform, started.id, false).await?;
    ctx.bus.close().await;
    if args.wait {
        return follow(&ctx.platform, started.id, target, None, args).await;
    }
    let code = if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    match args.output {
        OutputFormat::Json => out::json(&serde_json::json!({
            "type": "published", "deploy_id": started.id, "target_version": target.get(),
            "tenants": started.tenants.len(),
        })),
        OutputFormat::Text => outln!(
            "published {} command(s); follow with `tenantctl deploy --follow {}`",
            started.tenants.len(),
            started.id
        ),
    }
    Ok(code)
}

/// The drifted tenants: refused, or let through with `--allow-drift`; and those whose drift
/// could not be checked.
fn print_gate(gate: &deploy::Gate, allow_drift: bool, output: OutputFormat) {
    for drifted in &gate.drifted {
        let t = &drifted.tenant;
        if matches!(output, OutputFormat::Json) {
            out::json(&serde_json::json!({
                "type": "drifted", "tenant": t.slug.as_str(), "server": t.server.as_str(),
                "version": t.schema_version.get(), "refused": !allow_drift,
                "differences": drifted.differences.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }));
            continue;
        }
        let verdict = if allow_drift {
            Tone::Warn.paint("drifted, migrated anyway (--allow-drift)")
        } else {
            Tone::Bad.paint("drifted, not migrated")
        };
        eprintln!(
            "{} (server {}): {verdict}; {} difference(s):",
            t.slug,
            t.server,
            drifted.differences.len()
        );
        for difference in &drifted.differences {
            eprintln!("  {difference}");
        }
    }
    if !gate.drifted.is_empty() && !allow_drift {
        eprintln!(
            "{}",
            Tone::Bad.paint_stderr(format_args!(
                "{} tenant(s) left out because their schema drifted (see `tenantctl drift`): repair them, or deploy with --allow-drift",
                gate.drifted.len()
            ))
        );
    }
    for unchecked in &gate.unchecked {
        eprintln!(
            "{}",
            Tone::Warn.paint_stderr(format_args!(
                "{} (server {}): drift not checked, migrated: {}",
                unchecked.tenant.slug, unchecked.tenant.server, unchecked.reason
            ))
        );
    }
}

/// `--to`, else the newest tenant migration.
fn target_version(catalog: &Catalog, to: Option<Version>) -> anyhow::Result<Version> {
    let latest = catalog
        .tenant
        .latest()
        .ok_or_else(|| anyhow::anyhow!("there are no tenant migrations to deploy"))?;
    let target = to.unwrap_or(latest);
    anyhow::ensure!(
        catalog
            .tenant
            .migrations
            .iter()
            .any(|m| m.version == target),
        "--to {target}: there is no tenant migration with this version (the newest is {latest})"
    );
    Ok(target)
}

fn print_started(started: &Started, output: OutputFormat) {
    let platform_version = started.platform_version.map(Version::get);
    if matches!(output, OutputFormat::Json) {
        out::json(&serde_json::json!({
            "type": "deploy", "deploy_id": started.id, "target_version": started.target.get(),
            "platform_version": platform_version, "platform_applied": started.platform_applied,
            "tenants": started.tenants.len(),
        }));
    } else {
        outln!(
            "deploy {}: platform at {} ({} applied now); {} tenant(s) to bring to {}",
            started.id,
            platform_version.map_or("-".to_owned(), |v| v.to_string()),
            started.platform_applied,
            started.tenants.len(),
            started.target
        );
    }
}

/// Follows the deploy (or only `only`: the canary) with progress on stderr, then prints the
/// summary. `FAILURE` if any tenant did not reach the target.
async fn follow(
    platform: &PlatformDb,
    deploy: Uuid,
    target: Version,
    only: Option<&[Uuid]>,
    args: &Args,
) -> anyhow::Result<ExitCode> {
    let json = matches!(args.output, OutputFormat::Json);
    let started = Instant::now();
    let deadline = args.timeout.map(|s| started + Duration::from_secs(s));
    let mut progress = Progress::new();
    let followed = deploy::follow(platform, deploy, only, deadline, |standing| {
        progress.show(standing);
    })
    .await?;
    progress.finish();
    let stage = if only.is_some() { "canary" } else { "deploy" };
    summarize(
        deploy,
        target,
        stage,
        &followed.rows,
        started.elapsed(),
        json,
    );
    if !followed.finished {
        eprintln!(
            "gave up waiting after {}s; the deploy goes on: `tenantctl deploy --follow {deploy}`",
            started.elapsed().as_secs()
        );
    }
    Ok(if followed.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The counts of each server's tenants, by server name.
fn by_server(rows: &[DeployResultRow]) -> Vec<(String, Counts)> {
    let mut servers: std::collections::BTreeMap<&str, Vec<DeployResultRow>> = Default::default();
    for row in rows {
        servers.entry(&row.server).or_default().push(row.clone());
    }
    servers
        .into_iter()
        .map(|(server, rows)| (server.to_owned(), Counts::of(&rows)))
        .collect()
}

fn version_text(version: Option<i64>) -> String {
    match version {
        None => "-".to_owned(),
        Some(0) => "none".to_owned(),
        Some(v) => v.to_string(),
    }
}

/// The per-tenant summary: every tenant that failed, is unfinished or applied something, and
/// a count of those already at the target. In JSON: every tenant, then the counts.
fn summarize(
    deploy: Uuid,
    target: Version,
    stage: &str,
    rows: &[DeployResultRow],
    took: Duration,
    json: bool,
) {
    let Counts {
        tenants,
        succeeded,
        migrated,
        failed,
        canceled,
        unfinished,
    } = Counts::of(rows);
    if json {
        for row in rows {
            out::json(&serde_json::json!({
                "type": "tenant", "deploy_id": deploy, "tenant_id": row.tenant_id,
                "slug": row.slug, "server": row.server, "status": row.status, "from_version": row.from_version,
                "to_version": row.to_version, "applied": row.applied, "attempts": row.attempts,
                "error": row.error, "duration_ms": row.duration_ms,
            }));
        }
        out::json(&serde_json::json!({
            "type": "summary", "stage": stage, "deploy_id": deploy,
            "target_version": target.get(), "tenants": tenants, "succeeded": succeeded,
            "failed": failed, "canceled": canceled, "unfinished": unfinished,
            "seconds": took.as_secs_f64(),
            "servers": by_server(rows).iter().map(|(server, counts)| serde_json::json!({
                "server": server, "tenants": counts.tenants, "succeeded": counts.succeeded,
                "migrated": counts.migrated, "failed": counts.failed, "canceled": counts.canceled,
                "unfinished": counts.unfinished,
            })).collect::<Vec<_>>(),
        }));
        return;
    }
    let mut table = Table::new(&[
        "RESULT", "TENANT", "FROM", "TO", "APPLIED", "ATTEMPTS", "MS", "ERROR",
    ])
    .right(&[4, 5, 6])
    .indent(2);
    for row in rows {
        let (result, tone) = match row.status.as_str() {
            "succeeded" if row.applied == 0 => continue,
            "succeeded" => ("ok".to_owned(), Tone::Good),
            "failed" | "canceled" => (row.status.to_uppercase(), Tone::Bad),
            other => (other.to_owned(), Tone::Warn),
        };
        let error = match (row.status.as_str(), &row.error) {
            (_, Some(error)) => error.clone(),
            ("canceled", None) => "canceled with the rollout".to_owned(),
            _ => String::new(),
        };
        table.row(
            tone,
            [
                result,
                row.slug.clone(),
                version_text(row.from_version),
                version_text(row.to_version),
                row.applied.to_string(),
                row.attempts.to_string(),
                row.duration_ms.map_or("-".to_owned(), |d| d.to_string()),
                error,
            ],
        );
    }
    let scope = if stage == "canary" {
        "canary of deploy"
    } else {
        "deploy"
    };
    outln!("\n{scope} {deploy} to {target}:");
    if !table.is_empty() {
        table.print();
    }
    let servers = by_server(rows);
    if servers.len() > 1 {
        for (server, counts) in &servers {
            outln!(
                "  {server}: {} tenant(s), {} migrated, {} already at the target, {} failed, {} unfinished",
                counts.tenants,
                counts.migrated,
                counts.succeeded - counts.migrated,
                counts.failed + counts.canceled,
                counts.unfinished
            );
        }
    }
    let up_to_date = succeeded - migrated;
    outln!(
        "{tenants} tenant(s): {migrated} migrated, {up_to_date} already at the target, {} failed, {unfinished} unfinished ({:.1}s)",
        failed + canceled,
        took.as_secs_f64()
    );
    if failed > 0 {
        outln!(
            "failed tenants are marked for reprocessing (`tenantctl status`); their commands are in the dead-letter queue: fix the cause, then `tenantctl dlq replay migrator --all`"
        );
    }
}

/// Prints what each tenant would run; `FAILURE` if a deploy would be refused for conflicts with
/// the released record.
fn print_dry_run(
    catalog: &Catalog,
    dry_run: &DryRun,
    target: Version,
    output: OutputFormat,
) -> ExitCode {
    let json = matches!(output, OutputFormat::Json);
    let platform_pending = &dry_run.platform.pending;
    if json {
        out::json(&serde_json::json!({
            "type": "platform",
            "applied_version": dry_run.platform.applied_version.map(Version::get),
            "pending": platform_pending.iter().map(|v| v.get()).collect::<Vec<_>>(),
        }));
    } else {
        outln!("dry run: nothing is applied or published");
        let list: Vec<String> = platform_pending.iter().map(ToString::to_string).collect();
        outln!(
            "platform: {} pending{}",
            list.len(),
            if list.is_empty() {
                String::new()
            } else {
                format!(": {}", list.join(", "))
            }
        );
    }
    let mut table = Table::new(&["TENANT", "VERSION", "WOULD APPLY", "PROBLEMS"]).indent(2);
    let mut to_migrate = 0;
    let mut unreadable = 0;
    for TenantPreview { tenant, standing } in &dry_run.tenants {
        match standing {
            Ok(standing) => {
                let pending = &standing.pending;
                if !pending.is_empty() {
                    to_migrate += 1;
                }
                if json {
                    out::json(&serde_json::json!({
                        "type": "tenant", "tenant_id": tenant.id, "slug": tenant.slug.as_str(),
                        "version": standing.applied_version.map(Version::get),
                        "would_apply": pending.iter().map(|v| v.get()).collect::<Vec<_>>(),
                        "drift": standing.drift.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "error": null,
                    }));
                } else if !pending.is_empty() || !standing.drift.is_empty() {
                    let list: Vec<String> = pending.iter().map(ToString::to_string).collect();
                    let (tone, problems) = if standing.drift.is_empty() {
                        (Tone::Plain, String::new())
                    } else {
                        (
                            Tone::Bad,
                            format!("DRIFT: {} issue(s), it would fail", standing.drift.len()),
                        )
                    };
                    table.row(
                        tone,
                        [
                            tenant.slug.to_string(),
                            standing
                                .applied_version
                                .map_or("-".to_owned(), |v| v.to_string()),
                            if list.is_empty() {
                                "nothing".to_owned()
                            } else {
                                list.join(", ")
                            },
                            problems,
                        ],
                    );
                }
            }
            Err(error) => {
                unreadable += 1;
                if json {
                    out::json(&serde_json::json!({
                        "type": "tenant", "tenant_id": tenant.id, "slug": tenant.slug.as_str(),
                        "version": null, "would_apply": [], "drift": [],
                        "error": error.to_string(),
                    }));
                } else {
                    table.row(
                        Tone::Bad,
                        [
                            tenant.slug.to_string(),
                            "?".to_owned(),
                            "?".to_owned(),
                            format!("cannot be read: {error}"),
                        ],
                    );
                }
            }
        }
    }
    let tenants = dry_run.tenants.len();
    if json {
        out::json(&serde_json::json!({
            "type": "summary", "dry_run": true, "target_version": target.get(),
            "platform_pending": platform_pending.len(), "tenants": tenants,
            "to_migrate": to_migrate, "unreadable": unreadable,
        }));
    } else {
        if !table.is_empty() {
            table.print();
        }
        outln!("{tenants} tenant(s), {to_migrate} with migrations to apply up to {target}");
    }
    if !dry_run.conflicts.is_empty() {
        let refused = ReleaseRefused {
            origin: catalog.tenant.origin.clone(),
            conflicts: dry_run.conflicts.clone(),
        };
        eprintln!("a deploy would refuse: {refused}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
