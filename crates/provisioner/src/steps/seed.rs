//! Step 4: the structural seed (default settings), itself a versioned set.

use crate::port::{Request, StepError};
use crate::provisioner::Provisioner;

pub(super) async fn run(provisioner: &Provisioner, request: &Request) -> Result<(), StepError> {
    let report = provisioner
        .storage
        .apply(
            &request.slug,
            request.isolation,
            &provisioner.catalog.tenant_seeds,
            None,
            &(),
        )
        .await?;
    if let Some(reached) = report.after {
        provisioner
            .released
            .applied(&provisioner.catalog.tenant_seeds, reached)
            .await;
    }
    Ok(())
}
