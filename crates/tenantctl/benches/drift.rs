//! `tenantctl drift` over a large fleet (prints figures; not a timed test).
//!
//! `cargo bench -p tenantctl --bench drift -- [--tenants 10000] [--drifted 10] [--sample 200]`
//!
//! A private PostgreSQL cluster (`testkit::cluster`) holds the platform database and `--tenants`
//! tenant schemas built by the built-in tenant set, each with its role, as provisioning leaves
//! them; `--drifted` of them get a column by hand. Then, in the same run:
//! 1. `tenantctl drift` the first time (it computes the expected fingerprint on a scratch
//!    tenant, reads every schema in full and keeps the stamps): wall time and catalog queries;
//! 2. again, as a periodic check runs on an unchanged fleet: stamps only, no full read;
//! 3. again after `--drifted` other tenants were changed by hand: only those are read in full;
//! 4. `--full` (every schema read again) at batch sizes 100, 500 (the default) and 2,000;
//! 5. the baseline, in this process on the same fleet: one full catalog query per tenant over
//!    the first `--sample` tenants, scaled to the fleet, and the same tenants read in one batch.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BenchResult, create_fleet, last_json_line, tenantctl};
use domain::tenant::TenantSlug;
use engine::Catalog;
use shared::config::Config;
use shared::drift::{DEFAULT_BATCH, DriftCheck};
use shared::platform::PlatformDb;
use shared::platform::fingerprints::DriftCandidate;
use shared::service::Context;
use shared::tenant_servers::TenantServers;
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};
use testkit::cluster::PrivatePostgres;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CONNECTIONS: usize = 8;

#[tokio::main]
async fn main() -> BenchResult<()> {
    let flag = testkit::bench_flag;
    let (tenants, drifted, sample) = (
        flag("--tenants", 10_000),
        flag("--drifted", 10),
        flag("--sample", 200),
    );
    let amqp = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let cluster = PrivatePostgres::start().await;
    let run_id = std::process::id();
    println!(
        "drift benchmark: {tenants} tenant schemas of the built-in tenant set, each with its role, {drifted} changed by hand, on a private PostgreSQL cluster"
    );
    let catalog = Catalog::load(None)?;
    let fleet = Fleet::create(&cluster, "fleet", tenants, &catalog, &amqp, run_id).await?;
    let step = (tenants / drifted.max(1)).max(1);
    fleet.change_by_hand(&cluster, 0, step, drifted).await?;

    let first = fleet.drift(&[]).await?;
    first.print("first check (no stamps kept)");
    let steady = fleet.drift(&[]).await?;
    steady.print("steady check, unchanged fleet");
    if steady.summary["catalog_queries"] != 0 || steady.summary["stamps_unchanged"] != tenants {
        return Err(format!("the steady check read schemas in full: {}", steady.summary).into());
    }
    // Other tenants than the first ones: each is read again, and found drifted.
    fleet
        .change_by_hand(&cluster, step / 2, step, drifted)
        .await?;
    let changed = fleet.drift(&[]).await?;
    changed.print(&format!("after {drifted} more changed by hand"));
    if changed.summary["stamps_unchanged"] != tenants - drifted {
        return Err(format!(
            "not only the changed tenants were read: {}",
            changed.summary
        )
        .into());
    }
    let mut full = Duration::ZERO;
    for batch in ["100", "500", "2000"] {
        let run = fleet.drift(&["--full", "--batch-size", batch]).await?;
        if batch == "500" {
            full = run.took;
        }
        run.print(&format!("--full, batch {batch:>4}"));
    }
    println!(
        "  the steady stamped check is {:.1}x faster than --full",
        full.as_secs_f64() / steady.took.as_secs_f64()
    );

    // The baseline, in this process on the same fleet: one catalog query per tenant, over the
    // first `--sample` tenants, against the same tenants read in one batch.
    let sampled = fleet.sample(sample).await?;
    let one_by_one = sampled.check(1).await?;
    let batched = sampled.check(DEFAULT_BATCH).await?;
    let per_tenant = |took: Duration| took.as_secs_f64() / sample as f64;
    println!(
        "  baseline, one query per tenant ({sample} of the fleet's tenants): {:.1} ms per tenant ({:.0}s for {tenants} scaled); the same tenants in one batch {:.2} ms per tenant; the fleet's --full check at batch 500 is {:.0}x faster than the scaled baseline",
        per_tenant(one_by_one) * 1000.0,
        per_tenant(one_by_one) * tenants as f64,
        per_tenant(batched) * 1000.0,
        per_tenant(one_by_one) * tenants as f64 / full.as_secs_f64()
    );
    fleet.remove();
    Ok(())
}

