//! The fingerprint a set gives a tenant at a version: the set applied to a scratch tenant (its
//! schema or database and role, as provisioning creates them), read, then dropped. What every
//! tenant of that isolation mode at that version should look like, whatever its name.

use domain::Version;

use super::{Engine, backend_error};
use crate::backend::ProvisionedStorage;
use crate::error::EngineError;
use crate::fingerprint::Fingerprint;
use crate::source::MigrationSet;
use crate::target::Target;

impl<B: ProvisionedStorage> Engine<B> {
    /// The fingerprint of a tenant built by `set` up to `to` (every migration when `None`),
    /// from a scratch tenant that is dropped afterwards, however it ends.
    ///
    /// # Errors
    /// The server cannot be reached, or a migration fails on the scratch tenant.
    pub async fn expected_fingerprint(
        &self,
        set: &MigrationSet,
        to: Option<Version>,
    ) -> Result<Fingerprint, EngineError> {
        self.with_scratch("fp", |scratch| async move {
            let target = Target::Tenant(scratch.clone());
            self.apply(&target, set, to, &()).await?;
            let mut read = self
                .backend()
                .fingerprints(std::slice::from_ref(&scratch))
                .await
                .map_err(backend_error(&target))?;
            Ok(read.remove(&scratch).unwrap_or_default())
        })
        .await
    }
}
