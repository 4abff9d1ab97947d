//! `migrate.tenant`, handled.

use serde_json::json;
use shared::bus::Outcome;
use testkit::publisher::PublishFailure;

use super::fixture::{FIRST, Fixture, LAST, shown, tenant_set, v};

/// Migration 3 alters `a` with a short lock timeout: a transaction holding `a` makes it fail
/// transiently.
fn with_a_migration_that_waits_for_a() -> testkit::SetBuilder {
    tenant_set().migration(
        3,
        "alter_a",
        "-- lock-timeout: 200ms\nALTER TABLE a ADD COLUMN note text;",
        "ALTER TABLE a DROP COLUMN note;",
    )
}

fn retry_reason(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Retry { reason } => reason,
        other => panic!("given back expected: {other:?}"),
    }
}

#[tokio::test]
async fn a_tenant_at_the_target_is_acknowledged_as_a_noop_without_touching_its_storage() {
    let fixture = Fixture::new(tenant_set(), 2).await;
    // Were the tenant server touched, the missing schema would fail the command.
    drop(
        fixture
            .hold(&format!("DROP SCHEMA {} CASCADE", fixture.schema()))
            .await,
    );

    assert_eq!(fixture.migrate(None, FIRST).await, Outcome::Ack);

    assert!(
        fixture.published.published().is_empty(),
        "{}",
        shown(&fixture.published)
    );
    assert_eq!(
        fixture.deploy_row().await,
        ("succeeded".into(), None, 0, None)
    );
    assert_eq!(fixture.tenant_row().await, (v(2).get(), None));
}

#[tokio::test]
async fn pending_migrations_are_applied_recorded_and_announced() {
    let fixture = Fixture::new(tenant_set(), 1).await;

    assert_eq!(fixture.migrate(None, FIRST).await, Outcome::Ack);

    assert_eq!(
        fixture.published.types(),
        ["migration.started", "migration.completed"]
    );
    let completed = &fixture.published.of_type("migration.completed")[0];
    assert_eq!(completed.data["from_version"], json!(v(1).get()));
    assert_eq!(completed.data["to_version"], json!(v(2).get()));
    assert_eq!(completed.data["applied"], json!([v(2).get()]));
    assert_eq!(completed.data["deploy_id"], json!(fixture.deploy_id));
    assert_eq!(
        fixture.deploy_row().await,
        ("succeeded".into(), Some(v(2).get()), 1, None)
    );
    assert_eq!(fixture.tenant_row().await, (v(2).get(), None));
}

#[tokio::test]
async fn a_failing_script_dead_letters_at_once_and_marks_the_tenant_where_it_stands() {
    let set = tenant_set().migration(3, "create_a_again", "CREATE TABLE a (id int);", "");
    let fixture = Fixture::new(set, 1).await;

    let outcome = fixture.migrate(None, FIRST).await;

    let Outcome::DeadLetter { reason } = &outcome else {
        panic!("dead-lettered expected: {outcome:?}");
    };
    assert!(reason.contains("already exists"), "{reason}");
    assert_eq!(
        fixture.published.types(),
        ["migration.started", "migration.failed"]
    );
    let failed = &fixture.published.of_type("migration.failed")[0];
    assert_eq!(failed.data["transient"], json!(false));
    assert_eq!(failed.data["version"], json!(v(3).get()));
    assert_eq!(failed.data["attempt"], json!(1));
    // Migration 2 ran before 3 failed: the tenant is recorded at 2, needing reprocessing.
    let (status, to_version, _, error) = fixture.deploy_row().await;
    assert_eq!((status.as_str(), to_version), ("failed", Some(v(2).get())));
    assert!(error.is_some_and(|e| e.contains("already exists")));
    let (version, migration_error) = fixture.tenant_row().await;
    assert_eq!(version, v(2).get());
    assert!(migration_error.is_some_and(|e| e.contains("already exists")));

    // The operator removes the conflict and replays the command: the mark is cleared.
    drop(
        fixture
            .hold(&format!("DROP TABLE {}.a CASCADE", fixture.schema()))
            .await,
    );
    assert_eq!(fixture.migrate(None, FIRST).await, Outcome::Ack);
    assert_eq!(fixture.tenant_row().await, (v(3).get(), None));
    assert_eq!(fixture.deploy_row().await.0, "succeeded");
}

