//! A tenant's PostgreSQL role: `tenant_<slug>`, `NOLOGIN` (the application assumes it), which
//! can use its own schema's tables and nothing else: not `public`, not the platform tables, not
//! another tenant. The grants that confine it belong to its isolation mode and live with each
//! backend ([`PgSchemaBackend::create_storage_with_role`](super::ProvisionedStorage::create_storage_with_role),
//! [`PgDatabaseBackend::create_storage_with_role`](super::ProvisionedStorage::create_storage_with_role));
//! what both modes share is here: creating and dropping the role, closing the server's own
//! database, and running grants.

use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;

use super::BackendError;
use crate::backoff::RetryDelays;
use crate::sql::quote_ident;
use domain::tenant::TenantSlug;

/// The tenant's role, quoted as an identifier.
pub(super) fn role_name(tenant: &TenantSlug) -> String {
    quote_ident(&tenant.storage_name())
}

/// Creates the tenant's role unless it exists (a concurrent creation is a duplicate, ignored).
pub(super) fn create_role(tenant: &TenantSlug) -> String {
    format!(
        "DO $tenancy$ BEGIN CREATE ROLE {name} NOLOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $tenancy$",
        name = role_name(tenant)
    )
}

/// The database the tenant server's URL names (the platform database, by default) is closed to
/// `PUBLIC`: a tenant role reaches only what it is granted. Schema-mode roles are granted
/// `CONNECT` on it explicitly; the services connect as its owner. Other roles that relied on
/// `PUBLIC` need an explicit grant.
/// Only while `PUBLIC` still has a right there: the revocation needs the database's owner, which
/// a least-privileged provisioner is not (deploy/postgres/roles.sql closes it up front).
pub(super) const CLOSE_SERVER_DATABASE: &str = "DO $tenancy$ BEGIN \
    IF has_database_privilege('public', current_database(), 'CONNECT') \
       OR has_database_privilege('public', current_database(), 'TEMPORARY') THEN \
      EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database()); \
    END IF; END $tenancy$";

/// `public` closed to `PUBLIC` in the current database, on the same terms as
/// [`CLOSE_SERVER_DATABASE`].
pub(super) const CLOSE_PUBLIC_SCHEMA: &str = "DO $tenancy$ BEGIN \
    IF has_schema_privilege('public', 'public', 'USAGE') \
       OR has_schema_privilege('public', 'public', 'CREATE') THEN \
      REVOKE ALL ON SCHEMA public FROM PUBLIC; \
    END IF; END $tenancy$";

/// Switches the current transaction to the connecting user: creating roles and granting on the
/// server's database need its rights, not those of the tenants' owner the session may run as.
pub(super) const AS_CONNECTING_USER: &str = "SET LOCAL ROLE NONE";

/// Back to the session's role (the tenants' owner, when there is one).
pub(super) const AS_SESSION_ROLE: &str = "RESET ROLE";

/// The tenant's role name as an SQL string literal (for `format('%I', …)` and catalog lookups).
pub(super) fn role_literal(tenant: &TenantSlug) -> String {
    format!("'{}'", tenant.storage_name().replace('\'', "''"))
}

/// Drops the tenant's role, if it exists, with what it owns and was granted in the database
/// `conn` is on (the server's own; the tenant's schema or database is dropped before).
/// `DROP OWNED BY` needs the role's privileges, which a `CREATEROLE` user that is not a
/// superuser (a least-privileged provisioner dropping a scratch tenant) does not have until it
/// grants itself the role; the membership goes with the role.
pub(super) async fn drop_role(
    conn: &mut PgConnection,
    tenant: &TenantSlug,
) -> Result<(), BackendError> {
    let sql = format!(
        "{AS_CONNECTING_USER};
         DO $tenancy$ BEGIN
           IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {role}) THEN
             IF NOT pg_has_role(current_user, {role}, 'USAGE') THEN
               EXECUTE format('GRANT %I TO %I', {role}, current_user);
             END IF;
             EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), {role});
             DROP OWNED BY {name};
             DROP ROLE {name};
           END IF;
         END $tenancy$",
        role = role_literal(tenant),
        name = role_name(tenant),
    );
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await?;
    Ok(())
}

