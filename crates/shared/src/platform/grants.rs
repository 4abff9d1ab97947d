//! What each service role may do with the platform tables (deploy/postgres/grants.sql, kept in
//! the repository where a DBA reads it, compiled in so that `tenantctl setup` and `up` apply
//! the grants of the same release as the migrations they just ran).

use sqlx::AssertSqlSafe;

use super::{PlatformDb, StoreError};

const GRANTS: &str = include_str!("../../../../deploy/postgres/grants.sql");

impl PlatformDb {
    /// Grants the service roles that exist on this server their rights on the platform tables
    /// (none exist on a development server: nothing happens). Needs the tables' owner; idempotent.
    ///
    /// # Errors
    /// A database error, e.g. a connecting user that does not own the tables.
    pub async fn grant_service_roles(&self) -> Result<(), StoreError> {
        match self {
            PlatformDb::Postgres(pool) => {
                sqlx::raw_sql(AssertSqlSafe(GRANTS)).execute(pool).await?;
                Ok(())
            }
            // One file, one process at a time: no roles.
            PlatformDb::Sqlite(_) => Ok(()),
        }
    }

    /// Whether the connecting user may grant on the platform tables: it owns them (or is a
    /// member of their owner, or a superuser). `tenantctl up --only …` run as a service role
    /// may not, and leaves the grants to `tenantctl setup`.
    ///
    /// # Errors
    /// A database error.
    pub async fn owns_platform_tables(&self) -> Result<bool, StoreError> {
        match self {
            PlatformDb::Postgres(pool) => Ok(sqlx::query_scalar(
                "SELECT COALESCE(bool_and(pg_has_role(current_user, tableowner, 'USAGE')), true)
                   FROM pg_tables WHERE schemaname = 'public' AND tablename = 'tenants'",
            )
            .fetch_one(pool)
            .await?),
            PlatformDb::Sqlite(_) => Ok(true),
        }
    }
}
