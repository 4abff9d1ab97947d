//! CloudEvents content modes as another client sends them: binary mode (attributes in
//! `cloudEvents:*` / `cloudEvents_*` application properties, the data as the body) and
//! structured mode under `application/cloudevents+json`, built by hand with raw AMQP properties.

use std::time::Duration;

use domain::tenant::TenantSlug;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use shared::bus::{Exchange, WorkQueue};
use tenantctl::dead_letters::DeadLetterQueue;
use uuid::Uuid;

use crate::support::{ADMIN_EMAIL, ADMIN_NAME, Env};

/// The data of a registration of `tenant` with `slug`.
fn registration_data(tenant: Uuid, slug: &TenantSlug) -> serde_json::Value {
    serde_json::json!({
        "tenant_id": tenant, "slug": slug.as_str(), "name": "Acme Towers", "plan": "standard",
        "isolation": "schema",
        "admin": { "email": ADMIN_EMAIL, "name": ADMIN_NAME },
    })
}

/// `cloudEvents:`-style application properties, as long strings.
fn attributes(prefix: &str, pairs: &[(&str, String)]) -> FieldTable {
    let mut headers = FieldTable::default();
    for (name, value) in pairs {
        headers.insert(
            ShortString::from(format!("{prefix}{name}")),
            AMQPValue::LongString(LongString::from(value.as_str())),
        );
    }
    headers
}

/// The binary-mode attributes of a registration of `tenant`.
fn binary_attributes(id: Uuid, tenant: Uuid) -> Vec<(&'static str, String)> {
    vec![
        ("specversion", "1.0".to_owned()),
        ("id", id.to_string()),
        ("source", "platform-backend".to_owned()),
        ("type", "tenant.registered".to_owned()),
        ("time", "2026-11-24T10:00:00Z".to_owned()),
        ("subject", tenant.to_string()),
    ]
}

