//! Step 1: the tenant row, status `provisioning`, on its server: the one the registration pins,
//! or the least loaded open server with room (`shared::platform::servers`). The same tenant id
//! with the same slug is the same tenant (a redelivery), already placed; another tenant id
//! asking for a taken slug, or a registration no server can take, is refused, and nothing is
//! created.

use shared::platform::tenants::Registration;

use super::StepContext;
use crate::error::StepError;
use crate::request::Request;

pub(super) async fn run(context: &StepContext, request: &Request) -> Result<(), StepError> {
    let registration = context
        .platform
        .register_tenant(
            request.tenant_id,
            &request.slug,
            &request.name,
            request.isolation,
            request.plan.as_deref(),
            request.server.as_ref(),
        )
        .await?;
    match registration {
        Registration::Registered { isolation, .. } if isolation != request.isolation => {
            Err(StepError::permanent(format!(
                "tenant {} is registered with {isolation} isolation, and this registration asks for {}",
                request.tenant_id, request.isolation
            )))
        }
        Registration::Registered { status, .. } if status.is_untouchable() => {
            Err(StepError::permanent(format!(
                "tenant {} is suspended or deleted: it is not provisioned again",
                request.tenant_id
            )))
        }
        Registration::Registered { server, .. } => {
            tracing::debug!(tenant.id = %request.tenant_id, %server, "registered and placed");
            Ok(())
        }
        Registration::SlugTaken { owner } => Err(StepError::permanent(format!(
            "the slug {} belongs to another tenant ({owner}); nothing was created",
            request.slug
        ))),
        Registration::IdTaken { slug } => Err(StepError::permanent(format!(
            "tenant {} is already registered with the slug {slug}, not {}",
            request.tenant_id, request.slug
        ))),
    }
}
