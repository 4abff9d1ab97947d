//! Step 2: the schema or database `tenant_<slug>` with its history table, and the tenant's
//! role, which can reach its own schema or database and nothing else.

use crate::port::{Request, StepError};
use crate::provisioner::Provisioner;

pub(super) async fn run(provisioner: &Provisioner, request: &Request) -> Result<(), StepError> {
    provisioner
        .storage
        .create(&request.slug, request.isolation)
        .await?;
    Ok(())
}
