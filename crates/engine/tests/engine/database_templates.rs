//! Database templates on real PostgreSQL: a tenant database copied from the set's template
//! database is the one its migrations build (same fingerprint, same history, its own role's
//! grants, default privileges included); a template database that no longer verifies is never
//! used; a copy cut off before its transaction committed is finished by the re-run, or dropped
//! by a plain creation; a set that leaves rows gets no template database.
//!
//! Each test's set has an identity of its own (one table named after the test run), so its
//! template database is its own, and it is dropped with the tenants when the test ends.

use std::sync::Mutex;

use domain::tenant::TenantSlug;
use engine::fingerprint::Fingerprint;
use engine::template::{DatabaseTemplate, Instantiation, TemplateError};
use engine::{
    Catalog, Engine, EngineOptions, MigrationSet, PgDatabaseBackend, ProvisionedStorage as _,
    SetKind, Target,
};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};
use testkit::pg::{TestDatabase, server_options};
use testkit::{ScratchDir, SetBuilder};

/// Tenant databases (and template databases) dropped however the test ends, then their roles.
#[derive(Default)]
struct Cleanup(Mutex<Vec<String>>);

impl Cleanup {
    fn track(&self, slug: &TenantSlug) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slug.storage_name());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        testkit::pg::drop_databases_now(names.clone());
        testkit::pg::drop_roles_now(names);
    }
}

struct Fixture {
    engine: Engine<PgDatabaseBackend>,
    /// The built-in tenant set plus one table of this run: an identity of its own.
    set: MigrationSet,
    _sets: ScratchDir,
    cleanup: Cleanup,
    _database: TestDatabase,
}

async fn fixture() -> Fixture {
    let run = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let sets = testkit::migration_sets_with(&[(
        "20990101000000_own_table",
        &format!(
            "CREATE TABLE run_{run} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
             CREATE VIEW run_{run}_notes AS SELECT note FROM run_{run};
             GRANT SELECT ON run_{run}_notes TO PUBLIC;
             CREATE FUNCTION run_{run}_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM run_{run} $$;
             REVOKE EXECUTE ON FUNCTION run_{run}_count() FROM PUBLIC;"
        ),
        Some(&format!("DROP TABLE run_{run} CASCADE;")),
    )]);
    let set = Catalog::load(Some(sets.path()))
        .unwrap_or_else(|e| panic!("{e}"))
        .tenant
        .as_ref()
        .clone();
    let database = TestDatabase::create().await;
    let backend = PgDatabaseBackend::connect(database.options())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Fixture {
        engine: Engine::new(backend, EngineOptions::default()),
        set,
        _sets: sets,
        cleanup: Cleanup::default(),
        _database: database,
    }
}

