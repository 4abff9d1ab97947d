//! The test environment: a platform database and a RabbitMQ namespace of the test's own, and
//! the services running in-process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use domain::message::{CloudEvent, Event, TenantRegistered};
use domain::tenant::TenantSlug;
use shared::bus::Bus;
use shared::bus::consumer::ConsumerOptions;
use shared::config::Config;
use shared::service::Context;
use sqlx::Row;
use testkit::pg::TestDatabase;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The administrator every test registration carries: personal data that must never reach a
/// log line, an event or the audit trail.
pub const ADMIN_EMAIL: &str = "ana.lima.admin@acme.example";
pub const ADMIN_NAME: &str = "Ana Lima Administradora";

pub const SHARED_BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A namespace no other test (or earlier run) uses.
pub fn unique_namespace() -> String {
    testkit::unique_namespace()
}

pub struct Env {
    /// Tenants registered by the test: their roles (cluster-wide) and, in database isolation,
    /// their databases are removed with the environment.
    tenants: std::sync::Mutex<Vec<TenantSlug>>,
    /// The test's own database on the machine's server (`None` on a private cluster): held so
    /// that it is dropped with the environment.
    _database: Option<TestDatabase>,
    pub database_url: String,
    pub ctx: Context,
    namespace: String,
    amqp_url: String,
}

impl Env {
    /// The machine's broker and PostgreSQL.
    pub async fn new() -> Self {
        Self::with_broker(SHARED_BROKER).await
    }

    /// A database of its own and the broker (or the list of a cluster's nodes) at `amqp_url`.
    pub async fn with_broker(amqp_url: &str) -> Self {
        let database = TestDatabase::create().await;
        let url = database.url();
        Self::on(Some(database), &url, amqp_url).await
    }

    /// A platform database at `database_url` (owned by `database` when given, dropped with it)
    /// and the broker at `amqp_url`.
    pub async fn on(database: Option<TestDatabase>, database_url: &str, amqp_url: &str) -> Self {
        Self::with(database, database_url, amqp_url, None).await
    }

    /// A database of its own and the migration sets of `migrations_dir`.
    pub async fn with_migrations(migrations_dir: &std::path::Path) -> Self {
        let database = TestDatabase::create().await;
        let url = database.url();
        Self::with(Some(database), &url, SHARED_BROKER, Some(migrations_dir)).await
    }

    pub async fn with(
        database: Option<TestDatabase>,
        database_url: &str,
        amqp_url: &str,
        migrations_dir: Option<&std::path::Path>,
    ) -> Self {
        shared::telemetry::init_for_tests();
        let namespace = unique_namespace();
        let mut config = config(database_url, amqp_url, &namespace);
        config.migrations_dir = migrations_dir.map(std::path::Path::to_path_buf);
        let shutdown = CancellationToken::new();
        let connect = Context::connect(config, "e2e", &shutdown);
        let ctx = tokio::time::timeout(Duration::from_secs(60), connect)
            .await
            .unwrap_or_else(|_| panic!("RabbitMQ at {amqp_url} or PostgreSQL did not answer within 60s: are they running? (see README)"))
            .unwrap_or_else(|e| panic!("connecting: {e}"));
        ctx.apply_platform_migrations()
            .await
            .unwrap_or_else(|e| panic!("platform migrations: {e}"));
        Env {
            tenants: std::sync::Mutex::new(Vec::new()),
            _database: database,
            database_url: database_url.to_owned(),
            ctx,
            namespace,
            amqp_url: amqp_url.to_owned(),
        }
    }

    pub async fn sql(&self) -> sqlx::PgConnection {
        use sqlx::Connection as _;
        sqlx::PgConnection::connect(&self.database_url)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A slug no other test uses, remembered for cleanup.
    pub fn slug(&self) -> TenantSlug {
        let slug = testkit::unique_slug();
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slug.clone());
        slug
    }

