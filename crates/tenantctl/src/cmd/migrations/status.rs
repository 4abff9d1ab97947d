//! `tenantctl migrations status`

use std::process::ExitCode;

use domain::Version;
use domain::tenant::TenantSlug;
use engine::plan::Standing;
use engine::{Engine, EngineOptions, MigrationSet, PgSchemaBackend, SqliteBackend, Target};
use futures_util::{StreamExt, stream};
use shared::config::{Config, DatabaseUrl};
use shared::platform::{PlatformDb, TenantRecord};
use shared::tenant_servers::TenantServers;

use super::load_catalog;
use crate::cmd::OutputFormat;
use crate::out::{self, Table, Tone, outln};

pub const EXAMPLES: &str = "Examples:
  tenantctl status                                  # every tenant: state, version, pending, problems
  tenantctl status --tenant acme_towers             # one tenant, with unfinished work and drift
  tenantctl status --output json | jq 'select(.type == \"tenant\" and .migration_error != null)'";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show one tenant in detail: every applied version with its timings, pending and
    /// unfinished migrations, drift.
    #[arg(long)]
    tenant: Option<TenantSlug>,
    /// How many tenants to read at once.
    #[arg(long, default_value_t = 8)]
    parallelism: usize,
    /// `text` for people; `json`: one JSON object per line, each with a `type`
    /// (docs/OPERATIONS.md, "Machine-readable output").
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

/// A tenant's schema and seeds standing, or why it could not be read.
type TenantStanding = Result<(Standing, Standing), String>;

/// The engines that can reach tenants, by where they live: each tenant's own server, or SQLite
/// files beside the platform file.
enum Engines {
    Postgres(TenantServers),
    Sqlite(Engine<SqliteBackend>),
}

impl Engines {
    fn connect(config: &Config, platform: &PlatformDb, parallelism: u32) -> Self {
        match &config.tenant_database_url {
            DatabaseUrl::Postgres { .. } => Engines::Postgres(TenantServers::pooled(
                platform.clone(),
                std::sync::Arc::new(config.clone()),
                parallelism,
            )),
            DatabaseUrl::Sqlite { path } => Engines::Sqlite(Engine::new(
                SqliteBackend::beside_platform_file(path),
                EngineOptions::default(),
            )),
        }
    }

