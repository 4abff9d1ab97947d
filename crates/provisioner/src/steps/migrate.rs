//! Step 3: the tenant migrations. A schema-isolated tenant first gets the verified template of
//! the tenant set when templates are on (one transaction, checked by fingerprint; see
//! `crate::templates`); the engine's apply then runs whatever is pending, with its lock,
//! checksums and history: nothing after a template, every migration otherwise (a fallback, or a
//! resumed attempt). A database-isolated tenant's template was copied by step 2, which leaves
//! nothing pending either. What it reached joins the released record
//! (`shared::platform::ReleaseRecorder`).

use domain::Isolation;

use super::StepContext;
use crate::error::StepError;
use crate::request::Request;

pub(super) async fn run(context: &StepContext, request: &Request) -> Result<(), StepError> {
    let (server, storage) = context.server_and_storage(request).await?;
    let set = &context.catalog.tenant;
    if let (Some(templates), Isolation::Schema) = (&context.templates, request.isolation) {
        let outcome = templates
            .instantiate(&context.platform, &server, &storage, &request.slug, set)
            .await;
        tracing::debug!(?outcome, "tenant template");
    }
    let report = storage
        .apply(&request.slug, request.isolation, set, None, &())
        .await?;
    tracing::debug!(applied = report.steps.len(), "tenant migrations applied");
    if let Some(reached) = report.after {
        context.released.applied(set, reached).await;
    }
    Ok(())
}
