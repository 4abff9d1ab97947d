//! Confirmed publishing against a broker that says no for a while: a nack is published again
//! until the broker takes the message (a quorum queue electing a leader, a full queue).

use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use shared::bus::Exchange;

use crate::support::Env;

/// A queue that holds one message and nacks publishes beyond it (`reject-publish`): the second
/// publish is nacked until the first message is taken, then confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_message_is_published_again_until_the_broker_takes_it() {
    let env = Env::new().await;
    let topology = env.ctx.bus.topology();
    let exchange = topology.exchange(Exchange::Events);
    let queue = format!("{}.one-message", topology.namespace());
    let channel = env
        .ctx
        .bus
        .channel()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            arguments,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "test.one_message".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let publisher = env.ctx.bus.publisher().clone();
    let publish = |body: &'static [u8]| {
        let (publisher, exchange) = (publisher.clone(), exchange.clone());
        async move {
            publisher
                .publish_raw(
                    &exchange,
                    "test.one_message",
                    body,
                    BasicProperties::default(),
                )
                .await
        }
    };
    publish(b"first")
        .await
        .unwrap_or_else(|e| panic!("the first message fits: {e}"));

    let started = Instant::now();
    let second = tokio::spawn(publish(b"second"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !second.is_finished(),
        "the second publish waits while the queue is full: {:?}",
        second.await
    );
    let first = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the first message is in the queue"));
    assert_eq!(first.delivery.data, b"first");
    first
        .delivery
        .ack(BasicAckOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    second
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("published once the queue had room: {e}"));
    assert!(started.elapsed() >= Duration::from_millis(700));
    let kept = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the second message is in the queue"));
    assert_eq!(kept.delivery.data, b"second");
    let _ = channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
}
