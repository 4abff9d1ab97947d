//! The auditor: every event stored once per id and content, without personal data; an id
//! reused for other content stored as a conflict row; bad messages dead-lettered.

use std::time::Duration;

use domain::message::{AnyEvent, CloudEvent, Provisioned, TenantRegistered, decode_any, encode};
use lapin::BasicProperties;
use shared::bus::{Exchange, WorkQueue};
use shared::platform::{AuditFilter, AuditInsert, PlatformDb, conflict_id};
use tenantctl::dead_letters::DeadLetterQueue;
use uuid::Uuid;

use crate::support::{Env, SHARED_BROKER, publish_many, registration};

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

/// A registration of a new tenant with `slug`, published under `id`.
fn registered_as(id: Uuid, slug: &str) -> CloudEvent<TenantRegistered> {
    let mut event = CloudEvent::new("platform-backend", registration(slug));
    event.id = id;
    event
}

fn as_received(event: &CloudEvent<TenantRegistered>) -> AnyEvent {
    decode_any(&encode(event)).unwrap_or_else(|e| panic!("{e}"))
}

/// `SELECT count(*) …` with `binds` as `$1`, `$2`, …
async fn count(env: &Env, sql: &str, binds: &[Uuid]) -> i64 {
    let mut conn = env.sql().await;
    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()));
    for bind in binds {
        query = query.bind(*bind);
    }
    query
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_reused_for_another_tenant_provisions_both_and_audits_both() {
    let env = Env::new().await;
    let id = Uuid::now_v7();
    let (first_slug, second_slug) = (env.slug(), env.slug());
    let first = registered_as(id, first_slug.as_str());
    let second = registered_as(id, second_slug.as_str());
    // Each published twice: the second publish of each is a plain redelivery.
    for event in [&first, &second, &first, &second] {
        env.publish(event).await;
    }
    let (provisioner_stop, provisioner) = env.start_provisioner();
    let (auditor_stop, auditor) = env.start_auditor();
    for event in [&first, &second] {
        env.wait_for_status(event.data.tenant_id, "active", Duration::from_secs(90))
            .await;
    }
    // Both registrations, then 6 steps and `tenant.provisioned` per tenant. The registrations
    // were queued first, so once these are stored, so are their redeliveries.
    env.wait_for_audit_count(2 + 2 * 7, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.audit_count().await, 16, "every redelivery stored once");

    let rows = env
        .ctx
        .platform
        .audit(&AuditFilter {
            event_type: Some("tenant.registered".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let original = rows
        .iter()
        .find(|row| row.record.id == id)
        .unwrap_or_else(|| panic!("the first registration keeps its id: {rows:?}"));
    assert_eq!(original.record.tenant_id, Some(first.data.tenant_id));
    assert_eq!(original.record.conflicts_with, None);
    assert_eq!(
        original.record.content_digest,
        Some(as_received(&first).content_digest())
    );
    let conflict = rows
        .iter()
        .find(|row| row.record.id != id)
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(conflict.record.tenant_id, Some(second.data.tenant_id));
    assert_eq!(conflict.record.conflicts_with, Some(id));
    let digest = as_received(&second).content_digest();
    assert_eq!(conflict.record.content_digest, Some(digest));
    assert_eq!(conflict.record.id, conflict_id(id, &digest));
    assert_eq!(
        conflict.record.data["admin"],
        serde_json::json!({ "redacted": true })
    );
    // The trail and the tenants agree.
    for event in [&first, &second] {
        assert_eq!(
            count(
                &env,
                "SELECT count(*) FROM audit_events WHERE type = 'tenant.registered' AND tenant_id = $1",
                &[event.data.tenant_id],
            )
            .await,
            1
        );
    }

    provisioner_stop.cancel();
    testkit::stop_service((auditor_stop, provisioner)).await;
    auditor
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The conflict rules at the store, whatever the order in and across batches.
async fn conflict_rules(platform: &PlatformDb) {
    let record = |event: &CloudEvent<TenantRegistered>| auditor::record_of(&as_received(event));
    let x = Uuid::now_v7();
    let (a, b, c) = (
        registered_as(x, "acme_a"),
        registered_as(x, "acme_b"),
        registered_as(x, "acme_c"),
    );
    let insert = |records: Vec<shared::platform::AuditRecord>| async move {
        platform
            .insert_audit_events(&records)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };

    // Three contents under one id in one batch, one of them twice.
    let first = insert(vec![record(&a), record(&b), record(&a), record(&c)]).await;
    assert_eq!((first.stored, first.duplicates), (3, 1));
    let mut flagged: Vec<(Uuid, Uuid)> = first
        .conflicts
        .iter()
        .map(|c| (c.id, c.conflicts_with))
        .collect();
    flagged.sort();
    let mut expected = vec![
        (conflict_id(x, &as_received(&b).content_digest()), x),
        (conflict_id(x, &as_received(&c).content_digest()), x),
    ];
    expected.sort();
    assert_eq!(flagged, expected);
    assert!(
        first
            .conflicts
            .iter()
            .all(|c| c.event_type == "tenant.registered" && c.source == "platform-backend")
    );

    // Redeliveries of all three, in another order, time restamped: nothing new.
    let mut late = c.clone();
    late.time = chrono::Utc::now() + chrono::TimeDelta::minutes(5);
    let again = insert(vec![record(&late), record(&b), record(&a)]).await;
    assert_eq!(
        again,
        AuditInsert {
            stored: 0,
            duplicates: 3,
            conflicts: Vec::new()
        }
    );

    // Another content later, beside a new id: one more conflict row, one ordinary row.
    let y = registered_as(Uuid::now_v7(), "acme_y");
    let later = insert(vec![record(&y), record(&registered_as(x, "acme_d"))]).await;
    assert_eq!(
        (later.stored, later.duplicates, later.conflicts.len()),
        (2, 0, 1)
    );

    // A row stored before digests were recorded is compared on what it holds.
    let old = registered_as(Uuid::now_v7(), "acme_old");
    let mut legacy = record(&old);
    legacy.content_digest = None;
    insert(vec![legacy]).await;
    let same = insert(vec![record(&old)]).await;
    assert_eq!((same.stored, same.duplicates), (0, 1));
    let changed = insert(vec![record(&registered_as(old.id, "acme_new"))]).await;
    assert_eq!(changed.conflicts.len(), 1);

    // What `tenantctl audit` reads.
    let rows = platform
        .audit(&AuditFilter {
            event_type: Some("tenant.registered".into()),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 7, "a, b, c, d, y, old, its conflict: {rows:?}");
    let conflicts: Vec<_> = rows
        .iter()
        .filter_map(|row| Some((row, row.record.conflicts_with?)))
        .collect();
    assert_eq!(conflicts.len(), 4);
    for (row, original) in conflicts {
        let digest = row
            .record
            .content_digest
            .unwrap_or_else(|| panic!("a conflict row has its digest"));
        assert_eq!(row.record.id, conflict_id(original, &digest));
    }
    let under_x = rows.iter().find(|row| row.record.id == x);
    assert_eq!(
        under_x.and_then(|row| row.record.tenant_id),
        Some(a.data.tenant_id),
        "the first content keeps the id"
    );
    let legacy_row = rows.iter().find(|row| row.record.id == old.id);
    assert_eq!(legacy_row.map(|row| row.record.content_digest), Some(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_contents_are_each_stored_once_on_postgres() {
    let env = Env::new().await;
    conflict_rules(&env.ctx.platform).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_contents_are_each_stored_once_on_sqlite() {
    let dir = testkit::ScratchDir::new();
    let url = format!("sqlite://{}", dir.path().join("platform.sqlite3").display());
    let env = Env::on(None, &url, SHARED_BROKER).await;
    conflict_rules(&env.ctx.platform).await;
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_events_emitted_again_with_other_content_are_not_taken_for_conflicts() {
    let env = Env::new().await;
    let (provisioner_stop, provisioner) = env.start_provisioner();
    let (auditor_stop, auditor) = env.start_auditor();
    let (owner, slug) = env.register(Some("schema")).await;
    env.wait_for_status(owner, "active", Duration::from_secs(90))
        .await;
    env.wait_for_audit_count(8, Duration::from_secs(30)).await;

    // Another tenant asks for the taken slug: refused before it has a row, so the provisioner
    // has no attempt count to put in its step event's id.
    let refused = env.ctx.bus.publisher().event(registration(slug.as_str()));
    let tenant = refused.data.tenant_id;
    env.publish(&refused).await;
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::TenantRegistered);
    testkit::wait_until(Duration::from_secs(30), "refused once", || async {
        dlq.count().await.unwrap_or(0) == 1
    })
    .await;
    env.wait_for_audit_count(11, Duration::from_secs(30)).await;

    // The platform sends it again while the slug's row is locked: refused again, after a
    // longer step, so the step event says another duration.
    let mut busy = env.sql().await;
    sqlx::query("BEGIN")
        .execute(&mut busy)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("SELECT 1 FROM tenants WHERE slug = $1 FOR UPDATE")
        .bind(slug.as_str())
        .execute(&mut busy)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.publish(&refused).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    sqlx::query("COMMIT")
        .execute(&mut busy)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    testkit::wait_until(Duration::from_secs(30), "refused twice", || async {
        dlq.count().await.unwrap_or(0) == 2
    })
    .await;
    env.wait_for_audit_count(12, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM audit_events WHERE conflicts_with IS NOT NULL",
            &[],
        )
        .await,
        0,
        "none of our events is flagged as a producer bug"
    );
    let durations: Vec<i64> = {
        let mut conn = env.sql().await;
        sqlx::query_scalar(
            "SELECT (data->>'duration_ms')::bigint FROM audit_events
             WHERE tenant_id = $1 AND type = 'tenant.provisioning_step' ORDER BY recorded_at",
        )
        .bind(tenant)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(
        matches!(durations.as_slice(), [quick, slow] if slow > quick && *slow >= 500),
        "two refusals, two step events: {durations:?}"
    );
    for (event_type, expected) in [("tenant.registered", 1), ("tenant.provisioning_failed", 1)] {
        assert_eq!(
            count(
                &env,
                &format!(
                    "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND type = '{event_type}'"
                ),
                &[tenant],
            )
            .await,
            expected,
            "{event_type}: the same content, stored once"
        );
    }
    assert_eq!(env.audit_count().await, 12);

    provisioner_stop.cancel();
    testkit::stop_service((auditor_stop, provisioner)).await;
    auditor
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

use domain::message::Event as _;
