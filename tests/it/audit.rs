//! The auditor: every event stored once, without personal data; bad messages dead-lettered.

use std::time::Duration;

use lapin::BasicProperties;
use shared::bus::dead_letter::DeadLetterQueue;
use shared::bus::{Exchange, WorkQueue};
use shared::message::{Provisioned, encode};

use crate::support::{Env, publish_many, registration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_stored_once_without_personal_data() {
    let env = Env::new().await;
    let (stop, auditor) = env.start_auditor();
    let ids = publish_many(&env.ctx.bus, 50, |i| {
        registration(&format!("tenant_{i:03}"))
    })
    .await;
    env.wait_for_audit_count(50, Duration::from_secs(30)).await;

    let stored = env.audit_ids().await;
    assert_eq!(stored.len(), 50);
    assert!(
        ids.iter().all(|id| stored.get(id) == Some(&1)),
        "each published id stored exactly once"
    );

    let mut conn = env.sql().await;
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE data::text LIKE '%ana.lima%' OR data::text LIKE '%Ana Lima%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        leaked, 0,
        "the admin's email and name never reach the audit trail"
    );
    let admin: serde_json::Value =
        sqlx::query_scalar("SELECT data->'admin' FROM audit_events LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(admin, serde_json::json!({"redacted": true}));
    let tenant_ids: i64 = sqlx::query_scalar("SELECT count(DISTINCT tenant_id) FROM audit_events")
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tenant_ids, 50, "the tenant id column is filled");

    testkit::stop_service((stop, auditor)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_delivered_twice_is_one_row() {
    let env = Env::new().await;
    let event = env.ctx.bus.publisher().event(registration("twice_co"));
    // Published twice, as a publisher retrying after a lost confirm would: two deliveries.
    env.publish(&event).await;
    env.publish(&event).await;
    let (stop, auditor) = env.start_auditor();
    let other = publish_many(&env.ctx.bus, 1, |_| registration("after_co")).await;
    env.wait_for_audit_count(2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stored = env.audit_ids().await;
    assert_eq!(stored.get(&event.id), Some(&1));
    assert_eq!(stored.get(&other[0]), Some(&1));
    assert_eq!(env.audit_count().await, 2);
    testkit::stop_service((stop, auditor)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_contract_violations_go_to_the_dead_letter_queue_and_the_auditor_keeps_going() {
    let env = Env::new().await;
    let (stop, auditor) = env.start_auditor();
    let publisher = env.ctx.bus.publisher();
    let exchange = env.ctx.bus.topology().exchange(Exchange::Events);
    let exchange = &exchange;
    let raw = |body: Vec<u8>| async move {
        publisher
            .publish_raw(
                exchange,
                "tenant.registered",
                &body,
                BasicProperties::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    };
    raw(vec![0xff, 0x00, 0x13, 0x37]).await;
    raw(b"{\"specversion\": \"1.0\", \"id\": ".to_vec()).await;
    // A well-formed event whose slug is an injection attempt.
    let mut bad = serde_json::to_value(env.ctx.bus.publisher().event(registration("fine_co")))
        .unwrap_or_else(|e| panic!("{e}"));
    bad["data"]["slug"] = serde_json::json!("acme'; DROP SCHEMA public; --");
    raw(serde_json::to_vec(&bad).unwrap_or_default()).await;
    // A valid event after them is still stored.
    let good = env.ctx.bus.publisher().event(
        Provisioned::from_data(&serde_json::json!({
            "tenant_id": uuid::Uuid::new_v4(), "slug": "good_co", "isolation": "schema",
            "schema_version": 20261124110800_i64, "duration_ms": 120
        }))
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let bytes = encode(&good);
    assert!(!bytes.is_empty());
    env.publish(&good).await;

    env.wait_for_audit_count(1, Duration::from_secs(30)).await;
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::AuditorEvents);
    testkit::wait_until(Duration::from_secs(30), "three dead letters", || async {
        dlq.count().await.unwrap_or(0) >= 3
    })
    .await;
    let (total, listed) = dlq.list(10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(total, 3);
    let reasons: Vec<&str> = listed.iter().map(|l| l.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not JSON") || r.contains("JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("data.slug")),
        "{reasons:?}"
    );
    assert!(
        listed.iter().all(|l| l.deliveries == 1),
        "never retried: {listed:?}"
    );
    assert!(
        listed.iter().all(|l| !l.reason.contains("DROP SCHEMA")),
        "reasons do not echo the input"
    );
    assert_eq!(env.audit_count().await, 1);
    testkit::stop_service((stop, auditor)).await;
}

use shared::message::Event as _;
