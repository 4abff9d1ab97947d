//! Provisioning benchmark.
//!
//! ```text
//! cargo bench -p provisioner --bench provision -- [--tenants 200] [--serial 50] [--isolation schema|database] [--extra-migrations 0]
//! ```
//!
//! `--extra-migrations N` appends N migrations to the built-in tenant set (each a table with a
//! foreign key, an index and a comment-free default, as an application's history accumulates
//! them), for all three runs: the built-in set is nine small migrations, where a real
//! application's has hundreds.
//!
//! In one run, for the provisioner with templates on (`PROVISIONER_TEMPLATES=on`: a new schema
//! gets the tenant set's verified template in one transaction; a new database is a copy of the
//! set's template database, finished in one transaction) and then off (every migration
//! replayed through the engine):
//! 1. `--tenants` registrations published at once, provisioned by the provisioner (in this
//!    process, its normal concurrency): tenants per second, p50 and p99 from publish to active
//!    (the first tenant with templates on waits for the template's build, which is counted);
//! 2. `--serial` tenants registered one at a time (the next once the last is active): p50 and
//!    p99 from publish to active.
//!
//! Then a plain-SQL baseline doing per tenant what provisioning does (tenant row, schema or
//! database, role and grants, every tenant migration, the seed, the admin, active) over the same number of
//! connections, with no bus, no history, no step records, no events; and the ratios. Each of
//! the three runs in a database of its own with the same platform tables: on this kind of
//! machine, creating a relation's files costs more the more files its database's directory
//! holds, which would tilt a shared database against whichever side runs later.
//!
//! Local PostgreSQL and RabbitMQ (`PG_BENCH_URL`, `AMQP_URL`); databases and namespaces of its
//! own, removed at the end (with database isolation, the built-in set's template database too,
//! dropped before the run so that its build is counted, as the schema template's is).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use domain::Isolation;
use domain::message::{Event as _, TenantRegistered};
use engine::sql::quote_ident;
use engine::template::{DatabaseTemplate, SetIdentity};
use engine::{Dialect, Direction, Engine, EngineOptions, MigrationSet, PgSchemaBackend, Target};
use futures_util::{StreamExt, stream};
use shared::bus::Topology;
use shared::config::Config;
use shared::service::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use testkit::bench::{CpuSnapshot, create_database, settle};
use testkit::pg::drop_database;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What one provisioner run measured.
struct Figures {
    label: &'static str,
    rate: f64,
    p50: f64,
    p99: f64,
    serial_p50: f64,
    serial_p99: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flag = testkit::bench_flag;
    let (tenants, serial) = (flag("--tenants", 200), flag("--serial", 50));
    let isolation = isolation_flag();
    let extra = flag("--extra-migrations", 0);
    let sets = extra_migrations(extra);
    let migrations_dir = (extra > 0).then(|| sets.path().to_path_buf());
    let server = PgConnectOptions::from_str(
        &std::env::var("PG_BENCH_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )?;
    let amqp = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let run_id = std::process::id();
    let ours = std::fs::read_to_string("/proc/self/comm")?
        .trim()
        .to_owned();
    println!(
        "provisioning benchmark: {isolation} isolation, tenant set of {} migrations, concurrency {}, PostgreSQL and RabbitMQ on this machine",
        engine::Catalog::load(migrations_dir.as_deref())?
            .tenant
            .migrations
            .len(),
        provisioner::CONCURRENCY
    );

    let mut runs = Vec::new();
    for (label, tag, templates) in [("templates on", "t", true), ("templates off", "m", false)] {
        runs.push(
            provision(
                &server,
                &amqp,
                run_id,
                label,
                tag,
                templates,
                tenants,
                serial,
                &ours,
                isolation,
                migrations_dir.as_deref(),
            )
            .await?,
        );
    }
    let (baseline_rate, baseline_cpu) = baseline(
        &server,
        run_id,
        tenants,
        isolation,
        migrations_dir.as_deref(),
    )
    .await?;
    println!(
        "  baseline:       {baseline_rate:>6.1} tenants/s   (plain SQL, no bus, no bookkeeping), CPU per tenant: {}",
        baseline_cpu.per_unit(tenants, &ours, "the benchmark process")
    );
    println!("  summary:");
    for run in &runs {
        println!(
            "    {:<14} {:>6.1} tenants/s = {:>4.0}% of the baseline; at once p50 {:>4.0} ms p99 {:>5.0} ms; one at a time p50 {:>4.0} ms p99 {:>4.0} ms",
            run.label,
            run.rate,
            100.0 * run.rate / baseline_rate,
            run.p50,
            run.p99,
            run.serial_p50,
            run.serial_p99,
        );
    }
    if let [on, off] = runs.as_slice() {
        println!(
            "    templates on / off: throughput x{:.2}, one-at-a-time p50 x{:.2}, p99 x{:.2}",
            on.rate / off.rate,
            on.serial_p50 / off.serial_p50,
            on.serial_p99 / off.serial_p99,
        );
    }
    Ok(())
}

/// One provisioner run (templates `on` or off) in a database and namespace of its own:
/// `tenants` at once, then `serial` one at a time.
#[expect(
    clippy::too_many_arguments,
    reason = "the run's settings, each used once"
)]
async fn provision(
    server: &PgConnectOptions,
    amqp: &str,
    run_id: u32,
    label: &'static str,
    tag: &str,
    templates: bool,
    tenants: usize,
    serial: usize,
    ours: &str,
    isolation: Isolation,
    migrations_dir: Option<&std::path::Path>,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let database = format!("tenancy_bench_provision_{run_id}_{tag}");
    let database_url = format!(
        "postgres://{}@{}:{}/{database}",
        server.get_username(),
        server.get_host(),
        server.get_port()
    );
    let namespace = format!("bench-provision-{run_id}-{tag}");
    let values = HashMap::from([
        ("DATABASE_URL", database_url.clone()),
        ("AMQP_URL", amqp.to_owned()),
        ("TENANCY_NAMESPACE", namespace.clone()),
        (
            "PROVISIONER_TEMPLATES",
            if templates { "on" } else { "off" }.to_owned(),
        ),
    ]);
    let mut config = Config::from_lookup(|k| values.get(k).cloned())?;
    config.migrations_dir = migrations_dir.map(std::path::Path::to_path_buf);
    let template = (isolation == Isolation::Database).then(|| {
        DatabaseTemplate::slug_for(
            &SetIdentity::of(
                &engine::Catalog::load(migrations_dir)
                    .map(|c| c.tenant.as_ref().clone())
                    .unwrap_or_else(|e| panic!("{e}")),
                Dialect::Postgres,
            ),
            None,
        )
        .storage_name()
    });
    let mut admin = server.connect().await?;
    if let Some(template) = &template {
        drop_database(&mut admin, template).await;
        drop_roles(&mut admin, template).await?;
    }
    let ctx = Context::connect(config, "provision-bench", &CancellationToken::new()).await?;
    ctx.apply_platform_migrations().await?;
    let stop = CancellationToken::new();
    let provisioner = tokio::spawn(provisioner::run(ctx.clone(), stop.clone()));
    let mut db = server.clone().database(&database).connect().await?;
    // Measured in a block of its own, so that a failed run still cleans up after itself.
    let measured: Result<Figures, Box<dyn std::error::Error>> = async {
        println!("  {label}:");

        // 1. All at once.
        let mut published = HashMap::new();
        settle(&mut db).await?;
        let cpu_before = CpuSnapshot::now();
        let started = Instant::now();
        for i in 0..tenants {
            let slug = format!("{tag}b{run_id}_{i:05}");
            let (id, at) = register(&ctx, &slug, isolation).await?;
            published.insert(id, at);
        }
        wait_active(&mut db, tenants).await?;
        let elapsed = started.elapsed();
        let cpu = CpuSnapshot::now().since(&cpu_before);
        let measured = latencies(&mut db, &published).await?;
        let rate = tenants as f64 / elapsed.as_secs_f64();
        let (p50, p99) = (percentile(&measured, 50.0), percentile(&measured, 99.0));
        println!(
            "    {tenants} at once:   {:>6.2}s  {rate:>6.1} tenants/s   publish→active p50 {p50:>4.0} ms, p99 {p99:>5.0} ms",
            elapsed.as_secs_f64(),
        );
        let ids: Vec<Uuid> = published.keys().copied().collect();
        println!(
            "      per step, p50/p99 ms: {}",
            step_times(&mut db, &ids).await?
        );
        println!(
            "      CPU per tenant: {}",
            cpu.per_unit(tenants, ours, "the benchmark process")
        );

        // 2. One at a time.
        let mut serial_latencies = Vec::new();
        let mut serial_ids = Vec::new();
        for i in 0..serial {
            let slug = format!("{tag}s{run_id}_{i:05}");
            let (id, at) = register(&ctx, &slug, isolation).await?;
            loop {
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut db)
                        .await?;
                if status.as_deref() == Some("active") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            serial_latencies.push(latencies(&mut db, &HashMap::from([(id, at)])).await?[0]);
            serial_ids.push(id);
        }
        serial_latencies.sort_by(f64::total_cmp);
        let (serial_p50, serial_p99) = (
            percentile(&serial_latencies, 50.0),
            percentile(&serial_latencies, 99.0),
        );
        println!(
            "    {serial} one at a time: publish→active p50 {serial_p50:>4.0} ms, p99 {serial_p99:>5.0} ms, max {:>5.0} ms",
            serial_latencies.iter().copied().fold(0.0, f64::max)
        );
        println!(
            "      per step, p50/p99 ms: {}",
            step_times(&mut db, &serial_ids).await?
        );
        Ok(Figures {
            label,
            rate,
            p50,
            p99,
            serial_p50,
            serial_p99,
        })
    }
    .await;

    stop.cancel();
    let _ = provisioner.await;
    let channel = ctx.bus.channel().await?;
    Topology::new(namespace).delete(&channel).await?;
    ctx.bus.close().await;
    let _ = db.close().await;
    drop_database(&mut admin, &database).await;
    let tenants_like = format!("tenant\\_{tag}_{run_id}\\_%");
    drop_databases(&mut admin, &tenants_like).await?;
    drop_roles(&mut admin, &tenants_like).await?;
    if let Some(template) = &template {
        drop_database(&mut admin, template).await;
        drop_roles(&mut admin, template).await?;
    }
    measured
}

