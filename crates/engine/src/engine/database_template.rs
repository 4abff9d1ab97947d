//! Database templates (see [`crate::template::DatabaseTemplate`]): a database on the tenant
//! server that the set's real migrations built, kept there for every new tenant database of
//! that set to be copied from, then finished in one transaction that checks its own result.
//!
//! ```text
//!   build (once per server, set and owner; under an advisory lock, so one builder at a time):
//!     tenant_template_<hex>  ◄── migrations ── history rows set aside ── verified on a scratch
//!                                                                        copy ── marked ready
//!   each tenant:
//!     CREATE DATABASE tenant_<slug> TEMPLATE tenant_template_<hex>
//!       └─ one transaction: grants moved to the tenant's role, history rows written,
//!          fingerprint compared ── commit, or roll back and create the database empty
//! ```

use domain::tenant::TenantSlug;
use sha2::{Digest as _, Sha256};

use super::{Engine, backend_error};
use crate::Dialect;
use crate::backend::pg::database_template::Copy;
use crate::backend::{BackendError, Copied, PgDatabaseBackend, ProvisionedStorage as _};
use crate::error::EngineError;
use crate::source::MigrationSet;
use crate::target::Target;
use crate::template::{DatabaseTemplate, Instantiation, SetIdentity, TemplateError};

impl Engine<PgDatabaseBackend> {
    /// The template database of `set` on this server, built and verified by the first caller
    /// (any process); the others wait for it, then read it. A database left by an interrupted
    /// build is dropped and built again.
    ///
    /// # Errors
    /// The set builds rows or leaves a migration unfinished ([`TemplateError::Unsupported`]),
    /// a copy does not verify ([`TemplateError::DoesNotVerify`]), or the server or a migration
    /// failed ([`TemplateError::Build`]).
    pub async fn database_template(
        &self,
        set: &MigrationSet,
    ) -> Result<DatabaseTemplate, TemplateError> {
        let identity = SetIdentity::of(set, Dialect::Postgres);
        let slug = DatabaseTemplate::slug_for(&identity, self.backend().owner());
        let target = Target::Tenant(slug.clone());
        let failed = backend_error(&target);
        let lock = self
            .backend()
            .hold_lock(lock_key(&slug))
            .await
            .map_err(|e| TemplateError::Build(failed(e)))?;
        let template = self.open_or_build(set, identity, slug).await;
        let _ = sqlx::Connection::close(lock).await;
        template
    }

    async fn open_or_build(
        &self,
        set: &MigrationSet,
        identity: SetIdentity,
        slug: TenantSlug,
    ) -> Result<DatabaseTemplate, TemplateError> {
        let backend = self.backend();
        let target = Target::Tenant(slug.clone());
        let failed = backend_error(&target);
        let build_failed = |e: BackendError| TemplateError::Build(failed(e));
        let ready = DatabaseTemplate::ready_comment(&identity);
        if backend
            .database_comment(&slug)
            .await
            .map_err(build_failed)?
            == Some(ready.clone())
        {
            let (history, fingerprint) = backend
                .read_database_template(&slug, set.kind)
                .await
                .map_err(build_failed)?;
            return Ok(DatabaseTemplate {
                identity,
                slug,
                history,
                fingerprint,
            });
        }
        backend
            .drop_storage_with_role(&slug)
            .await
            .map_err(build_failed)?;
        let built = self.build(set, identity, slug.clone()).await;
        let kept = match &built {
            Ok(_) => backend.comment_database(&slug, &ready).await,
            Err(_) => backend.drop_storage_with_role(&slug).await,
        };
        let template = built?;
        kept.map_err(build_failed)?;
        Ok(template)
    }

