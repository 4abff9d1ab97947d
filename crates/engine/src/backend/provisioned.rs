//! What the fleet's backends (PostgreSQL, a schema or a database per tenant) do beyond
//! migrating: a tenant's storage with its role, as provisioning creates it, and the
//! fingerprints of tenants' schemas, read in as few round trips as the isolation mode allows.

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use sqlx::{ConnectOptions as _, Connection as _};

use super::pg::fingerprint::read_fingerprints;
use super::{BackendError, MigrationBackend, PgDatabaseBackend, PgSchemaBackend};
use crate::fingerprint::Fingerprint;
use domain::tenant::TenantSlug;

/// Tenant databases read at once by [`PgDatabaseBackend`]'s fingerprints: each needs a
/// connection of its own, and a handful keeps a server busy without crowding it.
const DATABASES_AT_ONCE: usize = 8;

/// A backend whose tenants are provisioned storage: created with their role, dropped with it,
/// and fingerprinted.
pub trait ProvisionedStorage: MigrationBackend {
    /// The tenant's storage and role (idempotent).
    fn create_with_role(
        &self,
        tenant: &TenantSlug,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Drops the tenant's storage and role.
    fn drop_with_role(
        &self,
        tenant: &TenantSlug,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The fingerprint of each of `tenants`; a tenant whose storage does not exist gets an
    /// empty one.
    fn fingerprints(
        &self,
        tenants: &[TenantSlug],
    ) -> impl Future<Output = Result<BTreeMap<TenantSlug, Fingerprint>, BackendError>> + Send;
}

impl ProvisionedStorage for PgSchemaBackend {
    async fn create_with_role(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        self.create_storage_with_role(tenant).await
    }

    async fn drop_with_role(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        self.drop_storage_with_role(tenant).await
    }

    /// Every tenant in one catalog query: the caller sizes the batch.
    async fn fingerprints(
        &self,
        tenants: &[TenantSlug],
    ) -> Result<BTreeMap<TenantSlug, Fingerprint>, BackendError> {
        let schemas: Vec<(String, String)> = tenants
            .iter()
            .map(|t| (t.storage_name(), t.storage_name()))
            .collect();
        let mut conn = self.pool().acquire().await?;
        let mut read = read_fingerprints(&mut conn, &schemas).await?;
        Ok(tenants
            .iter()
            .map(|t| {
                let fingerprint = read.remove(&t.storage_name()).unwrap_or_default();
                (t.clone(), fingerprint)
            })
            .collect())
    }
}

impl ProvisionedStorage for PgDatabaseBackend {
    async fn create_with_role(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        self.create_storage_with_role(tenant).await
    }

    async fn drop_with_role(&self, tenant: &TenantSlug) -> Result<(), BackendError> {
        self.drop_storage_with_role(tenant).await
    }

    /// One connection per tenant database (a catalog is per database), a few at a time.
    async fn fingerprints(
        &self,
        tenants: &[TenantSlug],
    ) -> Result<BTreeMap<TenantSlug, Fingerprint>, BackendError> {
        // Owned slugs: a closure over borrowed ones is not general enough for a `Send` future.
        stream::iter(tenants.to_vec())
            .map(|tenant| async move {
                let name = tenant.storage_name();
                let mut conn = match self.tenant_options(&tenant).connect().await {
                    Ok(conn) => conn,
                    // No such database: nothing of the tenant's shape is there.
                    Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3D000") => {
                        return Ok((tenant, Fingerprint::default()));
                    }
                    Err(e) => return Err(e.into()),
                };
                let read = read_fingerprints(&mut conn, &[("public".to_owned(), name)]).await;
                let _ = conn.close().await;
                let fingerprint = read?.remove("public").unwrap_or_default();
                Ok((tenant, fingerprint))
            })
            .buffer_unordered(DATABASES_AT_ONCE)
            .try_collect()
            .await
    }
}
