//! Dead-letter tools: list, replay (by tenant, all, interrupted and resumed), purge.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use domain::message::{CloudEvent, Event as _, MigrateTenant};
use lapin::options::{BasicAckOptions, BasicGetOptions};
use shared::bus::WorkQueue;
use shared::bus::consumer::{self, Delivered, Handler, Outcome};
use tenantctl::dead_letters::{DeadLetterQueue, ReplayLog, Selection};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::{Env, fast_retries};

/// Dead-letters every command it gets.
struct Refuse;

impl Handler for Refuse {
    type Event = MigrateTenant;

    async fn handle(&self, _: &Delivered<CloudEvent<MigrateTenant>>) -> Outcome {
        Outcome::DeadLetter {
            reason: "refused by the test".into(),
        }
    }
}

/// Publishes one command per tenant and lets them all be dead-lettered.
async fn dead_letters(env: &Env, tenants: &[Uuid]) {
    for tenant in tenants {
        let data = MigrateTenant::from_data(
            &serde_json::json!({ "tenant_id": tenant, "deploy_id": Uuid::new_v4() }),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        env.ctx
            .bus
            .publisher()
            .publish(&env.ctx.bus.publisher().event(data))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let stop = CancellationToken::new();
    let (bus, token) = (env.ctx.bus.clone(), stop.clone());
    let refuse = tokio::spawn(async move {
        consumer::consume(
            &bus,
            WorkQueue::MigrateTenant,
            Arc::new(Refuse),
            fast_retries(),
            token,
        )
        .await
    });
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::MigrateTenant);
    let expected = u32::try_from(tenants.len()).unwrap_or(u32::MAX);
    testkit::wait_until(Duration::from_secs(60), "all dead-lettered", || async {
        dlq.count().await.unwrap_or(0) == expected
    })
    .await;
    testkit::stop_service((stop, refuse)).await;
}

async fn eventually_count(dlq: &DeadLetterQueue<'_>, expected: u32, what: &str) {
    testkit::wait_until(Duration::from_secs(10), what, || async {
        dlq.count().await.unwrap_or(0) == expected
    })
    .await;
}

/// Takes every message of the work queue, returning how many times each tenant appears.
async fn drain_work_queue(env: &Env) -> HashMap<String, usize> {
    let channel = env
        .ctx
        .bus
        .channel()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let name = env.ctx.bus.topology().queue(WorkQueue::MigrateTenant);
    let mut seen: HashMap<String, usize> = HashMap::new();
    while let Some(message) = channel
        .basic_get(name.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    {
        let body: serde_json::Value =
            serde_json::from_slice(&message.delivery.data).unwrap_or_default();
        *seen
            .entry(
                body["data"]["tenant_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += 1;
        message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_type_tenant_reason_and_never_the_body() {
    let env = Env::new().await;
    let tenants = [Uuid::new_v4(), Uuid::new_v4()];
    dead_letters(&env, &tenants).await;
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::MigrateTenant);
    let (total, listed) = dlq.list(10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(total, 2);
    for info in &listed {
        assert_eq!(info.event_type.as_deref(), Some("migrate.tenant"));
        assert_eq!(info.reason, "refused by the test");
        assert!(info.first_failure.is_some() && info.message_id.is_some());
        assert_eq!(info.original_routing_key.as_deref(), Some("migrate.tenant"));
    }
    eventually_count(&dlq, 2, "listing leaves every message in place").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_tenant_then_all_sends_each_message_back_once_and_audits_it() {
    let env = Env::new().await;
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    dead_letters(&env, &[a, b, c]).await;
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::MigrateTenant);
    let never = CancellationToken::new();

    let dry = dlq
        .replay(
            &Selection::Tenant(a.to_string()),
            true,
            &env.ctx.platform,
            &never,
            |_| async {},
        )
        .await;
    assert_eq!(dry.map(|s| s.replayed.len()).ok(), Some(1));
    // Messages taken for inspection return to a quorum queue asynchronously.
    eventually_count(&dlq, 3, "a dry run changes nothing").await;

    let audited = Arc::new(AtomicUsize::new(0));
    let count = |audited: Arc<AtomicUsize>| {
        move |_| {
            audited.fetch_add(1, Ordering::SeqCst);
            async {}
        }
    };
    let one = dlq
        .replay(
            &Selection::Tenant(a.to_string()),
            false,
            &env.ctx.platform,
            &never,
            count(audited.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((one.replayed.len(), one.left), (1, 2));
    let rest = dlq
        .replay(
            &Selection::All,
            false,
            &env.ctx.platform,
            &never,
            count(audited.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rest.replayed.len(), 2);
    assert_eq!(dlq.count().await.unwrap_or(99), 0);
    assert_eq!(audited.load(Ordering::SeqCst), 3);

    let back = drain_work_queue(&env).await;
    assert_eq!(back.len(), 3);
    assert!(back.values().all(|n| *n == 1), "{back:?}");
    let mut conn = env.sql().await;
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM dlq_replays")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
    assert_eq!(logged, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_interrupted_halfway_and_run_again_brings_every_message_back_exactly_once() {
    let env = Env::new().await;
    let tenants: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    dead_letters(&env, &tenants).await;
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::MigrateTenant);

    // Interrupted (Ctrl-C) after 20 messages.
    let stop = CancellationToken::new();
    let replayed = Arc::new(AtomicUsize::new(0));
    let first = dlq
        .replay(&Selection::All, false, &env.ctx.platform, &stop, |_| {
            if replayed.fetch_add(1, Ordering::SeqCst) + 1 == 20 {
                stop.cancel();
            }
            async {}
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.replayed.len(), 20);
    eventually_count(&dlq, 20, "the other half is still there").await;

    // An earlier run that was killed after republishing one message but before removing it:
    // the replay log has it, so this run removes it without publishing it again.
    let (_, waiting) = dlq.list(1).await.unwrap_or_else(|e| panic!("{e}"));
    let killed = waiting[0].clone();
    env.ctx
        .platform
        .record_replay(&killed.replay_key(), WorkQueue::MigrateTenant, &killed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let second = dlq
        .replay(
            &Selection::All,
            false,
            &env.ctx.platform,
            &CancellationToken::new(),
            |_| async {},
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((second.replayed.len(), second.already_replayed), (19, 1));
    assert_eq!(dlq.count().await.unwrap_or(99), 0);

    let back = drain_work_queue(&env).await;
    let killed_tenant = killed.tenant_id.clone().unwrap_or_default();
    assert_eq!(
        back.get(&killed_tenant),
        None,
        "the message the log says was replayed is not sent twice"
    );
    assert_eq!(back.len(), 39);
    assert!(
        back.values().all(|n| *n == 1),
        "every message back exactly once: {back:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_empties_the_dead_letter_queue() {
    let env = Env::new().await;
    dead_letters(&env, &[Uuid::new_v4(), Uuid::new_v4()]).await;
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::MigrateTenant);
    assert_eq!(dlq.purge().await.ok(), Some(2));
    assert_eq!(dlq.count().await.ok(), Some(0));
}
