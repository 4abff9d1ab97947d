//! `tenantctl deploy`: the platform migrations once, then one `migrate.tenant` per tenant.
//!
//! 1. The sets are checked (the static half of `migrations check`): an unapproved destructive
//!    migration or any other error stops the deploy before anything is applied or published.
//! 2. The platform migrations are applied under the platform's migration lock.
//! 3. The deploy and its tenants (active and suspended) are recorded under the fleet lock, so a
//!    tenant that activates meanwhile joins the deploy by itself (`shared::store::deploys`).
//! 4. Canary tenants first (`--canary N`): the rest is published only if all of them reach the
//!    target. Then the rest, in confirmed batches.
//! 5. `--wait` follows the results that the migrators record, with a progress line, and ends
//!    with a per-tenant summary; the exit code is 0 only if every tenant reached the target.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use shared::config::Config;
use shared::message::MigrateTenant;
use shared::migrate::check::static_findings;
use shared::migrate::lint::Severity;
use shared::migrate::release::{Coverage, ReleaseConflict, ReleaseRefused};
use shared::migrate::{EngineOptions, Version};
use shared::service::Context;
use shared::storage::TenantStorage;
use shared::store::PlatformDb;
use shared::store::deploys::{DeployResultRow, DeployTenant, NewDeploy};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::OutputFormat;
use super::migrations::load_catalog;

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
    /// Who deploys (recorded with the deploy) [default: $USER].
    #[arg(long)]
    operator: Option<String>,
    /// Commands published between two bookkeeping writes.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
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

    let operator = super::dlq::operator_handle(args.operator.clone())?;
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
    if !json {
        println!(
            "deploy {deploy}: platform at {} ({} applied now); {} tenant(s) to bring to {target}",
            platform_run.after.map_or("-".to_owned(), |v| v.to_string()),
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
        if !json {
            println!("canary: published to {} tenant(s); waiting", first.len());
        }
        let ids: Vec<Uuid> = first.iter().map(|t| t.id).collect();
        let code = follow(&ctx.platform, deploy, target, Some(&ids), &args).await?;
        if code != ExitCode::SUCCESS {
            ctx.platform.finish_publishing(deploy, true).await?;
            ctx.bus.close().await;
            eprintln!(
                "canary failed: the other {} tenant(s) were not published; fix and deploy again",
                rest.len()
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    publish(&ctx, deploy, target, rest, args.batch_size).await?;
    ctx.platform.finish_publishing(deploy, false).await?;
    ctx.bus.close().await;
    if !args.wait {
        if json {
            println!(
                "{}",
                serde_json::json!({ "deploy_id": deploy, "target_version": target.get(), "tenants": tenants.len() })
            );
        } else {
            println!(
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
    catalog: &shared::migrate::Catalog,
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
    catalog: &shared::migrate::Catalog,
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

/// Waits until every tenant of the deploy (or of `only`) is done, showing progress, then
/// prints the summary. `FAILURE` if any tenant did not reach the target.
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
    let mut progress = Progress::new(!json);
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
        let tally = Tally::of(&counts);
        progress.show(&tally, started.elapsed());
        if tally.unfinished == 0 {
            break true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    progress.end();
    let rows = platform.deploy_results(deploy, only).await?;
    summarize(deploy, target, &rows, started.elapsed(), json);
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

#[derive(Debug, Default)]
struct Tally {
    total: i64,
    succeeded: i64,
    failed: i64,
    unfinished: i64,
}

impl Tally {
    fn of(counts: &BTreeMap<String, i64>) -> Self {
        let mut tally = Tally::default();
        for (status, count) in counts {
            tally.total += count;
            match status.as_str() {
                "succeeded" => tally.succeeded += count,
                "failed" | "canceled" => tally.failed += count,
                _ => tally.unfinished += count,
            }
        }
        tally
    }
}

/// A progress line on stderr: redrawn in place on a terminal, a line every few seconds
/// otherwise (CI logs).
struct Progress {
    enabled: bool,
    terminal: bool,
    last_line: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
        }
    }

    fn show(&mut self, tally: &Tally, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        if !self.terminal
            && self
                .last_line
                .is_some_and(|at| at.elapsed() < Duration::from_secs(5))
            && tally.unfinished > 0
        {
            return;
        }
        let done = tally.succeeded + tally.failed;
        let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
        let eta = if rate > 0.0 && tally.unfinished > 0 {
            format!("{:.0}s", tally.unfinished as f64 / rate)
        } else {
            "-".to_owned()
        };
        const WIDTH: i64 = 30;
        let filled = (done * WIDTH).checked_div(tally.total).unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let line = format!(
            "[{bar}] {done}/{} done: {} ok, {} failed, {} pending | {rate:.0}/s | ETA {eta}",
            tally.total, tally.succeeded, tally.failed, tally.unfinished
        );
        let mut stderr = std::io::stderr();
        if self.terminal {
            let _ = write!(stderr, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
        self.last_line = Some(Instant::now());
    }

    fn end(&self) {
        if self.enabled && self.terminal {
            eprintln!();
        }
    }
}

fn version_text(version: Option<i64>) -> String {
    match version {
        None => "-".to_owned(),
        Some(0) => "none".to_owned(),
        Some(v) => v.to_string(),
    }
}

/// The per-tenant summary: every tenant that failed, is unfinished or applied something, and
/// a count of those already at the target.
fn summarize(deploy: Uuid, target: Version, rows: &[DeployResultRow], took: Duration, json: bool) {
    if json {
        for row in rows {
            println!(
                "{}",
                serde_json::json!({
                    "deploy_id": deploy, "tenant_id": row.tenant_id, "slug": row.slug,
                    "status": row.status, "from_version": row.from_version,
                    "to_version": row.to_version, "applied": row.applied,
                    "attempts": row.attempts, "error": row.error, "duration_ms": row.duration_ms,
                })
            );
        }
        let count = |status: &str| rows.iter().filter(|r| r.status == status).count();
        println!(
            "{}",
            serde_json::json!({
                "deploy_id": deploy, "target_version": target.get(), "tenants": rows.len(),
                "succeeded": count("succeeded"), "failed": count("failed"),
                "canceled": count("canceled"),
                "unfinished": rows.len() - count("succeeded") - count("failed") - count("canceled"),
                "seconds": took.as_secs_f64(),
            })
        );
        return;
    }
    let mut up_to_date = 0;
    let mut applied = 0;
    let mut failed = 0;
    let mut unfinished = 0;
    println!("\ndeploy {deploy} to {target}:");
    for row in rows {
        let line = match row.status.as_str() {
            "succeeded" if row.applied == 0 => {
                up_to_date += 1;
                continue;
            }
            "succeeded" => {
                applied += 1;
                format!(
                    "  ok        {:<40} {} -> {} ({} applied, {} ms)",
                    row.slug,
                    version_text(row.from_version),
                    version_text(row.to_version),
                    row.applied,
                    row.duration_ms.unwrap_or(0)
                )
            }
            "failed" | "canceled" => {
                failed += 1;
                format!(
                    "  {:<9} {:<40} at {}: {}",
                    row.status.to_uppercase(),
                    row.slug,
                    version_text(row.to_version.or(row.from_version)),
                    row.error.as_deref().unwrap_or("canceled with the rollout")
                )
            }
            other => {
                unfinished += 1;
                format!(
                    "  {:<9} {:<40} {}",
                    other,
                    row.slug,
                    row.error.as_deref().unwrap_or("")
                )
            }
        };
        println!("{line}");
    }
    println!(
        "{} tenant(s): {applied} migrated, {up_to_date} already at the target, {failed} failed, {unfinished} unfinished ({:.1}s)",
        rows.len(),
        took.as_secs_f64()
    );
    if failed > 0 {
        println!(
            "failed tenants are marked for reprocessing (`tenantctl status`); their commands are in the dead-letter queue: fix the cause, then `tenantctl dlq replay migrator --all`"
        );
    }
}

/// What each tenant would run, without applying or publishing anything.
async fn dry_run(
    config: &Config,
    catalog: &shared::migrate::Catalog,
    target: Version,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    let conflicts = release_conflicts(&platform, catalog).await?;
    let platform_standing = {
        let PlatformDb::Postgres(pool) = &platform else {
            anyhow::bail!("deploys need a PostgreSQL platform database");
        };
        shared::migrate::Engine::new(
            shared::migrate::PgSchemaBackend::new(pool.clone()),
            EngineOptions::default(),
        )
        .status(&shared::migrate::Target::Platform, &catalog.platform)
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
    let platform_pending: Vec<String> = platform_standing
        .pending
        .iter()
        .map(|v| v.to_string())
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({ "platform_pending": platform_pending, "target_version": target.get(), "tenants": tenants.len() })
        );
    } else {
        println!(
            "dry run: nothing is applied or published\nplatform: {} pending {}",
            platform_pending.len(),
            platform_pending.join(", ")
        );
    }
    let mut to_migrate = 0;
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
                    println!(
                        "{}",
                        serde_json::json!({
                            "tenant_id": tenant.id, "slug": tenant.slug.as_str(),
                            "version": standing.applied_version.map(Version::get),
                            "would_apply": pending.iter().map(|v| v.get()).collect::<Vec<_>>(),
                            "drift": standing.drift.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        })
                    );
                } else if !pending.is_empty() || !standing.drift.is_empty() {
                    let list: Vec<String> = pending.iter().map(ToString::to_string).collect();
                    println!(
                        "  {:<40} would apply {}{}",
                        tenant.slug,
                        if list.is_empty() {
                            "nothing".to_owned()
                        } else {
                            list.join(", ")
                        },
                        if standing.drift.is_empty() {
                            String::new()
                        } else {
                            format!(" (DRIFT: {} issue(s), it would fail)", standing.drift.len())
                        }
                    );
                }
            }
            Err(error) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "tenant_id": tenant.id, "slug": tenant.slug.as_str(), "error": error.to_string() })
                    );
                } else {
                    println!("  {:<40} cannot be read: {error}", tenant.slug);
                }
            }
        }
    }
    if !json {
        println!(
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
