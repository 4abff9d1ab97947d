//! The provisioner's templates: one verified template of the tenant set per tenant server and
//! isolation mode, had lazily by the first provision that needs it (concurrent provisions wait
//! for it) and kept in memory for the life of the process. A new set (another identity) gets
//! its own. Schema isolation's is DDL, built by each process (a few hundred milliseconds);
//! database isolation's is a database on the server, built once by whichever process comes
//! first and read by the others (see `engine::Engine::database_template`).
//!
//! Also where a template's outcome is reported: a log line when it was not used, and the
//! `tenancy.provisioning.templates` counter.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use domain::server::ServerName;
use domain::tenant::TenantSlug;
use domain::{Isolation, Version};
use engine::Dialect;
use engine::EngineError;
use engine::MigrationSet;
use engine::fingerprint::Fingerprint;
use engine::template::{DatabaseTemplate, Instantiation, SetIdentity, Template, TemplateError};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use shared::platform::PlatformDb;
use shared::platform::fingerprints::{Expected, ExpectedKey};
use shared::tenant_storage::TenantStorage;
use tokio::sync::{Mutex, OnceCell};

use crate::error::StepError;

/// A server's template of one set: `None` once it is known that the set cannot have one (it
/// is not supported, or it did not verify), so that it is not rebuilt for every tenant.
type Cell<T> = Arc<OnceCell<Option<Arc<T>>>>;

/// The templates of one isolation mode, by server and set identity.
type Cells<T> = Mutex<HashMap<(ServerName, SetIdentity), Cell<T>>>;

/// What step 3 did with the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The tenant was built from the template.
    Template,
    /// The template was not used (none could be built, or it did not verify on this tenant):
    /// the migrations built the tenant.
    Fallback,
    /// The tenant's schema was not empty (a previous attempt got somewhere) or another runner
    /// held its lock: the migrations continue from where it stands.
    Resumed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Template => "template",
            Outcome::Fallback => "fallback",
            Outcome::Resumed => "resumed",
        }
    }
}

/// The templates of one provisioner process.
pub(crate) struct Templates {
    schemas: Cells<Template>,
    databases: Cells<DatabaseTemplate>,
    outcomes: Counter<u64>,
}

impl Templates {
    pub(crate) fn new() -> Self {
        let outcomes = shared::telemetry::meter()
            .u64_counter("tenancy.provisioning.templates")
            .with_unit("{tenant}")
            .with_description(
                "new tenants by how their storage was built (template, fallback, resumed): step 3 for schema isolation, step 2 for database isolation",
            )
            .build();
        // Every outcome shows from the start at 0, so that rate() sees the first fallback.
        for outcome in [Outcome::Template, Outcome::Fallback, Outcome::Resumed] {
            outcomes.add(0, &[KeyValue::new("outcome", outcome.as_str())]);
        }
        Templates {
            schemas: Mutex::new(HashMap::new()),
            databases: Mutex::new(HashMap::new()),
            outcomes,
        }
    }

    /// Instantiates the template of `set` on `server` for the schema-isolated `tenant` (whose
    /// storage exists), building it first if this process has none yet, and reports what
    /// happened. The caller then runs the migrations, which have nothing to do when the template
    /// was applied.
    pub(crate) async fn instantiate(
        &self,
        platform: &PlatformDb,
        server: &ServerName,
        storage: &TenantStorage,
        tenant: &TenantSlug,
        set: &MigrationSet,
    ) -> Outcome {
        let built = cached(&self.schemas, server, set, || async {
            let template = storage.build_template(set).await?;
            tracing::info!(
                server = %server,
                template.set = %template.identity,
                statements = template.statements.len(),
                "tenant template built and verified",
            );
            keep_expected(
                platform,
                storage,
                set,
                Isolation::Schema,
                template.version(),
                &template.fingerprint,
            )
            .await;
            Ok(template)
        })
        .await;
        let outcome = match built {
            None => Outcome::Fallback,
            Some(template) => self.report(
                tenant,
                &template.identity,
                storage.instantiate_template(tenant, set, &template).await,
            ),
        };
        self.count(outcome);
        outcome
    }

