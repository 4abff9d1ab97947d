//! The six steps, one file each, and the [`StepContext`] they work with. Every step is
//! idempotent: run twice, it changes nothing the second time (the driver re-runs a step whose
//! record was lost).

mod activate;
mod admin_user;
mod create_storage;
mod migrate;
mod register;
mod seed;

use std::sync::Arc;

use domain::message::{CloudEvent, Event};
use domain::provisioning::Step;
use engine::Catalog;
use sha2::{Digest, Sha256};
use shared::bus::Publisher;
use shared::platform::{PlatformDb, ReleaseRecorder};
use shared::tenant_servers::TenantServers;
use shared::tenant_storage::TenantStorage;
use uuid::Uuid;

use crate::error::StepError;
use crate::request::Request;
use crate::templates::Templates;
use domain::server::ServerName;

/// What the steps work with: the platform database, the tenant servers, the migration sets, the
/// bus, and the record of released migrations. The provisioner publishes its lifecycle events
/// through it too ([`StepContext::publish`]).
pub(crate) struct StepContext {
    pub(crate) platform: PlatformDb,
    servers: TenantServers,
    pub(crate) catalog: Arc<Catalog>,
    publisher: Publisher,
    /// What this process applies joins the released record.
    pub(crate) released: ReleaseRecorder,
    /// Step 3's templates; `None`: templates are off (`PROVISIONER_TEMPLATES=off`).
    pub(crate) templates: Option<Templates>,
}

impl StepContext {
    pub(crate) fn new(
        platform: PlatformDb,
        servers: TenantServers,
        catalog: Arc<Catalog>,
        publisher: Publisher,
    ) -> Self {
        let released = ReleaseRecorder::new(platform.clone(), "provisioner");
        StepContext {
            platform,
            servers,
            catalog,
            publisher,
            released,
            templates: Some(Templates::new()),
        }
    }

    /// The storage of the server the tenant was placed on (by step 1).
    ///
    /// # Errors
    /// The tenant is not registered, or its server cannot be reached.
    pub(crate) async fn storage(&self, request: &Request) -> Result<TenantStorage, StepError> {
        Ok(self.server_and_storage(request).await?.1)
    }

    /// The server the tenant was placed on, and its storage.
    ///
    /// # Errors
    /// As [`StepContext::storage`].
    pub(crate) async fn server_and_storage(
        &self,
        request: &Request,
    ) -> Result<(ServerName, TenantStorage), StepError> {
        let server = self
            .platform
            .server_of(request.tenant_id)
            .await?
            .ok_or_else(|| {
                StepError::transient(format!(
                    "tenant {} is not registered yet",
                    request.tenant_id
                ))
            })?;
        let storage = self.servers.storage(&server).await?;
        Ok((server, storage))
    }

    /// Publishes `data` as an event whose id is derived from `key` and what it says, so that a
    /// run that publishes it again after a crash publishes the same event (stored once by the
    /// auditor).
    ///
    /// # Errors
    /// The broker refused or did not confirm it.
    pub(crate) async fn publish<T: Event>(&self, key: &str, data: T) -> Result<(), StepError> {
        let mut event: CloudEvent<T> = self.publisher.event(data);
        let digest = Sha256::digest(
            [
                format!("tenancy/provisioning/{key}/").as_bytes(),
                &event.content_digest(),
            ]
            .concat(),
        );
        let mut bytes = [0_u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        event.id = Uuid::new_v8(bytes);
        self.publisher.publish(&event).await?;
        Ok(())
    }
}

/// Performs `step` for `request`.
pub(crate) async fn run(
    context: &StepContext,
    step: Step,
    request: &Request,
) -> Result<(), StepError> {
    match step {
        Step::Register => register::run(context, request).await,
        Step::CreateStorage => create_storage::run(context, request).await,
        Step::Migrate => migrate::run(context, request).await,
        Step::Seed => seed::run(context, request).await,
        Step::AdminUser => admin_user::run(context, request).await,
        Step::Activate => activate::run(context, request).await,
    }
}
