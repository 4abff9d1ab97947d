//! Database templates (see [`crate::template::DatabaseTemplate`]): a database on the tenant
//! server that the set's real migrations built, kept there for every new tenant database of
//! that set to be copied from, then finished in one transaction that checks its own result.
//!
//! ```text
//!   build (once per server, set and owner; one builder at a time per deployment):
//!     tenant_tplb_<time>_<random> ◄── migrations ── history rows set aside ── verified on a
//!       scratch copy ── marked ready ── renamed tenant_template_<hex> (the first rename wins)
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
use crate::backend::{
    BackendError, Copied, MigrationBackend as _, PgDatabaseBackend, ProvisionedStorage as _,
};
use crate::error::EngineError;
use crate::source::MigrationSet;
use crate::target::Target;
use crate::template::{DatabaseTemplate, Instantiation, SetIdentity, TemplateError};

impl Engine<PgDatabaseBackend> {
    /// The template database of `set` on this server, built and verified by the first caller
    /// (any process) that needs it; the others read it.
    ///
    /// A build happens in a database of its own (`tenant_tplb_<time>_<random>`), renamed to the
    /// template's name only once verified and marked ready, so that a database under that name
    /// is always a finished template: concurrent builders (other deployments on this server,
    /// whose advisory locks live in other databases) never see or drop one another's work; the
    /// one whose rename loses drops its own and reads the winner's. Builds abandoned by a crash
    /// are dropped by a later build after an hour.
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
        // Builders of one deployment take turns, so that one builds and the others read.
        let lock = self
            .backend()
            .hold_lock(lock_key(&slug))
            .await
            .map_err(|e| TemplateError::Build(failed(e)))?;
        let template = self.open_or_build(set, identity, slug).await;
        let _ = sqlx::Connection::close(lock).await;
        template
    }

    /// The ready template database of `identity`, if there is one.
    async fn open(
        &self,
        set: &MigrationSet,
        identity: &SetIdentity,
        slug: &TenantSlug,
    ) -> Result<Option<DatabaseTemplate>, BackendError> {
        let backend = self.backend();
        if backend.database_comment(slug).await? != Some(DatabaseTemplate::ready_comment(identity))
        {
            return Ok(None);
        }
        let (history, fingerprint) = backend.read_database_template(slug, slug, set.kind).await?;
        Ok(Some(DatabaseTemplate {
            identity: identity.clone(),
            slug: slug.clone(),
            history,
            fingerprint,
        }))
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
        if let Some(template) = self
            .open(set, &identity, &slug)
            .await
            .map_err(build_failed)?
        {
            return Ok(template);
        }
        // A database under the template's name that is not a ready template of this set was
        // not made by this version's builds (an older format, or by hand): never trusted.
        if backend.storage_exists(&slug).await.map_err(build_failed)? {
            backend.drop_storage(&slug).await.map_err(build_failed)?;
        }
        self.drop_abandoned_builds().await;

        let build = TenantSlug::parse(&format!(
            "{BUILD_PREFIX}{}_{}",
            unix_seconds(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))
        .unwrap_or_else(|e| unreachable!("a build slug is valid: {e}"));
        let built = self.build(set, identity.clone(), &slug, &build).await;
        let renamed = match &built {
            Ok(_) => backend.rename_database(&build, &slug).await,
            Err(_) => Ok(false),
        };
        if !matches!(renamed, Ok(true)) {
            let _ = backend.drop_storage(&build).await;
        }
        let template = built?;
        if renamed.map_err(build_failed)? {
            return Ok(template);
        }
        // Another builder's rename came first: its template is the same set's.
        self.open(set, &identity, &slug)
            .await
            .map_err(build_failed)?
            .ok_or_else(|| {
                TemplateError::Build(failed(BackendError::InvalidScript(format!(
                    "database {} appeared while this template was built, and it is not a ready template",
                    slug.storage_name()
                ))))
            })
    }

    /// Migrates `build`, the database this build happens in (its objects granted to the role
    /// of `slug`, the template's), sets its history aside, verifies it on a scratch copy, which
    /// is dropped however that ends, and marks it ready.
    async fn build(
        &self,
        set: &MigrationSet,
        identity: SetIdentity,
        slug: &TenantSlug,
        build: &TenantSlug,
    ) -> Result<DatabaseTemplate, TemplateError> {
        let backend = self.backend();
        let target = Target::Tenant(build.clone());
        let build_failed = |e: BackendError| TemplateError::Build(backend_error(&target)(e));
        backend
            .create_template_storage(build, slug)
            .await
            .map_err(build_failed)?;
        self.apply(&target, set, None, &())
            .await
            .map_err(TemplateError::Build)?;
        let unsupported = backend
            .set_aside_history(build, set.kind)
            .await
            .map_err(build_failed)?;
        if !unsupported.is_empty() {
            return Err(TemplateError::Unsupported(unsupported.join("; ")));
        }
        let (history, fingerprint) = backend
            .read_database_template(build, slug, set.kind)
            .await
            .map_err(build_failed)?;
        let template = DatabaseTemplate {
            identity,
            slug: slug.clone(),
            history,
            fingerprint,
        };

        let scratch = TenantSlug::parse(&format!(
            "tpl_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ))
        .unwrap_or_else(|e| unreachable!("a scratch slug is valid: {e}"));
        let verified = self.copy_and_finish(&scratch, set, &template, build).await;
        let dropped = backend.drop_storage_with_role(&scratch).await;
        match verified.map_err(TemplateError::Build)? {
            Instantiation::Applied => dropped.map_err(build_failed)?,
            Instantiation::Mismatch { differences } => {
                return Err(TemplateError::DoesNotVerify { differences });
            }
            other => {
                return Err(TemplateError::Unsupported(format!(
                    "a fresh scratch copy did not take the template ({other:?})"
                )));
            }
        }
        backend
            .comment_database(build, &DatabaseTemplate::ready_comment(&template.identity))
            .await
            .map_err(build_failed)?;
        Ok(template)
    }

    /// Drops the databases of builds started more than an hour ago (a builder that died).
    async fn drop_abandoned_builds(&self) {
        let backend = self.backend();
        let prefix = format!("tenant_{BUILD_PREFIX}");
        let Ok(names) = backend.databases_named_like(&prefix).await else {
            return;
        };
        for name in names {
            let started = name[prefix.len()..]
                .split('_')
                .next()
                .and_then(|secs| secs.parse::<u64>().ok());
            if started.is_some_and(|started| unix_seconds().saturating_sub(started) > 3600)
                && let Ok(build) = TenantSlug::parse(&name["tenant_".len()..])
            {
                let _ = backend.drop_storage(&build).await;
            }
        }
    }

    /// Creates `tenant`'s database as a copy of `template` (of `set`) and finishes it in one
    /// transaction (`backend/pg/database_template.rs`), with the tenant's role and its grants. Whatever the outcome but [`Instantiation::Busy`] and an
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
        self.copy_and_finish(tenant, set, template, &template.slug)
            .await
    }

    /// [`Engine::create_from_template`] from the database of `source` (the template's, or the
    /// build being verified).
    async fn copy_and_finish(
        &self,
        tenant: &TenantSlug,
        set: &MigrationSet,
        template: &DatabaseTemplate,
        source: &TenantSlug,
    ) -> Result<Instantiation, EngineError> {
        let backend = self.backend();
        let target = Target::Tenant(tenant.clone());
        let failed = backend_error(&target);
        if let Copied::TemplateUnavailable(reason) = backend
            .copy_database(tenant, source)
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

/// Where a template database is built before it takes the template's name: `tplb_<unix
/// seconds>_<random>` (the time tells an abandoned build).
const BUILD_PREFIX: &str = "tplb_";

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The advisory lock of one template database's build (apart from the engine's and the
/// fleet's keys, which hash other prefixes).
fn lock_key(template: &TenantSlug) -> i64 {
    let digest = Sha256::digest(format!("tenancy/templates/{}", template.storage_name()));
    let mut bytes = [0_u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}
