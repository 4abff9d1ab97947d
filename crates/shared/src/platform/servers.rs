//! `tenant_servers` and each tenant's placement (`tenants.server`): the registry of the
//! PostgreSQL servers that hold tenants, and the choice of a server for a new tenant.
//!
//! Placement is the least loaded open server with room: the fewest tenants relative to its
//! capacity (a server without a capacity counts as having room for as many as the largest
//! capacity, or is compared by tenant count alone when none has one), ties by name. It is made
//! once per tenant, in the transaction that inserts its row (`register_tenant`), placements
//! taking turns: concurrent placements never overfill a server, a redelivered registration
//! finds the placement already made, and a registration that cannot be placed leaves no row.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{PlatformDb, StoreError, not_migrated};
use domain::server::{ServerName, ServerState};

/// `$select` after `load`: tenants per server, deleted ones left out, in one pass over
/// `tenants` (a tenant not placed yet counts for `default`, where a provisioner of the previous
/// release creates it).
macro_rules! with_load {
    ($select:literal) => {
        concat!(
            "WITH load AS (SELECT coalesce(server, 'default') AS server, count(*) AS tenants
                             FROM tenants WHERE status <> 'deleted' GROUP BY 1) ",
            $select
        )
    };
}

/// A row of `tenant_servers`, with its tenant count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantServer {
    pub name: ServerName,
    /// Without a password (the services read it from PGPASSFILE); `default`'s is
    /// TENANT_DATABASE_URL's, redacted.
    pub url: String,
    pub capacity: Option<u32>,
    pub state: ServerState,
    /// Tenants placed on it that are not deleted.
    pub tenants: u64,
    pub created_at: DateTime<Utc>,
}

/// Why a tenant could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "no tenant server is open with room for a new tenant: `tenantctl servers list` shows each one's state and load; `tenantctl servers add` or `tenantctl servers open` makes room"
    )]
    NoRoom,
    #[error(
        "the registration pins tenant server `{0}`, which is not registered: `tenantctl servers add {0} URL` registers it"
    )]
    UnknownServer(ServerName),
    #[error(
        "the registration pins tenant server `{0}`, which is closed to new tenants: `tenantctl servers open {0}` reopens it"
    )]
    Closed(ServerName),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PlacementError {
    /// Whether a retry may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            PlacementError::Store(error) => error.is_transient(),
            _ => false,
        }
    }
}