/// A platform database and its tenants' schemas, in one database of the cluster.
struct Fleet {
    env: Vec<(&'static str, String)>,
    slugs: Vec<TenantSlug>,
    namespace: String,
    amqp: String,
}

/// Some of a fleet's tenants, checked in this process.
struct Sample {
    platform: PlatformDb,
    servers: TenantServers,
    catalog: Catalog,
    tenants: Vec<DriftCandidate>,
}

impl Sample {
    /// How long a check of the sample takes with `batch` schemas per query.
    async fn check(&self, batch: u32) -> BenchResult<Duration> {
        let started = Instant::now();
        let report = DriftCheck {
            platform: &self.platform,
            servers: &self.servers,
            set: &self.catalog.tenant,
            batch,
            full: true,
        }
        .run(self.tenants.clone())
        .await?;
        if report.checked != self.tenants.len() {
            return Err(format!("{} of {} checked", report.checked, self.tenants.len()).into());
        }
        Ok(started.elapsed())
    }
}

/// One `tenantctl drift` run.
struct Run {
    took: Duration,
    summary: serde_json::Value,
}

impl Run {
    fn print(&self, what: &str) {
        let s = &self.summary;
        println!(
            "  {what}: {:.2}s ({:.0} tenants/s), {} catalog queries, {} stamp queries, {} stamps unchanged, {} expected fingerprint computed, {} drifted",
            self.took.as_secs_f64(),
            s["checked"].as_f64().unwrap_or(0.0) / self.took.as_secs_f64(),
            s["catalog_queries"],
            s["stamp_queries"],
            s["stamps_unchanged"],
            s["expected_computed"],
            s["drifted"]
        );
    }
}

impl Fleet {
    async fn create(
        cluster: &PrivatePostgres,
        database: &str,
        tenants: usize,
        catalog: &Catalog,
        amqp: &str,
        run_id: u32,
    ) -> BenchResult<Fleet> {
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            cluster.port()
        );
        let namespace = format!("bench-drift-{run_id}");
        let values = HashMap::from([
            ("DATABASE_URL", url.clone()),
            ("AMQP_URL", amqp.to_owned()),
            ("TENANCY_NAMESPACE", namespace.clone()),
        ]);
        let config = Config::from_lookup(|k| values.get(k).cloned())?;
        let ctx = Context::connect(config, "drift-bench", &CancellationToken::new()).await?;
        ctx.apply_platform_migrations().await?;

        let started = Instant::now();
        let slugs: Vec<TenantSlug> = (0..tenants)
            .map(|i| TenantSlug::parse(&format!("f{run_id}_{i:05}")))
            .collect::<Result<_, _>>()?;
        create_fleet(
            cluster.options().database(database),
            &slugs,
            catalog,
            CONNECTIONS,
        )
        .await?;
        let latest = catalog.tenant.latest().ok_or("no tenant migrations")?;
        let ids: Vec<Uuid> = slugs.iter().map(|_| Uuid::new_v4()).collect();
        let names: Vec<&str> = slugs.iter().map(TenantSlug::as_str).collect();
        let mut conn = cluster.options().database(database).connect().await?;
        sqlx::query(
            "INSERT INTO tenants (id, slug, name, status, isolation, schema_version, activated_at, server)
             SELECT id, slug, 'Bench', 'active', 'schema', $3, now(), 'default'
               FROM unnest($1::uuid[], $2::text[]) AS t(id, slug)",
        )
        .bind(&ids)
        .bind(&names)
        .bind(latest.get())
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        println!(
            "  {database}: {tenants} tenants ready in {:.1}s (not measured)",
            started.elapsed().as_secs_f64()
        );
        Ok(Fleet {
            env: vec![
                ("DATABASE_URL", url),
                ("AMQP_URL", amqp.to_owned()),
                ("TENANCY_NAMESPACE", namespace.clone()),
                ("RUST_LOG", "warn".to_owned()),
            ],
            slugs,
            namespace,
            amqp: amqp.to_owned(),
        })
    }

    /// The first `size` tenants, with what a check in this process needs.
    async fn sample(&self, size: usize) -> BenchResult<Sample> {
        let config = Arc::new(Config::from_lookup(|key| {
            self.env
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        })?);
        let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
        let mut tenants = platform.drift_candidates(None, None).await?;
        tenants.truncate(size);
        Ok(Sample {
            servers: TenantServers::pooled(platform.clone(), config, 2),
            platform,
            catalog: Catalog::load(None)?,
            tenants,
        })
    }

    /// Adds a column by hand to `count` tenants, every `step`th from the `first`.
    async fn change_by_hand(
        &self,
        cluster: &PrivatePostgres,
        first: usize,
        step: usize,
        count: usize,
    ) -> BenchResult<()> {
        let mut conn = cluster.options().database("fleet").connect().await?;
        for slug in self.slugs.iter().skip(first).step_by(step).take(count) {
            let sql = format!(
                "ALTER TABLE {}.users ADD COLUMN nickname text",
                slug.storage_name()
            );
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
        }
        conn.close().await?;
        Ok(())
    }

    async fn drift(&self, args: &[&str]) -> BenchResult<Run> {
        let mut all = vec!["drift", "--output", "json"];
        all.extend_from_slice(args);
        let mut command = tenantctl(&self.env, &all);
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || command.output()).await??;
        let took = started.elapsed();
        let summary = last_json_line(&output.stdout).ok_or_else(|| {
            format!(
                "tenantctl drift printed no summary: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        if summary["checked"] != self.slugs.len() || summary["unchecked"] != 0 {
            return Err(format!("not every tenant was checked: {summary}").into());
        }
        Ok(Run { took, summary })
    }

    /// The cluster goes with the process; the topology does not.
    fn remove(&self) {
        testkit::broker::delete_topology_now(&self.amqp, &self.namespace);
    }
}
