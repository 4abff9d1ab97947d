//! The registration being provisioned: what the steps read of a `tenant.registered`, with the
//! isolation resolved and the administrator kept out of logs.

use std::fmt;

use domain::Isolation;
use domain::message::TenantRegistered;
use domain::server::ServerName;
use domain::tenant::TenantSlug;
use uuid::Uuid;

/// A registration to provision, as the steps need it.
#[derive(Clone)]
pub struct Request {
    pub tenant_id: Uuid,
    pub slug: TenantSlug,
    pub name: String,
    pub plan: Option<String>,
    pub isolation: Isolation,
    /// The tenant server the registration pins, if any.
    pub server: Option<ServerName>,
    pub admin_email: String,
    pub admin_name: String,
}

impl Request {
    /// The registration, with the isolation it asks for or else `default_isolation`.
    pub fn new(registered: &TenantRegistered, default_isolation: Isolation) -> Self {
        Request {
            tenant_id: registered.tenant_id,
            slug: registered.slug.clone(),
            name: registered.name.clone(),
            plan: registered.plan.clone(),
            isolation: registered.isolation.unwrap_or(default_isolation),
            server: registered.server.clone(),
            admin_email: registered.admin.email.clone(),
            admin_name: registered.admin.name.clone(),
        }
    }
}

/// Never prints the administrator's email or name.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("tenant_id", &self.tenant_id)
            .field("slug", &self.slug)
            .field("isolation", &self.isolation)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}