/// Why a server could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum ServerChangeError {
    #[error("tenant server `{0}` is already registered: `tenantctl servers list` shows it")]
    Exists(ServerName),
    #[error("no tenant server `{0}` is registered: `tenantctl servers list` shows the servers")]
    Unknown(ServerName),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PlatformDb {
    /// Every tenant server with its load, by name.
    ///
    /// # Errors
    /// A database error; [`StoreError::NotMigrated`] before the platform migrations ran.
    pub async fn tenant_servers(&self) -> Result<Vec<TenantServer>, StoreError> {
        let pool = self.postgres()?;
        let rows = sqlx::query(with_load!(
            "SELECT s.name, s.url, s.capacity, s.state, s.created_at, coalesce(l.tenants, 0) AS tenants
               FROM tenant_servers s LEFT JOIN load l ON l.server = s.name
              ORDER BY s.name"
        ))
        .fetch_all(pool)
        .await
        .map_err(not_migrated("tenant_servers"))?;
        rows.iter().map(server_row).collect()
    }

    /// Registers a server, open. `url` must not hold a password.
    ///
    /// # Errors
    /// [`ServerChangeError::Exists`], or a database error.
    pub async fn add_tenant_server(
        &self,
        name: &ServerName,
        url: &str,
        capacity: Option<u32>,
    ) -> Result<(), ServerChangeError> {
        let pool = self.postgres()?;
        let inserted = sqlx::query(
            "INSERT INTO tenant_servers (name, url, capacity) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(name.as_str())
        .bind(url)
        .bind(capacity.map(|c| i32::try_from(c).unwrap_or(i32::MAX)))
        .execute(pool)
        .await
        .map_err(not_migrated("tenant_servers"))?;
        if inserted.rows_affected() == 0 {
            return Err(ServerChangeError::Exists(name.clone()));
        }
        Ok(())
    }

    /// Sets a server's state; returns the state it had.
    ///
    /// # Errors
    /// [`ServerChangeError::Unknown`], or a database error.
    pub async fn set_tenant_server_state(
        &self,
        name: &ServerName,
        state: ServerState,
    ) -> Result<ServerState, ServerChangeError> {
        let pool = self.postgres()?;
        let before: Option<String> = sqlx::query_scalar(
            "UPDATE tenant_servers s SET state = $2, updated_at = now()
               FROM (SELECT name, state FROM tenant_servers WHERE name = $1 FOR UPDATE) old
              WHERE s.name = old.name
              RETURNING old.state",
        )
        .bind(name.as_str())
        .bind(state.as_str())
        .fetch_optional(pool)
        .await
        .map_err(not_migrated("tenant_servers"))?;
        let before = before.ok_or_else(|| ServerChangeError::Unknown(name.clone()))?;
        Ok(before.parse().map_err(StoreError::InvalidRow)?)
    }

    /// Records the URL `default` stands for (TENANT_DATABASE_URL, redacted), for display.
    ///
    /// # Errors
    /// A database error.
    pub async fn record_default_server_url(&self, redacted: &str) -> Result<(), StoreError> {
        let pool = self.postgres()?;
        sqlx::query(
            "UPDATE tenant_servers SET url = $1, updated_at = now() WHERE name = 'default' AND url <> $1",
        )
        .bind(redacted)
        .execute(pool)
        .await
        .map_err(not_migrated("tenant_servers"))?;
        Ok(())
    }

    /// Chooses the server of a new tenant, inside the registering transaction `tx`:
    /// `pinned`, or the least loaded open server with room. Placements take turns (a
    /// transaction-scoped advisory lock, which needs no right on `tenant_servers`), so two never
    /// both take a server's last place; each is one short read.
    ///
    /// # Errors
    /// [`PlacementError`]: no room, a pinned server that is unknown or closed.
    pub(crate) async fn choose_server(
        tx: &mut sqlx::PgConnection,
        pinned: Option<&ServerName>,
    ) -> Result<ServerName, PlacementError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(placement_lock_key())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let candidates = sqlx::query(with_load!(
            "SELECT s.name, s.capacity, s.state, coalesce(l.tenants, 0) AS tenants
               FROM tenant_servers s LEFT JOIN load l ON l.server = s.name
              WHERE s.state <> 'closed' AND ($1::text IS NULL OR s.name = $1)
              ORDER BY s.name"
        ))
        .bind(pinned.map(ServerName::as_str))
        .fetch_all(&mut *tx)
        .await
        .map_err(not_migrated("tenant_servers"))?;
        let mut choices = Vec::with_capacity(candidates.len());
        for row in &candidates {
            let state: String = row.try_get("state").map_err(StoreError::from)?;
            let capacity: Option<i32> = row.try_get("capacity").map_err(StoreError::from)?;
            let tenants: i64 = row.try_get("tenants").map_err(StoreError::from)?;
            choices.push(Candidate {
                name: row.try_get("name").map_err(StoreError::from)?,
                open: state == ServerState::Open.as_str(),
                capacity: capacity.and_then(|c| u64::try_from(c).ok()),
                tenants: u64::try_from(tenants).unwrap_or(0),
            });
        }
        let chosen = match pinned {
            // Pinned is an operator's choice: a draining or full server takes it.
            Some(name) => match choices.first() {
                Some(candidate) => candidate.name.clone(),
                None => {
                    let known: Option<String> =
                        sqlx::query_scalar("SELECT state FROM tenant_servers WHERE name = $1")
                            .bind(name.as_str())
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(StoreError::from)?;
                    return Err(match known {
                        Some(_) => PlacementError::Closed(name.clone()),
                        None => PlacementError::UnknownServer(name.clone()),
                    });
                }
            },
            None => least_loaded(&choices)
                .ok_or(PlacementError::NoRoom)?
                .to_owned(),
        };
        ServerName::parse(&chosen).map_err(|e| StoreError::InvalidRow(e.to_string()).into())
    }

    /// Where the tenant lives (`default` for a tenant not placed yet); `None` for an unknown
    /// tenant.
    ///
    /// # Errors
    /// A database error.
    pub async fn server_of(&self, tenant: Uuid) -> Result<Option<ServerName>, StoreError> {
        let pool = self.postgres()?;
        let server: Option<Option<String>> =
            sqlx::query_scalar("SELECT server FROM tenants WHERE id = $1")
                .bind(tenant)
                .fetch_optional(pool)
                .await
                .map_err(not_migrated("tenants"))?;
        server
            .map(|server| {
                server.map_or_else(
                    || Ok(ServerName::default_server()),
                    |name| {
                        ServerName::parse(&name).map_err(|e| StoreError::InvalidRow(e.to_string()))
                    },
                )
            })
            .transpose()
    }
}

