//! Step 5: the tenant administrator from the registration, invited by the tenant-seeds set's
//! admin-user script (`admin_user.sql`), run in the tenant's schema or database with the
//! administrator bound as parameters. The built-in script stores no password and no token (the
//! application issues the invitation). Scripts are idempotent: a second run finds the
//! administrator there and adds nothing.

use engine::AdminValues;

use super::StepContext;
use crate::error::StepError;
use crate::request::Request;

pub(super) async fn run(context: &StepContext, request: &Request) -> Result<(), StepError> {
    let values = AdminValues {
        tenant_id: request.tenant_id,
        tenant_slug: request.slug.as_str(),
        tenant_name: &request.name,
        admin_email: &request.admin_email,
        admin_name: &request.admin_name,
    };
    context
        .storage(request)
        .await?
        .insert_admin(
            &request.slug,
            request.isolation,
            &context.catalog.tenant_seeds,
            &values,
        )
        .await?;
    Ok(())
}
