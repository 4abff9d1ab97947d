//! The fleet census behind the fleet gauges, and the lock that lets one process report them.

use std::time::Duration;

use domain::Version;
use shared::platform::fleet::DeployProgress;
use uuid::Uuid;

use crate::support::Env;

/// Two versions of the tenant set, the second the latest.
const V2: i64 = 20_270_101_000_002;
const V3: i64 = 20_270_101_000_003;

#[tokio::test]
async fn the_census_counts_tenants_by_state_version_lag_and_the_newest_deploy() {
    let env = Env::new().await;
    let mut sql = env.sql().await;
    let tenant = |slug: &str, status: &str, version: i64, error: Option<&str>, age_s: i64| {
        sqlx::query(
            "INSERT INTO tenants (id, slug, name, status, isolation, schema_version, migration_error, updated_at)
             VALUES ($1, $2, 'Census', $3, 'schema', $4, $5, now() - make_interval(secs => $6))",
        )
        .bind(Uuid::new_v4())
        .bind(slug.to_owned())
        .bind(status.to_owned())
        .bind(version)
        .bind(error.map(str::to_owned))
        .bind(age_s as f64)
    };
    for query in [
        tenant("census_a", "active", V3, None, 0),
        tenant("census_b", "active", V3, None, 0),
        tenant("census_c", "active", V2, Some("relation exists"), 0),
        tenant("census_d", "failed", 0, None, 0),
        tenant("census_e", "provisioning", 0, None, 600),
        tenant("census_f", "provisioning", 0, None, 5),
    ] {
        query.execute(&mut sql).await.expect("tenant");
    }
    for (id, target, age) in [(Uuid::new_v4(), V2, 60), (Uuid::new_v4(), V3, 1)] {
        sqlx::query(
            "INSERT INTO deploys (id, target_version, operator, created_at)
             VALUES ($1, $2, 'test', now() - make_interval(secs => $3))",
        )
        .bind(id)
        .bind(target)
        .bind(f64::from(age))
        .execute(&mut sql)
        .await
        .expect("deploy");
        sqlx::query(
            "INSERT INTO deploy_tenants (deploy_id, tenant_id, status)
             SELECT $1, id, CASE slug WHEN 'census_c' THEN 'failed' WHEN 'census_b' THEN 'pending' ELSE 'succeeded' END
               FROM tenants WHERE status = 'active'",
        )
        .bind(id)
        .execute(&mut sql)
        .await
        .expect("deploy tenants");
    }
    sqlx::query(
        "INSERT INTO dlq_replays (replay_key, queue) VALUES ('k1', 'migrator.migrate-tenant'), ('k2', 'migrator.migrate-tenant'), ('k3', 'auditor.events')",
    )
    .execute(&mut sql)
    .await
    .expect("replays");

    // Drift rows of an active tenant and of a failed one: only the first counts.
    sqlx::query(
        "INSERT INTO tenant_drift (tenant_id, schema_version, expected_digest, digest, differences)
         SELECT id, 1, repeat('a', 64), repeat('b', 64), '[\"+ column users.nickname: text\"]'
           FROM tenants WHERE slug IN ('census_a', 'census_d')",
    )
    .execute(&mut sql)
    .await
    .expect("drift");

    let mut reporter = env
        .ctx
        .platform
        .lead_fleet_metrics()
        .await
        .expect("no one else reports");
    let census = reporter
        .census(Version::new(V3).expect("version"))
        .await
        .expect("census");
    reporter.close().await;

    let count = |status: &str, version: i64| {
        census
            .tenants
            .iter()
            .find(|c| c.status == status && c.schema_version == version)
            .map_or(0, |c| c.tenants)
    };
    assert_eq!(count("active", V3), 2, "{census:?}");
    assert_eq!(count("active", V2), 1, "{census:?}");
    assert_eq!(count("failed", 0), 1, "{census:?}");
    assert_eq!(count("provisioning", 0), 2, "{census:?}");
    assert_eq!(census.behind, 1, "only the active tenant below the latest");
    assert_eq!(census.needing_reprocessing, 1);
    assert_eq!(census.drifted, 1, "only the active tenant's drift counts");
    let age = census.provisioning_oldest_age;
    assert!(
        (Duration::from_secs(590)..Duration::from_secs(700)).contains(&age),
        "the oldest provisioning tenant: {age:?}"
    );
    let DeployProgress {
        target_version,
        tenants,
    } = census.deploy.expect("a deploy");
    assert_eq!(target_version, V3, "the newest deploy");
    let by_status = |wanted: &str| tenants.iter().find(|(s, _)| *s == wanted).map(|(_, n)| *n);
    assert_eq!(by_status("succeeded"), Some(1));
    assert_eq!(by_status("failed"), Some(1));
    assert_eq!(by_status("pending"), Some(1));
    assert_eq!(by_status("retrying"), Some(0), "every status is reported");
    assert_eq!(
        census.replayed,
        [
            ("auditor.events".to_owned(), 1),
            ("migrator.migrate-tenant".to_owned(), 2)
        ]
    );
}

#[tokio::test]
async fn one_process_reports_the_fleet_and_another_takes_over_when_it_stops() {
    let env = Env::new().await;
    let platform = &env.ctx.platform;
    let first = platform
        .lead_fleet_metrics()
        .await
        .expect("the first process leads");
    assert!(
        platform.lead_fleet_metrics().await.is_none(),
        "a second process must not report while the first does"
    );
    first.close().await;
    let mut second = None;
    for _ in 0..50 {
        second = platform.lead_fleet_metrics().await;
        if second.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut second = second.expect("the lock is free once the first process's session ends");
    let census = second.census(Version::ZERO).await.expect("census");
    assert!(
        census.tenants.is_empty() && census.deploy.is_none(),
        "{census:?}"
    );
    second.close().await;
}
