//! What the provisioning record says after PostgreSQL died under a step: every attempt counted.

use std::path::Path;
use std::time::Duration;

use sqlx::Connection as _;
use testkit::ScratchDir;
use testkit::cluster::PrivatePostgres;

use crate::support::{Env, SHARED_BROKER};

/// PostgreSQL killed (`-m immediate`) while the migrate step runs: the attempt that died could
/// not be recorded then, and is counted once the database is back. Every attempt announces
/// itself with one `tenant.provisioning_step` event, so the record must count as many attempts
/// as the audit trail holds events for the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_short_by_postgresql_dying_is_still_counted() {
    let sets = ScratchDir::new();
    testkit::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations"),
        sets.path(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // A slow last migration, so the kill lands inside the step.
    std::fs::write(
        sets.path()
            .join("tenant/20991231000000_slow_backfill.up.sql"),
        "SELECT pg_sleep(4);\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let mut postgres = PrivatePostgres::start().await;
    let url = format!("postgres://postgres@127.0.0.1:{}/tenancy", postgres.port());
    let env = Env::with(None, &url, SHARED_BROKER, Some(sets.path())).await;
    // Templates off: a template carries the set's DDL, not its statements, so with one the slow
    // migration would only run on the template's scratch schemas, never inside the tenant's step.
    let (stop, task) = env.start_provisioner_without_templates();
    let auditor = env.start_auditor();
    let (tenant, _) = env.register(Some("schema")).await;

    testkit::wait_until(
        Duration::from_secs(60),
        "the slow migration running",
        || async {
            let Ok(mut conn) = sqlx::PgConnection::connect(&url).await else {
                return false;
            };
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
            )
            .fetch_one(&mut conn)
            .await
            .is_ok_and(|n| n > 0)
        },
    )
    .await;
    postgres.kill().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    postgres.start_again().await;
    env.wait_for_status(tenant, "active", Duration::from_secs(120))
        .await;
    testkit::stop_service((stop, task)).await;

    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM provisioning_steps WHERE tenant_id = $1 AND step = 'migrate'",
    )
    .bind(tenant)
    .fetch_one(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        attempts >= 2,
        "the attempt cut short is counted: {attempts}"
    );
    let announced = || async {
        let Ok(mut conn) = sqlx::PgConnection::connect(&url).await else {
            return 0;
        };
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = 'tenant.provisioning_step' AND data->>'step' = 'migrate'",
        )
        .bind(tenant)
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0)
    };
    testkit::wait_until(
        Duration::from_secs(30),
        "every attempt's event stored",
        || async { announced().await >= i64::from(attempts) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    testkit::stop_service(auditor).await;
    assert_eq!(
        i64::from(attempts),
        announced().await,
        "as many attempts recorded as were announced"
    );
}
