//! `tenantctl migrations status`

use std::process::ExitCode;

use futures_util::{StreamExt, stream};
use shared::config::{Config, DatabaseUrl, Isolation};
use shared::migrate::plan::Standing;
use shared::migrate::{
    Engine, EngineOptions, MigrationSet, PgDatabaseBackend, PgSchemaBackend, SqliteBackend, Target,
};
use shared::store::{PlatformDb, TenantRecord};
use shared::tenant::TenantSlug;

use super::load_catalog;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show one tenant in detail: every applied version with its timings, pending and
    /// unfinished migrations, drift.
    #[arg(long)]
    tenant: Option<TenantSlug>,
    /// How many tenants to read at once.
    #[arg(long, default_value_t = 8)]
    parallelism: usize,
}

/// A tenant's schema and seeds standing, or why it could not be read.
type TenantStanding = Result<(Standing, Standing), String>;

/// The engines that can reach tenants, by where they live.
enum Engines {
    Postgres {
        schema: Box<Engine<PgSchemaBackend>>,
        database: Box<Engine<PgDatabaseBackend>>,
    },
    Sqlite(Engine<SqliteBackend>),
}

impl Engines {
    async fn connect(config: &Config, parallelism: u32) -> anyhow::Result<Self> {
        let options = EngineOptions::default();
        Ok(match &config.tenant_database_url {
            DatabaseUrl::Postgres {
                options: server, ..
            } => Engines::Postgres {
                schema: Box::new(Engine::new(
                    PgSchemaBackend::connect((**server).clone(), parallelism).await?,
                    options,
                )),
                database: Box::new(Engine::new(
                    PgDatabaseBackend::connect((**server).clone()).await?,
                    options,
                )),
            },
            DatabaseUrl::Sqlite { path } => Engines::Sqlite(Engine::new(
                SqliteBackend::beside_platform_file(path),
                options,
            )),
        })
    }

    async fn status(&self, tenant: &TenantRecord, set: &MigrationSet) -> Result<Standing, String> {
        let target = Target::Tenant(tenant.slug.clone());
        let standing = match (self, tenant.isolation) {
            (Engines::Postgres { schema, .. }, Isolation::Schema) => {
                schema.status(&target, set).await
            }
            (Engines::Postgres { database, .. }, Isolation::Database) => {
                database.status(&target, set).await
            }
            (Engines::Sqlite(engine), _) => engine.status(&target, set).await,
        };
        standing.map_err(|e| e.to_string())
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let (catalog, origin) = load_catalog(config.migrations_dir.as_deref())?;
    println!(
        "migrations: {origin}; platform database: {}",
        config.database_url.redacted()
    );

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
    print_standing("platform", &platform_standing);

    let tenants = match platform.tenants(args.tenant.as_ref()).await {
        Ok(tenants) => tenants,
        Err(error) => {
            println!("tenants: {error}");
            return Ok(if platform_standing.drift.is_empty() {
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
    let engines =
        Engines::connect(&config, u32::try_from(args.parallelism.max(1)).unwrap_or(8)).await?;
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

    let mut unhealthy = !platform_standing.drift.is_empty();
    if args.tenant.is_some() {
        for (tenant, standing) in &rows {
            println!(
                "\ntenant {} ({}, {}, {})",
                tenant.slug, tenant.id, tenant.isolation, tenant.status
            );
            if let Some(error) = &tenant.migration_error {
                unhealthy = true;
                println!("  NEEDS REPROCESSING: {error}");
            }
            match standing {
                Ok((schema, seeds)) => {
                    print_standing("  schema", schema);
                    print_standing("  seeds", seeds);
                    unhealthy |= !schema.drift.is_empty() || !seeds.drift.is_empty();
                }
                Err(error) => {
                    println!("  unreachable: {error}");
                    unhealthy = true;
                }
            }
        }
    } else {
        println!(
            "\n{:<40} {:<9} {:<13} {:<15} {:>7} {:>6}  PROBLEMS",
            "TENANT", "ISOLATION", "STATE", "VERSION", "PENDING", "SEEDS"
        );
        for (tenant, standing) in &rows {
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
                    unhealthy |= !schema.drift.is_empty()
                        || !seeds.drift.is_empty()
                        || tenant.migration_error.is_some();
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
                Err(error) => {
                    unhealthy = true;
                    ("?".into(), "?".into(), "?".into(), error.clone())
                }
            };
            println!(
                "{:<40} {:<9} {:<13} {:<15} {:>7} {:>6}  {}",
                tenant.slug, tenant.isolation, tenant.status, version, pending, seeds, problems
            );
        }
        println!("{} tenant(s)", rows.len());
    }
    Ok(if unhealthy {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_standing(label: &str, standing: &Standing) {
    println!(
        "{label}: applied {}, {} pending",
        standing
            .applied_version
            .map_or("nothing".to_owned(), |v| v.to_string()),
        standing.pending.len()
    );
    for version in &standing.pending {
        println!("{label}:   pending {version}");
    }
    for row in &standing.unfinished {
        println!(
            "{label}:   unfinished {} ({} batches, {} rows so far): {}",
            row.version,
            row.batches_done,
            row.rows_done,
            row.error.as_deref().unwrap_or("interrupted")
        );
    }
    for drift in &standing.drift {
        println!("{label}:   drift: {drift}");
    }
}
