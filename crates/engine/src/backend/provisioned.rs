//! What the fleet's backends (PostgreSQL, a schema or a database per tenant) do beyond
//! migrating: a tenant's storage with its role, as provisioning creates it, and the
//! fingerprints of tenants' schemas and their catalog stamps, read in as few round trips as the
//! isolation mode allows.

use std::collections::BTreeMap;
use std::future::Future;

use super::{BackendError, MigrationBackend};
use crate::fingerprint::{CatalogStamp, Fingerprint};
use domain::tenant::TenantSlug;

/// A backend whose tenants are provisioned storage: created with their role, dropped with it,
/// and fingerprinted. Implemented by [`super::PgSchemaBackend`] and
/// [`super::PgDatabaseBackend`], each in its own module.
pub trait ProvisionedStorage: MigrationBackend {
    /// The tenant's storage and role (idempotent).
    fn create_storage_with_role(
        &self,
        tenant: &TenantSlug,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Drops the tenant's storage and role.
    fn drop_storage_with_role(
        &self,
        tenant: &TenantSlug,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The fingerprint of each of `tenants`; a tenant whose storage does not exist gets an
    /// empty one.
    fn fingerprints(
        &self,
        tenants: &[TenantSlug],
    ) -> impl Future<Output = Result<BTreeMap<TenantSlug, Fingerprint>, BackendError>> + Send;

    /// The catalog stamp of each of `tenants` (see [`CatalogStamp`]); a tenant whose storage
    /// does not exist has none. A stamp read before a fingerprint vouches for that fingerprint
    /// until it changes; read after, it could hide a change made in between.
    fn catalog_stamps(
        &self,
        tenants: &[TenantSlug],
    ) -> impl Future<Output = Result<BTreeMap<TenantSlug, CatalogStamp>, BackendError>> + Send;
}
