//! Fleet benchmark: N tenant schemas in one PostgreSQL database.
//!
//! ```text
//! cargo run --release -p engine --example fleet_bench -- [--tenants 1000] [--parallelism 8] [--rounds 4]
//! ```
//!
//! Phases, each run by the engine on one half of the schemas and by a plain-SQL baseline (the
//! same files, `SET search_path` and the SQL, no history, no locks, no checks) on the other
//! half, over the same number of connections:
//! 1. apply the whole tenant set to fresh schemas (in `--rounds` chunks, alternating which side
//!    goes first);
//! 2. add one migration and apply it everywhere (`--rounds` times, alternating which side goes
//!    first);
//! 3. a pass where nothing is pending (engine only: the baseline has no way to know).
//!
//! The server is `PG_BENCH_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); the
//! benchmark works in a database of its own and drops it at the end.

use std::str::FromStr;
use std::time::{Duration, Instant};

use domain::tenant::TenantSlug;
use engine::backend::MigrationBackend;
use engine::sql::quote_ident;
use engine::{
    Catalog, Dialect, Direction, Engine, EngineOptions, MigrationSet, PgSchemaBackend, SetKind,
    Target,
};
use futures_util::{StreamExt, stream};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flag = testkit::bench_flag;
    let tenants = flag("--tenants", 1000);
    let parallelism = flag("--parallelism", 8);
    let rounds = flag("--rounds", 4).max(1);

    let server = PgConnectOptions::from_str(
        &std::env::var("PG_BENCH_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )?
    .disable_statement_logging();
    let name = format!("tenancy_bench_{}", std::process::id());
    let mut admin = server.connect().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE DATABASE {}",
        quote_ident(&name)
    )))
    .execute(&mut admin)
    .await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut admin)
        .await?;
    let result = run(
        server.clone().database(&name),
        tenants,
        parallelism,
        rounds,
        &version,
    )
    .await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE {} WITH (FORCE)",
        quote_ident(&name)
    )))
    .execute(&mut admin)
    .await?;
    let _ = admin.close().await;
    result
}

