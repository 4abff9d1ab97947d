//! Step 4: the structural seed (default settings), itself a versioned set.

use crate::port::{Request, StepError};
use crate::provisioner::Provisioner;

pub(super) async fn run(provisioner: &Provisioner, request: &Request) -> Result<(), StepError> {
    provisioner
        .storage
        .apply(
            &request.slug,
            request.isolation,
            &provisioner.catalog.tenant_seeds,
            None,
            &(),
        )
        .await?;
    Ok(())
}
