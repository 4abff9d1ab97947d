//! The server slots cap migrations across processes: two `ServerSlots` (two replicas) sharing
//! two slots on one server never hold more than two at once.

use std::time::Duration;

use migrator::ServerSlots;
use testkit::pg::TestDatabase;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_slots_of_one_server() {
    let database = TestDatabase::create().await;
    let shutdown = CancellationToken::new();
    let first = ServerSlots::new(database.options(), 2, 2);
    let second = ServerSlots::new(database.options(), 2, 2);
    let a = first
        .acquire(Uuid::new_v4(), &shutdown)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a slot"));
    let b = second
        .acquire(Uuid::new_v4(), &shutdown)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a slot"));

    // Both slots are taken: a third caller, in either replica, waits.
    let waiting = tokio::spawn({
        let (second, shutdown) = (second.clone(), shutdown.clone());
        async move { second.acquire(Uuid::new_v4(), &shutdown).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a third slot was handed out");

    // A replica that dies frees its slots with its connection; a released one is reused.
    a.release().await;
    let c = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap_or_else(|_| panic!("the freed slot was not taken"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a slot"));
    drop(b);
    let d = tokio::time::timeout(
        Duration::from_secs(10),
        first.acquire(Uuid::new_v4(), &shutdown),
    )
    .await
    .unwrap_or_else(|_| panic!("a dropped slot was not freed"))
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|| panic!("a slot"));

    // Shutdown stops a waiter.
    let blocked = tokio::spawn({
        let (first, shutdown) = (first.clone(), shutdown.clone());
        async move { first.acquire(Uuid::new_v4(), &shutdown).await }
    });
    shutdown.cancel();
    let stopped = blocked
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stopped.is_none());
    c.release().await;
    d.release().await;
}
