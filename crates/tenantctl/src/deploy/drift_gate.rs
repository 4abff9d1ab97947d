//! Step 3 of a deploy: a tenant whose schema drifted (`shared::drift`) is not migrated unless
//! the operator says so (`--allow-drift`): migrations written against the expected schema may
//! fail half-way on another, or silently build on a hand-made change. Only the tenants with
//! something to apply are read, so a deploy with nothing pending costs no catalog query.
//!
//! The gate trusts catalog stamps as `tenantctl drift` does: a tenant whose stamp, version and
//! expectation are as kept keeps its last result, so gating a large fleet costs a stamp query per
//! batch plus full reads of what changed. That is as correct as the full read for every change
//! made in the tenant's schema (each writes its catalog rows); what a stamp cannot see (the
//! tenant's role renamed, say: `engine::fingerprint::CatalogStamp`) the migration itself would
//! trip over, and `tenantctl drift --full` reports.
//!
//! A refused tenant's result is `failed` with the reason (`tenants.migration_error` too, so
//! `tenantctl status` and the reprocessing gauge show it), and it is never published.

use std::collections::HashSet;

use domain::Version;
use shared::drift::{DEFAULT_BATCH, DriftCheck, Drifted, Unchecked};
use shared::platform::deploys::{MigrationResult, ResultStatus};
use shared::service::Context;
use shared::tenant_servers::TenantServers;
use uuid::Uuid;

use super::Started;
use engine::MigrationSet;

/// What the gate did.
#[derive(Debug, Default)]
pub struct Gate {
    /// Drifted tenants, refused (or let through with `--allow-drift`).
    pub drifted: Vec<Drifted>,
    /// Tenants whose drift could not be checked (they are migrated; the reason is said).
    pub unchecked: Vec<Unchecked>,
    /// Tenants read.
    pub checked: usize,
}

/// Checks the tenants of `started` below its target for drift; unless `allow_drift`, records
/// the drifted ones as failed and takes them out of `started`.
///
/// # Errors
/// A platform database error.
pub async fn refuse_drifted(
    ctx: &Context,
    set: &MigrationSet,
    started: &mut Started,
    allow_drift: bool,
) -> anyhow::Result<Gate> {
    let pending: HashSet<Uuid> = started
        .tenants
        .iter()
        .filter(|t| t.schema_version < started.target && t.schema_version > Version::ZERO)
        .map(|t| t.id)
        .collect();
    if pending.is_empty() {
        return Ok(Gate::default());
    }
    let candidates = ctx
        .platform
        .drift_candidates(None, None)
        .await?
        .into_iter()
        .filter(|t| pending.contains(&t.id))
        .collect();
    let servers = TenantServers::pooled(ctx.platform.clone(), ctx.config.clone(), 2);
    let report = DriftCheck {
        platform: &ctx.platform,
        servers: &servers,
        set,
        batch: DEFAULT_BATCH,
        full: false,
    }
    .run(candidates)
    .await?;
    if !allow_drift && !report.drifted.is_empty() {
        let results: Vec<MigrationResult> = report
            .drifted
            .iter()
            .map(|d| MigrationResult {
                tenant_id: d.tenant.id,
                deploy_id: Some(started.id),
                status: ResultStatus::Failed,
                from_version: Some(d.tenant.schema_version),
                to_version: Some(d.tenant.schema_version),
                applied: 0,
                error: Some(refusal(d)),
                duration_ms: 0,
            })
            .collect();
        ctx.platform.record_migration_results(&results).await?;
        let refused: HashSet<Uuid> = report.drifted.iter().map(|d| d.tenant.id).collect();
        started.without(&refused);
    }
    Ok(Gate {
        drifted: report.drifted,
        unchecked: report.unchecked,
        checked: report.checked,
    })
}

/// Why a drifted tenant was not migrated, and what to do.
pub fn refusal(drifted: &Drifted) -> String {
    let first = drifted
        .differences
        .first()
        .map(|d| format!(", first `{d}`"))
        .unwrap_or_default();
    format!(
        "not migrated: its schema drifted from version {}'s ({} difference(s){first}); see `tenantctl drift --tenant {}`, repair it, or deploy with --allow-drift",
        drifted.tenant.schema_version,
        drifted.differences.len(),
        drifted.tenant.slug
    )
}