async fn publish(env: &Env, body: &[u8], properties: BasicProperties) {
    let exchange = env.ctx.bus.topology().exchange(Exchange::Events);
    env.ctx
        .bus
        .publisher()
        .publish_raw(&exchange, "tenant.registered", body, properties)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_in_binary_mode_and_under_the_cloudevents_content_type_are_provisioned() {
    let env = Env::new().await;
    let (provisioner_stop, provisioner) = env.start_provisioner();
    let (auditor_stop, auditor) = env.start_auditor();

    // Binary mode, the AMQP binding's prefix; datacontenttype is the AMQP content type.
    let (colon, colon_slug) = (Uuid::new_v4(), env.slug());
    let body = serde_json::to_vec(&registration_data(colon, &colon_slug)).unwrap_or_default();
    publish(
        &env,
        &body,
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(attributes(
                "cloudEvents:",
                &binary_attributes(Uuid::now_v7(), colon),
            )),
    )
    .await;

    // Binary mode as a JMS-based client writes it: `cloudEvents_`, no content type, and the
    // time as an AMQP timestamp.
    let (underscore, underscore_slug) = (Uuid::new_v4(), env.slug());
    let mut headers = attributes(
        "cloudEvents_",
        &binary_attributes(Uuid::now_v7(), underscore)
            .into_iter()
            .filter(|(name, _)| *name != "time")
            .collect::<Vec<_>>(),
    );
    headers.insert(
        "cloudEvents_time".into(),
        AMQPValue::Timestamp(1_795_000_000),
    );
    let body =
        serde_json::to_vec(&registration_data(underscore, &underscore_slug)).unwrap_or_default();
    publish(
        &env,
        &body,
        BasicProperties::default().with_headers(headers),
    )
    .await;

    // Structured mode under the CloudEvents content type.
    let (structured, structured_slug) = (Uuid::new_v4(), env.slug());
    let event = serde_json::json!({
        "specversion": "1.0", "id": Uuid::now_v7(), "source": "platform-backend",
        "type": "tenant.registered", "time": "2026-11-24T10:00:00Z",
        "subject": structured, "data": registration_data(structured, &structured_slug),
    });
    publish(
        &env,
        &serde_json::to_vec(&event).unwrap_or_default(),
        BasicProperties::default()
            .with_content_type("application/cloudevents+json; charset=utf-8".into()),
    )
    .await;

    for tenant in [colon, underscore, structured] {
        env.wait_for_status(tenant, "active", Duration::from_secs(90))
            .await;
    }
    let provisioner_dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::TenantRegistered);
    assert_eq!(provisioner_dlq.count().await.unwrap_or(99), 0);

    // The auditor read them too, without the admin.
    testkit::wait_until(
        Duration::from_secs(30),
        "three registrations audited",
        || async {
            let mut conn = env.sql().await;
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM audit_events WHERE type = 'tenant.registered'",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0)
                == 3
        },
    )
    .await;
    let mut conn = env.sql().await;
    let rows: Vec<(Option<Uuid>, serde_json::Value)> =
        sqlx::query_as("SELECT tenant_id, data FROM audit_events WHERE type = 'tenant.registered'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    for (tenant, data) in &rows {
        assert!(
            tenant.is_some_and(|t| [colon, underscore, structured].contains(&t)),
            "{rows:?}"
        );
        assert_eq!(data["admin"], serde_json::json!({ "redacted": true }));
        assert!(!data.to_string().contains(ADMIN_EMAIL));
    }
    let time: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT occurred_at FROM audit_events WHERE tenant_id = $1 AND type = 'tenant.registered'",
    )
    .bind(underscore)
    .fetch_one(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        time.timestamp(),
        1_795_000_000,
        "the AMQP timestamp is the event time"
    );

    provisioner_stop.cancel();
    testkit::stop_service((auditor_stop, provisioner)).await;
    auditor
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_event_with_data_that_is_not_json_is_dead_lettered_and_listed_with_its_tenant() {
    let env = Env::new().await;
    let (stop, provisioner) = env.start_provisioner();
    let tenant = Uuid::new_v4();
    let id = Uuid::now_v7();
    publish(
        &env,
        b"<tenant><slug>acme</slug></tenant>",
        BasicProperties::default()
            .with_content_type("application/xml".into())
            .with_headers(attributes("cloudEvents:", &binary_attributes(id, tenant))),
    )
    .await;
    // Binary mode without the required id.
    let other = Uuid::new_v4();
    let body = serde_json::to_vec(&registration_data(other, &env.slug())).unwrap_or_default();
    publish(
        &env,
        &body,
        BasicProperties::default().with_headers(attributes(
            "cloudEvents:",
            &binary_attributes(Uuid::now_v7(), other)
                .into_iter()
                .filter(|(name, _)| *name != "id")
                .collect::<Vec<_>>(),
        )),
    )
    .await;

    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::TenantRegistered);
    testkit::wait_until(Duration::from_secs(30), "two dead letters", || async {
        dlq.count().await.unwrap_or(0) == 2
    })
    .await;
    let (_, listed) = dlq.list(10).await.unwrap_or_else(|e| panic!("{e}"));
    let xml = listed
        .iter()
        .find(|l| l.message_id.as_deref() == Some(id.to_string().as_str()))
        .unwrap_or_else(|| panic!("the binary event's id is read from its properties: {listed:?}"));
    assert!(
        xml.reason
            .contains("datacontenttype: must be application/json"),
        "{}",
        xml.reason
    );
    assert_eq!(xml.event_type.as_deref(), Some("tenant.registered"));
    assert_eq!(xml.tenant_id, Some(tenant.to_string()), "from the subject");
    assert_eq!(xml.deliveries, 1, "never retried");
    let no_id = listed
        .iter()
        .find(|l| l.tenant_id == Some(other.to_string()))
        .unwrap_or_else(|| panic!("the tenant is read from the body: {listed:?}"));
    assert!(
        no_id
            .reason
            .starts_with("malformed message: id: is required"),
        "{}",
        no_id.reason
    );
    assert_eq!(env.tenant_status(tenant).await, None);
    assert_eq!(env.tenant_status(other).await, None);
    testkit::stop_service((stop, provisioner)).await;
}
