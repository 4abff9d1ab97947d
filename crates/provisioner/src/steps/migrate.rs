//! Step 3: every tenant migration, through the engine (its lock, checksums and history). What
//! it applied joins the released record (`shared::platform::ReleaseRecorder`).

use crate::port::{Request, StepError};
use crate::provisioner::Provisioner;

pub(super) async fn run(provisioner: &Provisioner, request: &Request) -> Result<(), StepError> {
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
    if let Some(reached) = report.after {
        provisioner
            .released
            .applied(&provisioner.catalog.tenant, reached)
            .await;
    }
    Ok(())
}