impl Fixture {
    fn tenant(&self) -> TenantSlug {
        let slug = TenantSlug::parse(&format!(
            "tt{}_{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        self.cleanup.track(&slug);
        slug
    }

    async fn template(&self, set: &MigrationSet) -> DatabaseTemplate {
        let template = self
            .engine
            .database_template(set)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.cleanup.track(&template.slug);
        template
    }

    async fn migrated(&self, set: &MigrationSet) -> TenantSlug {
        let tenant = self.tenant();
        self.engine
            .backend()
            .create_storage_with_role(&tenant)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.migrate(&tenant, set).await;
        tenant
    }

    async fn migrate(&self, tenant: &TenantSlug, set: &MigrationSet) -> usize {
        self.engine
            .apply(&Target::Tenant(tenant.clone()), set, None, &())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .steps
            .len()
    }

    async fn copy(
        &self,
        tenant: &TenantSlug,
        set: &MigrationSet,
        template: &DatabaseTemplate,
    ) -> Instantiation {
        self.engine
            .create_from_template(tenant, set, template)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn fingerprint(&self, tenant: &TenantSlug) -> Fingerprint {
        self.engine
            .backend()
            .fingerprints(std::slice::from_ref(tenant))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .remove(tenant)
            .unwrap_or_default()
    }

    /// Asserts that `copied` is `migrated`'s twin: fingerprint (grants to each one's own role
    /// included) and history.
    async fn assert_twins(&self, migrated: &TenantSlug, copied: &TenantSlug) {
        let (a, b) = (
            self.fingerprint(migrated).await,
            self.fingerprint(copied).await,
        );
        assert!(!a.is_empty());
        assert_eq!(
            a.digest(),
            b.digest(),
            "{:?}",
            b.diff(&a)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        assert_eq!(history(migrated).await, history(copied).await);
    }
}

async fn connect(tenant: &TenantSlug) -> PgConnection {
    server_options()
        .database(&tenant.storage_name())
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The tenant's history rows: (version, description, checksum, success).
async fn history(tenant: &TenantSlug) -> Vec<(i64, String, String, bool)> {
    let mut conn = connect(tenant).await;
    let rows = sqlx::query_as(
        "SELECT version, description, checksum, success FROM public._tenancy_history ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = conn.close().await;
    rows
}

/// Whether `role` has `privilege` on the table `table` of the tenant's database.
async fn can(tenant: &TenantSlug, role: &str, table: &str, privilege: &str) -> bool {
    let mut conn = connect(tenant).await;
    let can = sqlx::query_scalar("SELECT has_table_privilege($1, $2, $3)")
        .bind(role)
        .bind(format!("public.{table}"))
        .bind(privilege)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = conn.close().await;
    can
}

async fn database_oid(tenant: &TenantSlug) -> Option<u32> {
    let mut conn = server_options()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let oid: Option<sqlx::postgres::types::Oid> =
        sqlx::query_scalar("SELECT oid FROM pg_database WHERE datname = $1")
            .bind(tenant.storage_name())
            .fetch_optional(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let _ = conn.close().await;
    oid.map(|oid| oid.0)
}

/// Copies a template database by hand: what a crash right after the copy leaves.
async fn copy_by_hand(tenant: &TenantSlug, template: &DatabaseTemplate) {
    let mut conn = server_options()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{}\" TEMPLATE \"{}\"",
        tenant.storage_name(),
        template.slug.storage_name()
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = conn.close().await;
}

/// Two tenants copied at once from the set's template database are twins of the one its
/// migrations built, with nothing pending; their roles hold the grants (the template's role
/// none), also on what a later migration creates (default privileges moved); the template
/// database is built once and then read, not built again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_copied_from_the_template_database_is_the_one_the_migrations_build() {
    let f = fixture().await;
    let set = &f.set;
    let migrated = f.migrated(set).await;
    let template = f.template(set).await;
    assert_eq!(template.version(), set.latest());
    let built = database_oid(&template.slug).await;
    assert!(built.is_some());

    let (one, two) = (f.tenant(), f.tenant());
    let (a, b) = tokio::join!(f.copy(&one, set, &template), f.copy(&two, set, &template));
    assert_eq!((a, b), (Instantiation::Applied, Instantiation::Applied));
    for copied in [&one, &two] {
        f.assert_twins(&migrated, copied).await;
        assert_eq!(f.migrate(copied, set).await, 0, "nothing pending");
        assert!(can(copied, &copied.storage_name(), "users", "INSERT").await);
        assert!(
            !can(copied, &template.slug.storage_name(), "users", "SELECT").await,
            "the template's role keeps nothing in a copy"
        );
    }

    let later = testkit::migration_sets_with(&[(
        "20991231000000_later",
        "CREATE TABLE later (id int);",
        None,
    )]);
    let mut with_later = set.clone();
    with_later.migrations.extend(
        Catalog::load(Some(later.path()))
            .unwrap_or_else(|e| panic!("{e}"))
            .tenant
            .migrations
            .iter()
            .filter(|m| m.description == "later")
            .cloned(),
    );
    assert_eq!(f.migrate(&one, &with_later).await, 1);
    assert!(
        can(&one, &one.storage_name(), "later", "UPDATE").await,
        "default privileges moved to the tenant's role"
    );

    let again = f.template(set).await;
    assert_eq!(again, template);
    assert_eq!(
        database_oid(&template.slug).await,
        built,
        "read, not rebuilt"
    );
}

/// The template database changed behind the template's back: a copy does not verify, is rolled
/// back and created empty, and the migrations build the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_database_that_does_not_verify_is_not_used() {
    let f = fixture().await;
    let set = &f.set;
    let migrated = f.migrated(set).await;
    let template = f.template(set).await;
    let mut conn = connect(&template.slug).await;
    sqlx::raw_sql("ALTER TABLE public.users ADD COLUMN nickname text")
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = conn.close().await;

    let tenant = f.tenant();
    let Instantiation::Mismatch { differences } = f.copy(&tenant, set, &template).await else {
        panic!("a changed template database must not verify")
    };
    let lines: Vec<String> = differences.iter().map(ToString::to_string).collect();
    assert_eq!(lines, ["+ column users.nickname: text"]);
    assert!(history(&tenant).await.is_empty(), "created empty");
    assert_eq!(f.migrate(&tenant, set).await, set.migrations.len());
    f.assert_twins(&migrated, &tenant).await;
}

/// A copy made but never finished (the process died between `CREATE DATABASE` and its
/// transaction's commit): the re-run finishes it; a plain creation (templates turned off
/// meanwhile) drops it and creates the database empty, which the migrations build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_cut_off_before_its_commit_is_finished_or_dropped() {
    let f = fixture().await;
    let set = &f.set;
    let migrated = f.migrated(set).await;
    let template = f.template(set).await;

    let resumed = f.tenant();
    copy_by_hand(&resumed, &template).await;
    assert!(
        history(&resumed).await.is_empty(),
        "no history before the commit"
    );
    assert_eq!(
        f.copy(&resumed, set, &template).await,
        Instantiation::Applied
    );
    f.assert_twins(&migrated, &resumed).await;
    assert_eq!(
        f.copy(&resumed, set, &template).await,
        Instantiation::NotEmpty,
        "a finished copy is left alone"
    );
    f.assert_twins(&migrated, &resumed).await;

    let plain = f.tenant();
    copy_by_hand(&plain, &template).await;
    let copied = database_oid(&plain).await;
    f.engine
        .backend()
        .create_storage_with_role(&plain)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(database_oid(&plain).await, copied, "created again");
    assert_eq!(f.migrate(&plain, set).await, set.migrations.len());
    f.assert_twins(&migrated, &plain).await;
}

/// Migrations that leave rows give no template database (a copy would give every tenant the
/// same rows), and none is left on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_that_leaves_rows_has_no_template_database() {
    let f = fixture().await;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let set = SetBuilder::new(SetKind::Tenant)
        .migration(
            1,
            "a",
            &format!("CREATE TABLE a_{run} (id int); INSERT INTO a_{run} VALUES (1)"),
            "SELECT 1",
        )
        .build();
    let slug = DatabaseTemplate::slug_for(
        &engine::template::SetIdentity::of(&set, engine::Dialect::Postgres),
        None,
    );
    f.cleanup.track(&slug);
    match f.engine.database_template(&set).await {
        Err(TemplateError::Unsupported(why)) => {
            assert!(why.contains(&format!("rows in a_{run}")), "{why}")
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert_eq!(database_oid(&slug).await, None);
}

/// Two deployments on one server (each its own platform database, so their advisory locks do
/// not meet) need the same template database at once: both get it, the same one (the build
/// whose rename came second reads the first's), and a copy of it verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_building_one_template_database_at_once_both_get_it() {
    let f = fixture().await;
    let other_database = TestDatabase::create().await;
    let other = Engine::new(
        PgDatabaseBackend::connect(other_database.options())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        EngineOptions::default(),
    );
    let (one, two) = tokio::join!(
        f.engine.database_template(&f.set),
        other.database_template(&f.set)
    );
    let (one, two) = (
        one.unwrap_or_else(|e| panic!("{e}")),
        two.unwrap_or_else(|e| panic!("{e}")),
    );
    f.cleanup.track(&one.slug);
    assert_eq!(one, two);
    let tenant = f.tenant();
    assert_eq!(f.copy(&tenant, &f.set, &two).await, Instantiation::Applied);
    assert_eq!(f.migrate(&tenant, &f.set).await, 0);
}
