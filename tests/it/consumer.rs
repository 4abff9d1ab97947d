//! The consume loop with a scripted handler: retries, the delivery limit, panics, permanent
//! failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::message::{CloudEvent, Event as _, MigrateTenant};
use shared::bus::WorkQueue;
use shared::bus::consumer::{self, Delivered, Handler, Outcome};
use tenantctl::dead_letters::DeadLetterQueue;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::{Env, fast_retries};

#[derive(Clone, Copy)]
enum Script {
    /// Fails transiently this many times, then succeeds.
    FailTimes(u32),
    AlwaysFail,
    PanicTimes(u32),
    Permanent,
}

#[derive(Default)]
struct Scripted {
    scripts: Mutex<HashMap<Uuid, Script>>,
    /// (attempt, delivery) of every call, per tenant.
    calls: Mutex<HashMap<Uuid, Vec<u32>>>,
    done: Mutex<Vec<Uuid>>,
}

impl Handler for Scripted {
    type Event = MigrateTenant;

    async fn handle(&self, message: &Delivered<CloudEvent<MigrateTenant>>) -> Outcome {
        let tenant = message.event.data.tenant_id;
        let attempt = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            let list = calls.entry(tenant).or_default();
            list.push(message.delivery);
            u32::try_from(list.len()).unwrap_or(u32::MAX)
        };
        let script = self
            .scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant)
            .copied();
        match script {
            Some(Script::FailTimes(n)) if attempt <= n => Outcome::Retry {
                reason: format!("flaky dependency (attempt {attempt})"),
            },
            Some(Script::AlwaysFail) => Outcome::Retry {
                reason: "the database is gone".into(),
            },
            Some(Script::PanicTimes(n)) if attempt <= n => {
                panic!("handler bug on attempt {attempt}")
            }
            Some(Script::Permanent) => Outcome::DeadLetter {
                reason: "tenant does not exist".into(),
            },
            _ => {
                self.done
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(tenant);
                Outcome::Ack
            }
        }
    }
}

impl Scripted {
    fn calls(&self, tenant: Uuid) -> Vec<u32> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant)
            .cloned()
            .unwrap_or_default()
    }

    fn is_done(&self, tenant: Uuid) -> bool {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&tenant)
    }
}

async fn command(env: &Env, handler: &Scripted, script: Option<Script>) -> Uuid {
    let tenant = Uuid::new_v4();
    if let Some(script) = script {
        handler
            .scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant, script);
    }
    let data = MigrateTenant::from_data(
        &serde_json::json!({ "tenant_id": tenant, "deploy_id": Uuid::new_v4() }),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let event = env.ctx.bus.publisher().event(data);
    env.publish(&event).await;
    tenant
}

fn run(env: &Env, handler: Arc<Scripted>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let (bus, token) = (env.ctx.bus.clone(), stop.clone());
    let task = tokio::spawn(async move {
        consumer::consume(
            &bus,
            WorkQueue::MigrateTenant,
            handler,
            fast_retries(),
            token,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_across_deliveries_then_succeed() {
    let env = Env::new().await;
    let handler = Arc::new(Scripted::default());
    // Three attempts per delivery: five failures span two deliveries.
    let flaky = command(&env, &handler, Some(Script::FailTimes(5))).await;
    let fine = command(&env, &handler, None).await;
    let (stop, task) = run(&env, handler.clone());
    testkit::wait_until(Duration::from_secs(30), "both handled", || {
        let handler = handler.clone();
        async move { handler.is_done(flaky) && handler.is_done(fine) }
    })
    .await;
    assert_eq!(
        handler.calls(flaky),
        [1, 1, 1, 2, 2, 2],
        "3 attempts on delivery 1, then delivery 2 succeeds"
    );
    assert_eq!(handler.calls(fine), [1]);
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::MigrateTenant);
    assert_eq!(dlq.count().await.unwrap_or(99), 0);
    stop.cancel();
    task.await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_always_fails_reaches_the_dead_letter_queue_after_the_delivery_limit() {
    let env = Env::new().await;
    let handler = Arc::new(Scripted::default());
    let doomed = command(&env, &handler, Some(Script::AlwaysFail)).await;
    let (stop, task) = run(&env, handler.clone());
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::MigrateTenant);
    testkit::wait_until(
        Duration::from_secs(60),
        "the message is dead-lettered",
        || async { dlq.count().await.unwrap_or(0) == 1 },
    )
    .await;

    let limit = WorkQueue::MigrateTenant.delivery_limit();
    let calls = handler.calls(doomed);
    assert_eq!(
        calls.len() as u32,
        3 * (limit + 1),
        "three attempts on each of the {} deliveries: {calls:?}",
        limit + 1
    );
    assert_eq!(calls.last().copied(), Some(limit + 1));
    let (_, listed) = dlq.list(5).await.unwrap_or_else(|e| panic!("{e}"));
    let [letter] = listed.as_slice() else {
        panic!("{listed:?}")
    };
    assert_eq!(letter.deliveries, limit + 1);
    assert!(
        letter
            .reason
            .contains("gave up after 6 deliveries: the database is gone"),
        "{}",
        letter.reason
    );
    assert_eq!(
        letter.tenant_id.as_deref(),
        Some(doomed.to_string().as_str())
    );
    assert!(letter.first_failure.is_some());
    stop.cancel();
    task.await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_loses_nothing() {
    let env = Env::new().await;
    let handler = Arc::new(Scripted::default());
    let once = command(&env, &handler, Some(Script::PanicTimes(4))).await;
    let always = command(&env, &handler, Some(Script::PanicTimes(u32::MAX))).await;
    let (stop, task) = run(&env, handler.clone());
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::MigrateTenant);
    testkit::wait_until(
        Duration::from_secs(60),
        "one recovered and one dead-lettered",
        || {
            let handler = handler.clone();
            let dlq = &dlq;
            async move { handler.is_done(once) && dlq.count().await.unwrap_or(0) == 1 }
        },
    )
    .await;
    let (_, listed) = dlq.list(5).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        listed[0]
            .reason
            .contains("the handler panicked: handler bug"),
        "{}",
        listed[0].reason
    );
    assert_eq!(
        listed[0].tenant_id.as_deref(),
        Some(always.to_string().as_str())
    );
    stop.cancel();
    task.await
        .unwrap_or_else(|e| panic!("the consumer itself survived the panics: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_dead_lettered_at_once_with_its_reason() {
    let env = Env::new().await;
    let handler = Arc::new(Scripted::default());
    let missing = command(&env, &handler, Some(Script::Permanent)).await;
    let (stop, task) = run(&env, handler.clone());
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::MigrateTenant);
    testkit::wait_until(Duration::from_secs(30), "dead-lettered", || async {
        dlq.count().await.unwrap_or(0) == 1
    })
    .await;
    assert_eq!(handler.calls(missing), [1], "not retried");
    let (_, listed) = dlq.list(5).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed[0].reason, "tenant does not exist");
    assert_eq!(listed[0].event_type.as_deref(), Some("migrate.tenant"));
    stop.cancel();
    task.await.unwrap_or_else(|e| panic!("{e}"));
}