/// The placements' advisory lock.
fn placement_lock_key() -> i64 {
    super::advisory_key("tenancy/placement")
}

/// A server a new tenant may go to, as the placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub name: String,
    pub open: bool,
    pub capacity: Option<u64>,
    pub tenants: u64,
}

/// The least loaded open server with room: the lowest share of its capacity in use (a server
/// without a capacity is compared by its tenant count against the others' capacities, so an
/// unbounded server is not preferred until it is emptier), ties by fewer tenants, then by name.
pub(crate) fn least_loaded(candidates: &[Candidate]) -> Option<&str> {
    let largest = candidates
        .iter()
        .filter_map(|c| c.capacity)
        .max()
        .unwrap_or(1)
        .max(1);
    candidates
        .iter()
        .filter(|c| c.open && c.capacity.is_none_or(|capacity| c.tenants < capacity))
        .min_by(|a, b| {
            // tenants / capacity compared without division: a.t * b.c vs b.t * a.c.
            let (ca, cb) = (a.capacity.unwrap_or(largest), b.capacity.unwrap_or(largest));
            (u128::from(a.tenants) * u128::from(cb))
                .cmp(&(u128::from(b.tenants) * u128::from(ca)))
                .then(a.tenants.cmp(&b.tenants))
                .then(a.name.cmp(&b.name))
        })
        .map(|c| c.name.as_str())
}

