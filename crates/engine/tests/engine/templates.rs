//! Templates on real PostgreSQL: a tenant built from a set's template is the tenant its
//! migrations build (same fingerprint, same history); a changed set gets another template; a
//! template that does not reproduce the schema is rolled back; only an empty schema takes one;
//! an instantiation cut off mid-way leaves nothing, and a re-run completes the tenant.

use domain::tenant::TenantSlug;
use engine::fingerprint::Fingerprint;
use engine::template::{Instantiation, Template, TemplateError};
use engine::{
    Catalog, Engine, EngineOptions, MigrationSet, PgSchemaBackend, ProvisionedStorage as _,
    SetKind, Target,
};
use testkit::SetBuilder;
use testkit::pg::TestDatabase;

/// Drops the test's tenant roles (cluster-wide) however the test ends, after its database.
struct Roles(Vec<String>);

impl Drop for Roles {
    fn drop(&mut self) {
        testkit::pg::drop_roles_now(std::mem::take(&mut self.0));
    }
}

/// A test database with an engine on it, and `n` tenant slugs whose roles go with the test.
struct Fixture {
    engine: Engine<PgSchemaBackend>,
    tenants: Vec<TenantSlug>,
    // Field order: the database is dropped before the roles its grants name.
    _database: TestDatabase,
    _roles: Roles,
}

