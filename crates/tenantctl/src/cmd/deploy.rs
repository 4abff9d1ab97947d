//! `tenantctl deploy`: the platform migrations once, then one `migrate.tenant` per tenant.
//!
//! 1. The sets are checked (the static half of `migrations check`): an unapproved destructive
//!    migration or any other error stops the deploy before anything is applied or published.
//! 2. The platform migrations are applied under the platform's migration lock.
//! 3. The deploy and its tenants (active and suspended) are recorded under the fleet lock, so a
//!    tenant that activates meanwhile joins the deploy by itself (`shared::platform::deploys`).
//! 4. Canary tenants first (`--canary N`): the rest is published only if all of them reach the
//!    target. Then the rest, in confirmed batches.
//! 5. `--wait` follows the results that the migrators record, with a progress line, and ends
//!    with a per-tenant summary; the exit code is 0 only if every tenant reached the target.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use domain::Version;
use domain::message::MigrateTenant;
use engine::EngineOptions;
use engine::check::static_findings;
use engine::lint::Severity;
use engine::release::{Coverage, ReleaseConflict, ReleaseRefused};
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use shared::config::Config;
use shared::platform::PlatformDb;
use shared::platform::deploys::{DeployResultRow, DeployTenant, NewDeploy};
use shared::service::Context;
use shared::tenant_storage::TenantStorage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::OutputFormat;
use super::migrations::load_catalog;
use super::progress::{Progress, Tally};
use crate::out::{self, Table, Tone, outln};

pub const EXAMPLES: &str = "Examples:
  tenantctl deploy --dry-run                   # what each tenant would run; nothing applied or published
  tenantctl deploy --wait                      # every tenant, with progress and a per-tenant summary
  tenantctl deploy --canary 20 --wait          # 20 tenants first; any failure stops the rollout
  tenantctl deploy --to 20270101000000 --wait  # up to a version
  tenantctl deploy --follow <DEPLOY_ID>        # attach to a running deploy
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
    /// Who deploys, a handle recorded with the deploy [default: $TENANCY_OPERATOR, else $USER,
    /// else $LOGNAME].
    #[arg(long)]
    operator: Option<String>,
    /// Commands published between two bookkeeping writes.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// `text` for people; `json`: one JSON object per line, each with a `type`
    /// (docs/OPERATIONS.md, "Machine-readable output").
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

