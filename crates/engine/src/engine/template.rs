//! A set's template (see [`crate::template`]): built by the real migrations on a scratch tenant
//! and read back from the catalogs, verified by instantiating it on a second scratch tenant, and
//! instantiated on new tenants. Scratch tenants are built as provisioning builds a tenant and
//! dropped however the build ends.

use domain::tenant::TenantSlug;

use super::{Engine, backend_error};
use crate::Dialect;
use crate::backend::PgSchemaBackend;
use crate::error::EngineError;
use crate::source::MigrationSet;
use crate::target::Target;
use crate::template::{Instantiation, SetIdentity, Template, TemplateError};

impl Engine<PgSchemaBackend> {
    /// The template of every migration of `set`, verified: instantiated on a scratch tenant, it
    /// gives the fingerprint the migrations give.
    ///
    /// # Errors
    /// The set builds something a template cannot carry ([`TemplateError::Unsupported`]), the
    /// template does not verify ([`TemplateError::DoesNotVerify`]), or the server or a
    /// migration failed ([`TemplateError::Build`]).
    pub async fn build_template(&self, set: &MigrationSet) -> Result<Template, TemplateError> {
        let identity = SetIdentity::of(set, Dialect::Postgres);
        let read = self
            .with_scratch("tpl", |scratch| async move {
                let target = Target::Tenant(scratch.clone());
                self.apply(&target, set, None, &()).await?;
                self.backend()
                    .read_template(&scratch, set.kind)
                    .await
                    .map_err(backend_error(&target))
            })
            .await
            .map_err(TemplateError::Build)?;
        if !read.unsupported.is_empty() {
            return Err(TemplateError::Unsupported(read.unsupported.join("; ")));
        }
        let template = Template {
            identity,
            statements: read.statements,
            history: read.history,
            fingerprint: read.fingerprint,
        };
        match self
            .with_scratch("tpl", |scratch| {
                let template = &template;
                async move { self.instantiate_template(&scratch, set, template).await }
            })
            .await
            .map_err(TemplateError::Build)?
        {
            Instantiation::Applied => Ok(template),
            Instantiation::Mismatch { differences } => {
                Err(TemplateError::DoesNotVerify { differences })
            }
            other => Err(TemplateError::Unsupported(format!(
                "a fresh scratch tenant did not take the template ({other:?})"
            ))),
        }
    }

    /// Instantiates `template` (of `set`) on `tenant`, whose schema and role exist
    /// ([`crate::backend::ProvisionedStorage::create_storage_with_role`]), in one transaction: its DDL, its history
    /// rows, then the tenant's fingerprint compared with the template's; committed only when
    /// they are equal. A schema that is not empty (a previous attempt got somewhere) is left
    /// alone, as is one whose migration lock another runner holds. Whatever the outcome, the
    /// engine's [`Engine::apply`] afterwards finishes the job: nothing is pending when the
    /// template was applied.
    ///
    /// # Errors
    /// The server failed, or a template statement did: nothing stays.
    pub async fn instantiate_template(
        &self,
        tenant: &TenantSlug,
        set: &MigrationSet,
        template: &Template,
    ) -> Result<Instantiation, EngineError> {
        let target = Target::Tenant(tenant.clone());
        self.backend()
            .instantiate_template(tenant, set.kind, template, self.options().timeouts)
            .await
            .map_err(backend_error(&target))
    }
}