async fn fixture(n: usize) -> Fixture {
    let tenants: Vec<TenantSlug> = (0..n)
        .map(|i| {
            TenantSlug::parse(&format!(
                "tt{i}_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..10]
            ))
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let roles = Roles(tenants.iter().map(TenantSlug::storage_name).collect());
    let database = TestDatabase::create().await;
    let backend = PgSchemaBackend::connect(database.options(), 4)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let engine = Engine::new(backend, EngineOptions::default());
    for tenant in &tenants {
        engine
            .backend()
            .create_storage_with_role(tenant)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    Fixture {
        engine,
        tenants,
        _database: database,
        _roles: roles,
    }
}

impl Fixture {
    async fn fingerprint(&self, tenant: &TenantSlug) -> Fingerprint {
        self.engine
            .backend()
            .fingerprints(std::slice::from_ref(tenant))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .remove(tenant)
            .unwrap_or_default()
    }

    /// Whether the tenant's schema holds nothing but what step 2 gives it (its grants).
    async fn is_bare(&self, tenant: &TenantSlug) -> bool {
        self.fingerprint(tenant)
            .await
            .objects()
            .all(|(_, name, _)| name.starts_with("schema:"))
    }

    /// The tenant's history rows: (version, description, checksum, success).
    async fn history(&self, tenant: &TenantSlug) -> Vec<(i64, String, String, bool)> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT version, description, checksum, success FROM \"{}\"._tenancy_history ORDER BY version",
            tenant.storage_name()
        )))
        .fetch_all(self.engine.backend().pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn migrate(&self, tenant: &TenantSlug, set: &MigrationSet) -> usize {
        self.engine
            .apply(&Target::Tenant(tenant.clone()), set, None, &())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .steps
            .len()
    }

    async fn template(&self, set: &MigrationSet) -> Template {
        self.engine
            .build_template(set)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn instantiate(
        &self,
        tenant: &TenantSlug,
        set: &MigrationSet,
        t: &Template,
    ) -> Instantiation {
        self.engine
            .instantiate_template(tenant, set, t)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Asserts that `templated` is `migrated`'s twin: fingerprint and history.
    async fn assert_twins(&self, migrated: &TenantSlug, templated: &TenantSlug) {
        let (a, b) = (
            self.fingerprint(migrated).await,
            self.fingerprint(templated).await,
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
        let strip = |rows: Vec<(i64, String, String, bool)>| rows;
        assert_eq!(
            strip(self.history(migrated).await),
            strip(self.history(templated).await)
        );
    }
}

/// Objects of most kinds a template reads back: an enum, serial and identity keys with their
/// sequences, a generated column, a collation, defaults that name a sequence, a foreign key to a
/// table created later, a unique key, a check, an exclusion-free partial index, a view over a
/// function, a materialized view with an index, an unlogged table, a trigger (one disabled), a
/// revoked default grant, a grant to PUBLIC, a function whose EXECUTE is revoked, a dropped
/// column, and a sequence owned by a column.
fn rich_set() -> SetBuilder {
    SetBuilder::new(SetKind::Tenant)
        .migration(
            1,
            "kinds",
            "CREATE TYPE mood AS ENUM ('calm', 'busy');
             CREATE TABLE rooms (id bigserial PRIMARY KEY, code text COLLATE \"C\" NOT NULL UNIQUE,
                                 mood mood NOT NULL DEFAULT 'calm', width int, height int,
                                 area int GENERATED ALWAYS AS (width * height) STORED,
                                 gone text, CHECK (width > 0)) WITH (fillfactor = 90);
             ALTER TABLE rooms DROP COLUMN gone;
             CREATE TABLE bookings (id bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 100) PRIMARY KEY,
                                    room_id bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
                                    guest_id bigint, note text);
             CREATE TABLE guests (id int PRIMARY KEY, name text);
             ALTER TABLE bookings ADD CONSTRAINT bookings_guest_fk FOREIGN KEY (guest_id) REFERENCES guests (id) DEFERRABLE;
             CREATE INDEX bookings_note_idx ON bookings (lower(note)) WHERE note IS NOT NULL;
             CREATE SEQUENCE ticket_seq START 7 INCREMENT 3;
             CREATE TABLE tickets (n bigint DEFAULT nextval('ticket_seq'));
             ALTER SEQUENCE ticket_seq OWNED BY tickets.n;
             CREATE UNLOGGED TABLE scratchpad (k text);
             CREATE FUNCTION room_area(r rooms) RETURNS int LANGUAGE sql STABLE AS $$ SELECT r.width * r.height $$;
             CREATE VIEW big_rooms AS SELECT id, room_area(rooms) AS a FROM rooms WHERE width > 10;
             CREATE MATERIALIZED VIEW room_count AS SELECT count(*) AS n FROM rooms;
             CREATE INDEX room_count_idx ON room_count (n);
             CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := coalesce(NEW.note, ''); RETURN NEW; END $$;
             CREATE TRIGGER bookings_touch BEFORE INSERT ON bookings FOR EACH ROW EXECUTE FUNCTION touch();
             CREATE TRIGGER bookings_touch_off BEFORE UPDATE ON bookings FOR EACH ROW EXECUTE FUNCTION touch();
             ALTER TABLE bookings DISABLE TRIGGER bookings_touch_off;
             DO $$ BEGIN EXECUTE format('REVOKE DELETE ON guests FROM %I', current_schema()); END $$;
             GRANT SELECT ON big_rooms TO PUBLIC;
             REVOKE EXECUTE ON FUNCTION touch() FROM PUBLIC;",
            "SELECT 1",
        )
}

/// The tenant set, and a set with most kinds of object: built from either's template, a tenant
/// has the fingerprint and history of one built by its migrations, and has nothing pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_built_from_the_template_is_the_one_the_migrations_build() {
    let f = fixture(4).await;
    let tenant_set = Catalog::load(None).unwrap_or_else(|e| panic!("{e}")).tenant;
    let rich = rich_set().build();
    for (set, pair) in [(&*tenant_set, &f.tenants[..2]), (&rich, &f.tenants[2..])] {
        let (migrated, templated) = (&pair[0], &pair[1]);
        f.migrate(migrated, set).await;
        let template = f.template(set).await;
        assert_eq!(template.version(), set.latest());
        assert_eq!(
            f.instantiate(templated, set, &template).await,
            Instantiation::Applied
        );
        f.assert_twins(migrated, templated).await;
        assert_eq!(
            f.migrate(templated, set).await,
            0,
            "nothing pending after a template"
        );
    }
}

/// A migration added to the set gives another identity and another template, which builds what
/// the added migration builds; the old template builds the old schema only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_set_gets_another_template() {
    let f = fixture(2).await;
    let old = SetBuilder::new(SetKind::Tenant).migration(
        1,
        "a",
        "CREATE TABLE a (id int PRIMARY KEY)",
        "DROP TABLE a",
    );
    let new = old.clone().migration(
        2,
        "b",
        "CREATE TABLE b (id int REFERENCES a (id))",
        "DROP TABLE b",
    );
    let (old, new) = (old.build(), new.build());
    let (old_template, new_template) = (f.template(&old).await, f.template(&new).await);
    assert_ne!(old_template.identity, new_template.identity);
    assert_ne!(old_template.fingerprint, new_template.fingerprint);
    assert_eq!(new_template.history.len(), 2);

    f.migrate(&f.tenants[0], &new).await;
    assert_eq!(
        f.instantiate(&f.tenants[1], &new, &new_template).await,
        Instantiation::Applied
    );
    f.assert_twins(&f.tenants[0], &f.tenants[1]).await;
}

/// A template missing one statement does not reproduce the schema: the instantiation is rolled
/// back with the difference, the schema stays empty, and the migrations then build the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_does_not_verify_is_rolled_back_and_the_migrations_finish() {
    let f = fixture(2).await;
    let set = Catalog::load(None).unwrap_or_else(|e| panic!("{e}")).tenant;
    let mut tampered = f.template(&set).await;
    let index = tampered
        .statements
        .iter()
        .position(|s| s.starts_with("CREATE INDEX"))
        .unwrap_or_else(|| panic!("the tenant set creates an index"));
    let dropped = tampered.statements.remove(index);
    let (migrated, tenant) = (&f.tenants[0], &f.tenants[1]);

    let Instantiation::Mismatch { differences } = f.instantiate(tenant, &set, &tampered).await
    else {
        panic!("a tampered template must not verify")
    };
    let lines: Vec<String> = differences.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("- index "), "{lines:?} ({dropped})");
    assert!(f.is_bare(tenant).await, "rolled back");
    assert!(f.history(tenant).await.is_empty(), "rolled back");

    assert_eq!(f.migrate(tenant, &set).await, set.migrations.len());
    f.migrate(migrated, &set).await;
    f.assert_twins(migrated, tenant).await;
}

