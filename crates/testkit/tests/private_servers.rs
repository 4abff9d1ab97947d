//! The private servers of the test kit: a PostgreSQL cluster and a RabbitMQ node that a test
//! may stop, kill and restart without touching the machine's shared servers.

use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use sqlx::{ConnectOptions, Connection as _};
use testkit::broker::PrivateBroker;
use testkit::cluster::PrivatePostgres;
use testkit::wait_until;

async fn count_rows(cluster: &PrivatePostgres) -> i64 {
    let mut conn = cluster.connect().await;
    let n = sqlx::query_scalar("SELECT count(*) FROM survivors")
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("counting rows: {e}"));
    let _ = conn.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stop_and_start_again_keeps_the_data() {
    let started = Instant::now();
    let mut cluster = PrivatePostgres::start().await;
    eprintln!(
        "private PostgreSQL on port {} up in {:?}",
        cluster.port(),
        started.elapsed()
    );
    assert_eq!(
        cluster.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port())
    );
    assert_ne!(cluster.port(), 5432);

    let mut conn = cluster.connect().await;
    sqlx::raw_sql("CREATE TABLE survivors (id int PRIMARY KEY); INSERT INTO survivors VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("creating the table: {e}"));

    cluster.stop().await;
    assert!(!cluster.is_running());
    // The open session was ended by the shutdown, and new ones are refused.
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err());
    assert!(cluster.options().connect().await.is_err());

    let again = Instant::now();
    cluster.start_again().await;
    eprintln!("private PostgreSQL started again in {:?}", again.elapsed());
    assert_eq!(count_rows(&cluster).await, 1);

    let restart = Instant::now();
    cluster.restart().await;
    eprintln!("private PostgreSQL restarted in {:?}", restart.elapsed());
    assert_eq!(count_rows(&cluster).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_recovers_after_kill() {
    let mut cluster = PrivatePostgres::start().await;
    let mut conn = cluster.connect().await;
    sqlx::raw_sql(
        "CREATE TABLE survivors (id int PRIMARY KEY); \
         INSERT INTO survivors SELECT generate_series(1, 1000)",
    )
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("filling the table: {e}"));

    cluster.kill().await;
    assert!(cluster.options().connect().await.is_err());

    let again = Instant::now();
    cluster.start_again().await;
    eprintln!(
        "private PostgreSQL recovered from kill in {:?}",
        again.elapsed()
    );
    assert_eq!(count_rows(&cluster).await, 1000);
    assert!(
        cluster.log_tail(50).contains("not properly shut down"),
        "the start after kill should run crash recovery:\n{}",
        cluster.log_tail(50)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_at_once_get_their_own_ports_and_directories() {
    let (a, b) = tokio::join!(PrivatePostgres::start(), PrivatePostgres::start());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    let mut conn_a = a.connect().await;
    let mut conn_b = b.connect().await;
    sqlx::raw_sql("CREATE TABLE only_in_a (id int)")
        .execute(&mut conn_a)
        .await
        .unwrap_or_else(|e| panic!("creating the table in a: {e}"));
    let in_b: Option<String> = sqlx::query_scalar("SELECT to_regclass('only_in_a')::text")
        .fetch_one(&mut conn_b)
        .await
        .unwrap_or_else(|e| panic!("looking in b: {e}"));
    assert_eq!(in_b, None);

    let dir = a.dir().to_owned();
    let port = a.port();
    drop(conn_a);
    drop(a);
    assert!(!dir.exists(), "the dropped cluster's directory is removed");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the dropped cluster is stopped"
    );
    // The other one is untouched.
    sqlx::query("SELECT 1")
        .execute(&mut conn_b)
        .await
        .unwrap_or_else(|e| panic!("b after a was dropped: {e}"));
}

/// Declares the durable `queue` and publishes a persistent message to it, confirmed.
async fn publish(conn: &Connection, queue: &str, body: &[u8]) {
    let channel = conn
        .create_channel()
        .await
        .unwrap_or_else(|e| panic!("opening a channel: {e}"));
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap_or_else(|e| panic!("confirm mode: {e}"));
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("declaring {queue}: {e}"));
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap_or_else(|e| panic!("publishing: {e}"))
        .await
        .unwrap_or_else(|e| panic!("publish confirmation: {e}"));
    assert!(confirmation.is_ack(), "{confirmation:?}");
    let _ = channel.close(200, "done".into()).await;
}