/// The plain-SQL baseline: tenants per second and the CPU it took.
async fn baseline(
    server: &PgConnectOptions,
    run_id: u32,
    tenants: usize,
    isolation: Isolation,
    migrations_dir: Option<&std::path::Path>,
) -> Result<(f64, CpuSnapshot), Box<dyn std::error::Error>> {
    let catalog = engine::Catalog::load(migrations_dir)?;
    let baseline_database = format!("tenancy_bench_provision_{run_id}_baseline");
    create_database(server, &baseline_database).await?;
    let mut db = server
        .clone()
        .database(&baseline_database)
        .connect()
        .await?;
    let pool = PgPoolOptions::new()
        .max_connections(u32::from(provisioner::CONCURRENCY))
        .connect_with(
            server
                .clone()
                .database(&baseline_database)
                .disable_statement_logging(),
        )
        .await?;
    Engine::new(PgSchemaBackend::new(pool.clone()), EngineOptions::default())
        .apply(&Target::Platform, &catalog.platform, None, &())
        .await?;
    let scripts = |set: &MigrationSet| -> Vec<(String, bool)> {
        set.migrations
            .iter()
            .filter_map(|m| m.script(Dialect::Postgres, Direction::Up))
            .map(|s| {
                (
                    s.sql.replace(
                        ":batch_size",
                        &s.directives.batch_size.unwrap_or(0).to_string(),
                    ),
                    s.directives.runs_outside_transaction(),
                )
            })
            .collect()
    };
    let (tenant_sql, seed_sql) = (scripts(&catalog.tenant), scripts(&catalog.tenant_seeds));
    settle(&mut db).await?;
    let cpu_before = CpuSnapshot::now();
    let started = Instant::now();
    let results: Vec<Result<(), sqlx::Error>> = stream::iter(0..tenants)
        .map(|i| {
            let (pool, tenant_sql, seed_sql) = (&pool, &tenant_sql, &seed_sql);
            async move {
                let slug = format!("p{run_id}_{i:05}");
                let name = quote_ident(&format!("tenant_{slug}"));
                let mut conn = pool.acquire().await?;
                let id = Uuid::new_v4();
                sqlx::query("INSERT INTO tenants (id, slug, name, status, isolation) VALUES ($1, $2, 'Bench', 'provisioning', $3)")
                    .bind(id)
                    .bind(&slug)
                    .bind(isolation.to_string())
                    .execute(&mut *conn)
                    .await?;
                // Schema isolation runs the migrations on this connection, in the tenant's
                // schema; database isolation on a connection to the tenant's new database.
                let mut tenant_conn = match isolation {
                    Isolation::Schema => {
                        sqlx::raw_sql(AssertSqlSafe(format!(
                            "CREATE SCHEMA {name}; CREATE ROLE {name} NOLOGIN; GRANT USAGE ON SCHEMA {name} TO {name};
                             ALTER DEFAULT PRIVILEGES IN SCHEMA {name} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {name};
                             ALTER DEFAULT PRIVILEGES IN SCHEMA {name} GRANT USAGE, SELECT ON SEQUENCES TO {name};
                             SET search_path TO {name}"
                        ))).execute(&mut *conn).await?;
                        None
                    }
                    Isolation::Database => {
                        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut *conn).await?;
                        sqlx::raw_sql(AssertSqlSafe(format!(
                            "CREATE ROLE {name} NOLOGIN; REVOKE ALL ON DATABASE {name} FROM PUBLIC;
                             GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {name}"
                        ))).execute(&mut *conn).await?;
                        let mut tenant = server.clone().database(&format!("tenant_{slug}")).disable_statement_logging().connect().await?;
                        sqlx::raw_sql(AssertSqlSafe(format!(
                            "REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO {name};
                             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {name};
                             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {name}"
                        ))).execute(&mut tenant).await?;
                        Some(tenant)
                    }
                };
                let target: &mut sqlx::PgConnection = match tenant_conn.as_mut() {
                    Some(tenant) => tenant,
                    None => &mut conn,
                };
                for (sql, outside_transaction) in tenant_sql.iter().chain(seed_sql) {
                    if *outside_transaction {
                        for statement in engine::sql::split_statements(sql) {
                            sqlx::raw_sql(AssertSqlSafe(statement.text.to_owned())).execute(&mut *target).await?;
                        }
                    } else {
                        sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(&mut *target).await?;
                    }
                }
                sqlx::query("INSERT INTO users (email, full_name, role, status, invited_at) VALUES ($1, $2, 'admin', 'invited', now())")
                    .bind(format!("admin@{}.example", slug.replace('_', "-")))
                    .bind("Admin")
                    .execute(&mut *target)
                    .await?;
                match tenant_conn {
                    Some(tenant) => tenant.close().await?,
                    None => {
                        sqlx::raw_sql("RESET search_path").execute(&mut *conn).await?;
                    }
                }
                sqlx::query("UPDATE tenants SET status = 'active', activated_at = now() WHERE id = $1").bind(id).execute(&mut *conn).await?;
                Ok(())
            }
        })
        .buffer_unordered(usize::from(provisioner::CONCURRENCY))
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    let baseline = started.elapsed();
    let baseline_cpu = CpuSnapshot::now().since(&cpu_before);
    let baseline_rate = tenants as f64 / baseline.as_secs_f64();
    pool.close().await;
    let _ = db.close().await;
    let mut admin = server.connect().await?;
    drop_database(&mut admin, &baseline_database).await;
    let tenants_like = format!("tenant\\_p{run_id}\\_%");
    drop_databases(&mut admin, &tenants_like).await?;
    drop_roles(&mut admin, &tenants_like).await?;
    Ok((baseline_rate, baseline_cpu))
}

