//! One tenant in schema isolation on a test database that is both the platform database and
//! the tenant server, a recorded deploy, and a migrator publishing into a recorder.

use std::collections::HashMap;
use std::sync::Arc;

use domain::Version;
use domain::message::{CloudEvent, Event, MigrateTenant, RollbackTenant};
use domain::tenant::TenantSlug;
use engine::{
    Catalog, Engine, EngineOptions, MigrationBackend as _, MigrationSet, PgSchemaBackend, SetKind,
    Target,
};
use shared::bus::consumer::Delivered;
use shared::bus::{EventPublisher as _, Handler as _, Outcome};
use shared::config::Config;
use shared::platform::PlatformDb;
use shared::platform::deploys::NewDeploy;
use shared::tenant_servers::{Connection, TenantServers};
use sqlx::AssertSqlSafe;
use testkit::SetBuilder;
use testkit::pg::TestDatabase;
use testkit::publisher::RecordingPublisher;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{MigrateHandler, Migrator, Parts, RollbackHandler};

/// The queues' delivery limit in these tests: delivery 3 is the last.
pub const DELIVERY_LIMIT: u32 = 2;
pub const FIRST: u32 = 1;
pub const LAST: u32 = DELIVERY_LIMIT + 1;

/// Version `n` of the test sets.
pub fn v(n: u32) -> Version {
    SetBuilder::version(n)
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The tenant set: tables `a` and `b`, then whatever the test adds.
pub fn tenant_set() -> SetBuilder {
    SetBuilder::new(SetKind::Tenant)
        .migration(1, "create_a", "CREATE TABLE a (id int);", "DROP TABLE a;")
        .migration(2, "create_b", "CREATE TABLE b (id int);", "DROP TABLE b;")
}

pub struct Fixture {
    pub database: TestDatabase,
    pub tenant_id: Uuid,
    pub slug: TenantSlug,
    pub deploy_id: Uuid,
    pub published: RecordingPublisher,
    /// The migrator's own shutdown (the slots have theirs, so a test can stop one alone).
    pub shutdown: CancellationToken,
    migrator: Arc<Migrator<RecordingPublisher>>,
}

/// A row of `deploy_tenants`: status, to_version, applied, error.
pub type DeployRow = (String, Option<i64>, i32, Option<String>);

impl Fixture {
    /// An active tenant at version `at` of `set`, listed in a deploy, and a migrator carrying
    /// `set`.
    pub async fn new(set: SetBuilder, at: u32) -> Fixture {
        let database = TestDatabase::create().await;
        let values = HashMap::from([("DATABASE_URL", database.url())]);
        let config =
            Config::from_lookup(|key| values.get(key).cloned()).unwrap_or_else(|e| panic!("{e}"));
        let platform = PlatformDb::connect(&config.database_url, false, 4)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let PlatformDb::Postgres(pool) = &platform else {
            panic!("a PostgreSQL platform database");
        };
        let builtin = Catalog::load(None).unwrap_or_else(|e| panic!("{e}"));
        Engine::new(PgSchemaBackend::new(pool.clone()), EngineOptions::default())
            .apply(&Target::Platform, &builtin.platform, None, &())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let catalog = Arc::new(Catalog {
            tenant: Arc::new(set.build()),
            tenant_seeds: Arc::new(
                MigrationSet::from_files(SetKind::TenantSeeds, "test", Vec::new())
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            ..builtin
        });

        let slug = testkit::unique_slug();
        let tenant_id = Uuid::new_v4();
        let backend = PgSchemaBackend::connect(database.options(), 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        backend
            .create_storage(&slug)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let version = if at == 0 {
            Version::ZERO
        } else {
            Engine::new(backend, EngineOptions::default())
                .apply(
                    &Target::Tenant(slug.clone()),
                    &catalog.tenant,
                    Some(v(at)),
                    &(),
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            v(at)
        };
        sqlx::query("INSERT INTO tenants (id, slug, name, status, isolation, schema_version, activated_at) VALUES ($1, $2, 'Fixture', 'active', 'schema', $3, now())")
            .bind(tenant_id)
            .bind(slug.as_str())
            .bind(version.get())
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let deploy_id = Uuid::new_v4();
        platform
            .record_deploy(&NewDeploy {
                id: deploy_id,
                target_version: catalog.tenant.latest().unwrap_or(Version::ZERO),
                platform_version: catalog.platform.latest().unwrap_or(Version::ZERO),
                operator: "sre-ana".into(),
                canary: 0,
                server: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let shutdown = CancellationToken::new();
        let servers = TenantServers::new(
            platform.clone(),
            Arc::new(config),
            Connection::Slots {
                slots: 2,
                local: 2,
                shutdown: CancellationToken::new(),
            },
            EngineOptions::default(),
        );
        let published = RecordingPublisher::new("migrator");
        let (migrator, _batching) = Migrator::start(Parts {
            platform,
            servers,
            catalog,
            publisher: published.clone(),
            local_slots: 2,
            shutdown: shutdown.clone(),
        });
        Fixture {
            database,
            tenant_id,
            slug,
            deploy_id,
            published,
            shutdown,
            migrator: Arc::new(migrator),
        }
    }

    /// Handles `migrate.tenant` to `target` (the newest version: `None`), as delivery
    /// `delivery`.
    pub async fn migrate(&self, target: Option<u32>, delivery: u32) -> Outcome {
        let command = MigrateTenant {
            tenant_id: self.tenant_id,
            deploy_id: self.deploy_id,
            target_version: target.map(v),
        };
        MigrateHandler(self.migrator.clone())
            .handle(&self.delivered(command, delivery))
            .await
    }

    /// Handles `rollback.tenant` to `to`, as delivery `delivery`.
    pub async fn rollback(&self, to: u32, allow_data_loss: bool, delivery: u32) -> Outcome {
        let command = RollbackTenant {
            tenant_id: self.tenant_id,
            to_version: if to == 0 { Version::ZERO } else { v(to) },
            operator: "sre-ana".into(),
            allow_data_loss,
        };
        RollbackHandler(self.migrator.clone())
            .handle(&self.delivered(command, delivery))
            .await
    }

    fn delivered<T: Event>(&self, command: T, delivery: u32) -> Delivered<CloudEvent<T>> {
        Delivered {
            event: RecordingPublisher::new("tenantctl").event(command),
            delivery,
            delivery_limit: DELIVERY_LIMIT,
        }
    }

    /// `tenants.schema_version` and `tenants.migration_error`.
    pub async fn tenant_row(&self) -> (i64, Option<String>) {
        sqlx::query_as("SELECT schema_version, migration_error FROM tenants WHERE id = $1")
            .bind(self.tenant_id)
            .fetch_one(&mut self.database.connect().await)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The tenant's row of the deploy.
    pub async fn deploy_row(&self) -> DeployRow {
        sqlx::query_as(
            "SELECT status, to_version, applied, error FROM deploy_tenants WHERE deploy_id = $1 AND tenant_id = $2",
        )
        .bind(self.deploy_id)
        .bind(self.tenant_id)
        .fetch_one(&mut self.database.connect().await)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `sql` on the test database, on a connection of its own that stays open (and in
    /// whatever transaction `sql` began) until dropped.
    pub async fn hold(&self, sql: &str) -> sqlx::PgConnection {
        let mut conn = self.database.connect().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        conn
    }

    /// A session holding an exclusive lock on the tenant's table `a` until it is dropped: what
    /// a migration that waits for `a` runs into.
    pub async fn lock_a(&self) -> sqlx::PgConnection {
        self.hold(&format!(
            "BEGIN; LOCK TABLE {}.a IN ACCESS EXCLUSIVE MODE",
            self.schema()
        ))
        .await
    }

    /// The tenant's schema, quoted.
    pub fn schema(&self) -> String {
        format!("\"tenant_{}\"", self.slug)
    }
}

/// An assertion message's context: what was published.
pub fn shown(published: &RecordingPublisher) -> String {
    format!("published: {:?}", published.types())
}