    /// Creates the database-isolated `tenant`'s storage (step 2): a copy of the server's
    /// template database of `set` when there is one, finished and verified; otherwise, or when
    /// the copy does not verify, an empty database that the migrations build. Reports what
    /// happened.
    ///
    /// # Errors
    /// Another runner is finishing this tenant's copy (transient), or creating the empty
    /// database failed.
    pub(crate) async fn create_database(
        &self,
        server: &ServerName,
        storage: &TenantStorage,
        tenant: &TenantSlug,
        set: &MigrationSet,
        platform: &PlatformDb,
    ) -> Result<Outcome, StepError> {
        let built = cached(&self.databases, server, set, || async {
            let template = storage.database_template(set).await?;
            tracing::info!(
                server = %server,
                template.set = %template.identity,
                template.database = %template.slug.storage_name(),
                "tenant template database ready",
            );
            keep_expected(
                platform,
                storage,
                set,
                Isolation::Database,
                template.version(),
                &template.fingerprint,
            )
            .await;
            Ok(template)
        })
        .await;
        // Without a template, or when copying failed part-way, the database is made sure of as
        // without templates (created empty, an unfinished copy dropped first); every other
        // outcome leaves it usable (`Engine::create_from_template`).
        let outcome = match built {
            None => None,
            Some(template) => match storage.create_from_template(tenant, set, &template).await {
                Ok(Instantiation::Busy) => {
                    return Err(StepError::transient(format!(
                        "another runner holds tenant {tenant}'s lock while its database is copied from the template; trying again"
                    )));
                }
                done @ Err(_) => {
                    self.report(tenant, &template.identity, done);
                    None
                }
                done => Some(self.report(tenant, &template.identity, done)),
            },
        };
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => {
                storage.create(tenant, Isolation::Database).await?;
                Outcome::Fallback
            }
        };
        self.count(outcome);
        Ok(outcome)
    }

    /// What an instantiation's result means for the tenant, logged when the template was not
    /// used.
    fn report(
        &self,
        tenant: &TenantSlug,
        identity: &SetIdentity,
        done: Result<Instantiation, EngineError>,
    ) -> Outcome {
        match done {
            Ok(Instantiation::Applied) => Outcome::Template,
            Ok(Instantiation::NotEmpty | Instantiation::Busy) => Outcome::Resumed,
            Ok(Instantiation::Mismatch { differences }) => {
                tracing::warn!(
                    tenant.slug = %tenant,
                    template.set = %identity,
                    differences = %differences.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                    "the template did not reproduce the tenant schema on this tenant; rolled back, building it with the migrations instead",
                );
                Outcome::Fallback
            }
            Ok(Instantiation::TemplateUnavailable { reason }) => {
                tracing::warn!(
                    tenant.slug = %tenant,
                    template.set = %identity,
                    %reason,
                    "the template database could not be copied; building the tenant with the migrations instead",
                );
                Outcome::Fallback
            }
            Err(error) => {
                tracing::warn!(
                    tenant.slug = %tenant,
                    template.set = %identity,
                    %error,
                    "instantiating the template failed; rolled back, building the tenant with the migrations instead",
                );
                Outcome::Fallback
            }
        }
    }

    fn count(&self, outcome: Outcome) {
        self.outcomes
            .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
    }
}

/// The template of `set` on `server` in `cells`: built once (the first caller builds, the others
/// wait for it). A set that cannot have one is remembered as such; a failure that may pass (the
/// server) is not kept: the next tenant tries again.
async fn cached<T, F, Fut>(
    cells: &Cells<T>,
    server: &ServerName,
    set: &MigrationSet,
    build: F,
) -> Option<Arc<T>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, TemplateError>>,
{
    let identity = SetIdentity::of(set, Dialect::Postgres);
    let cell = cells
        .lock()
        .await
        .entry((server.clone(), identity.clone()))
        .or_default()
        .clone();
    let built = cell
        .get_or_try_init(|| async {
            match build().await {
                Ok(template) => Ok(Some(Arc::new(template))),
                Err(
                    error @ (TemplateError::Unsupported(_) | TemplateError::DoesNotVerify { .. }),
                ) => {
                    tracing::warn!(
                        server = %server,
                        template.set = %identity,
                        %error,
                        "no template for the tenant set: new tenants are built by the migrations",
                    );
                    Ok(None)
                }
                Err(error) => Err(error),
            }
        })
        .await;
    match built {
        Ok(template) => template.clone(),
        Err(error) => {
            tracing::warn!(
                server = %server,
                template.set = %identity,
                %error,
                "building the tenant template failed; this tenant is built by the migrations, the next one tries again",
            );
            None
        }
    }
}

/// Keeps a verified template's fingerprint as the expected one of its version in `isolation`
/// on this server's PostgreSQL major (`schema_fingerprints`): `tenantctl drift` then needs no
/// rights to build one. A failure costs only that: the next drift check computes it, given the
/// rights.
async fn keep_expected(
    platform: &PlatformDb,
    storage: &TenantStorage,
    set: &MigrationSet,
    isolation: Isolation,
    version: Option<Version>,
    fingerprint: &Fingerprint,
) {
    let Some(version) = version else {
        return;
    };
    let Some(set_checksum) = shared::drift::set_checksum(set, version) else {
        return;
    };
    let major = match storage.server_major().await {
        Ok(major) => major,
        Err(error) => {
            tracing::warn!(%error, "reading the server's version to keep the template's fingerprint failed; `tenantctl drift` computes it instead");
            return;
        }
    };
    let key = ExpectedKey {
        isolation,
        version,
        server_major: major,
    };
    let expected = Expected::new(set_checksum, fingerprint.clone());
    if let Err(error) = platform.record_expected_fingerprint(key, &expected).await {
        tracing::warn!(%error, %version, "keeping the template's fingerprint as the expected one failed; `tenantctl drift` computes it instead");
    }
}
