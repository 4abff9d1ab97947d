//! Scratch tenants: built like provisioned ones (schema or database, and role), used for one
//! piece of work (an expected fingerprint, a template), then dropped however the work ends.

use std::future::Future;

use domain::tenant::TenantSlug;

use super::{Engine, backend_error};
use crate::backend::ProvisionedStorage;
use crate::error::EngineError;
use crate::target::Target;

impl<B: ProvisionedStorage> Engine<B> {
    /// Runs `work` on a scratch tenant (slug `<prefix>_<hex>`), dropped afterwards however
    /// `work` ends.
    pub(super) async fn with_scratch<T, F, Fut>(
        &self,
        prefix: &str,
        work: F,
    ) -> Result<T, EngineError>
    where
        F: FnOnce(TenantSlug) -> Fut,
        Fut: Future<Output = Result<T, EngineError>>,
    {
        let scratch = TenantSlug::parse(&format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ))
        .unwrap_or_else(|e| unreachable!("a scratch slug is valid: {e}"));
        let target = Target::Tenant(scratch.clone());
        let failed = backend_error(&target);
        let done = async {
            self.backend()
                .create_storage_with_role(&scratch)
                .await
                .map_err(&failed)?;
            work(scratch.clone()).await
        }
        .await;
        let dropped = self.backend().drop_storage_with_role(&scratch).await;
        let value = done?;
        dropped.map_err(&failed)?;
        Ok(value)
    }
}
