//! Step 5: the tenant administrator from the registration, invited: no password and no token
//! is stored (the application issues the invitation). A second run finds the email taken and
//! inserts nothing: one admin.

use crate::port::{Request, StepError};
use crate::provisioner::Provisioner;

pub(super) async fn run(provisioner: &Provisioner, request: &Request) -> Result<(), StepError> {
    provisioner
        .storage
        .insert_admin(
            &request.slug,
            request.isolation,
            &request.admin_email,
            &request.admin_name,
        )
        .await?;
    Ok(())
}
