//! Step 4: the structural seed (default settings), itself a versioned set.

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
            &context.catalog.tenant_seeds,
            None,
            &(),
        )
        .await?;
    if let Some(reached) = report.after {
        context
            .released
            .applied(&context.catalog.tenant_seeds, reached)
            .await;
    }
    Ok(())
}