/// Publishes in flight at once: enough to hide the broker's confirm latency.
const PUBLISH_WINDOW: usize = 1024;

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let json = matches!(args.output, OutputFormat::Json);
    if let Some(deploy) = args.follow {
        let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
        let record = platform
            .deploy(deploy)
            .await?
            .ok_or_else(|| anyhow::anyhow!("there is no deploy {deploy}"))?;
        return follow(&platform, deploy, record.target_version, None, &args).await;
    }

    let (catalog, origin) = load_catalog(config.migrations_dir.as_deref())?;
    let errors: Vec<String> = static_findings(&catalog)
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.to_string())
        .collect();
    for error in &errors {
        eprintln!("{error}");
    }
    if !errors.is_empty() && !args.dry_run {
        anyhow::bail!(
            "refusing to deploy: the migrations ({origin}) fail {} check(s) listed above; nothing was applied or published (see `tenantctl migrations check`)",
            errors.len()
        );
    }
    let latest = catalog
        .tenant
        .latest()
        .ok_or_else(|| anyhow::anyhow!("there are no tenant migrations to deploy"))?;
    let target = args.to.unwrap_or(latest);
    anyhow::ensure!(
        catalog
            .tenant
            .migrations
            .iter()
            .any(|m| m.version == target),
        "--to {target}: there is no tenant migration with this version (the newest is {latest})"
    );

    if args.dry_run {
        let code = dry_run(&config, &catalog, target, json).await?;
        if !errors.is_empty() {
            eprintln!(
                "a deploy would refuse: the migrations ({origin}) fail {} check(s) listed above",
                errors.len()
            );
            return Ok(ExitCode::FAILURE);
        }
        return Ok(code);
    }

    let operator = super::operator::handle(args.operator.clone())?;
    let shutdown = CancellationToken::new();
    let ctx = Context::connect_existing(config, "tenantctl", &shutdown)
        .await
        .context("connecting to PostgreSQL and RabbitMQ")?;
    // Before anything is applied or published: the files must be the ones already released
    // (completed on some tenant; the migrators and the provisioner record them).
    refuse_conflicts(&catalog, release_conflicts(&ctx.platform, &catalog).await?)?;
    let platform_run = ctx
        .apply_platform_migrations()
        .await
        .context("applying the platform migrations")?;
    let deploy = Uuid::new_v4();

    let tenants = ctx
        .platform
        .record_deploy(&NewDeploy {
            id: deploy,
            target_version: target,
            platform_version: platform_run.after.unwrap_or(Version::ZERO),
            operator,
            canary: args.canary,
        })
        .await?;
    let platform_version = platform_run.after.map(Version::get);
    if json {
        out::json(&serde_json::json!({
            "type": "deploy", "deploy_id": deploy, "target_version": target.get(),
            "platform_version": platform_version, "platform_applied": platform_run.steps.len(),
            "tenants": tenants.len(),
        }));
    } else {
        outln!(
            "deploy {deploy}: platform at {} ({} applied now); {} tenant(s) to bring to {target}",
            platform_version.map_or("-".to_owned(), |v| v.to_string()),
            platform_run.steps.len(),
            tenants.len()
        );
    }

    let canary = usize::try_from(args.canary)
        .unwrap_or(usize::MAX)
        .min(tenants.len());
    let (first, rest) = tenants.split_at(canary);
    if !first.is_empty() {
        publish(&ctx, deploy, target, first, args.batch_size).await?;
        eprintln!("canary: published to {} tenant(s); waiting", first.len());
        let ids: Vec<Uuid> = first.iter().map(|t| t.id).collect();
        let code = follow(&ctx.platform, deploy, target, Some(&ids), &args).await?;
        if code != ExitCode::SUCCESS {
            ctx.platform.finish_publishing(deploy, true).await?;
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
    publish(&ctx, deploy, target, rest, args.batch_size).await?;
    ctx.platform.finish_publishing(deploy, false).await?;
    ctx.bus.close().await;
    if !args.wait {
        if json {
            out::json(&serde_json::json!({
                "type": "published", "deploy_id": deploy, "target_version": target.get(),
                "tenants": tenants.len(),
            }));
        } else {
            outln!(
                "published {} command(s); follow with `tenantctl deploy --follow {deploy}`",
                tenants.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    follow(&ctx.platform, deploy, target, None, &args).await
}

/// What the tenant sets contradict in the released record: every released version must be
/// there, unchanged (a deploy of an older build is refused too).
async fn release_conflicts(
    platform: &PlatformDb,
    catalog: &engine::Catalog,
) -> anyhow::Result<Vec<ReleaseConflict>> {
    let mut conflicts = Vec::new();
    for set in [&catalog.tenant, &catalog.tenant_seeds] {
        conflicts.extend(
            platform
                .release_conflicts(set, Coverage::Everything)
                .await?,
        );
    }
    Ok(conflicts)
}

fn refuse_conflicts(
    catalog: &engine::Catalog,
    conflicts: Vec<ReleaseConflict>,
) -> anyhow::Result<()> {
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(ReleaseRefused {
        origin: catalog.tenant.origin.clone(),
        conflicts,
    })
    .context("refusing to deploy; nothing was published")
}

/// Publishes one confirmed `migrate.tenant` per tenant, `batch` at a time, and marks each batch
/// published.
async fn publish(
    ctx: &Context,
    deploy: Uuid,
    target: Version,
    tenants: &[DeployTenant],
    batch: usize,
) -> anyhow::Result<()> {
    let publisher = ctx.bus.publisher();
    for chunk in tenants.chunks(batch.max(1)) {
        stream::iter(chunk)
            .map(|tenant| async move {
                let command = publisher.event(MigrateTenant {
                    tenant_id: tenant.id,
                    deploy_id: deploy,
                    target_version: Some(target),
                });
                publisher
                    .publish(&command)
                    .await
                    .with_context(|| format!("publishing migrate.tenant for {}", tenant.slug))
            })
            .buffer_unordered(PUBLISH_WINDOW)
            .try_collect::<()>()
            .await?;
        let ids: Vec<Uuid> = chunk.iter().map(|t| t.id).collect();
        ctx.platform.mark_published(deploy, &ids).await?;
    }
    Ok(())
}

/// Waits until every tenant of the deploy (or of `only`: the canary) is done, showing
/// progress on stderr, then prints the summary. `FAILURE` if any tenant did not reach the
/// target.
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
    let finished = loop {
        let counts = match only {
            None => platform.deploy_progress(deploy).await?,
            Some(ids) => {
                let mut counts = BTreeMap::new();
                for row in platform.deploy_results(deploy, Some(ids)).await? {
                    *counts.entry(row.status).or_insert(0) += 1;
                }
                counts
            }
        };
        let tally = tally_of(&counts);
        progress.show(&tally);
        if tally.unfinished == 0 {
            break true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    progress.finish();
    let rows = platform.deploy_results(deploy, only).await?;
    let stage = if only.is_some() { "canary" } else { "deploy" };
    summarize(deploy, target, stage, &rows, started.elapsed(), json);
    if !finished {
        eprintln!(
            "gave up waiting after {}s; the deploy goes on: `tenantctl deploy --follow {deploy}`",
            started.elapsed().as_secs()
        );
    }
    let all_done = finished && rows.iter().all(|r| r.status == "succeeded");
    Ok(if all_done {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Counts by `deploy_tenants.status`, as progress.
fn tally_of(counts: &BTreeMap<String, i64>) -> Tally {
    let mut tally = Tally::default();
    for (status, count) in counts {
        let count = u64::try_from(*count).unwrap_or(0);
        tally.total += count;
        match status.as_str() {
            "succeeded" => tally.succeeded += count,
            "failed" | "canceled" => tally.failed += count,
            _ => tally.unfinished += count,
        }
    }
    tally
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
    let count = |status: &str| rows.iter().filter(|r| r.status == status).count();
    let (succeeded, failed, canceled) = (count("succeeded"), count("failed"), count("canceled"));
    let unfinished = rows.len() - succeeded - failed - canceled;
    if json {
        for row in rows {
            out::json(&serde_json::json!({
                "type": "tenant", "deploy_id": deploy, "tenant_id": row.tenant_id,
                "slug": row.slug, "status": row.status, "from_version": row.from_version,
                "to_version": row.to_version, "applied": row.applied, "attempts": row.attempts,
                "error": row.error, "duration_ms": row.duration_ms,
            }));
        }
        out::json(&serde_json::json!({
            "type": "summary", "stage": stage, "deploy_id": deploy,
            "target_version": target.get(), "tenants": rows.len(), "succeeded": succeeded,
            "failed": failed, "canceled": canceled, "unfinished": unfinished,
            "seconds": took.as_secs_f64(),
        }));
        return;
    }
    let mut table = Table::new(&[
        "RESULT", "TENANT", "FROM", "TO", "APPLIED", "ATTEMPTS", "MS", "ERROR",
    ])
    .right(&[4, 5, 6])
    .indent(2);
    let mut migrated = 0;
    for row in rows {
        let (result, tone) = match row.status.as_str() {
            "succeeded" if row.applied == 0 => continue,
            "succeeded" => {
                migrated += 1;
                ("ok".to_owned(), Tone::Good)
            }
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
    let up_to_date = succeeded - migrated;
    outln!(
        "{} tenant(s): {migrated} migrated, {up_to_date} already at the target, {} failed, {unfinished} unfinished ({:.1}s)",
        rows.len(),
        failed + canceled,
        took.as_secs_f64()
    );
    if failed > 0 {
        outln!(
            "failed tenants are marked for reprocessing (`tenantctl status`); their commands are in the dead-letter queue: fix the cause, then `tenantctl dlq replay migrator --all`"
        );
    }
}

/// What each tenant would run, without applying or publishing anything.
async fn dry_run(
    config: &Config,
    catalog: &engine::Catalog,
    target: Version,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    let conflicts = release_conflicts(&platform, catalog).await?;
    let platform_standing = {
        let PlatformDb::Postgres(pool) = &platform else {
            anyhow::bail!("deploys need a PostgreSQL platform database");
        };
        engine::Engine::new(
            engine::PgSchemaBackend::new(pool.clone()),
            EngineOptions::default(),
        )
        .status(&engine::Target::Platform, &catalog.platform)
        .await?
    };
    let storage = TenantStorage::connect(config, 8, EngineOptions::default()).await?;
    let tenants: Vec<_> = platform
        .tenants(None)
        .await?
        .into_iter()
        .filter(|t| matches!(t.status.as_str(), "active" | "suspended"))
        .collect();
    let plans: Vec<_> = stream::iter(&tenants)
        .map(|tenant| {
            let storage = &storage;
            async move {
                let standing = storage
                    .status(&tenant.slug, tenant.isolation, &catalog.tenant)
                    .await;
                (tenant, standing)
            }
        })
        .buffered(8)
        .collect()
        .await;
    let platform_pending: Vec<Version> = platform_standing.pending.clone();
    if json {
        out::json(&serde_json::json!({
            "type": "platform",
            "applied_version": platform_standing.applied_version.map(Version::get),
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
    for (tenant, standing) in plans {
        match standing {
            Ok(standing) => {
                let pending: Vec<Version> = standing
                    .pending
                    .iter()
                    .copied()
                    .filter(|v| *v <= target)
                    .collect();
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
    if json {
        out::json(&serde_json::json!({
            "type": "summary", "dry_run": true, "target_version": target.get(),
            "platform_pending": platform_pending.len(), "tenants": tenants.len(),
            "to_migrate": to_migrate, "unreadable": unreadable,
        }));
    } else {
        if !table.is_empty() {
            table.print();
        }
        outln!(
            "{} tenant(s), {to_migrate} with migrations to apply up to {target}",
            tenants.len()
        );
    }
    if !conflicts.is_empty() {
        let refused = ReleaseRefused {
            origin: catalog.tenant.origin.clone(),
            conflicts,
        };
        eprintln!("a deploy would refuse: {refused}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
