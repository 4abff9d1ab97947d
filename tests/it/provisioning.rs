//! The provisioner end to end: many tenants at once, duplicates, a provisioner killed in the
//! middle of every step, PostgreSQL going away, refused registrations, tenant isolation, and
//! no personal data anywhere.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::Isolation;
use domain::message::Event as _;
use domain::provisioning::{Progress, Step, StepOutcome, TenantStatus};
use engine::EngineOptions;
use lapin::BasicProperties;
use provisioner::{Emitted, ProvisioningEffects, Request, StepError};
use provisioner::{ProvisionHandler, Provisioner};
use shared::bus::consumer;
use shared::bus::{Exchange, WorkQueue};
use shared::tenant_servers::TenantServers;
use shared::tenant_storage::TenantStorage;
use sqlx::Connection as _;
use tenantctl::dead_letters::DeadLetterQueue;
use testkit::cluster::PrivatePostgres;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::{ADMIN_EMAIL, ADMIN_NAME, Env, fast_retries};

const ACTIVE_WITHIN: Duration = Duration::from_secs(60);

/// Checks what provisioning must leave behind: every step succeeded once, one admin, the
/// schema at the latest version.
pub(crate) async fn assert_provisioned(env: &Env, tenant: Uuid, slug: &domain::tenant::TenantSlug) {
    let mut conn = env.sql().await;
    let steps: Vec<(String, String)> = sqlx::query_as(
        "SELECT step, status FROM provisioning_steps WHERE tenant_id = $1 ORDER BY started_at",
    )
    .bind(tenant)
    .fetch_all(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(steps.len(), 6, "{steps:?}");
    assert!(
        steps.iter().all(|(_, status)| status == "succeeded"),
        "{steps:?}"
    );
    let admins: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".users WHERE role = 'admin' AND status = 'invited' AND password_hash IS NULL AND invitation_token_hash IS NULL",
        slug.storage_name()
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(admins, 1, "exactly one invited admin, without secrets");
    let version: i64 = sqlx::query_scalar("SELECT schema_version FROM tenants WHERE id = $1")
        .bind(tenant)
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
    assert_eq!(
        Some(version),
        env.ctx.catalog.tenant.latest().map(|v| v.get())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tenants_registered_at_once_all_end_active() {
    let env = Env::new().await;
    let mut tenants = Vec::new();
    for _ in 0..50 {
        tenants.push(env.register(None).await);
    }
    let (stop, task) = env.start_provisioner();
    testkit::wait_until(Duration::from_secs(180), "50 active tenants", || async {
        let mut conn = env.sql().await;
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tenants WHERE status = 'active'")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0)
            == 50
    })
    .await;
    for (tenant, slug) in &tenants {
        assert_provisioned(&env, *tenant, slug).await;
    }
    testkit::stop_service((stop, task)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_registration_twice_is_one_tenant_and_one_admin() {
    let env = Env::new().await;
    let slug = env.slug();
    let tenant = Uuid::new_v4();
    let data = domain::message::TenantRegistered::from_data(&serde_json::json!({
        "tenant_id": tenant, "slug": slug.as_str(), "name": "Twice Co",
        "admin": { "email": ADMIN_EMAIL, "name": ADMIN_NAME },
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    // The same event twice (a publisher retry), and a second event for the same tenant (the
    // platform sending it again).
    let event = env.ctx.bus.publisher().event(data.clone());
    env.publish(&event).await;
    env.publish(&event).await;
    env.ctx
        .bus
        .publisher()
        .publish(&env.ctx.bus.publisher().event(data))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (stop, task) = env.start_provisioner();
    env.wait_for_status(tenant, "active", ACTIVE_WITHIN).await;
    let queue = env.ctx.bus.topology().queue(WorkQueue::TenantRegistered);
    testkit::wait_until(Duration::from_secs(30), "every copy handled", || async {
        let channel = env
            .ctx
            .bus
            .channel()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let depth = channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .map(|q| q.message_count() + q.consumer_count().saturating_sub(1))
            .unwrap_or(1);
        let _ = channel.close(200, "".into()).await;
        depth == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_provisioned(&env, tenant, &slug).await;
    let mut conn = env.sql().await;
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempts FROM provisioning_steps WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    assert_eq!(tenants, 1);
    assert!(
        attempts.iter().all(|a| *a == 1),
        "later copies ran no step again: {attempts:?}"
    );
    testkit::stop_service((stop, task)).await;
}

/// The real provisioner, except that it stops right after the effect of one step, before
/// recording it, and dies when `killed` fires.
struct DiesAfter {
    inner: Provisioner,
    step: Step,
    reached: Arc<Notify>,
    killed: CancellationToken,
}

impl ProvisioningEffects for DiesAfter {
    async fn progress(&self, request: &Request) -> Result<Progress, StepError> {
        self.inner.progress(request).await
    }

    async fn run(&self, step: Step, request: &Request) -> Result<(), StepError> {
        self.inner.run(step, request).await?;
        if step == self.step {
            self.reached.notify_one();
            self.killed.cancelled().await;
            panic!("killed after the effect of {step}");
        }
        Ok(())
    }

    async fn record(
        &self,
        request: &Request,
        step: Step,
        outcome: &StepOutcome,
        started_at: DateTime<Utc>,
        duration_ms: i64,
    ) -> Result<u32, StepError> {
        self.inner
            .record(request, step, outcome, started_at, duration_ms)
            .await
    }

    async fn set_status(&self, request: &Request, status: TenantStatus) -> Result<(), StepError> {
        self.inner.set_status(request, status).await
    }

    async fn emit(&self, request: &Request, event: Emitted) -> Result<(), StepError> {
        self.inner.emit(request, event).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_killed_in_the_middle_of_each_step_resumes_and_converges() {
    let env = Env::new().await;
    for step in Step::ALL {
        let (tenant, slug) = env.register(None).await;
        let servers = TenantServers::pooled(env.ctx.platform.clone(), env.ctx.config.clone(), 4);
        // The doomed provisioner is a process of its own: its own connection to the broker and
        // its own lock connections, all of which die with it.
        let bus = Arc::new(
            shared::bus::Bus::connect(
                &env.ctx.config.amqp_url,
                env.ctx.bus.topology().clone(),
                "doomed",
                "doomed",
                &CancellationToken::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let (reached, killed) = (Arc::new(Notify::new()), CancellationToken::new());
        let dying = DiesAfter {
            inner: Provisioner::new(
                env.ctx.platform.clone(),
                servers,
                env.ctx.catalog.clone(),
                bus.publisher().clone(),
            ),
            step,
            reached: reached.clone(),
            killed: killed.clone(),
        };
        let locks = env
            .ctx
            .platform
            .lock_pool(2)
            .unwrap_or_else(|e| panic!("{e}"));
        let handler = Arc::new(ProvisionHandler::new(
            dying,
            locks.clone(),
            Isolation::Schema,
        ));
        let doomed = tokio::spawn({
            let bus = bus.clone();
            async move {
                let _ = consumer::consume(
                    &bus,
                    WorkQueue::TenantRegistered,
                    handler,
                    fast_retries(),
                    CancellationToken::new(),
                )
                .await;
            }
        });
        tokio::time::timeout(Duration::from_secs(60), reached.notified())
            .await
            .unwrap_or_else(|_| panic!("the provisioner reached {step}"));
        killed.cancel();
        doomed.abort();
        let _ = doomed.await;
        bus.close().await;
        locks.close().await;
        // Activation is the effect of the last step: killed after it, the tenant is active but
        // the step is not recorded; the run that resumes records it and announces the tenant.
        if step != Step::Activate {
            assert_ne!(
                env.tenant_status(tenant).await.as_deref(),
                Some("active"),
                "killed before finishing ({step})"
            );
        }

        let (stop, task) = env.start_provisioner();
        env.wait_for_status(tenant, "active", ACTIVE_WITHIN).await;
        testkit::wait_until(ACTIVE_WITHIN, &format!("every step of the tenant killed at {step} is recorded"), || async {
            let mut conn = env.sql().await;
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM provisioning_steps WHERE tenant_id = $1 AND status = 'succeeded'")
                .bind(tenant)
                .fetch_one(&mut conn)
                .await
                .unwrap_or(0)
                == 6
        })
        .await;
        assert_provisioned(&env, tenant, &slug).await;
        testkit::stop_service((stop, task)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stopped_mid_provisioning_then_started_completes() {
    let mut postgres = PrivatePostgres::start().await;
    let url = format!("postgres://postgres@127.0.0.1:{}/tenancy", postgres.port());
    let env = Env::on(None, &url, crate::support::SHARED_BROKER).await;
    let mut tenants = Vec::new();
    for _ in 0..12 {
        tenants.push(env.register(None).await);
    }
    let (stop, task) = env.start_provisioner();
    let count_active = || async {
        let Ok(mut conn) = sqlx::PgConnection::connect(&url).await else {
            return 0;
        };
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tenants WHERE status = 'active'")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0)
    };
    testkit::wait_until(Duration::from_secs(60), "some tenants active", || async {
        count_active().await >= 2
    })
    .await;
    postgres.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres.start_again().await;
    // Active first, then its `activate` record: a tenant whose activation committed as the
    // server stopped (the client saw an error) is recorded on the retry that follows.
    let count_done = || async {
        let Ok(mut conn) = sqlx::PgConnection::connect(&url).await else {
            return 0;
        };
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM tenants t WHERE t.status = 'active' AND
               (SELECT count(*) FROM provisioning_steps s WHERE s.tenant_id = t.id AND s.status = 'succeeded') = 6",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0)
    };
    testkit::wait_until(
        Duration::from_secs(120),
        "every tenant active with its six steps recorded",
        || async { count_done().await == 12 },
    )
    .await;
    for (tenant, slug) in &tenants {
        assert_provisioned(&env, *tenant, slug).await;
    }
    testkit::stop_service((stop, task)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slug_taken_by_another_tenant_fails_with_the_reason_and_lands_in_the_dlq() {
    let env = Env::new().await;
    let (stop, task) = env.start_provisioner();
    let (auditor_stop, auditor) = env.start_auditor();
    let (owner, slug) = env.register(None).await;
    env.wait_for_status(owner, "active", ACTIVE_WITHIN).await;

    let intruder = Uuid::new_v4();
    let data = domain::message::TenantRegistered::from_data(&serde_json::json!({
        "tenant_id": intruder, "slug": slug.as_str(), "name": "Intruder",
        "admin": { "email": "someone@else.example", "name": "Some One" },
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    env.ctx
        .bus
        .publisher()
        .publish(&env.ctx.bus.publisher().event(data))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::TenantRegistered);
    testkit::wait_until(
        Duration::from_secs(30),
        "the registration is dead-lettered",
        || async { dlq.count().await.unwrap_or(0) == 1 },
    )
    .await;
    let (_, listed) = dlq.list(5).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        listed[0].reason.contains("belongs to another tenant"),
        "{}",
        listed[0].reason
    );
    assert_eq!(
        listed[0].tenant_id.as_deref(),
        Some(intruder.to_string().as_str())
    );
    assert_eq!(
        env.tenant_status(intruder).await,
        None,
        "nothing was created for the intruder"
    );
    assert_eq!(
        env.tenant_status(owner).await.as_deref(),
        Some("active"),
        "the owner is untouched"
    );
    let mut conn = env.sql().await;
    testkit::wait_until(Duration::from_secs(30), "the failure is audited", || async {
        let mut conn = env.sql().await;
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_events WHERE type = 'tenant.provisioning_failed' AND tenant_id = $1")
            .bind(intruder)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0)
            == 1
    })
    .await;
    let reason: String = sqlx::query_scalar("SELECT data->>'reason' FROM audit_events WHERE type = 'tenant.provisioning_failed' AND tenant_id = $1")
        .bind(intruder)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_default();
    assert!(reason.contains("belongs to another tenant"), "{reason}");
    stop.cancel();
    testkit::stop_service((auditor_stop, task)).await;
    auditor
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_registrations_are_refused_with_a_reason_and_create_nothing() {
    let env = Env::new().await;
    let (stop, task) = env.start_provisioner();
    let exchange = env.ctx.bus.topology().exchange(Exchange::Events);
    let base = serde_json::json!({
        "specversion": "1.0", "source": "platform-backend", "type": "tenant.registered",
        "time": "2026-11-24T10:00:00Z", "datacontenttype": "application/json",
        "data": { "tenant_id": "6f1d2c3b-1111-4222-8333-944455556666", "slug": "fine_slug", "name": "Fine",
                  "admin": { "email": "ana@acme.example", "name": "Ana" } }
    });
    let hostile: Vec<(&str, serde_json::Value)> = vec![
        (
            "slug",
            serde_json::json!("acme'; DROP SCHEMA public CASCADE; --"),
        ),
        ("slug", serde_json::json!("acme\"towers")),
        ("slug", serde_json::json!("аcme_towers")),
        ("slug", serde_json::json!("a".repeat(41))),
        ("name", serde_json::json!("Acme\u{202e}srewoT")),
        ("name", serde_json::json!("A".repeat(201))),
        ("name", serde_json::json!("Acme\u{0000}Towers")),
    ];
    let mut cases = hostile.clone();
    cases.push((
        "email",
        serde_json::json!("ana@acme.example; DROP TABLE users"),
    ));
    cases.push((
        "email",
        serde_json::json!(format!("{}@acme.example", "a".repeat(300))),
    ));
    for (field, value) in &cases {
        let mut message = base.clone();
        message["id"] = serde_json::json!(Uuid::new_v4());
        if *field == "email" {
            message["data"]["admin"]["email"] = value.clone();
        } else {
            message["data"][*field] = value.clone();
        }
        env.ctx
            .bus
            .publisher()
            .publish_raw(
                &exchange,
                "tenant.registered",
                &serde_json::to_vec(&message).unwrap_or_default(),
                BasicProperties::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::TenantRegistered);
    let expected = u32::try_from(cases.len()).unwrap_or(0);
    testkit::wait_until(
        Duration::from_secs(30),
        "every hostile registration is dead-lettered",
        || async { dlq.count().await.unwrap_or(0) == expected },
    )
    .await;
    let (_, listed) = dlq.list(50).await.unwrap_or_else(|e| panic!("{e}"));
    for letter in &listed {
        assert!(
            letter.reason.starts_with("invalid message") || letter.reason.contains("data."),
            "a clear reason: {}",
            letter.reason
        );
        assert_eq!(letter.deliveries, 1, "never retried");
        assert!(
            !letter.reason.contains("DROP") && !letter.reason.contains("ana@"),
            "the reason does not echo the input: {}",
            letter.reason
        );
    }
    let mut conn = env.sql().await;
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(-1);
    let schemas: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant%'")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(-1);
    assert_eq!((tenants, schemas), (0, 0), "nothing created");
    testkit::stop_service((stop, task)).await;
}

async fn cannot(conn: &mut sqlx::PgConnection, sql: &str) -> String {
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => panic!("allowed: {sql}"),
        Err(error) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            error.to_string()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_role_reaches_its_own_schema_and_nothing_else() {
    let env = Env::new().await;
    let (stop, task) = env.start_provisioner();
    let (a, slug_a) = env.register(Some("schema")).await;
    let (b, slug_b) = env.register(Some("schema")).await;
    env.wait_for_status(a, "active", ACTIVE_WITHIN).await;
    env.wait_for_status(b, "active", ACTIVE_WITHIN).await;
    let (role_a, schema_b) = (slug_a.storage_name(), slug_b.storage_name());

    let mut conn = env.sql().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET ROLE \"{role_a}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let own: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{role_a}\".users"
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("its own tables: {e}"));
    assert_eq!(own, 1);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{role_a}\".spaces (name) VALUES ('Party room'); UPDATE \"{role_a}\".spaces SET capacity = 40; DELETE FROM \"{role_a}\".spaces"
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("writing its own tables: {e}"));
    for sql in [
        format!("SELECT * FROM \"{schema_b}\".users"),
        format!("INSERT INTO \"{schema_b}\".spaces (name) VALUES ('x')"),
        "SELECT * FROM public.tenants".to_owned(),
        "SELECT * FROM public.audit_events".to_owned(),
        "CREATE TABLE public.sneaky (id int)".to_owned(),
        format!("CREATE TABLE \"{role_a}\".sneaky (id int)"),
        format!("SELECT * FROM \"{role_a}\".\"_tenancy_history\""),
    ] {
        let error = cannot(&mut conn, &sql).await;
        assert!(error.contains("permission denied"), "{sql}: {error}");
    }
    testkit::stop_service((stop, task)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_role_reaches_its_own_database_and_nothing_else() {
    let env = Env::new().await;
    let (stop, task) = env.start_provisioner();
    let (a, slug_a) = env.register(Some("database")).await;
    let (b, slug_b) = env.register(Some("database")).await;
    env.wait_for_status(a, "active", ACTIVE_WITHIN).await;
    env.wait_for_status(b, "active", ACTIVE_WITHIN).await;
    let (role_a, database_b) = (slug_a.storage_name(), slug_b.storage_name());
    let server = testkit::pg::server_options();

    // Log in as the tenant's role (granted LOGIN for the test only).
    let mut admin = testkit::pg::admin_connection().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE \"{role_a}\" LOGIN"
    )))
    .execute(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    use sqlx::ConnectOptions as _;
    let mut own = server
        .clone()
        .username(&role_a)
        .database(&role_a)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("its own database: {e}"));
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut own)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(admins, 1);
    let error = cannot(&mut own, "SELECT * FROM _tenancy_history").await;
    assert!(error.contains("permission denied"), "{error}");
    let refused = server
        .clone()
        .username(&role_a)
        .database(&database_b)
        .connect()
        .await;
    assert!(
        refused
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("permission denied")),
        "another tenant's database: {refused:?}"
    );
    let platform = server
        .clone()
        .username(&role_a)
        .database(env.database_url.rsplit('/').next().unwrap_or_default())
        .connect()
        .await;
    assert!(platform.is_err(), "the platform database");
    let _ = own.close().await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE \"{role_a}\" NOLOGIN"
    )))
    .execute(&mut admin)
    .await;
    testkit::stop_service((stop, task)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_failed_at_a_step_resumes_there_when_retried() {
    // A copy of the migration sets whose newest tenant migration is broken.
    let sets = testkit::ScratchDir::new();
    testkit::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations"),
        sets.path(),
    )
    .unwrap_or_else(|e| panic!("copying the migration sets: {e}"));
    let broken = sets.path().join("tenant/20270101000000_broken.up.sql");
    let broken_lite = sets
        .path()
        .join("tenant/sqlite/20270101000000_broken.up.sql");
    for (path, sql) in [
        (&broken, "CREATE TABLE broken (;\n"),
        (&broken_lite, "CREATE TABLE broken (;\n"),
    ] {
        std::fs::write(path, sql).unwrap_or_else(|e| panic!("{e}"));
    }
    for down in [
        "tenant/20270101000000_broken.down.sql",
        "tenant/sqlite/20270101000000_broken.down.sql",
    ] {
        std::fs::write(sets.path().join(down), "DROP TABLE broken;\n")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let env = Env::with_migrations(sets.path()).await;
    let (stop, task) = env.start_provisioner();
    let (tenant, slug) = env.register(None).await;
    env.wait_for_status(tenant, "failed", ACTIVE_WITHIN).await;
    let dlq = DeadLetterQueue::new(&env.ctx.bus, WorkQueue::TenantRegistered);
    testkit::wait_until(
        Duration::from_secs(30),
        "the registration is dead-lettered",
        || async { dlq.count().await.unwrap_or(0) == 1 },
    )
    .await;
    let mut conn = env.sql().await;
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM provisioning_steps WHERE tenant_id = $1 AND step = 'migrate'")
            .bind(tenant)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "failed");
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .contains("20270101000000_broken.up.sql"),
        "{error:?}"
    );
    testkit::stop_service((stop, task)).await;

    // The author fixes the migration (it never applied anywhere), the provisioner restarts with
    // it, and the registration is replayed (what `tenantctl tenant retry` does).
    for path in [&broken, &broken_lite] {
        std::fs::write(path, "CREATE TABLE broken (id integer);\n")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let catalog = engine::Catalog::load(Some(sets.path())).unwrap_or_else(|e| panic!("{e}"));
    let ctx = shared::service::Context {
        catalog: Arc::new(catalog),
        ..env.ctx.clone()
    };
    let stop = CancellationToken::new();
    let running = tokio::spawn(provisioner::run(ctx, stop.clone()));
    let replayed = dlq
        .replay(
            &tenantctl::dead_letters::Selection::Tenant(tenant.to_string()),
            false,
            &env.ctx.platform,
            &CancellationToken::new(),
            |_| async {},
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replayed.replayed.len(), 1);
    env.wait_for_status(tenant, "active", ACTIVE_WITHIN).await;
    let attempts: Vec<(String, i32)> = sqlx::query_as(
        "SELECT step, attempts FROM provisioning_steps WHERE tenant_id = $1 ORDER BY step",
    )
    .bind(tenant)
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    let migrate = attempts
        .iter()
        .find(|(step, _)| step == "migrate")
        .map(|(_, n)| *n)
        .unwrap_or(0);
    assert!(migrate >= 2, "migrate ran again: {attempts:?}");
    assert!(
        attempts
            .iter()
            .filter(|(step, _)| step == "register" || step == "create_storage")
            .all(|(_, n)| *n == 1),
        "the steps before it did not: {attempts:?}"
    );
    assert_provisioned(&env, tenant, &slug).await;
    testkit::stop_service((stop, running)).await;
}

/// A row of the team's `users`: email, display name, is_admin, tenant_ref, source.
type TeamUser = (String, String, bool, Option<Uuid>, Option<String>);

/// A team's own sets: a `users` table unlike the built-in one (a unique index on `lower(email)`,
/// no `status`, no `full_name`) and the admin-user script that fits it.
fn team_sets() -> testkit::ScratchDir {
    let sets = testkit::ScratchDir::new();
    testkit::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/platform"),
        &sets.path().join("platform"),
    )
    .unwrap_or_else(|e| panic!("copying the platform set: {e}"));
    let files = [
        (
            "tenant/20270101000000_create_users.up.sql",
            "-- The team's users: admins are flagged, there is no status.\n\
             CREATE TABLE users (\n\
                 id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n\
                 email        text NOT NULL,\n\
                 display_name text NOT NULL,\n\
                 is_admin     boolean NOT NULL DEFAULT false,\n\
                 tenant_ref   uuid,\n\
                 source       text\n\
             );\n\
             CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));\n",
        ),
        (
            "tenant/20270101000000_create_users.down.sql",
            "DROP TABLE users;\n",
        ),
        ("tenant/settings.conf", "sqlite = untested\n"),
        ("tenant-seeds/settings.conf", "sqlite = untested\n"),
        (
            "tenant-seeds/admin_user.sql",
            "-- Emails keep their case; the unique index ignores it.\n\
             INSERT INTO users (email, display_name, is_admin, tenant_ref, source)\n\
             VALUES (:admin_email, :admin_name, true, :tenant_id, 'provisioned for ' || :tenant_slug::text)\n\
             ON CONFLICT ((lower(email))) DO NOTHING;\n",
        ),
    ];
    for (file, contents) in files {
        let path = sets.path().join(file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{e}"));
    }
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_set_with_its_own_users_table_provisions_its_admin_with_its_own_file() {
    let sets = team_sets();
    let env = Env::with_migrations(sets.path()).await;
    let (stop, task) = env.start_provisioner();
    let (in_schema, schema_slug) = env.register(Some("schema")).await;
    let (in_database, database_slug) = env.register(Some("database")).await;
    for tenant in [in_schema, in_database] {
        testkit::wait_until(ACTIVE_WITHIN, "the tenant is active or failed", || async {
            matches!(
                env.tenant_status(tenant).await.as_deref(),
                Some("active" | "failed")
            )
        })
        .await;
        let mut conn = env.sql().await;
        let failures: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT step, last_error FROM provisioning_steps WHERE tenant_id = $1 AND status <> 'succeeded'",
        )
        .bind(tenant)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
        assert_eq!(
            env.tenant_status(tenant).await.as_deref(),
            Some("active"),
            "{failures:?}"
        );
    }

    let admin = |slug: &domain::tenant::TenantSlug, tenant: Uuid| {
        let expected = (
            ADMIN_EMAIL.to_owned(),
            ADMIN_NAME.to_owned(),
            true,
            Some(tenant),
            Some(format!("provisioned for {slug}")),
        );
        (slug.clone(), expected)
    };
    let storage = TenantStorage::connect(&env.ctx.config, 2, EngineOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for ((slug, expected), isolation) in [
        (admin(&schema_slug, in_schema), Isolation::Schema),
        (admin(&database_slug, in_database), Isolation::Database),
    ] {
        // A redelivered registration, with the email in another case: the team's index on
        // lower(email) keeps one administrator.
        let shouting = ADMIN_EMAIL.to_uppercase();
        let again = storage
            .insert_admin(
                &slug,
                isolation,
                &env.ctx.catalog.tenant_seeds,
                &engine::AdminValues {
                    tenant_id: expected.3.unwrap_or_default(),
                    tenant_slug: slug.as_str(),
                    tenant_name: "Acme Towers",
                    admin_email: &shouting,
                    admin_name: ADMIN_NAME,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, 0, "nothing added the second time");

        let (sql, mut conn) = match isolation {
            Isolation::Schema => (
                format!(
                    "SELECT email, display_name, is_admin, tenant_ref, source FROM \"{}\".users",
                    slug.storage_name()
                ),
                env.sql().await,
            ),
            Isolation::Database => {
                use sqlx::ConnectOptions as _;
                let conn = testkit::pg::server_options()
                    .database(&slug.storage_name())
                    .connect()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                (
                    "SELECT email, display_name, is_admin, tenant_ref, source FROM users"
                        .to_owned(),
                    conn,
                )
            }
        };
        let rows: Vec<TeamUser> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rows,
            [expected],
            "{isolation:?}: one administrator, as the file says"
        );
        let _ = conn.close().await;
    }
    testkit::stop_service((stop, task)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_refuses_to_start_with_a_set_that_has_no_admin_user_file() {
    let sets = team_sets();
    std::fs::remove_file(sets.path().join("tenant-seeds/admin_user.sql"))
        .unwrap_or_else(|e| panic!("{e}"));
    let env = Env::with_migrations(sets.path()).await;
    let (_stop, task) = env.start_provisioner();
    let outcome = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap_or_else(|_| panic!("the provisioner started"))
        .unwrap_or_else(|e| panic!("{e}"));
    let message = outcome.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(
        message.contains("has no admin_user.sql")
            && message.contains("tenant-seeds/admin_user.sql"),
        "{message}"
    );
}

/// Templates on (the default), new schema tenants are built from the verified template; off,
/// by the migrations. Either way they have one fingerprint and the same history (version,
/// description, checksum). A templated tenant's rows were written by one statement (one
/// `started_at`), a migrated tenant's one transaction per migration: the template was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_provisioned_with_templates_on_and_off_are_alike() {
    let env = Env::new().await;
    let templated = [env.register(None).await, env.register(None).await];
    let (stop, task) = env.start_provisioner();
    for (tenant, _) in &templated {
        env.wait_for_status(*tenant, "active", ACTIVE_WITHIN).await;
    }
    testkit::stop_service((stop, task)).await;

    let migrated = env.register(None).await;
    let (stop, task) = env.start_provisioner_without_templates();
    env.wait_for_status(migrated.0, "active", ACTIVE_WITHIN)
        .await;
    testkit::stop_service((stop, task)).await;

    let mut conn = env.sql().await;
    let all: Vec<(String, String)> = templated
        .iter()
        .chain([&migrated])
        .map(|(_, slug)| (slug.storage_name(), slug.storage_name()))
        .collect();
    let fingerprints = engine::backend::read_fingerprints(&mut conn, &all)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let expected = &fingerprints[&migrated.1.storage_name()];
    assert!(!expected.is_empty());
    for (tenant, slug) in templated.iter().chain([&migrated]) {
        assert_provisioned(&env, *tenant, slug).await;
        let actual = &fingerprints[&slug.storage_name()];
        assert!(
            actual.diff(expected).is_empty(),
            "{:?}",
            actual.diff(expected)
        );
    }
    let history = |slug: &domain::tenant::TenantSlug| {
        sqlx::AssertSqlSafe(format!(
            "SELECT version, description, checksum, started_at FROM \"{}\"._tenancy_history
              WHERE migration_set = 'tenant' ORDER BY version",
            slug.storage_name()
        ))
    };
    let read = |rows: Vec<(i64, String, String, DateTime<Utc>)>| {
        let starts: std::collections::BTreeSet<_> = rows.iter().map(|r| r.3).collect();
        let rows: Vec<_> = rows.into_iter().map(|(v, d, c, _)| (v, d, c)).collect();
        (rows, starts.len())
    };
    let (expected_rows, migrated_starts) = read(
        sqlx::query_as(history(&migrated.1))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(expected_rows.len(), env.ctx.catalog.tenant.migrations.len());
    assert!(
        migrated_starts > 1,
        "templates off: one transaction per migration"
    );
    for (_, slug) in &templated {
        let (rows, starts) = read(
            sqlx::query_as(history(slug))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(rows, expected_rows);
        assert_eq!(
            starts, 1,
            "templates on: the template's one statement wrote the history"
        );
    }
}

/// Database isolation, templates on: new tenant databases are copies of the set's template
/// database (built on the first provision), finished with their own role's grants and history;
/// templates off, built by the migrations. Either way one fingerprint and the same history, and
/// the copies' history was written by one statement (one `started_at`). The set has an identity
/// of its own, so the template database is this test's, dropped with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_tenants_provisioned_with_templates_on_and_off_are_alike() {
    let run = &Uuid::new_v4().simple().to_string()[..10];
    let sets = testkit::migration_sets_with(&[(
        "20990101000000_own_table",
        &format!("CREATE TABLE run_{run} (id bigint PRIMARY KEY, note text);"),
        None,
    )]);
    let env = Env::with_migrations(sets.path()).await;
    let templated = [
        env.register(Some("database")).await,
        env.register(Some("database")).await,
    ];
    let (stop, task) = env.start_provisioner();
    for (tenant, _) in &templated {
        env.wait_for_status(*tenant, "active", ACTIVE_WITHIN).await;
    }
    testkit::stop_service((stop, task)).await;
    let migrated = env.register(Some("database")).await;
    let (stop, task) = env.start_provisioner_without_templates();
    env.wait_for_status(migrated.0, "active", ACTIVE_WITHIN)
        .await;
    testkit::stop_service((stop, task)).await;

    let template = engine::template::DatabaseTemplate::slug_for(
        &engine::template::SetIdentity::of(&env.ctx.catalog.tenant, engine::Dialect::Postgres),
        env.ctx.config.tenant_owner_role.as_deref(),
    );
    let mut conn = env.sql().await;
    let template_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(template.storage_name())
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        template_exists,
        "the template database is kept on the server"
    );

    let storage = TenantStorage::connect(&env.ctx.config, 1, EngineOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let slugs: Vec<_> = templated
        .iter()
        .chain([&migrated])
        .map(|(_, slug)| slug.clone())
        .collect();
    let fingerprints = storage
        .fingerprints(Isolation::Database, &slugs)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let expected = &fingerprints[&migrated.1];
    assert!(!expected.is_empty());
    for slug in &slugs {
        let differences = fingerprints[slug].diff(expected);
        assert!(differences.is_empty(), "{slug}: {differences:?}");
    }

    let history = |slug: domain::tenant::TenantSlug| async move {
        let mut conn = sqlx::PgConnection::connect_with(
            &testkit::pg::server_options().database(&slug.storage_name()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let rows: Vec<(i64, String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT version, description, checksum, started_at FROM public._tenancy_history
              WHERE migration_set = 'tenant' ORDER BY version",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let starts: std::collections::BTreeSet<_> = rows.iter().map(|r| r.3).collect();
        let rows: Vec<_> = rows.into_iter().map(|(v, d, c, _)| (v, d, c)).collect();
        (rows, starts.len())
    };
    let (expected_rows, migrated_starts) = history(migrated.1.clone()).await;
    assert_eq!(expected_rows.len(), env.ctx.catalog.tenant.migrations.len());
    assert!(
        migrated_starts > 1,
        "templates off: one transaction per migration"
    );
    for (_, slug) in &templated {
        let (rows, starts) = history(slug.clone()).await;
        assert_eq!(rows, expected_rows);
        assert_eq!(starts, 1, "templates on: one statement wrote the history");
    }
}
