//! The queries written once for both dialects ([`with_pool`](super::with_pool)) read the same
//! rows from a PostgreSQL and an SQLite platform database.
#![expect(clippy::unwrap_used, reason = "tests")]

use domain::provisioning::TenantStatus;
use domain::tenant::TenantSlug;
use engine::release::Coverage;
use engine::{
    Catalog, Engine, EngineOptions, MigrationBackend, PgSchemaBackend, SqliteBackend, Target,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use testkit::ScratchDir;
use testkit::pg::TestDatabase;
use uuid::Uuid;

use super::PlatformDb;

const FIRST: &str = "6f1d2c3b-1111-4222-8333-944455556666";
const SECOND: &str = "0b6f5a2e-2f8e-4a55-9d8e-3c1f0f6a7b11";

/// Migrates the platform database behind `backend`, and registers two tenants.
async fn platform(
    platform: PlatformDb,
    backend: impl MigrationBackend,
    catalog: &Catalog,
) -> PlatformDb {
    Engine::new(backend, EngineOptions::default())
        .apply(&Target::Platform, &catalog.platform, None, &())
        .await
        .unwrap();
    // Text ids bound as text: PostgreSQL casts them to its uuid column.
    let insert = "INSERT INTO tenants (id, slug, name, status, isolation, schema_version)
                  VALUES (CAST($1 AS uuid), 'zeta_towers', 'Zeta', 'suspended', 'database', 0),
                         (CAST($2 AS uuid), 'acme_towers', 'Acme', 'active', 'schema', 20261124093000)";
    match &platform {
        PlatformDb::Postgres(pool) => {
            sqlx::query(insert)
                .bind(FIRST)
                .bind(SECOND)
                .execute(pool)
                .await
                .unwrap();
        }
        PlatformDb::Sqlite(pool) => {
            // SQLite has no uuid type: the cast is dropped and the text kept.
            let insert = insert
                .replace("CAST($1 AS uuid)", "$1")
                .replace("CAST($2 AS uuid)", "$2");
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(FIRST)
                .bind(SECOND)
                .execute(pool)
                .await
                .unwrap();
        }
    }
    platform
}

async fn assert_reads(platform: &PlatformDb, catalog: &Catalog, dialect: &str) {
    let all = platform.tenants(None).await.unwrap();
    let listed: Vec<(Uuid, &str, TenantStatus, i64)> = all
        .iter()
        .map(|t| (t.id, t.slug.as_str(), t.status, t.schema_version.get()))
        .collect();
    assert_eq!(
        listed,
        [
            (
                Uuid::parse_str(SECOND).unwrap(),
                "acme_towers",
                TenantStatus::Active,
                20261124093000
            ),
            (
                Uuid::parse_str(FIRST).unwrap(),
                "zeta_towers",
                TenantStatus::Suspended,
                0
            ),
        ],
        "{dialect}: every tenant, by slug"
    );
    let one = platform
        .tenants(Some(&TenantSlug::parse("zeta_towers").unwrap()))
        .await
        .unwrap();
    assert_eq!(one.len(), 1, "{dialect}");
    assert_eq!(one[0].isolation, domain::Isolation::Database, "{dialect}");

    assert_eq!(
        platform.released_migrations().await.unwrap(),
        [],
        "{dialect}"
    );
    let newest = catalog.tenant.latest();
    let conflicts = platform
        .release(&catalog.tenant, newest, "test", Coverage::UpToNewest)
        .await
        .unwrap();
    assert!(conflicts.is_empty(), "{dialect}: {conflicts:?}");
    let released = platform.released_migrations().await.unwrap();
    assert_eq!(released.len(), catalog.tenant.migrations.len(), "{dialect}");
    // Released again: the first record of each version stays, nothing conflicts.
    let again = platform
        .release(&catalog.tenant, newest, "test", Coverage::UpToNewest)
        .await
        .unwrap();
    assert!(again.is_empty(), "{dialect}");
    assert_eq!(
        platform.released_migrations().await.unwrap(),
        released,
        "{dialect}"
    );
}

#[tokio::test]
async fn the_shared_queries_read_the_same_on_postgres_and_sqlite() {
    let catalog = Catalog::load(None).unwrap();

    let database = TestDatabase::create().await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(database.options())
        .await
        .unwrap();
    let postgres = platform(
        PlatformDb::Postgres(pool.clone()),
        PgSchemaBackend::new(pool),
        &catalog,
    )
    .await;
    assert_reads(&postgres, &catalog, "postgres").await;

    let dir = ScratchDir::new();
    let file = dir.path().join("platform.sqlite3");
    let pool = SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&file)
                .create_if_missing(true),
        )
        .await
        .unwrap();
    let sqlite = platform(
        PlatformDb::Sqlite(pool),
        SqliteBackend::beside_platform_file(&file),
        &catalog,
    )
    .await;
    assert_reads(&sqlite, &catalog, "sqlite").await;
}
