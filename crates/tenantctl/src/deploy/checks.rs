//! What a deploy checks before it applies or publishes anything: the static checks of the sets
//! (step 1), and the released record (step 2, and the dry run).

use anyhow::Context as _;
use engine::Catalog;
use engine::check::static_findings;
use engine::lint::Severity;
use engine::release::{Coverage, ReleaseConflict, ReleaseRefused};
use shared::platform::{PlatformDb, StoreError};

/// The errors of the static checks (`migrations check` without running anything), each as its
/// finding reads: any of them stops a deploy.
pub fn static_errors(catalog: &Catalog) -> Vec<String> {
    static_findings(catalog)
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.to_string())
        .collect()
}

/// What the tenant sets contradict in the released record: every released version must be
/// there, unchanged (a deploy of an older build is refused too).
///
/// # Errors
/// A database error.
pub async fn release_conflicts(
    platform: &PlatformDb,
    catalog: &Catalog,
) -> Result<Vec<ReleaseConflict>, StoreError> {
    let mut conflicts = Vec::new();
    for set in [&catalog.tenant, &catalog.tenant_seeds] {
        conflicts.extend(
            platform
                .release_conflicts(set, Coverage::Everything)
                .await?,
        );
    }
    Ok(conflicts)
}

/// Refuses the deploy if there are `conflicts`.
///
/// # Errors
/// [`ReleaseRefused`], listing them.
pub fn refuse_conflicts(catalog: &Catalog, conflicts: Vec<ReleaseConflict>) -> anyhow::Result<()> {
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(ReleaseRefused {
        origin: catalog.tenant.origin.clone(),
        conflicts,
    })
    .context("refusing to deploy; nothing was published")
}