    /// Migrates the template database, sets its history aside, and verifies it on a scratch
    /// copy, which is dropped however that ends.
    async fn build(
        &self,
        set: &MigrationSet,
        identity: SetIdentity,
        slug: TenantSlug,
    ) -> Result<DatabaseTemplate, TemplateError> {
        let backend = self.backend();
        let target = Target::Tenant(slug.clone());
        let build_failed = |e: BackendError| TemplateError::Build(backend_error(&target)(e));
        backend
            .create_storage_with_role(&slug)
            .await
            .map_err(build_failed)?;
        self.apply(&target, set, None, &())
            .await
            .map_err(TemplateError::Build)?;
        let unsupported = backend
            .set_aside_history(&slug, set.kind)
            .await
            .map_err(build_failed)?;
        if !unsupported.is_empty() {
            return Err(TemplateError::Unsupported(unsupported.join("; ")));
        }
        let (history, fingerprint) = backend
            .read_database_template(&slug, set.kind)
            .await
            .map_err(build_failed)?;
        let template = DatabaseTemplate {
            identity,
            slug,
            history,
            fingerprint,
        };

        let scratch = TenantSlug::parse(&format!(
            "tpl_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ))
        .unwrap_or_else(|e| unreachable!("a scratch slug is valid: {e}"));
        let verified = self.create_from_template(&scratch, set, &template).await;
        let dropped = backend.drop_storage_with_role(&scratch).await;
        match verified.map_err(TemplateError::Build)? {
            Instantiation::Applied => {
                dropped.map_err(build_failed)?;
                Ok(template)
            }
            Instantiation::Mismatch { differences } => {
                Err(TemplateError::DoesNotVerify { differences })
            }
            other => Err(TemplateError::Unsupported(format!(
                "a fresh scratch copy did not take the template ({other:?})"
            ))),
        }
    }

    /// Creates `tenant`'s database as a copy of `template` (of `set`) and finishes it in one
    /// transaction (see [`crate::backend::pg::database_template::instantiate`]), with the
    /// tenant's role and its grants. Whatever the outcome but [`Instantiation::Busy`] and an
    /// error, the tenant's database is then usable: at the template's version
    /// ([`Instantiation::Applied`]), as a previous attempt left it ([`Instantiation::NotEmpty`]),
    /// or created empty when the copy did not verify or could not be made. The engine's
    /// [`Engine::apply`] afterwards finishes the job.
    ///
    /// # Errors
    /// The server failed; a copy left unfinished is dropped and created empty by the next
    /// [`crate::backend::ProvisionedStorage::create_storage_with_role`].
    pub async fn create_from_template(
        &self,
        tenant: &TenantSlug,
        set: &MigrationSet,
        template: &DatabaseTemplate,
    ) -> Result<Instantiation, EngineError> {
        let backend = self.backend();
        let target = Target::Tenant(tenant.clone());
        let failed = backend_error(&target);
        if let Copied::TemplateUnavailable(reason) = backend
            .copy_database(tenant, &template.slug)
            .await
            .map_err(&failed)?
        {
            backend
                .create_storage_with_role(tenant)
                .await
                .map_err(&failed)?;
            return Ok(Instantiation::TemplateUnavailable { reason });
        }
        let template_role = template.slug.storage_name();
        let tenant_role = tenant.storage_name();
        let copy = Copy {
            set: set.kind,
            history: &template.history,
            fingerprint: &template.fingerprint,
            template_role: &template_role,
            tenant_role: &tenant_role,
        };
        let outcome = backend
            .instantiate_copy(tenant, &copy, self.options().timeouts)
            .await
            .map_err(&failed)?;
        match &outcome {
            Instantiation::Applied | Instantiation::Busy => {}
            // Created on either path before, or a copy that did not verify (rolled back, so
            // still unfinished, and dropped here): the plain creation makes sure of the rest.
            Instantiation::NotEmpty
            | Instantiation::Mismatch { .. }
            | Instantiation::TemplateUnavailable { .. } => backend
                .create_storage_with_role(tenant)
                .await
                .map_err(&failed)?,
        }
        Ok(outcome)
    }
}

/// The advisory lock of one template database's build (apart from the engine's and the
/// fleet's keys, which hash other prefixes).
fn lock_key(template: &TenantSlug) -> i64 {
    let digest = Sha256::digest(format!("tenancy/templates/{}", template.storage_name()));
    let mut bytes = [0_u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}
