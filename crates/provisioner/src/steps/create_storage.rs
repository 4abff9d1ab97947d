//! Step 2: the schema or database `tenant_<slug>` with its history table, and the tenant's
//! role, which can reach its own schema or database and nothing else. With templates on, a
//! database-isolated tenant's database is a copy of the set's template database, finished and
//! checked here (see `crate::templates`), so that step 3 finds nothing to apply; a schema is
//! always created empty (its template is applied by step 3).

use domain::Isolation;

use super::StepContext;
use crate::error::StepError;
use crate::request::Request;

pub(super) async fn run(context: &StepContext, request: &Request) -> Result<(), StepError> {
    let (server, storage) = context.server_and_storage(request).await?;
    match (&context.templates, request.isolation) {
        (Some(templates), Isolation::Database) => {
            let outcome = templates
                .create_database(
                    &server,
                    &storage,
                    &request.slug,
                    &context.catalog.tenant,
                    &context.platform,
                )
                .await?;
            tracing::debug!(?outcome, "tenant template");
        }
        _ => storage.create(&request.slug, request.isolation).await?,
    }
    Ok(())
}