/// Takes one message from `queue`, waiting up to 10 s for it.
async fn get(conn: &Connection, queue: &str) -> Vec<u8> {
    let channel = conn
        .create_channel()
        .await
        .unwrap_or_else(|e| panic!("opening a channel: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let message = loop {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap_or_else(|e| panic!("basic_get: {e}"));
        if let Some(message) = got {
            break message;
        }
        assert!(Instant::now() < deadline, "no message arrived in {queue}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = channel.close(200, "done".into()).await;
    message.delivery.data
}

async fn publish_and_get(conn: &Connection, queue: &str, body: &[u8]) {
    publish(conn, queue, body).await;
    assert_eq!(get(conn, queue).await, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_publish_and_get() {
    let started = Instant::now();
    let mut broker = PrivateBroker::start().await;
    eprintln!(
        "private RabbitMQ {} on port {} up in {:?}",
        broker.node(),
        broker.amqp_port(),
        started.elapsed()
    );
    assert!(
        broker
            .node()
            .starts_with(&format!("tenancy-test-{}-", std::process::id()))
    );
    assert!(broker.node().ends_with("@localhost"));
    assert_eq!(
        broker.amqp_url(),
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", broker.amqp_port())
    );
    assert_ne!(broker.amqp_port(), 5672);

    let conn = Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connecting: {e}"));
    publish_and_get(&conn, "kit.private", b"hello").await;

    // A clean stop keeps durable queues and persistent messages.
    publish(&conn, "kit.private", b"kept").await;
    let t = Instant::now();
    broker.stop().await;
    eprintln!("stop in {:?}", t.elapsed());
    assert!(
        Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
            .await
            .is_err()
    );
    let t = Instant::now();
    broker.start_again().await;
    eprintln!("start_again after stop in {:?}", t.elapsed());
    let conn = broker.connect().await;
    assert_eq!(get(&conn, "kit.private").await, b"kept");
    let _ = conn.close(200, "done".into()).await;

    let dir = broker.dir().to_owned();
    let port = broker.amqp_port();
    let dropped = Instant::now();
    drop(broker);
    eprintln!("private RabbitMQ dropped in {:?}", dropped.elapsed());
    assert!(!dir.exists(), "the dropped node's directory is removed");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults() {
    let shared_up_before = std::net::TcpStream::connect(("127.0.0.1", 5672)).is_ok();
    let mut broker = PrivateBroker::start().await;

    // close_all_connections: the client sees its connection closed.
    let conn = broker.connect().await;
    publish_and_get(&conn, "kit.faults", b"before").await;
    let t = Instant::now();
    let closed = broker.close_all_connections().await;
    eprintln!("close_all_connections ({closed}) in {:?}", t.elapsed());
    assert_eq!(closed, 1);
    wait_until(Duration::from_secs(10), "the client sees the close", || {
        let connected = conn.status().connected();
        async move { !connected }
    })
    .await;
    assert!(conn.create_channel().await.is_err());

    // stop_app: the node stays up, AMQP is refused; start_app brings it back.
    let t = Instant::now();
    broker.stop_app().await;
    eprintln!("stop_app in {:?}", t.elapsed());
    assert!(
        Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
            .await
            .is_err()
    );
    let t = Instant::now();
    broker.start_app().await;
    eprintln!("start_app in {:?}", t.elapsed());
    let conn = broker.connect().await;
    publish_and_get(&conn, "kit.faults", b"after start_app").await;
    drop(conn);

    let t = Instant::now();
    broker.restart_app().await;
    eprintln!("restart_app in {:?}", t.elapsed());

    // kill: the node is gone; start_again boots it with the same name, port and data.
    let conn = broker.connect().await;
    let t = Instant::now();
    broker.kill().await;
    eprintln!("kill in {:?}", t.elapsed());
    assert!(!broker.is_running());
    wait_until(Duration::from_secs(10), "the client sees the kill", || {
        let connected = conn.status().connected();
        async move { !connected }
    })
    .await;
    assert!(
        Connection::connect(&broker.amqp_url(), ConnectionProperties::default())
            .await
            .is_err()
    );
    let t = Instant::now();
    broker.start_again().await;
    eprintln!("start_again after kill in {:?}", t.elapsed());
    let conn = broker.connect().await;
    publish_and_get(&conn, "kit.faults", b"after kill").await;
    let _ = conn.close(200, "done".into()).await;

    // None of this touched the machine's shared broker.
    if shared_up_before {
        assert!(std::net::TcpStream::connect(("127.0.0.1", 5672)).is_ok());
    }
}