fn server_row(row: &sqlx::postgres::PgRow) -> Result<TenantServer, StoreError> {
    let name: String = row.try_get("name")?;
    let state: String = row.try_get("state")?;
    let capacity: Option<i32> = row.try_get("capacity")?;
    let tenants: i64 = row.try_get("tenants")?;
    Ok(TenantServer {
        name: ServerName::parse(&name).map_err(|e| StoreError::InvalidRow(e.to_string()))?,
        url: row.try_get("url")?,
        capacity: capacity.and_then(|c| u32::try_from(c).ok()),
        state: state.parse().map_err(StoreError::InvalidRow)?,
        tenants: u64::try_from(tenants).unwrap_or(0),
        created_at: row.try_get("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use domain::Isolation;
    use domain::Version;
    use domain::tenant::TenantSlug;
    use engine::{Catalog, Engine, EngineOptions, PgSchemaBackend, Target};
    use testkit::pg::TestDatabase;

    use super::*;
    use crate::platform::deploys::NewDeploy;
    use crate::platform::tenants::Registration;

    async fn migrated() -> (TestDatabase, PlatformDb) {
        let database = TestDatabase::create().await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect_with(database.options())
            .await
            .unwrap();
        let catalog = Catalog::load(None).unwrap();
        Engine::new(PgSchemaBackend::new(pool.clone()), EngineOptions::default())
            .apply(&Target::Platform, &catalog.platform, None, &())
            .await
            .unwrap();
        (database, PlatformDb::Postgres(pool))
    }

    async fn register(
        platform: &PlatformDb,
        pinned: Option<&str>,
    ) -> Result<ServerName, PlacementError> {
        let id = Uuid::new_v4();
        let slug = TenantSlug::parse(&format!("t_{}", &id.simple().to_string()[..12])).unwrap();
        let pinned = pinned.map(|p| ServerName::parse(p).unwrap());
        match platform
            .register_tenant(
                id,
                &slug,
                "Fixture",
                Isolation::Schema,
                None,
                pinned.as_ref(),
            )
            .await?
        {
            Registration::Registered { server, .. } => {
                sqlx::query("UPDATE tenants SET status = 'active' WHERE id = $1")
                    .bind(id)
                    .execute(platform.postgres().unwrap())
                    .await
                    .unwrap();
                Ok(server)
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_placements_never_overfill_a_server() {
        let (_database, platform) = migrated().await;
        let name = |s: &str| ServerName::parse(s).unwrap();
        platform
            .add_tenant_server(&name("small"), "postgres://x@small/t", Some(4))
            .await
            .unwrap();
        platform
            .set_tenant_server_state(&ServerName::default_server(), ServerState::Draining)
            .await
            .unwrap();
        // Sixteen registrations at once for four places: four placed, twelve refused, no row.
        let placed =
            futures_util::future::join_all((0..16).map(|_| register(&platform, None))).await;
        let ok = placed.iter().filter(|p| p.is_ok()).count();
        let refused = placed
            .iter()
            .filter(|p| matches!(p, Err(PlacementError::NoRoom)))
            .count();
        assert_eq!((ok, refused), (4, 12), "{placed:?}");
        let servers = platform.tenant_servers().await.unwrap();
        let small = servers.iter().find(|s| s.name.as_str() == "small").unwrap();
        assert_eq!(small.tenants, 4);
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
            .fetch_one(platform.postgres().unwrap())
            .await
            .unwrap();
        assert_eq!(rows, 4, "a registration no server can take leaves no row");

        // Pinned: a draining server takes it; an unknown one or a closed one does not.
        assert_eq!(
            register(&platform, Some("default")).await.unwrap().as_str(),
            "default"
        );
        assert!(matches!(
            register(&platform, Some("nowhere")).await,
            Err(PlacementError::UnknownServer(_))
        ));
        platform
            .set_tenant_server_state(&name("small"), ServerState::Closed)
            .await
            .unwrap();
        assert!(matches!(
            register(&platform, Some("small")).await,
            Err(PlacementError::Closed(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deploy_lists_its_tenants_in_turns_across_the_servers_or_one_servers_only() {
        let (_database, platform) = migrated().await;
        for server in ["pg-a", "pg-b"] {
            platform
                .add_tenant_server(
                    &ServerName::parse(server).unwrap(),
                    "postgres://x@h/t",
                    None,
                )
                .await
                .unwrap();
        }
        for _ in 0..3 {
            register(&platform, Some("pg-a")).await.unwrap();
        }
        register(&platform, Some("pg-b")).await.unwrap();
        register(&platform, Some("default")).await.unwrap();
        let deploy = |server: Option<&str>| NewDeploy {
            id: Uuid::new_v4(),
            target_version: Version::new(20_300_101_000_000).unwrap(),
            platform_version: Version::ZERO,
            operator: "sre-ana".into(),
            canary: 0,
            server: server.map(|s| ServerName::parse(s).unwrap()),
        };
        let listed: Vec<String> = platform
            .record_deploy(&deploy(None))
            .await
            .unwrap()
            .iter()
            .map(|t| t.server.to_string())
            .collect();
        assert_eq!(listed, ["default", "pg-a", "pg-b", "pg-a", "pg-a"]);
        let only_a = platform.record_deploy(&deploy(Some("pg-a"))).await.unwrap();
        assert_eq!(only_a.len(), 3);
        assert!(only_a.iter().all(|t| t.server.as_str() == "pg-a"));
    }

    fn server(name: &str, capacity: Option<u64>, tenants: u64) -> Candidate {
        Candidate {
            name: name.into(),
            open: true,
            capacity,
            tenants,
        }
    }

    #[test]
    fn the_least_loaded_open_server_with_room_is_chosen() {
        let servers = [
            server("a", None, 10),
            server("b", None, 4),
            server("c", None, 4),
        ];
        assert_eq!(least_loaded(&servers), Some("b"), "fewest, then by name");

        let servers = [server("small", Some(10), 5), server("big", Some(100), 20)];
        assert_eq!(least_loaded(&servers), Some("big"), "by share of capacity");

        let servers = [server("full", Some(3), 3), server("b", None, 50)];
        assert_eq!(
            least_loaded(&servers),
            Some("b"),
            "a full server is skipped"
        );

        let mut draining = server("a", None, 0);
        draining.open = false;
        assert_eq!(
            least_loaded(&[draining, server("b", None, 9)]),
            Some("b"),
            "a draining server takes no new tenant"
        );
        assert_eq!(least_loaded(&[server("full", Some(1), 1)]), None);
        assert_eq!(least_loaded(&[]), None);
    }
}
