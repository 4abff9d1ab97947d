//! Step 6: status `active`, with the schema version the tenant was created at. A deploy that
//! listed the fleet while this tenant was provisioning, to a version this build does not have,
//! gets the tenant too: activation enqueues it there and publishes its `migrate.tenant`
//! (`shared::platform::deploys` explains why nothing falls between the two).

use domain::Version;

use crate::port::{Request, StepError};
use crate::provisioner::Provisioner;

pub(super) async fn run(provisioner: &Provisioner, request: &Request) -> Result<(), StepError> {
    let standing = provisioner
        .storage
        .status(
            &request.slug,
            request.isolation,
            &provisioner.catalog.tenant,
        )
        .await?;
    if !standing.pending.is_empty() {
        return Err(StepError::permanent(format!(
            "{} tenant migrations are still pending: the tenant cannot be activated",
            standing.pending.len()
        )));
    }
    let version = standing.applied_version.unwrap_or(Version::ZERO);
    if let Some((deploy, target)) = provisioner
        .platform
        .activate_tenant(request.tenant_id, version)
        .await?
    {
        provisioner
            .enqueue_migration(request.tenant_id, deploy, target)
            .await?;
        provisioner
            .platform
            .mark_published(deploy, &[request.tenant_id])
            .await?;
    }
    Ok(())
}