/// Each step's p50/p99 duration over `tenants`, in ms, in the order the steps run.
async fn step_times(
    db: &mut sqlx::PgConnection,
    tenants: &[Uuid],
) -> Result<String, Box<dyn std::error::Error>> {
    let steps: Vec<(String, f64, f64)> = sqlx::query_as(
        "SELECT step, percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)::float8,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)::float8
           FROM provisioning_steps WHERE tenant_id = ANY($1) GROUP BY step ORDER BY min(started_at)",
    )
    .bind(tenants)
    .fetch_all(&mut *db)
    .await?;
    Ok(steps
        .iter()
        .map(|(step, p50, p99)| format!("{step} {p50:.0}/{p99:.0}"))
        .collect::<Vec<_>>()
        .join(", "))
}

/// The built-in sets plus `n` tenant migrations, each a table referencing the previous one with
/// an index and defaults.
fn extra_migrations(n: usize) -> testkit::ScratchDir {
    let migrations: Vec<(String, String)> = (1..=n)
        .map(|i| {
            let parent = if i == 1 {
                String::new()
            } else {
                format!(" REFERENCES extra_{} (id)", i - 1)
            };
            (
                format!(
                    "20990101{:02}{:02}{:02}_extra_{i}",
                    i / 3600,
                    i / 60 % 60,
                    i % 60
                ),
                format!(
                    "CREATE TABLE extra_{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, parent_id bigint{parent}, label text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now());\nCREATE INDEX extra_{i}_parent_idx ON extra_{i} (parent_id);\n"
                ),
            )
        })
        .collect();
    let extra: Vec<(&str, &str, Option<&str>)> = migrations
        .iter()
        .map(|(name, sql)| (name.as_str(), sql.as_str(), None))
        .collect();
    testkit::migration_sets_with(&extra)
}