async fn run(
    options: PgConnectOptions,
    tenants: usize,
    parallelism: usize,
    rounds: usize,
    server_version: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let catalog = Catalog::load(None)?;
    let engine = Engine::new(
        PgSchemaBackend::connect(options.clone(), u32::try_from(parallelism)?).await?,
        EngineOptions::default(),
    );
    // Configured like the engine's pool (no ping before each checkout), so both sides pay the same
    // per-checkout cost.
    let baseline_pool = PgPoolOptions::new()
        .max_connections(u32::try_from(parallelism)?)
        .test_before_acquire(false)
        .connect_with(options)
        .await?;

    let engine_targets: Vec<Target> = (0..tenants).map(|i| tenant(&format!("e{i:05}"))).collect();
    let baseline_schemas: Vec<String> = (0..tenants)
        .map(|i| tenant(&format!("b{i:05}")))
        .map(|t| storage(&t))
        .collect();

    println!(
        "fleet benchmark: {tenants} tenant schemas per side, parallelism {parallelism}, PostgreSQL {server_version}"
    );
    println!(
        "\n  {:<44} {:>18} {:>18} {:>7}",
        "phase", "engine", "baseline", "ratio"
    );

    // Phase 0: storage. The engine's schemas come with their (empty) history table, which is
    // bookkeeping the baseline does not have; it is timed here rather than hidden.
    let backend = engine.backend();
    let started = Instant::now();
    stream::iter(&engine_targets)
        .for_each_concurrent(parallelism, |t| async move {
            if let Target::Tenant(slug) = t {
                backend
                    .create_storage(slug)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        })
        .await;
    let engine_storage = started.elapsed();
    let baseline_storage = timed(for_each(
        &baseline_pool,
        &baseline_schemas,
        parallelism,
        |schema| vec![format!("CREATE SCHEMA {}", quote_ident(schema))],
    ))
    .await?
    .0;
    row(
        "create the schemas",
        tenants,
        engine_storage,
        Some(baseline_storage),
    );

    // Phase 1: the whole tenant set, in `rounds` chunks of tenants, the side that goes first
    // alternating (as in phase 2).
    let files = scripts(&catalog.tenant);
    let chunk = tenants.div_ceil(rounds);
    let (mut engine_total, mut baseline_total) = (Duration::ZERO, Duration::ZERO);
    for (round, (targets, schemas)) in engine_targets
        .chunks(chunk)
        .zip(baseline_schemas.chunks(chunk))
        .enumerate()
    {
        let baseline_pass = || {
            timed(for_each(&baseline_pool, schemas, parallelism, |schema| {
                plain_sql(schema, &files)
            }))
        };
        if round % 2 == 0 {
            engine_total +=
                engine_pass(&engine, targets, &catalog.tenant, parallelism, false).await?;
            baseline_total += baseline_pass().await?.0;
        } else {
            baseline_total += baseline_pass().await?.0;
            engine_total +=
                engine_pass(&engine, targets, &catalog.tenant, parallelism, false).await?;
        }
    }
    row(
        &format!(
            "apply the tenant set ({} migrations)",
            catalog.tenant.migrations.len()
        ),
        tenants,
        engine_total,
        Some(baseline_total),
    );

    // Phase 2: one added migration, deployed `rounds` times, the side that goes first
    // alternating so that neither always meets the warmer cache. Two kinds: a representative
    // migration (a table with a foreign key, a check and an index, like the set's own), and the
    // cheapest DDL there is (a nullable column: a catalog-only change), where the fixed cost of
    // the bookkeeping (one history read, one history row per tenant) shows most.
    let mut extended = catalog.tenant.as_ref().clone();
    let representative = |round: usize| {
        (
            format!(
                "-- Adds the periods in which a space cannot be booked.\n\
                 CREATE TABLE blackouts_{round} (\n  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),\n  \
                 space_id uuid NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,\n  starts_at timestamptz NOT NULL,\n  \
                 ends_at timestamptz NOT NULL,\n  reason text,\n  CHECK (ends_at > starts_at)\n);\n\
                 CREATE INDEX blackouts_{round}_space_idx ON blackouts_{round} (space_id, starts_at);\n"
            ),
            format!("DROP TABLE blackouts_{round};\n"),
        )
    };
    let trivial = |round: usize| {
        (
            format!(
                "-- Adds a nullable column.\nALTER TABLE reservations ADD COLUMN bench_{round} timestamptz;\n"
            ),
            format!("ALTER TABLE reservations DROP COLUMN bench_{round};\n"),
        )
    };
    for (label, make) in [
        (
            "add one migration: a table + index",
            &representative as &dyn Fn(usize) -> (String, String),
        ),
        ("add one migration: a nullable column", &trivial),
    ] {
        let (mut engine_total, mut baseline_total) = (Duration::ZERO, Duration::ZERO);
        for round in 0..rounds {
            let (up, down) = make(extended.migrations.len());
            let next = extended
                .latest()
                .map(|v| v.successor())
                .ok_or("the tenant set is empty")?;
            let added = MigrationSet::from_files(
                SetKind::Tenant,
                "bench",
                [
                    (format!("{next}_bench_{round}.up.sql"), up.clone()),
                    (format!("{next}_bench_{round}.down.sql"), down),
                ],
            )?;
            extended.migrations.extend(added.migrations);
            let added_files = vec![(up, false)];
            let baseline_pass = || {
                timed(for_each(
                    &baseline_pool,
                    &baseline_schemas,
                    parallelism,
                    |schema| plain_sql(schema, &added_files),
                ))
            };
            if round % 2 == 0 {
                engine_total +=
                    engine_pass(&engine, &engine_targets, &extended, parallelism, false).await?;
                baseline_total += baseline_pass().await?.0;
            } else {
                baseline_total += baseline_pass().await?.0;
                engine_total +=
                    engine_pass(&engine, &engine_targets, &extended, parallelism, false).await?;
            }
        }
        row(
            &format!("{label} (x{rounds})"),
            tenants * rounds,
            engine_total,
            Some(baseline_total),
        );
    }

    // Phase 3: nothing pending.
    let noop = engine_pass(&engine, &engine_targets, &extended, parallelism, true).await?;
    row("no-op pass (nothing pending)", tenants, noop, None);

    engine.backend().pool().close().await;
    baseline_pool.close().await;
    Ok(())
}

fn tenant(suffix: &str) -> Target {
    Target::Tenant(TenantSlug::parse(&format!("bench_{suffix}")).unwrap_or_else(|e| panic!("{e}")))
}

fn storage(target: &Target) -> String {
    target
        .tenant()
        .map(TenantSlug::storage_name)
        .unwrap_or_default()
}

/// The PostgreSQL up scripts of a set, with whether each runs statement by statement.
fn scripts(set: &MigrationSet) -> Vec<(String, bool)> {
    set.migrations
        .iter()
        .filter_map(|m| m.script(Dialect::Postgres, Direction::Up))
        .map(|s| {
            let sql = s.sql.replace(
                ":batch_size",
                &s.directives.batch_size.unwrap_or(0).to_string(),
            );
            (sql, s.directives.runs_outside_transaction())
        })
        .collect()
}

/// What a hand-written loop would send for one schema: the search path, then each file as one
/// implicit transaction (statement by statement where a file cannot run in a transaction).
fn plain_sql(schema: &str, files: &[(String, bool)]) -> Vec<String> {
    let mut batch = vec![format!("SET search_path TO {}", quote_ident(schema))];
    for (sql, outside_transaction) in files {
        if *outside_transaction {
            batch.extend(
                engine::sql::split_statements(sql)
                    .iter()
                    .map(|s| s.text.to_owned()),
            );
        } else {
            batch.push(sql.clone());
        }
    }
    batch
}

async fn for_each(
    pool: &PgPool,
    schemas: &[String],
    parallelism: usize,
    sql: impl Fn(&str) -> Vec<String>,
) -> Result<(), sqlx::Error> {
    let sql = &sql;
    let results: Vec<Result<(), sqlx::Error>> = stream::iter(schemas)
        .map(|schema| async move {
            let mut conn = pool.acquire().await?;
            for statement in sql(schema) {
                sqlx::raw_sql(AssertSqlSafe(statement))
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        })
        .buffer_unordered(parallelism)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn timed<T, E>(work: impl Future<Output = Result<T, E>>) -> Result<(Duration, T), E> {
    let started = Instant::now();
    let value = work.await?;
    Ok((started.elapsed(), value))
}

/// Applies `set` to every target through the engine; fails on any error, or on any work done
/// when `expect_noop`.
async fn engine_pass(
    engine: &Engine<PgSchemaBackend>,
    targets: &[Target],
    set: &MigrationSet,
    parallelism: usize,
    expect_noop: bool,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let results = engine
        .apply_many(targets.iter().cloned(), set, None, parallelism, &())
        .await;
    let elapsed = started.elapsed();
    for (target, result) in results {
        let report = result?;
        if expect_noop && !report.is_noop() {
            return Err(format!(
                "{target} applied {:?} in a pass that should do nothing",
                report.steps
            )
            .into());
        }
    }
    Ok(elapsed)
}

fn row(phase: &str, tenants: usize, engine: Duration, baseline: Option<Duration>) {
    let rate = |d: Duration| tenants as f64 / d.as_secs_f64();
    let cell = |d: Duration| format!("{:>7.2}s {:>6.0}/s", d.as_secs_f64(), rate(d));
    match baseline {
        Some(baseline) => println!(
            "  {phase:<44} {:>18} {:>18} {:>6.0}%",
            cell(engine),
            cell(baseline),
            100.0 * rate(engine) / rate(baseline)
        ),
        None => println!("  {phase:<44} {:>18} {:>18} {:>7}", cell(engine), "-", "-"),
    }
}
