//! The server slots cap migrations, and connections, across processes: two `ServerSlots` (two
//! replicas) sharing two slots on one server never hold more than two at once.

use std::time::Duration;

use engine::ServerSlots;
use testkit::pg::TestDatabase;
use tokio_util::sync::CancellationToken;

/// Connections of the slots' application on the test database (this query's own is not one).
async fn slot_connections(database: &TestDatabase) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tenancy-migrator'",
    )
    .fetch_one(&mut database.connect().await)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_slots_of_one_server() {
    let database = TestDatabase::create().await;
    let (first_stop, second_stop) = (CancellationToken::new(), CancellationToken::new());
    let first = ServerSlots::new(database.options(), 2, 2, first_stop.clone());
    let second = ServerSlots::new(database.options(), 2, 2, second_stop.clone());
    let acquire = |slots: &ServerSlots, spread: u128| {
        let slots = slots.clone();
        async move {
            slots
                .acquire(spread)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("a slot"))
        }
    };
    let a = acquire(&first, 0).await;
    let b = acquire(&second, 0).await;
    assert_ne!(a.slot(), b.slot(), "two holders of one slot");

    // Both slots are taken: a third caller, in either replica, waits.
    let waiting = tokio::spawn(acquire(&second, 1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a third slot was handed out");
    // The waiter's connection is the only one beyond the slots.
    assert_eq!(slot_connections(&database).await, 3);

    // A connection that closes frees its slot; the waiter takes it.
    let mut a = a;
    a.close_on_drop();
    drop(a);
    let c = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap_or_else(|_| panic!("the freed slot was not taken"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(slot_connections(&database).await, 2);

    // A connection handed back is reused at once, slot and all, without a new connection.
    let slot = b.slot();
    drop(b);
    let b = acquire(&second, 0).await;
    assert_eq!(b.slot(), slot);
    assert_eq!(slot_connections(&database).await, 2);

    // Idle connections close after a while and free their slots for the other replica.
    drop(b);
    let d = tokio::time::timeout(engine::backend::slots::IDLE_TIMEOUT * 4, acquire(&first, 0))
        .await
        .unwrap_or_else(|_| panic!("an idle connection kept its slot"));

    // Shutdown stops a waiter.
    let blocked = tokio::spawn({
        let first = first.clone();
        async move { first.acquire(0).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    first_stop.cancel();
    let stopped = blocked
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stopped.is_none());
    drop((c, d));
    second.close_idle().await;
    second_stop.cancel();
    first.close_idle().await;
}
