//! Reaching each tenant on its own server: one [`TenantStorage`] per tenant server, connected
//! the first time a tenant of that server is worked on, and kept.
//!
//! `default` is `TENANT_DATABASE_URL`. Any other server is reached by the URL it was registered
//! with (`tenantctl servers add`), which holds no password: the PostgreSQL password file
//! (`PGPASSFILE`, or `~/.pgpass`) supplies it, as for every PostgreSQL client.

use std::collections::HashMap;
use std::sync::Arc;

use domain::server::ServerName;
use domain::tenant::TenantSlug;
use engine::backend::BackendError;
use engine::backend::slots::{SlotUsage, SlotUsageProbe};
use engine::{EngineError, EngineOptions, ServerSlots, Target};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::{Mutex, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::platform::{PlatformDb, StoreError};
use crate::tenant_storage::{TenantStorage, default_server};

/// How long the first connection to a tenant server may take before the server counts as
/// unreachable (and the command is given back).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a tenant's server could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "tenant server `{0}` is not registered: `tenantctl servers list` shows the registered servers"
    )]
    Unknown(ServerName),
    #[error("tenant server `{server}` has an invalid URL: {reason}")]
    InvalidUrl { server: ServerName, reason: String },
    #[error("tenant server `{server}`: {source}")]
    Backend {
        server: ServerName,
        #[source]
        source: BackendError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServerError {
    /// As the engine's error about the tenant's storage, so that a command whose server cannot
    /// be reached fails, is retried and is recorded like any other: transient while the server
    /// or the platform database is unreachable, permanent for an invalid or unknown server.
    pub fn into_engine_error(self, tenant: &TenantSlug) -> EngineError {
        let source = match self {
            ServerError::Backend { source, .. } => source,
            ServerError::Store(StoreError::Sql(source)) => BackendError::Sql { source, line: None },
            other => BackendError::InvalidScript(other.to_string()),
        };
        EngineError::Backend {
            target: Target::Tenant(tenant.clone()),
            source: Box::new(source),
        }
    }

    /// Whether a retry may succeed (the server or the platform database is unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            ServerError::Backend { source, .. } => source.is_transient(),
            ServerError::Store(error) => error.is_transient(),
            ServerError::Unknown(_) | ServerError::InvalidUrl { .. } => false,
        }
    }
}

/// How each server's storage is connected.
#[derive(Debug, Clone)]
pub enum Connection {
    /// A pool of up to this many connections per server.
    Pooled { max_connections: u32 },
    /// The migrator's: schema-mode tenants migrate on connections that hold one of the server's
    /// `slots` (shared by every replica), of which this process takes at most `local`.
    Slots {
        slots: u16,
        local: u16,
        shutdown: CancellationToken,
    },
}

/// Every tenant server's storage, by name. Cheap to clone.
#[derive(Clone)]
pub struct TenantServers {
    inner: Arc<Inner>,
}

struct Inner {
    platform: PlatformDb,
    config: Arc<Config>,
    connection: Connection,
    options: EngineOptions,
    /// One cell per server: connecting to one server never waits for another.
    connected: Mutex<HashMap<ServerName, Arc<OnceCell<Reached>>>>,
    /// The slots' usage, read by metric callbacks (which cannot wait for `connected`).
    probes: std::sync::Mutex<Vec<(ServerName, SlotUsageProbe)>>,
}

#[derive(Clone)]
struct Reached {
    storage: TenantStorage,
    slots: Option<ServerSlots>,
}

impl std::fmt::Debug for TenantServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantServers")
            .field("connection", &self.inner.connection)
            .finish_non_exhaustive()
    }
}

