//! `tenantctl audit`: the audit trail.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use domain::tenant::TenantSlug;
use engine::directives::parse_duration;
use shared::config::Config;
use shared::platform::{AuditFilter, PlatformDb};

use super::OutputFormat;
use crate::out::{self, Table, Tone};

pub const EXAMPLES: &str = "Examples:
  tenantctl audit                                   # the last 50 events
  tenantctl audit --tenant acme_towers --since 2h
  tenantctl audit --type migration.rollback --since 2026-11-30T00:00:00Z
  tenantctl audit --type tenant.provisioning_failed --output json";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this tenant (slug or id).
    #[arg(long)]
    tenant: Option<String>,
    /// Only this event type (e.g. tenant.provisioned).
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Only events since then: a duration back from now (30min, 2h, …) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// `text` for people; `json`: one JSON object per line, each with a `type`
    /// (docs/OPERATIONS.md, "Machine-readable output").
    #[arg(long, value_enum, default_value = "text")]
    output: OutputFormat,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    let tenant_id = match args.tenant.as_deref() {
        None => None,
        Some(text) => Some(match uuid::Uuid::parse_str(text) {
            Ok(id) => id,
            Err(_) => {
                let slug = TenantSlug::parse(text)?;
                let found = platform.tenants(Some(&slug)).await?;
                found
                    .first()
                    .map(|t| t.id)
                    .ok_or_else(|| anyhow::anyhow!("there is no tenant {slug}"))?
            }
        }),
    };
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let rows = platform
        .audit(&AuditFilter {
            tenant_id,
            event_type: args.event_type,
            since,
            limit: args.limit,
        })
        .await?;
    match args.output {
        OutputFormat::Json => {
            for row in &rows {
                out::json(&serde_json::json!({
                    "type": "event",
                    "id": row.record.id,
                    "event_type": row.record.event_type,
                    "tenant_id": row.record.tenant_id,
                    "tenant": row.tenant_slug,
                    "source": row.record.source,
                    "occurred_at": row.record.occurred_at,
                    "recorded_at": row.recorded_at,
                    "data": row.record.data,
                }));
            }
            out::json(&serde_json::json!({ "type": "summary", "events": rows.len() }));
        }
        OutputFormat::Text => {
            let mut table = Table::new(&["OCCURRED", "TYPE", "TENANT", "ID", "DATA"]);
            for row in &rows {
                let tenant = row
                    .tenant_slug
                    .clone()
                    .or_else(|| row.record.tenant_id.map(|id| id.to_string()))
                    .unwrap_or_else(|| "-".to_owned());
                let mut data = row.record.data.to_string();
                if data.chars().count() > 120 {
                    data = format!("{}…", data.chars().take(119).collect::<String>());
                }
                let tone = if row.record.event_type.ends_with("failed") {
                    Tone::Bad
                } else {
                    Tone::Plain
                };
                table.row(
                    tone,
                    [
                        row.record
                            .occurred_at
                            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                            .to_string(),
                        row.record.event_type.clone(),
                        tenant,
                        row.record.id.to_string(),
                        data,
                    ],
                );
            }
            if !table.is_empty() {
                table.print();
            }
            eprintln!("{} event(s)", rows.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let back = parse_duration(text).map_err(|why| {
        anyhow::anyhow!(
            "--since {text:?}: give a duration such as 30min or 2h, or an RFC 3339 time ({why})"
        )
    })?;
    Ok(Utc::now() - chrono::TimeDelta::from_std(back)?)
}
