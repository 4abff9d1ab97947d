//! Step 6: status `active`, with the schema version the tenant was created at.

use shared::migrate::Version;

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
    provisioner
        .platform
        .activate_tenant(request.tenant_id, version)
        .await?;
    Ok(())
}