#[tokio::test]
async fn a_transient_failure_on_an_early_delivery_is_retried_and_goes_through_later() {
    let fixture = Fixture::new(with_a_migration_that_waits_for_a(), 2).await;
    let holder = fixture.lock_a().await;

    let outcome = fixture.migrate(None, FIRST).await;

    assert!(retry_reason(&outcome).contains("lock"), "{outcome:?}");
    assert_eq!(
        fixture.published.types(),
        ["migration.started", "migration.failed"]
    );
    let failed = &fixture.published.of_type("migration.failed")[0];
    assert_eq!(failed.data["transient"], json!(true), "it will be retried");
    let (status, _, _, error) = fixture.deploy_row().await;
    assert_eq!(status, "retrying");
    assert!(error.is_some_and(|e| e.contains("lock")));
    assert_eq!(
        fixture.tenant_row().await,
        (v(2).get(), None),
        "not marked: it is retried"
    );

    drop(holder);
    assert_eq!(fixture.migrate(None, FIRST + 1).await, Outcome::Ack);
    assert_eq!(fixture.tenant_row().await, (v(3).get(), None));
    assert_eq!(fixture.deploy_row().await.0, "succeeded");
}

#[tokio::test]
async fn a_transient_failure_on_the_last_delivery_is_final() {
    let fixture = Fixture::new(with_a_migration_that_waits_for_a(), 2).await;
    let _holder = fixture.lock_a().await;

    let outcome = fixture.migrate(None, LAST).await;

    assert!(
        matches!(&outcome, Outcome::DeadLetter { reason } if reason.contains("lock")),
        "{outcome:?}"
    );
    let failed = &fixture.published.of_type("migration.failed")[0];
    assert_eq!(failed.data["transient"], json!(false), "not retried again");
    assert_eq!(failed.data["attempt"], json!(LAST));
    assert_eq!(fixture.deploy_row().await.0, "failed");
    assert!(fixture.tenant_row().await.1.is_some(), "needs reprocessing");
}

#[tokio::test]
async fn a_transient_failure_during_shutdown_is_given_back_with_nothing_recorded() {
    let fixture = Fixture::new(with_a_migration_that_waits_for_a(), 2).await;
    let _holder = fixture.lock_a().await;
    fixture.shutdown.cancel();

    let outcome = fixture.migrate(None, LAST).await;

    assert!(
        retry_reason(&outcome).starts_with("interrupted by shutdown: "),
        "{outcome:?}"
    );
    assert_eq!(fixture.published.types(), ["migration.started"]);
    assert_eq!(fixture.deploy_row().await.0, "pending");
    assert_eq!(fixture.tenant_row().await, (v(2).get(), None));
}

#[tokio::test]
async fn a_lost_event_does_not_fail_the_command() {
    let fixture = Fixture::new(tenant_set(), 1).await;
    fixture.published.fail_next(2, PublishFailure::Permanent);

    assert_eq!(fixture.migrate(None, FIRST).await, Outcome::Ack);

    assert!(fixture.published.published().is_empty());
    assert_eq!(fixture.tenant_row().await, (v(2).get(), None));
    assert_eq!(fixture.deploy_row().await.0, "succeeded");
}

#[tokio::test]
async fn a_target_unknown_to_this_build_is_given_back_and_shown_as_retrying() {
    let fixture = Fixture::new(tenant_set(), 1).await;

    let outcome = fixture.migrate(Some(9), LAST).await;

    assert!(
        retry_reason(&outcome).contains("unknown to this migrator"),
        "{outcome:?}"
    );
    assert!(fixture.published.published().is_empty());
    assert_eq!(fixture.deploy_row().await.0, "retrying");
    assert_eq!(fixture.tenant_row().await, (v(1).get(), None));
}

#[tokio::test]
async fn a_provisioning_tenant_is_waited_for_and_a_deleted_one_is_final() {
    let fixture = Fixture::new(tenant_set(), 1).await;
    let set_status = |status: &'static str| {
        let fixture = &fixture;
        async move {
            drop(
                fixture
                    .hold(&format!(
                        "UPDATE tenants SET status = '{status}' WHERE id = '{}'",
                        fixture.tenant_id
                    ))
                    .await,
            );
        }
    };

    set_status("provisioning").await;
    let outcome = fixture.migrate(None, FIRST).await;
    assert_eq!(retry_reason(&outcome), "the tenant is still provisioning");
    assert_eq!(fixture.deploy_row().await.0, "pending", "nothing recorded");

    set_status("deleted").await;
    assert_eq!(
        fixture.migrate(None, FIRST).await,
        Outcome::DeadLetter {
            reason: "the tenant is deleted: there is nothing to migrate".into()
        }
    );
    assert_eq!(fixture.deploy_row().await.0, "failed");
    assert!(fixture.published.published().is_empty());
}
