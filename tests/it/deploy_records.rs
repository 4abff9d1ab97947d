//! A deploy's bookkeeping under concurrent writers: `tenantctl deploy` marking its commands
//! published while the migrators write the results of the first ones.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::support::Env;

/// Marking published and writing results take a deploy's rows in the same (tenant) order, so
/// they never deadlock, whatever order the rows lie in on disk.
#[tokio::test]
async fn marking_published_never_deadlocks_with_a_result_write() {
    let env = Env::new().await;
    let mut sql = env.sql().await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let (low, high) = (first.min(second), first.max(second));
    let deploy = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, status, isolation)
         SELECT id, 'rows_' || substr(md5(id::text), 1, 12), 'Rows', 'active', 'schema'
           FROM unnest($1::uuid[]) AS t(id)",
    )
    .bind([low, high])
    .execute(&mut sql)
    .await
    .expect("tenants");
    sqlx::query("INSERT INTO deploys (id, target_version, operator) VALUES ($1, 1, 'test')")
        .bind(deploy)
        .execute(&mut sql)
        .await
        .expect("deploy");
    // On disk the higher tenant first: a scan in physical order takes the rows against the
    // tenant order.
    for tenant in [high, low] {
        sqlx::query("INSERT INTO deploy_tenants (deploy_id, tenant_id) VALUES ($1, $2)")
            .bind(deploy)
            .bind(tenant)
            .execute(&mut sql)
            .await
            .expect("deploy tenant");
    }

    // A result writer that holds the lower tenant's row and will want the higher one next, as
    // a batch of results in tenant order does.
    let mut writer = env.sql().await;
    sqlx::raw_sql("BEGIN")
        .execute(&mut writer)
        .await
        .expect("begin");
    sqlx::query(
        "UPDATE deploy_tenants SET status = 'succeeded' WHERE deploy_id = $1 AND tenant_id = $2",
    )
    .bind(deploy)
    .bind(low)
    .execute(&mut writer)
    .await
    .expect("the writer takes the lower tenant");
    let platform = env.ctx.platform.clone();
    let marking = tokio::spawn(async move { platform.mark_published(deploy, &[low, high]).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut sql)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "marking published never waited for the writer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query(
        "UPDATE deploy_tenants SET status = 'succeeded' WHERE deploy_id = $1 AND tenant_id = $2",
    )
    .bind(deploy)
    .bind(high)
    .execute(&mut writer)
    .await
    .expect("the writer takes the higher tenant: no deadlock");
    sqlx::raw_sql("COMMIT")
        .execute(&mut writer)
        .await
        .expect("commit");
    marking
        .await
        .expect("the marking task")
        .expect("marking published: no deadlock");

    let statuses: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM deploy_tenants WHERE deploy_id = $1 ORDER BY tenant_id",
    )
    .bind(deploy)
    .fetch_all(&mut sql)
    .await
    .expect("statuses");
    assert_eq!(
        statuses,
        ["succeeded", "succeeded"],
        "a result already written is never turned back into published"
    );
}