impl TenantServers {
    pub fn new(
        platform: PlatformDb,
        config: Arc<Config>,
        connection: Connection,
        options: EngineOptions,
    ) -> Self {
        TenantServers {
            inner: Arc::new(Inner {
                platform,
                config,
                connection,
                options,
                connected: Mutex::new(HashMap::new()),
                probes: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    /// Every server reached through a pool of up to `max_connections` (the provisioner's and
    /// the operators' tools; the migrator uses [`Connection::Slots`]).
    pub fn pooled(platform: PlatformDb, config: Arc<Config>, max_connections: u32) -> Self {
        TenantServers::new(
            platform,
            config,
            Connection::Pooled { max_connections },
            EngineOptions::default(),
        )
    }

    /// The storage of `server`, connecting to it the first time.
    ///
    /// # Errors
    /// [`ServerError`]: an unregistered server, an invalid URL, an unreachable server.
    pub async fn storage(&self, server: &ServerName) -> Result<TenantStorage, ServerError> {
        Ok(self.reach(server).await?.storage)
    }

    /// The slots of `server` (the migrator's [`Connection::Slots`] only).
    ///
    /// # Errors
    /// As [`TenantServers::storage`].
    pub async fn slots(&self, server: &ServerName) -> Result<Option<ServerSlots>, ServerError> {
        Ok(self.reach(server).await?.slots)
    }

    /// The slots of every server reached so far, by name (metrics).
    async fn reached_slots(&self) -> Vec<(ServerName, ServerSlots)> {
        self.inner
            .connected
            .lock()
            .await
            .iter()
            .filter_map(|(name, cell)| Some((name.clone(), cell.get()?.slots.clone()?)))
            .collect()
    }

    /// How this process uses each reached server's slots (the migrator's metrics).
    pub fn slot_usage(&self) -> Vec<(ServerName, SlotUsage)> {
        self.inner
            .probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|(name, probe)| Some((name.clone(), probe.read()?)))
            .collect()
    }

    /// Closes the idle slot connections of every server (the migrator's shutdown).
    pub async fn close_idle(&self) {
        for (_, slots) in self.reached_slots().await {
            slots.close_idle().await;
        }
    }

    async fn reach(&self, server: &ServerName) -> Result<Reached, ServerError> {
        let cell = self
            .inner
            .connected
            .lock()
            .await
            .entry(server.clone())
            .or_default()
            .clone();
        // A server that is down makes its own tenants wait (and retry), and only them.
        cell.get_or_try_init(|| self.connect(server)).await.cloned()
    }

    async fn connect(&self, server: &ServerName) -> Result<Reached, ServerError> {
        let options = self.options_of(server).await?;
        let inner = &self.inner;
        let backend = |source| ServerError::Backend {
            server: server.clone(),
            source,
        };
        // One plain connection first: a server that is down says so at once (a pool's first
        // connection would keep trying for its whole acquire timeout, holding the command).
        let probe = tokio::time::timeout(
            PROBE_TIMEOUT,
            <sqlx::PgConnection as sqlx::Connection>::connect_with(
                &inner.config.tenant_session_options_on(&options),
            ),
        )
        .await;
        match probe {
            Ok(Ok(connection)) => {
                let _ = sqlx::Connection::close(connection).await;
            }
            Ok(Err(error)) => return Err(backend(BackendError::from(error))),
            Err(_) => {
                return Err(backend(BackendError::from(sqlx::Error::PoolTimedOut)));
            }
        }
        Ok(match &inner.connection {
            Connection::Pooled { max_connections } => Reached {
                storage: TenantStorage::connect_to(
                    &options,
                    &inner.config,
                    *max_connections,
                    inner.options,
                )
                .await
                .map_err(backend)?,
                slots: None,
            },
            Connection::Slots {
                slots,
                local,
                shutdown,
            } => {
                let slots = ServerSlots::new(
                    inner.config.tenant_session_options_on(&options),
                    *slots,
                    *local,
                    shutdown.clone(),
                );
                let storage = TenantStorage::connect_with_slots(
                    &options,
                    &inner.config,
                    slots.clone(),
                    inner.options,
                )
                .await
                .map_err(backend)?;
                self.inner
                    .probes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((server.clone(), slots.usage_probe()));
                Reached {
                    storage,
                    slots: Some(slots),
                }
            }
        })
    }

    async fn options_of(&self, server: &ServerName) -> Result<PgConnectOptions, ServerError> {
        if server.is_default() {
            return default_server(&self.inner.config).map_err(|source| ServerError::Backend {
                server: server.clone(),
                source,
            });
        }
        let url = self
            .inner
            .platform
            .tenant_servers()
            .await?
            .into_iter()
            .find(|registered| &registered.name == server)
            .map(|registered| registered.url)
            .ok_or_else(|| ServerError::Unknown(server.clone()))?;
        server_url(&url).map_err(|reason| ServerError::InvalidUrl {
            server: server.clone(),
            reason,
        })
    }
}

/// A tenant server's URL as it may be registered: PostgreSQL, and no password in it (neither
/// in the user information nor as a parameter), since it is stored in the platform database.
///
/// # Errors
/// What is wrong with it, and what to do instead.
pub fn server_url(url: &str) -> Result<PgConnectOptions, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(
            "a tenant server URL starts with postgres:// (e.g. postgres://tenancy_migrator@pg-2:5432/tenants)"
                .to_owned(),
        );
    }
    if crate::config::SecretUrl::new(url.to_owned()).redacted() != url {
        return Err("the URL holds a password, and tenant server URLs are stored in the platform database: leave it out and put it in the PostgreSQL password file (PGPASSFILE) of every process that reaches the server".to_owned());
    }
    url.parse::<PgConnectOptions>().map_err(|e| e.to_string())
}
