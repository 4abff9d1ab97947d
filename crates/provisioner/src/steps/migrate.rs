//! Step 3: every tenant migration, through the engine (its lock, checksums and history). What
//! it applied joins the released record (`shared::platform::ReleaseRecorder`).

use super::StepContext;
use crate::error::StepError;
use crate::request::Request;

pub(super) async fn run(context: &StepContext, request: &Request) -> Result<(), StepError> {
    let report = context
        .storage(request)
        .await?
        .apply(
            &request.slug,
            request.isolation,
            &context.catalog.tenant,
            None,
            &(),
        )
        .await?;
    tracing::debug!(applied = report.steps.len(), "tenant migrations applied");
    if let Some(reached) = report.after {
        context
            .released
            .applied(&context.catalog.tenant, reached)
            .await;
    }
    Ok(())
}
