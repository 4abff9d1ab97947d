//! After a full run, no log line, event or audit row holds an administrator's email or name.

use std::time::Duration;

use crate::support::{ADMIN_EMAIL, ADMIN_NAME, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_event_or_audit_row_holds_an_admins_email_or_name() {
    // nextest runs each test in its own process: this test owns the global subscriber. Debug
    // for the workspace, info for everything else, as an operator chasing a problem would run.
    let logs = crate::support::LogCapture::install(
        "info,shared=debug,provisioner=debug,auditor=debug,tests=debug",
    );

    let env = Env::new().await;
    let (provisioner_stop, provisioner) = env.start_provisioner();
    let (auditor_stop, auditor) = env.start_auditor();
    let mut tenants = Vec::new();
    for isolation in [Some("schema"), Some("database"), None] {
        tenants.push(env.register(isolation).await);
    }
    for (tenant, _) in &tenants {
        env.wait_for_status(*tenant, "active", Duration::from_secs(60))
            .await;
    }
    // Everything the run emitted reaches the audit trail: 3 registrations, 6 steps, 1 provisioned.
    env.wait_for_audit_count(3 * (1 + 6 + 1), Duration::from_secs(30))
        .await;
    provisioner_stop.cancel();
    testkit::stop_service((auditor_stop, provisioner)).await;
    auditor
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));

    let text = logs.text();
    assert!(
        text.lines().count() > 20,
        "the run logged: {} lines",
        text.lines().count()
    );
    for secret in [ADMIN_EMAIL, ADMIN_NAME, "ana.lima", "Lima Administradora"] {
        assert!(!text.contains(secret), "a log line holds {secret:?}");
    }
    let mut conn = env.sql().await;
    let trail: Vec<String> =
        sqlx::query_scalar("SELECT type || ' ' || data::text FROM audit_events")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    assert_eq!(trail.len(), 24);
    for row in &trail {
        assert!(
            !row.contains(ADMIN_EMAIL) && !row.contains(ADMIN_NAME),
            "an audit row or event holds personal data: {row}"
        );
    }
    // The administrators themselves are where they belong: in their tenants' users.
    for (_, slug) in tenants
        .iter()
        .filter(|(_, slug)| !slug.as_str().is_empty())
        .take(1)
    {
        let email: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT email FROM \"{}\".users",
            slug.storage_name()
        )))
        .fetch_one(&mut conn)
        .await
        .unwrap_or_default();
        assert_eq!(email, ADMIN_EMAIL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_type_we_do_not_know_is_stored_without_its_personal_data() {
    let env = Env::new().await;
    let (stop, auditor) = env.start_auditor();
    let id = uuid::Uuid::now_v7();
    let event = serde_json::json!({
        "specversion": "1.0", "id": id, "source": "residents-app",
        "type": "com.example.resident.moved_in", "time": "2026-11-24T10:00:00Z",
        "data": {
            "unit": "12B",
            "moved_in_at": "2026-11-24",
            "admin": { "email": ADMIN_EMAIL, "name": ADMIN_NAME },
            "resident": { "first_name": "Bruno", "last_name": "Costa", "phone": "+55 11 98888-7777" },
            "household": [{ "display_name": "Clara Costa", "age_group": "adult" }],
            "contact_email": "bruno.costa@residents.example",
            "notes": ["welcome letter sent to bruno.costa@residents.example"],
        },
    });
    let exchange = env
        .ctx
        .bus
        .topology()
        .exchange(shared::bus::Exchange::Events);
    env.ctx
        .bus
        .publisher()
        .publish_raw(
            &exchange,
            "com.example.resident.moved_in",
            &serde_json::to_vec(&event).unwrap_or_default(),
            lapin::BasicProperties::default().with_content_type("application/json".into()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.wait_for_audit_count(1, Duration::from_secs(30)).await;

    let mut conn = env.sql().await;
    let (source, data): (String, serde_json::Value) =
        sqlx::query_as("SELECT source, data FROM audit_events WHERE id = $1")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let text = data.to_string();
    for secret in [
        ADMIN_EMAIL,
        ADMIN_NAME,
        "Bruno",
        "Costa",
        "98888",
        "bruno.costa",
        "Clara",
    ] {
        assert!(
            !text.contains(secret),
            "the stored row holds {secret:?}: {text}"
        );
    }
    assert_eq!(source, "residents-app");
    assert_eq!(
        data,
        serde_json::json!({
            "unit": "12B",
            "moved_in_at": "2026-11-24",
            "admin": { "redacted": true },
            "resident": { "redacted": true },
            "household": [{ "display_name": "redacted", "age_group": "adult" }],
            "contact_email": "redacted",
            "notes": ["redacted"],
        })
    );
    testkit::stop_service((stop, auditor)).await;
}