/// A set whose migrations leave rows cannot be templated: the DDL would not carry them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_that_leaves_rows_has_no_template() {
    let f = fixture(0).await;
    let set = SetBuilder::new(SetKind::Tenant)
        .migration(
            1,
            "a",
            "CREATE TABLE a (id int); INSERT INTO a VALUES (1)",
            "DROP TABLE a",
        )
        .build();
    match f.engine.build_template(&set).await {
        Err(TemplateError::Unsupported(why)) => assert!(why.contains("rows in a"), "{why}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// Only an empty schema takes a template: one partly migrated (a crash on the migration path)
/// or already templated (the step re-run after a commit) is left alone, and the migrations
/// finish it with one history row per version. A tenant whose lock another runner holds is left
/// alone too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_empty_schema_takes_the_template() {
    let f = fixture(3).await;
    let set = Catalog::load(None).unwrap_or_else(|e| panic!("{e}")).tenant;
    let template = f.template(&set).await;
    let (migrated, partly, twice) = (&f.tenants[0], &f.tenants[1], &f.tenants[2]);
    f.migrate(migrated, &set).await;

    let first = set.migrations[0].version;
    f.engine
        .apply(&Target::Tenant(partly.clone()), &set, Some(first), &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.instantiate(partly, &set, &template).await,
        Instantiation::NotEmpty
    );
    assert_eq!(f.history(partly).await.len(), 1, "left as it was");
    f.migrate(partly, &set).await;
    f.assert_twins(migrated, partly).await;

    let mut holder = f
        .engine
        .backend()
        .pool()
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(Target::Tenant(twice.clone()).lock_key())
        .execute(&mut *holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.instantiate(twice, &set, &template).await,
        Instantiation::Busy
    );
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut *holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(holder);

    assert_eq!(
        f.instantiate(twice, &set, &template).await,
        Instantiation::Applied
    );
    assert_eq!(
        f.instantiate(twice, &set, &template).await,
        Instantiation::NotEmpty
    );
    assert_eq!(f.migrate(twice, &set).await, 0);
    f.assert_twins(migrated, twice).await;
}

/// The connection of an instantiation is killed between its DDL and its commit: nothing of it
/// stays, and the step's re-run takes the template and completes the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instantiation_cut_off_mid_way_leaves_nothing_and_the_rerun_completes() {
    let f = fixture(2).await;
    let set = Catalog::load(None).unwrap_or_else(|e| panic!("{e}")).tenant;
    let template = f.template(&set).await;
    let (migrated, tenant) = (&f.tenants[0], &f.tenants[1]);
    f.migrate(migrated, &set).await;

    // Half the DDL, then a pause long enough for the connection to be killed in it.
    let mut stalled = template.clone();
    let half = stalled.statements.len() / 2;
    stalled
        .statements
        .insert(half, "SELECT pg_sleep(30)".to_owned());
    let pool = f.engine.backend().pool().clone();
    let killer = tokio::spawn(async move {
        testkit::wait_until(
            std::time::Duration::from_secs(10),
            "the instantiation stalls",
            || async {
                sqlx::query_scalar::<_, bool>(
                    "SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
                      WHERE wait_event = 'PgSleep' AND datname = current_database()",
                )
                .fetch_one(&pool)
                .await
                .unwrap_or(false)
            },
        )
        .await;
    });
    let cut = f.engine.instantiate_template(tenant, &set, &stalled).await;
    killer.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cut.is_err(),
        "the killed connection fails the instantiation: {cut:?}"
    );
    assert!(f.is_bare(tenant).await, "nothing of it stays");
    assert!(f.history(tenant).await.is_empty(), "nothing of it stays");

    assert_eq!(
        f.instantiate(tenant, &set, &template).await,
        Instantiation::Applied
    );
    assert_eq!(f.migrate(tenant, &set).await, 0);
    f.assert_twins(migrated, tenant).await;
}