/// `--isolation schema|database`, schema by default.
fn isolation_flag() -> Isolation {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--isolation") {
        None => Isolation::Schema,
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("--isolation needs `schema` or `database`")),
    }
}

/// Drops the databases whose names are `LIKE pattern`.
async fn drop_databases(
    admin: &mut sqlx::PgConnection,
    pattern: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let databases: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(pattern)
            .fetch_all(&mut *admin)
            .await?;
    for database in databases {
        drop_database(admin, &database).await;
    }
    Ok(())
}

/// Drops the roles whose names are `LIKE pattern`.
async fn drop_roles(
    admin: &mut sqlx::PgConnection,
    pattern: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT rolname FROM pg_roles WHERE rolname LIKE $1")
            .bind(pattern)
            .fetch_all(&mut *admin)
            .await?;
    for role in roles {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE {}", quote_ident(&role))))
            .execute(&mut *admin)
            .await?;
    }
    Ok(())
}

async fn register(
    ctx: &Context,
    slug: &str,
    isolation: Isolation,
) -> Result<(Uuid, chrono::DateTime<chrono::Utc>), Box<dyn std::error::Error>> {
    let id = Uuid::new_v4();
    let data = TenantRegistered::from_data(&serde_json::json!({
        "tenant_id": id, "slug": slug, "name": "Bench Towers", "isolation": isolation.to_string(),
        "admin": { "email": format!("admin@{}.example", slug.replace('_', "-")), "name": "Admin" },
    }))?;
    let at = chrono::Utc::now();
    ctx.bus
        .publisher()
        .publish(&ctx.bus.publisher().event(data))
        .await?;
    Ok((id, at))
}

async fn wait_active(
    db: &mut sqlx::PgConnection,
    expected: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let active: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tenants WHERE status = 'active'")
                .fetch_one(&mut *db)
                .await?;
        if active >= i64::try_from(expected)? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(
                format!("only {active} of {expected} tenants active after 10 minutes").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Milliseconds from publish to `activated_at`, per tenant.
async fn latencies(
    db: &mut sqlx::PgConnection,
    published: &HashMap<Uuid, chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let ids: Vec<Uuid> = published.keys().copied().collect();
    let rows: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, activated_at FROM tenants WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *db)
            .await?;
    let mut latencies: Vec<f64> = rows
        .iter()
        .filter_map(|(id, active)| {
            published
                .get(id)
                .map(|at| (*active - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