/// The advisory lock that grant scripts on one database take in turn (an arbitrary key, apart
/// from the engine's and the fleet's).
const GRANTS_LOCK: i64 = 0x7e4a_f1ee_7000_0002;

/// Runs role and grant statements, one script at a time per database. Grants touch shared
/// catalog rows (the database's and `public`'s ACLs, `pg_default_acl`): tenants provisioned at
/// once collide on them ("tuple concurrently updated"). Retrying alone was not enough: eight
/// connections creating 10,000 tenants exhausted twelve jittered attempts. So each script holds
/// a transaction-scoped advisory lock (a multi-statement script is one transaction), and a
/// collision with anything else that changes those rows is still retried.
pub(super) async fn run_grants(conn: &mut PgConnection, sql: &str) -> Result<(), BackendError> {
    const ATTEMPTS: u32 = 12;
    let locked = format!("SELECT pg_advisory_xact_lock({GRANTS_LOCK}); {sql}");
    let mut delays = RetryDelays::new(Duration::from_millis(10), Duration::from_millis(500));
    let mut attempt = 0;
    loop {
        attempt += 1;
        match sqlx::raw_sql(AssertSqlSafe(locked.as_str()))
            .execute(&mut *conn)
            .await
            .map(drop)
        {
            Ok(()) => return Ok(()),
            Err(sqlx::Error::Database(db))
                if attempt < ATTEMPTS
                    && matches!(db.code().as_deref(), Some("XX000" | "40001" | "40P01")) =>
            {
                tokio::time::sleep(delays.next_delay()).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! What each grant allows is proven end to end (`tests/it/provisioning.rs`, a tenant role
    //! reaches its own schema or database and nothing else); here, the lifecycle of the
    //! storage with its role in both modes.
    #![expect(clippy::unwrap_used, reason = "tests")]

    use testkit::pg::TestDatabase;

    use super::super::{MigrationBackend, PgDatabaseBackend, PgSchemaBackend, ProvisionedStorage};
    use super::*;

    async fn role_exists(database: &TestDatabase, tenant: &TenantSlug) -> bool {
        let mut conn = database.connect().await;
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(tenant.storage_name())
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn each_mode_creates_its_storage_with_the_role_twice_and_drops_both() {
        let database = TestDatabase::create().await;

        let schema = PgSchemaBackend::connect(database.options(), 2)
            .await
            .unwrap();
        let tenant = testkit::unique_slug();
        schema.create_storage_with_role(&tenant).await.unwrap();
        schema.create_storage_with_role(&tenant).await.unwrap();
        assert!(schema.storage_exists(&tenant).await.unwrap());
        assert!(role_exists(&database, &tenant).await, "schema mode");
        schema.drop_storage_with_role(&tenant).await.unwrap();
        assert!(!schema.storage_exists(&tenant).await.unwrap());
        assert!(!role_exists(&database, &tenant).await, "schema mode");

        let per_database = PgDatabaseBackend::connect(database.options())
            .await
            .unwrap();
        let tenant = testkit::unique_slug();
        per_database
            .create_storage_with_role(&tenant)
            .await
            .unwrap();
        per_database
            .create_storage_with_role(&tenant)
            .await
            .unwrap();
        assert!(per_database.storage_exists(&tenant).await.unwrap());
        assert!(role_exists(&database, &tenant).await, "database mode");
        per_database.drop_storage_with_role(&tenant).await.unwrap();
        assert!(!per_database.storage_exists(&tenant).await.unwrap());
        assert!(!role_exists(&database, &tenant).await, "database mode");
    }
}
