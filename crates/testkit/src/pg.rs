//! Per-test PostgreSQL databases on the local server.
//!
//! The server is `PG_TEST_URL` or `postgres://postgres@127.0.0.1:5432/postgres`. Every test gets
//! a database named `tt_<pid>_<random>`; it is dropped when the [`TestDatabase`] drops, and a
//! later run drops those whose process is gone (a killed test cannot clean up after itself).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::TEST_PREFIX;

pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Connection options of the test server's administrative database.
pub fn server_options() -> PgConnectOptions {
    let url = std::env::var("PG_TEST_URL").unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
    PgConnectOptions::from_str(&url)
        .unwrap_or_else(|e| panic!("PG_TEST_URL is not a PostgreSQL URL: {e}"))
        .disable_statement_logging()
}

/// Connects to the test server, or fails the test saying how to start it.
pub async fn admin_connection() -> PgConnection {
    let options = server_options();
    match options.connect().await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {}:{} ({e}). Start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
             or point PG_TEST_URL at a server.",
            options.get_host(),
            options.get_port()
        ),
    }
}

/// A database of the test's own.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    options: PgConnectOptions,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let mut admin = admin_connection().await;
        sweep_stale(&mut admin).await;
        let name = format!(
            "{TEST_PREFIX}{}_{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let _ = admin.close().await;
        TestDatabase {
            options: server_options().database(&name),
            name,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Options for connecting to this database.
    pub fn options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// `postgres://…/<name>` for configurations that take a URL.
    pub fn url(&self) -> String {
        let server = server_options();
        format!(
            "postgres://{}@{}:{}/{}",
            server.get_username(),
            server.get_host(),
            server.get_port(),
            self.name
        )
    }

    pub async fn connect(&self) -> PgConnection {
        self.options
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to test database {}: {e}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        drop_databases_now(vec![self.name.clone()]);
    }
}

/// Drops `name` (and any tenant databases named after the same process).
pub async fn drop_database(admin: &mut PgConnection, name: &str) {
    let sql = format!(
        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        name.replace('"', "\"\"")
    );
    let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(admin).await;
}

/// Drops roles from synchronous code (tenant roles of a test, once its databases are gone).
pub fn drop_roles_now(names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            let mut admin = server_options().connect().await.ok()?;
            for name in &names {
                let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP ROLE IF EXISTS \"{}\"",
                    name.replace('"', "\"\"")
                )))
                .execute(&mut admin)
                .await;
            }
            let _ = admin.close().await;
            Some(())
        })
    });
    let _ = worker.join();
}

/// Drops test databases (and database-per-tenant test tenants) whose process has exited, then
/// the tenant roles of those processes.
async fn sweep_stale(admin: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'tt\\_%' OR datname LIKE 'tenant\\_tt\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    for name in names {
        let pid = name
            .trim_start_matches("tenant_")
            .trim_start_matches(TEST_PREFIX)
            .split('_')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            drop_database(admin, &name).await;
        }
    }
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT rolname FROM pg_roles WHERE rolname LIKE 'tenant\\_tt\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for role in roles {
        let pid = role
            .trim_start_matches("tenant_")
            .trim_start_matches(TEST_PREFIX)
            .split('_')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok());
        if !pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{role}\"")))
                .execute(&mut *admin)
                .await;
        }
    }
}

/// Drops databases from synchronous code (a `Drop` impl), waiting until they are gone. `Drop`
/// runs inside the test's runtime, which cannot be blocked on; a short-lived thread with a
/// runtime of its own does the async work.
pub fn drop_databases_now(names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            let mut admin = server_options().connect().await.ok()?;
            for name in &names {
                drop_database(&mut admin, name).await;
            }
            let _ = admin.close().await;
            Some(())
        })
    });
    let _ = worker.join();
}