    async fn status(&self, tenant: &TenantRecord, set: &MigrationSet) -> Result<Standing, String> {
        match self {
            Engines::Postgres(servers) => servers
                .storage(&tenant.server)
                .await
                .map_err(|e| e.to_string())?
                .status(&tenant.slug, tenant.isolation, set)
                .await
                .map_err(|e| e.to_string()),
            Engines::Sqlite(engine) => engine
                .status(&Target::Tenant(tenant.slug.clone()), set)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let json = matches!(args.output, OutputFormat::Json);
    let config = Config::from_env()?;
    let (catalog, origin) = load_catalog(config.migrations_dir.as_deref())?;

    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    let platform_standing = match &platform {
        PlatformDb::Postgres(pool) => {
            Engine::new(PgSchemaBackend::new(pool.clone()), EngineOptions::default())
                .status(&Target::Platform, &catalog.platform)
                .await?
        }
        PlatformDb::Sqlite(_) => {
            let DatabaseUrl::Sqlite { path } = &config.database_url else {
                unreachable!("the pool follows the URL")
            };
            Engine::new(
                SqliteBackend::beside_platform_file(path),
                EngineOptions::default(),
            )
            .status(&Target::Platform, &catalog.platform)
            .await?
        }
    };
    if json {
        let mut platform = standing_json(&platform_standing);
        platform["type"] = "platform".into();
        platform["migrations"] = origin.into();
        platform["database"] = config.database_url.redacted().to_string().into();
        out::json(&platform);
    } else {
        outln!(
            "migrations: {origin}; platform database: {}",
            config.database_url.redacted()
        );
        print_standing("platform", &platform_standing);
    }

    let tenants = match platform.tenants(args.tenant.as_ref()).await {
        Ok(tenants) => tenants,
        Err(error) => {
            let healthy = platform_standing.drift.is_empty();
            if json {
                out::json(&serde_json::json!({
                    "type": "summary", "tenants": 0, "unhealthy": 0, "healthy": healthy,
                    "error": error.to_string(),
                }));
            } else {
                outln!("tenants: {error}");
            }
            return Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    };
    if let Some(slug) = &args.tenant {
        anyhow::ensure!(
            !tenants.is_empty(),
            "there is no tenant {slug} in the platform database"
        );
    }
    let engines = Engines::connect(
        &config,
        &platform,
        u32::try_from(args.parallelism.max(1)).unwrap_or(8),
    );
    let rows: Vec<(TenantRecord, TenantStanding)> = stream::iter(tenants)
        .map(|tenant| {
            let engines = &engines;
            let catalog = &catalog;
            async move {
                let standing = async {
                    let schema = engines.status(&tenant, &catalog.tenant).await?;
                    let seeds = engines.status(&tenant, &catalog.tenant_seeds).await?;
                    Ok((schema, seeds))
                }
                .await;
                (tenant, standing)
            }
        })
        .buffered(args.parallelism.max(1))
        .collect()
        .await;

    let unhealthy_tenants = rows
        .iter()
        .filter(|(tenant, standing)| needs_attention(tenant, standing))
        .count();
    let healthy = platform_standing.drift.is_empty() && unhealthy_tenants == 0;
    if json {
        for (tenant, standing) in &rows {
            out::json(&tenant_json(tenant, standing));
        }
        out::json(&serde_json::json!({
            "type": "summary", "tenants": rows.len(), "unhealthy": unhealthy_tenants,
            "healthy": healthy, "error": null,
        }));
    } else if args.tenant.is_some() {
        for (tenant, standing) in &rows {
            outln!(
                "\ntenant {} ({}, {}, on {}, {})",
                tenant.slug,
                tenant.id,
                tenant.isolation,
                tenant.server,
                tenant.status
            );
            if let Some(error) = &tenant.migration_error {
                outln!(
                    "  {}",
                    Tone::Bad.paint(format_args!("NEEDS REPROCESSING: {error}"))
                );
            }
            match standing {
                Ok((schema, seeds)) => {
                    print_standing("  schema", schema);
                    print_standing("  seeds", seeds);
                }
                Err(error) => {
                    outln!(
                        "  {}",
                        Tone::Bad.paint(format_args!("unreachable: {error}"))
                    );
                }
            }
        }
    } else {
        print_table(&rows);
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Drift, a failed migration waiting for reprocessing, or a tenant that cannot be read.
fn needs_attention(tenant: &TenantRecord, standing: &TenantStanding) -> bool {
    match standing {
        Ok((schema, seeds)) => {
            !schema.drift.is_empty() || !seeds.drift.is_empty() || tenant.migration_error.is_some()
        }
        Err(_) => true,
    }
}

fn print_table(rows: &[(TenantRecord, TenantStanding)]) {
    outln!();
    // The server column only once tenants live on more than one: a one-server fleet's table
    // stays as it was.
    let servers: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|(tenant, _)| tenant.server.as_str())
        .collect();
    let several = servers.len() > 1;
    let mut header = vec!["TENANT"];
    if several {
        header.push("SERVER");
    }
    header.extend([
        "ISOLATION",
        "STATE",
        "VERSION",
        "PENDING",
        "SEEDS",
        "PROBLEMS",
    ]);
    let shift = usize::from(several);
    let mut table = Table::new(&header).right(&[4 + shift, 5 + shift]);
    for (tenant, standing) in rows {
        let (version, pending, seeds, problems) = match standing {
            Ok((schema, seeds)) => {
                let mut problems: Vec<String> = schema
                    .drift
                    .iter()
                    .chain(&seeds.drift)
                    .map(|d| d.to_string())
                    .collect();
                problems.extend(schema.unfinished.iter().map(|r| {
                    format!(
                        "{} unfinished: {}",
                        r.version,
                        r.error.as_deref().unwrap_or("interrupted")
                    )
                }));
                if let Some(error) = &tenant.migration_error {
                    problems.insert(0, format!("needs reprocessing: {error}"));
                }
                (
                    schema
                        .applied_version
                        .map_or("-".to_owned(), |v| v.to_string()),
                    schema.pending.len().to_string(),
                    if seeds.pending.is_empty() {
                        "ok".to_owned()
                    } else {
                        format!("{} due", seeds.pending.len())
                    },
                    problems.join("; "),
                )
            }
            Err(error) => ("?".into(), "?".into(), "?".into(), error.clone()),
        };
        let tone = if needs_attention(tenant, standing) {
            Tone::Bad
        } else if problems.is_empty() {
            Tone::Plain
        } else {
            Tone::Warn
        };
        let mut cells = vec![tenant.slug.to_string()];
        if several {
            cells.push(tenant.server.to_string());
        }
        cells.extend([
            tenant.isolation.to_string(),
            tenant.status.to_string(),
            version,
            pending,
            seeds,
            problems,
        ]);
        table.row(tone, cells);
    }
    table.print();
    outln!("{} tenant(s)", rows.len());
}

fn print_standing(label: &str, standing: &Standing) {
    outln!(
        "{label}: applied {}, {} pending",
        standing
            .applied_version
            .map_or("nothing".to_owned(), |v| v.to_string()),
        standing.pending.len()
    );
    for version in &standing.pending {
        outln!("{label}:   pending {version}");
    }
    for row in &standing.unfinished {
        outln!(
            "{label}:   {}",
            Tone::Warn.paint(format_args!(
                "unfinished {} ({} batches, {} rows so far): {}",
                row.version,
                row.batches_done,
                row.rows_done,
                row.error.as_deref().unwrap_or("interrupted")
            ))
        );
    }
    for drift in &standing.drift {
        outln!(
            "{label}:   {}",
            Tone::Bad.paint(format_args!("drift: {drift}"))
        );
    }
}

/// A standing in JSON: `applied_version`, `pending`, `unfinished`, `drift`.
fn standing_json(standing: &Standing) -> serde_json::Value {
    serde_json::json!({
        "applied_version": standing.applied_version.map(Version::get),
        "pending": standing.pending.iter().map(|v| v.get()).collect::<Vec<_>>(),
        "unfinished": standing.unfinished.iter().map(|row| serde_json::json!({
            "version": row.version.get(), "batches_done": row.batches_done,
            "rows_done": row.rows_done, "error": row.error,
        })).collect::<Vec<_>>(),
        "drift": standing.drift.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn tenant_json(tenant: &TenantRecord, standing: &TenantStanding) -> serde_json::Value {
    let (schema, seeds, error) = match standing {
        Ok((schema, seeds)) => (
            Some(standing_json(schema)),
            Some(standing_json(seeds)),
            None,
        ),
        Err(error) => (None, None, Some(error.clone())),
    };
    serde_json::json!({
        "type": "tenant", "tenant_id": tenant.id, "slug": tenant.slug.as_str(),
        "server": tenant.server.as_str(),
        "isolation": tenant.isolation.to_string(), "status": tenant.status.as_str(),
        "schema_version": tenant.schema_version.get(),
        "migration_error": tenant.migration_error,
        "needs_attention": needs_attention(tenant, standing),
        "schema": schema, "seeds": seeds, "error": error,
    })
}
