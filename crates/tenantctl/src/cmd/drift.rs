//! `tenantctl drift`: which tenants' schemas differ from what their version's migrations build
//! (`shared::drift`), each with its differences. Exit code 0: every tenant checked and clean;
//! 1: drift; 2: no drift found, but some tenants could not be checked.

use std::process::ExitCode;
use std::time::Instant;

use domain::server::ServerName;
use domain::tenant::TenantSlug;
use shared::config::Config;
use shared::drift::{DEFAULT_BATCH, DriftCheck, DriftReport};
use shared::platform::PlatformDb;
use shared::tenant_servers::TenantServers;

use super::OutputFormat;
use super::migrations::load_catalog;
use crate::out::{self, Tone, outln};

pub const EXAMPLES: &str = "Examples:
  tenantctl drift                          # every active and suspended tenant
  tenantctl drift --server pg-2            # one server's tenants
  tenantctl drift --tenant acme            # one tenant, with its differences
  tenantctl drift --full                   # read every schema again, whatever its stamp says
  tenantctl drift --output json | jq 'select(.type == \"drifted\") | .tenant'

Each difference is one line: `+` an object the tenant has and its version does not, `-` one it
lacks, `~` one defined otherwise (expected -> actual). A schema whose catalog stamp has not
changed since its last full read keeps that read's result (counted as `stamps unchanged`);
`--full` reads it again. Exit code: 0 clean, 1 drift, 2 some tenants could not be checked (the
reason is printed).";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only the tenants of this server (`tenantctl servers list`).
    #[arg(long)]
    server: Option<ServerName>,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<TenantSlug>,
    /// Schemas read by one catalog query (schema isolation; each tenant database is read on
    /// its own connection).
    #[arg(long, default_value_t = DEFAULT_BATCH, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Read every tenant's catalog in full, ignoring the catalog stamps kept by the last check
    /// (which trusts a schema whose catalog rows were not written since its last full read).
    /// New stamps are kept.
    #[arg(long)]
    full: bool,
    /// `text` for people; `json`: one JSON object per drifted or unchecked tenant, then a
    /// summary.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let (catalog, _) = load_catalog(config.migrations_dir.as_deref())?;
    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    if let Some(server) = &args.server {
        super::servers::ensure_registered(&platform, server).await?;
    }
    let tenants = platform
        .drift_candidates(args.server.as_ref(), args.tenant.as_ref())
        .await?;
    if let (Some(slug), true) = (&args.tenant, tenants.is_empty()) {
        anyhow::bail!(
            "there is no active or suspended tenant {slug}{}: see `tenantctl status`",
            args.server
                .as_ref()
                .map(|s| format!(" on server {s}"))
                .unwrap_or_default()
        );
    }
    let servers = TenantServers::pooled(platform.clone(), std::sync::Arc::new(config), 2);
    let started = Instant::now();
    let report = DriftCheck {
        platform: &platform,
        servers: &servers,
        set: &catalog.tenant,
        batch: args.batch_size,
        full: args.full,
    }
    .run(tenants)
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    match args.output {
        OutputFormat::Json => print_json(&report, seconds),
        OutputFormat::Text => print_text(&report, seconds),
    }
    Ok(exit_code(&report))
}

fn exit_code(report: &DriftReport) -> ExitCode {
    if !report.drifted.is_empty() {
        ExitCode::from(1)
    } else if !report.unchecked.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_text(report: &DriftReport, seconds: f64) {
    for drifted in &report.drifted {
        let t = &drifted.tenant;
        outln!(
            "{} (server {}, {} isolation, version {}): {} difference(s)",
            Tone::Bad.paint(&t.slug),
            t.server,
            t.isolation,
            t.schema_version,
            drifted.differences.len()
        );
        for difference in &drifted.differences {
            outln!("  {difference}");
        }
    }
    for unchecked in &report.unchecked {
        outln!(
            "{} (server {}): not checked: {}",
            Tone::Warn.paint(&unchecked.tenant.slug),
            unchecked.tenant.server,
            unchecked.reason
        );
    }
    let verdict = if report.drifted.is_empty() {
        Tone::Good.paint("no drift")
    } else {
        Tone::Bad.paint(format_args!("{} drifted", report.drifted.len()))
    };
    outln!(
        "{} tenant(s) checked on {} server(s) in {seconds:.2} s ({} catalog queries, {} stamp queries, {} stamps unchanged{}): {verdict}{}",
        report.checked,
        report.servers,
        report.catalog_queries,
        report.stamp_queries,
        report.stamps_unchanged,
        if report.computed.is_empty() {
            String::new()
        } else {
            format!(
                ", {} expected fingerprint(s) computed",
                report.computed.len()
            )
        },
        if report.unchecked.is_empty() {
            String::new()
        } else {
            format!(", {} not checked", report.unchecked.len())
        }
    );
}

fn print_json(report: &DriftReport, seconds: f64) {
    for drifted in &report.drifted {
        let t = &drifted.tenant;
        out::json(&serde_json::json!({
            "type": "drifted",
            "tenant": t.slug.as_str(),
            "tenant_id": t.id,
            "server": t.server.as_str(),
            "isolation": t.isolation.as_str(),
            "version": t.schema_version.get(),
            "expected_digest": drifted.expected_digest,
            "digest": drifted.digest,
            "differences": drifted.differences.iter().map(|d| serde_json::json!({
                "change": d.change(),
                "kind": d.kind().as_str(),
                "name": d.name(),
                "text": d.to_string(),
            })).collect::<Vec<_>>(),
        }));
    }
    for unchecked in &report.unchecked {
        out::json(&serde_json::json!({
            "type": "unchecked",
            "tenant": unchecked.tenant.slug.as_str(),
            "server": unchecked.tenant.server.as_str(),
            "reason": unchecked.reason,
        }));
    }
    out::json(&serde_json::json!({
        "type": "summary",
        "checked": report.checked,
        "drifted": report.drifted.len(),
        "unchecked": report.unchecked.len(),
        "servers": report.servers,
        "catalog_queries": report.catalog_queries,
        "stamp_queries": report.stamp_queries,
        "stamps_unchanged": report.stamps_unchanged,
        "expected_computed": report.computed.len(),
        "seconds": seconds,
    }));
}
