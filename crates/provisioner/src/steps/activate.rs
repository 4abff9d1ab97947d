//! Step 6: status `active`, with the schema version the tenant was created at. A deploy that
//! listed the fleet while this tenant was provisioning, to a version this build does not have,
//! gets the tenant too: activation enqueues it there and publishes its `migrate.tenant`
//! (`shared::platform::deploys` explains why nothing falls between the two).

use domain::Version;
use domain::message::MigrateTenant;
use uuid::Uuid;

use super::StepContext;
use crate::error::StepError;
use crate::request::Request;

pub(super) async fn run(context: &StepContext, request: &Request) -> Result<(), StepError> {
    let standing = context
        .storage(request)
        .await?
        .status(&request.slug, request.isolation, &context.catalog.tenant)
        .await?;
    if !standing.pending.is_empty() {
        return Err(StepError::permanent(format!(
            "{} tenant migrations are still pending: the tenant cannot be activated",
            standing.pending.len()
        )));
    }
    let version = standing.applied_version.unwrap_or(Version::ZERO);
    if let Some((deploy, target)) = context
        .platform
        .activate_tenant(request.tenant_id, version)
        .await?
    {
        enqueue_migration(context, request.tenant_id, deploy, target).await?;
        context
            .platform
            .mark_published(deploy, &[request.tenant_id])
            .await?;
    }
    Ok(())
}

/// Publishes the tenant's `migrate.tenant` for `deploy`, under an id of its own, so that
/// publishing it again after a crash is the same command.
async fn enqueue_migration(
    context: &StepContext,
    tenant: Uuid,
    deploy: Uuid,
    target: Version,
) -> Result<(), StepError> {
    let command = MigrateTenant {
        tenant_id: tenant,
        deploy_id: deploy,
        target_version: Some(target),
    };
    context
        .publish(&format!("{tenant}/migrate/{deploy}"), command)
        .await
}