    /// Publishes a registration for a new tenant with a unique slug; returns its id and slug.
    pub async fn register(&self, isolation: Option<&str>) -> (Uuid, TenantSlug) {
        let slug = self.slug();
        let tenant = Uuid::new_v4();
        let data = TenantRegistered::from_data(&serde_json::json!({
            "tenant_id": tenant, "slug": slug.as_str(), "name": "Acme Towers", "plan": "standard",
            "isolation": isolation,
            "admin": { "email": ADMIN_EMAIL, "name": ADMIN_NAME },
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let event = self.ctx.bus.publisher().event(data);
        self.publish(&event).await;
        (tenant, slug)
    }

    /// Publishes `event` and waits for the broker's confirm.
    pub async fn publish<T: Event>(&self, event: &CloudEvent<T>) {
        self.ctx
            .bus
            .publisher()
            .publish(event)
            .await
            .unwrap_or_else(|e| panic!("publishing {}: {e}", T::TYPE));
    }

    /// Runs the provisioner in this process until the returned token is cancelled.
    pub fn start_provisioner(&self) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(provisioner::run(self.ctx.clone(), stop.clone()));
        (stop, task)
    }

    /// Runs the provisioner with templates off (`PROVISIONER_TEMPLATES=off`): every tenant is
    /// built by its own migrations, for tests that need to interrupt one of them.
    pub fn start_provisioner_without_templates(
        &self,
    ) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
        let mut context = self.ctx.clone();
        context.config = std::sync::Arc::new(shared::config::Config {
            provisioner: shared::config::ProvisionerConfig { templates: false },
            ..(*context.config).clone()
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(provisioner::run(context, stop.clone()));
        (stop, task)
    }

    /// The status of a tenant row, if any.
    pub async fn tenant_status(&self, tenant: Uuid) -> Option<String> {
        let mut conn = self.sql().await;
        sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(&mut conn)
            .await
            .ok()
            .flatten()
    }

    pub async fn wait_for_status(&self, tenant: Uuid, status: &str, within: Duration) {
        testkit::wait_until(within, &format!("tenant {tenant} is {status}"), || async {
            self.tenant_status(tenant).await.as_deref() == Some(status)
        })
        .await;
    }

    /// Runs the auditor in this process until the returned token is cancelled.
    pub fn start_auditor(&self) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(auditor::run(self.ctx.clone(), stop.clone()));
        (stop, task)
    }

    /// Rows in audit_events; 0 while the database is unreachable.
    pub async fn audit_count(&self) -> i64 {
        use sqlx::Connection as _;
        let Ok(mut conn) = sqlx::PgConnection::connect(&self.database_url).await else {
            return 0;
        };
        sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0)
    }

    /// Ids stored in audit_events, with how many rows each has.
    pub async fn audit_ids(&self) -> HashMap<Uuid, i64> {
        let mut conn = self.sql().await;
        sqlx::query("SELECT id, count(*) AS n FROM audit_events GROUP BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|row| (row.get::<Uuid, _>("id"), row.get::<i64, _>("n")))
            .collect()
    }

    pub async fn wait_for_audit_count(&self, expected: i64, within: Duration) {
        testkit::wait_until(
            within,
            &format!("{expected} events are in audit_events"),
            || async { self.audit_count().await >= expected },
        )
        .await;
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let tenants: Vec<String> =
            std::mem::take(&mut *self.tenants.lock().unwrap_or_else(|e| e.into_inner()))
                .iter()
                .map(TenantSlug::storage_name)
                .collect();
        let mut tenants = tenants;
        // A test's own migration sets have a template database of their own on the shared
        // server (the built-in set's is shared by the tests, like a cache, and kept).
        if self.ctx.config.migrations_dir.is_some() {
            let identity = engine::template::SetIdentity::of(
                &self.ctx.catalog.tenant,
                engine::Dialect::Postgres,
            );
            let template = engine::template::DatabaseTemplate::slug_for(
                &identity,
                self.ctx.config.tenant_owner_role.as_deref(),
            );
            tenants.push(template.storage_name());
        }
        // Databases first (a role cannot be dropped while it holds privileges in one).
        drop(self._database.take());
        testkit::pg::drop_databases_now(tenants.clone());
        testkit::pg::drop_roles_now(tenants);
        testkit::broker::delete_topology_now(&self.amqp_url, &self.namespace);
    }
}

pub fn config(database_url: &str, amqp_url: &str, namespace: &str) -> Config {
    let values: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", database_url.to_owned()),
        ("AMQP_URL", amqp_url.to_owned()),
        ("TENANCY_NAMESPACE", namespace.to_owned()),
        ("HEALTH_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    Config::from_lookup(|key| values.get(key).cloned()).unwrap_or_else(|e| panic!("{e}"))
}

/// A `tenant.registered` event with an admin (personal data) in it.
pub fn registration(slug: &str) -> TenantRegistered {
    let data = serde_json::json!({
        "tenant_id": Uuid::new_v4(),
        "slug": slug,
        "name": "Acme Towers",
        "plan": "standard",
        "isolation": "schema",
        "admin": { "email": "ana.lima@acme.example", "name": "Ana Lima" },
    });
    TenantRegistered::from_data(&data).unwrap_or_else(|e| panic!("{e}"))
}

/// Publishes `count` events built by `make`, with up to 64 confirms outstanding at once.
pub async fn publish_many<T: Event>(
    bus: &Arc<Bus>,
    count: usize,
    make: impl Fn(usize) -> T,
) -> Vec<Uuid> {
    let events: Vec<CloudEvent<T>> = (0..count).map(|i| bus.publisher().event(make(i))).collect();
    let ids = events.iter().map(|e| e.id).collect();
    let publisher = bus.publisher().clone();
    futures_lite_for_each(events, 64, move |event| {
        let publisher = publisher.clone();
        async move {
            publisher
                .publish(&event)
                .await
                .unwrap_or_else(|e| panic!("publishing: {e}"))
        }
    })
    .await;
    ids
}

/// Runs `work` on every item, `concurrency` at a time.
pub async fn futures_lite_for_each<T, F, Fut>(items: Vec<T>, concurrency: usize, work: F)
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let work = Arc::new(work);
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for item in items {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let work = work.clone();
        tasks.spawn(async move {
            work(item).await;
            drop(permit);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Consumer options that retry fast, for tests.
pub fn fast_retries() -> ConsumerOptions {
    ConsumerOptions {
        retry_min_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(5),
        ..ConsumerOptions::default()
    }
}

/// Collects every log line of the process (install it as the global subscriber's writer; nextest
/// runs each test in a process of its own).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs a capture as the global subscriber's writer, JSON lines filtered by `filter`.
    pub fn install(filter: &str) -> Self {
        let logs = LogCapture::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(logs.clone())
            .with_env_filter(filter)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// The lines logged at `level` (`ERROR`, `WARN`, ...).
    pub fn lines_at(&self, level: &str) -> Vec<String> {
        let tag = format!("\"level\":\"{level}\"");
        self.text()
            .lines()
            .filter(|line| line.contains(&tag))
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
