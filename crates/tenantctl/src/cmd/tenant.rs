//! `tenantctl tenant register|show|retry`.

use std::process::ExitCode;

use clap::Subcommand;
use domain::Isolation;
use domain::message::{Event as _, TenantRegistered};
use domain::tenant::TenantSlug;
use shared::bus::WorkQueue;
use shared::config::Config;
use shared::platform::PlatformDb;
use shared::platform::tenants::StepRow;
use tenantctl::dead_letters::{self, DeadLetterQueue, Selection};
use tokio_util::sync::CancellationToken;

use super::OutputFormat;
use crate::out::{self, Table, Tone, outln};

pub const EXAMPLES: &str = "Examples:
  tenantctl tenant register --slug acme_towers --name \"Acme Towers\" \\
      --admin-email ana@acme.example --admin-name \"Ana Lima\" --isolation database
  tenantctl tenant show acme_towers
  tenantctl tenant show acme_towers --output json
  tenantctl tenant retry acme_towers --operator ana.sre";

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Register a tenant: publishes `tenant.registered`, as the platform backend does; the
    /// provisioner takes it from there. Prints the tenant id.
    #[command(
        after_long_help = "Examples:\n  tenantctl tenant register --slug acme_towers --name \"Acme Towers\" --admin-email ana@acme.example --admin-name \"Ana Lima\"\n  tenantctl tenant register --slug bay_view --name \"Bay View\" --admin-email bo@bay.example --admin-name \"Bo Lee\" --isolation database --plan premium"
    )]
    Register {
        /// The tenant's slug (`^[a-z][a-z0-9_]{2,39}$`): its schema or database is
        /// `tenant_<slug>`.
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
        /// The tenant server to create it on [default: the least loaded open server with room;
        /// `tenantctl servers list`].
        #[arg(long)]
        server: Option<domain::server::ServerName>,
    },
    /// A tenant's state, its provisioning steps with timings and errors, and its migrations.
    #[command(
        after_long_help = "Examples:\n  tenantctl tenant show acme_towers\n  tenantctl tenant show acme_towers --output json | jq '.steps[] | select(.status == \"failed\")'"
    )]
    Show {
        /// The tenant's slug.
        slug: TenantSlug,
        /// `text` for people; `json`: one JSON object with the steps inside
        /// (docs/OPERATIONS.md, "Machine-readable output").
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Resume a failed provisioning at its failed step: replays the tenant's dead-lettered
    /// registration.
    #[command(
        after_long_help = "Examples:\n  tenantctl tenant retry acme_towers\n  TENANCY_OPERATOR=ana.sre tenantctl tenant retry acme_towers"
    )]
    Retry {
        /// The tenant's slug.
        slug: TenantSlug,
        /// Who retries, a handle recorded in the audit trail [default: $TENANCY_OPERATOR,
        /// else $USER, else $LOGNAME].
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
            server,
        } => {
            let tenant_id = tenant_id.unwrap_or_else(uuid::Uuid::new_v4);
            let data = serde_json::json!({
                "tenant_id": tenant_id,
                "slug": slug.as_str(),
                "name": name,
                "plan": plan,
                "isolation": isolation,
                "server": server.as_ref().map(domain::server::ServerName::as_str),
                "admin": { "email": admin_email, "name": admin_name },
            });
            let registered = TenantRegistered::from_data(&data)
                .map_err(|e| anyhow::anyhow!("not a valid registration: {e}"))?;
            let bus = super::connect::bus(&config).await?;
            let event = bus.publisher().event(registered);
            bus.publisher().publish(&event).await?;
            bus.close().await;
            outln!(
                "registered {slug} as tenant {tenant_id} (event {})",
                event.id
            );
            Ok(ExitCode::SUCCESS)
        }
        TenantCommand::Show { slug, output } => {
            show(&config, &slug, matches!(output, OutputFormat::Json)).await
        }
        TenantCommand::Retry { slug, operator } => {
            let operator = super::operator::handle(operator)?;
            let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
            let detail = platform
                .tenant_detail(&slug)
                .await?
                .ok_or_else(|| anyhow::anyhow!("there is no tenant {slug}"))?;
            let bus = super::connect::bus(&config).await?;
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
                            let event = publisher.event(dead_letters::replayed_event(
                                WorkQueue::TenantRegistered,
                                &info,
                                operator,
                            ));
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
            outln!(
                "retrying {slug}: its registration was sent back to the provisioner, which resumes at the failed step"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn show(config: &Config, slug: &TenantSlug, json: bool) -> anyhow::Result<ExitCode> {
    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    let Some(tenant) = platform.tenant_detail(slug).await? else {
        anyhow::bail!("there is no tenant {slug}");
    };
    let server = platform
        .server_of(tenant.id)
        .await?
        .unwrap_or_else(domain::server::ServerName::default_server);
    let standing = if tenant.status == domain::provisioning::TenantStatus::Active
        || tenant.schema_version > 0
    {
        let isolation: Isolation = tenant
            .isolation
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        let catalog = engine::Catalog::load(config.migrations_dir.as_deref())?;
        let servers = shared::tenant_servers::TenantServers::pooled(
            platform.clone(),
            std::sync::Arc::new(config.clone()),
            1,
        );
        let storage = servers.storage(&server).await?;
        Some(storage.status(slug, isolation, &catalog.tenant).await?)
    } else {
        None
    };
    let steps: Vec<(domain::provisioning::Step, Option<&StepRow>)> =
        domain::provisioning::Step::ALL
            .into_iter()
            .map(|step| (step, tenant.steps.iter().find(|s| s.step == step)))
            .collect();
    if json {
        let steps: Vec<serde_json::Value> = steps
            .iter()
            .map(|(step, row)| match row {
                Some(row) => serde_json::json!({
                    "step": step.to_string(), "status": row.status, "attempts": row.attempts,
                    "started_at": row.started_at, "finished_at": row.finished_at,
                    "duration_ms": row.duration_ms, "last_error": row.last_error,
                }),
                None => serde_json::json!({
                    "step": step.to_string(), "status": "pending", "attempts": 0,
                    "started_at": null, "finished_at": null, "duration_ms": null,
                    "last_error": null,
                }),
            })
            .collect();
        let migrations = standing.as_ref().map(|standing| {
            serde_json::json!({
                "applied_version": standing.applied_version.map(domain::Version::get),
                "pending": standing.pending.iter().map(|v| v.get()).collect::<Vec<_>>(),
                "drift": standing.drift.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        });
        out::json(&serde_json::json!({
            "type": "tenant", "tenant_id": tenant.id, "slug": tenant.slug, "name": tenant.name,
            "status": tenant.status.as_str(), "isolation": tenant.isolation,
            "server": server.as_str(), "plan": tenant.plan,
            "schema_version": tenant.schema_version, "registered_at": tenant.created_at,
            "activated_at": tenant.activated_at,
            "activation_ms": tenant.activated_at.map(|at| (at - tenant.created_at).num_milliseconds()),
            "steps": steps, "migrations": migrations,
        }));
        return Ok(ExitCode::SUCCESS);
    }

    outln!("tenant {} ({})", tenant.slug, tenant.id);
    let mut facts = Table::new(&["", ""]).indent(2);
    let status_tone = match tenant.status {
        domain::provisioning::TenantStatus::Active => Tone::Good,
        domain::provisioning::TenantStatus::Failed => Tone::Bad,
        _ => Tone::Warn,
    };
    facts.row(Tone::Plain, ["name", tenant.name.as_str()]);
    facts.row(status_tone, ["status", tenant.status.as_str()]);
    facts.row(Tone::Plain, ["isolation", tenant.isolation.as_str()]);
    facts.row(Tone::Plain, ["server", server.as_str()]);
    facts.row(Tone::Plain, ["plan", tenant.plan.as_deref().unwrap_or("-")]);
    let version = if tenant.schema_version == 0 {
        "-".to_owned()
    } else {
        tenant.schema_version.to_string()
    };
    facts.row(Tone::Plain, ["version", version.as_str()]);
    let registered = tenant
        .created_at
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    facts.row(Tone::Plain, ["registered", registered.as_str()]);
    if let Some(at) = tenant.activated_at {
        let active = format!(
            "{} ({} ms after registration)",
            at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            (at - tenant.created_at).num_milliseconds()
        );
        facts.row(Tone::Plain, ["active", active.as_str()]);
    }
    // The facts have no header: skip the empty first line.
    for line in facts.lines().into_iter().skip(1) {
        outln!("{line}");
    }

    outln!();
    let mut table = Table::new(&[
        "STEP",
        "STATUS",
        "ATTEMPTS",
        "DURATION",
        "FINISHED",
        "LAST ERROR",
    ])
    .right(&[2, 3])
    .indent(2);
    for (step, row) in &steps {
        match row {
            Some(row) => table.row(
                match row.status.parse() {
                    Ok(domain::provisioning::StepStatus::Succeeded) => Tone::Good,
                    Ok(domain::provisioning::StepStatus::Failed) => Tone::Bad,
                    _ => Tone::Warn,
                },
                [
                    step.to_string(),
                    row.status.clone(),
                    row.attempts.to_string(),
                    row.duration_ms.map_or("-".to_owned(), |d| format!("{d}ms")),
                    row.finished_at.map_or("-".to_owned(), |t| {
                        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
                    }),
                    row.last_error.clone().unwrap_or_default(),
                ],
            ),
            None => table.row(
                Tone::Plain,
                [
                    step.to_string(),
                    "pending".to_owned(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            ),
        }
    }
    table.print();
    if let Some(standing) = standing {
        outln!(
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
