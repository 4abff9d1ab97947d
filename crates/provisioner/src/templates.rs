//! The provisioner's templates: one verified template of the tenant set per tenant server,
//! built lazily by the first provision that needs it (concurrent provisions wait for that one
//! build), kept in memory for the life of the process and never persisted: a new set (another
//! identity) gets its own, and a restart rebuilds it in a few hundred milliseconds.
//!
//! Also where a template's outcome is reported: a log line when it was not used, and the
//! `tenancy.provisioning.templates` counter.

use std::collections::HashMap;
use std::sync::Arc;

use domain::Isolation;
use domain::server::ServerName;
use domain::tenant::TenantSlug;
use engine::Dialect;
use engine::MigrationSet;
use engine::template::{Instantiation, SetIdentity, Template, TemplateError};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use shared::platform::PlatformDb;
use shared::platform::fingerprints::{Expected, ExpectedKey};
use shared::tenant_storage::TenantStorage;
use tokio::sync::{Mutex, OnceCell};

/// A server's template of one set: `None` once it is known that the set cannot have one (it
/// is not supported, or it did not verify), so that it is not rebuilt for every tenant.
type Cell = Arc<OnceCell<Option<Arc<Template>>>>;

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

/// The templates of one provisioner process, by server and set identity.
pub(crate) struct Templates {
    cells: Mutex<HashMap<(ServerName, SetIdentity), Cell>>,
    outcomes: Counter<u64>,
}

impl Templates {
    pub(crate) fn new() -> Self {
        let outcomes = shared::telemetry::meter()
            .u64_counter("tenancy.provisioning.templates")
            .with_unit("{tenant}")
            .with_description(
                "new schema-isolated tenants by how step 3 built them (template, fallback, resumed)",
            )
            .build();
        // Every outcome shows from the start at 0, so that rate() sees the first fallback.
        for outcome in [Outcome::Template, Outcome::Fallback, Outcome::Resumed] {
            outcomes.add(0, &[KeyValue::new("outcome", outcome.as_str())]);
        }
        Templates {
            cells: Mutex::new(HashMap::new()),
            outcomes,
        }
    }

    /// Instantiates the template of `set` on `server` for `tenant` (whose storage exists),
    /// building it first if this process has none yet, and reports what happened. The caller
    /// then runs the migrations, which have nothing to do when the template was applied.
    pub(crate) async fn instantiate(
        &self,
        platform: &PlatformDb,
        server: &ServerName,
        storage: &TenantStorage,
        tenant: &TenantSlug,
        set: &MigrationSet,
    ) -> Outcome {
        let outcome = match self.template(platform, server, storage, set).await {
            None => Outcome::Fallback,
            Some(template) => match storage.instantiate_template(tenant, set, &template).await {
                Ok(Instantiation::Applied) => Outcome::Template,
                Ok(Instantiation::NotEmpty | Instantiation::Busy) => Outcome::Resumed,
                Ok(Instantiation::Mismatch { differences }) => {
                    tracing::warn!(
                        tenant.slug = %tenant,
                        template.set = %template.identity,
                        differences = %differences.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                        "the template did not reproduce the tenant schema on this tenant; rolled back, building it with the migrations instead",
                    );
                    Outcome::Fallback
                }
                Err(error) => {
                    tracing::warn!(
                        tenant.slug = %tenant,
                        template.set = %template.identity,
                        %error,
                        "instantiating the template failed; rolled back, building the tenant with the migrations instead",
                    );
                    Outcome::Fallback
                }
            },
        };
        self.outcomes
            .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
        outcome
    }

    /// The template of `set` on `server`: built once (the first caller builds, the others wait
    /// for it). A failure that may pass (the server) is not kept: the next tenant tries again.
    /// A verified template's fingerprint is also the expected one of the set's latest version:
    /// it is kept for `tenantctl drift`, which then needs no rights to build one itself.
    pub(crate) async fn template(
        &self,
        platform: &PlatformDb,
        server: &ServerName,
        storage: &TenantStorage,
        set: &MigrationSet,
    ) -> Option<Arc<Template>> {
        let identity = SetIdentity::of(set, Dialect::Postgres);
        let cell = self
            .cells
            .lock()
            .await
            .entry((server.clone(), identity.clone()))
            .or_default()
            .clone();
        let built = cell
            .get_or_try_init(|| async {
                match storage.build_template(set).await {
                    Ok(template) => {
                        tracing::info!(
                            server = %server,
                            template.set = %identity,
                            statements = template.statements.len(),
                            "tenant template built and verified",
                        );
                        keep_expected(platform, storage, set, &template).await;
                        Ok(Some(Arc::new(template)))
                    }
                    Err(error @ (TemplateError::Unsupported(_) | TemplateError::DoesNotVerify { .. })) => {
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
}

/// Keeps `template`'s fingerprint as the expected one of its version in schema isolation on
/// this server's PostgreSQL major (`schema_fingerprints`). A failure costs only that: the next
/// drift check computes it, given the rights.
async fn keep_expected(
    platform: &PlatformDb,
    storage: &TenantStorage,
    set: &MigrationSet,
    template: &Template,
) {
    let Some(version) = template.version() else {
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
        isolation: Isolation::Schema,
        version,
        server_major: major,
    };
    let expected = Expected::new(set_checksum, template.fingerprint.clone());
    if let Err(error) = platform.record_expected_fingerprint(key, &expected).await {
        tracing::warn!(%error, %version, "keeping the template's fingerprint as the expected one failed; `tenantctl drift` computes it instead");
    }
}
