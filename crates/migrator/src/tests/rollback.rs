//! `rollback.tenant`, handled.

use serde_json::json;
use shared::bus::Outcome;
use testkit::SetBuilder;

use super::fixture::{FIRST, Fixture, shown, tenant_set, v};

#[tokio::test]
async fn a_rollback_reverts_records_and_announces_with_its_operator() {
    let fixture = Fixture::new(tenant_set(), 2).await;

    assert_eq!(fixture.rollback(1, true, FIRST).await, Outcome::Ack);

    assert_eq!(fixture.published.types(), ["migration.rollback"]);
    let rolled_back = &fixture.published.of_type("migration.rollback")[0];
    assert_eq!(rolled_back.data["operator"], json!("sre-ana"));
    assert_eq!(rolled_back.data["from_version"], json!(v(2).get()));
    assert_eq!(rolled_back.data["to_version"], json!(v(1).get()));
    assert_eq!(rolled_back.data["reverted"], json!([v(2).get()]));
    assert_eq!(rolled_back.data["allow_data_loss"], json!(true));
    assert_eq!(fixture.tenant_row().await, (v(1).get(), None));
    assert_eq!(
        fixture.deploy_row().await.0,
        "pending",
        "a rollback belongs to no deploy"
    );
}

#[tokio::test]
async fn a_rollback_that_would_destroy_data_is_refused_and_leaves_the_tenant_as_it_was() {
    let fixture = Fixture::new(tenant_set(), 2).await;

    let outcome = fixture.rollback(1, false, FIRST).await;

    let Outcome::DeadLetter { reason } = &outcome else {
        panic!("dead-lettered expected: {outcome:?}");
    };
    assert!(reason.contains("destroy data"), "{reason}");
    assert_eq!(
        fixture.published.types(),
        ["migration.failed"],
        "{}",
        shown(&fixture.published)
    );
    let failed = &fixture.published.of_type("migration.failed")[0];
    let announced = failed.data["reason"].as_str().unwrap_or_default();
    assert!(
        announced.starts_with("rollback by sre-ana: "),
        "{announced}"
    );
    assert_eq!(failed.data["transient"], json!(false));
    assert_eq!(
        fixture.tenant_row().await,
        (v(2).get(), None),
        "not marked: nothing ran"
    );
}

#[tokio::test]
async fn a_failing_down_script_dead_letters_and_marks_the_tenant_where_it_stands() {
    let set = SetBuilder::new(engine::SetKind::Tenant)
        .migration(1, "create_a", "CREATE TABLE a (id int);", "DROP TABLE a;")
        .migration(
            2,
            "create_b",
            "CREATE TABLE b (id int);",
            "DROP TABLE missing;",
        )
        .migration(3, "create_c", "CREATE TABLE c (id int);", "DROP TABLE c;");
    let fixture = Fixture::new(set, 3).await;

    let outcome = fixture.rollback(1, true, FIRST).await;

    assert!(
        matches!(&outcome, Outcome::DeadLetter { reason } if reason.contains("missing")),
        "{outcome:?}"
    );
    let failed = &fixture.published.of_type("migration.failed")[0];
    assert_eq!(failed.data["version"], json!(v(2).get()));
    // 3 was reverted before 2's down script failed.
    let (version, migration_error) = fixture.tenant_row().await;
    assert_eq!(version, v(2).get());
    assert!(
        migration_error.is_some_and(|e| e.starts_with("rollback: ")),
        "marked for reprocessing"
    );
}

#[tokio::test]
async fn a_transient_rollback_failure_on_an_early_delivery_is_retried_with_nothing_recorded() {
    let set = SetBuilder::new(engine::SetKind::Tenant)
        .migration(1, "create_a", "CREATE TABLE a (id int);", "DROP TABLE a;")
        .migration(
            2,
            "create_b",
            "CREATE TABLE b (id int);",
            "-- lock-timeout: 200ms\nDROP TABLE b;",
        );
    let fixture = Fixture::new(set, 2).await;
    let holder = fixture
        .hold(&format!(
            "BEGIN; LOCK TABLE {}.b IN ACCESS EXCLUSIVE MODE",
            fixture.schema()
        ))
        .await;

    let outcome = fixture.rollback(1, true, FIRST).await;

    assert!(
        matches!(&outcome, Outcome::Retry { reason } if reason.contains("lock")),
        "{outcome:?}"
    );
    let failed = &fixture.published.of_type("migration.failed")[0];
    assert_eq!(failed.data["transient"], json!(true));
    assert_eq!(fixture.tenant_row().await, (v(2).get(), None));

    drop(holder);
    assert_eq!(fixture.rollback(1, true, FIRST + 1).await, Outcome::Ack);
    assert_eq!(fixture.tenant_row().await, (v(1).get(), None));
}
