//! Step 3: every tenant migration, through the engine (its lock, checksums and history). The
//! first tenant a process migrates records its sets as released (`Provisioner::ensure_released`).

use crate::port::{Request, StepError};
use crate::provisioner::Provisioner;

pub(super) async fn run(provisioner: &Provisioner, request: &Request) -> Result<(), StepError> {
    provisioner.ensure_released().await?;
    let report = provisioner
        .storage
        .apply(
            &request.slug,
            request.isolation,
            &provisioner.catalog.tenant,
            None,
            &(),
        )
        .await?;
    tracing::debug!(applied = report.steps.len(), "tenant migrations applied");
    Ok(())
}
