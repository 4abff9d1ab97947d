//! Step 2: the schema or database `tenant_<slug>` with its history table, and the tenant's
//! role, which can reach its own schema or database and nothing else.

use super::StepContext;
use crate::error::StepError;
use crate::request::Request;

pub(super) async fn run(context: &StepContext, request: &Request) -> Result<(), StepError> {
    context
        .storage(request)
        .await?
        .create(&request.slug, request.isolation)
        .await?;
    Ok(())
}
