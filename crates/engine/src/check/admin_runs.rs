//! The admin-user runs: on each dialect's scratch tenant, once every tenant set applied, the
//! tenant-seeds set's admin-user script runs twice. The first run must affect a row, the second
//! must add none (a redelivered registration must not add a second administrator).

use std::collections::BTreeMap;

use super::report::{AdminUserOutcome, CheckFinding, CheckReport};
use crate::admin::{AdminUserScript, AdminValues};
use crate::backend::MigrationBackend;
use crate::engine::Engine;
use crate::lint::Severity;
use crate::source::MigrationSet;
use crate::target::Target;

/// The values the check binds to the admin-user script: no one's personal data.
const CHECK_ADMIN: AdminValues<'static> = AdminValues {
    tenant_id: uuid::Uuid::from_u128(0x7e57_c4ec_0000_4000_8000_0000_0000_0001),
    tenant_slug: "check_tenant",
    tenant_name: "Check Tenant",
    admin_email: "Check.Admin@example.invalid",
    admin_name: "Check Admin",
};

/// Runs the admin-user script twice on the scratch tenant (every tenant set applied): the first
/// run must affect a row, the second must add none (a redelivered registration).
pub(super) async fn check_admin_user<B: MigrationBackend>(
    engine: &Engine<B>,
    tenant: &Target,
    seeds: &MigrationSet,
    script: &AdminUserScript,
    report: &mut CheckReport,
) -> AdminUserOutcome {
    if script.statements.is_empty() {
        return AdminUserOutcome::NoStatement;
    }
    let dialect = engine.backend().dialect();
    let mut fail = |message: String| {
        report.findings.push(CheckFinding {
            severity: Severity::Error,
            set: seeds.kind,
            file: Some(script.file.clone()),
            line: None,
            code: format!("admin-user-{dialect}"),
            message,
        });
        AdminUserOutcome::Failed
    };
    let before = match engine.row_counts(tenant).await {
        Ok(counts) => counts,
        Err(e) => return fail(format!("cannot count the scratch tenant's rows: {e}")),
    };
    let affected = match engine.run_admin_user(tenant, seeds, &CHECK_ADMIN).await {
        Ok(rows) => rows,
        Err(e) => {
            return fail(format!(
                "does not run on a tenant with every tenant migration and seed applied: {e}"
            ));
        }
    };
    if affected == 0 {
        return fail(
            "affected no row: it must invite the administrator (a file holding only comments means the tenants have none)"
                .into(),
        );
    }
    let once = match engine.row_counts(tenant).await {
        Ok(counts) => counts,
        Err(e) => return fail(format!("cannot count the scratch tenant's rows: {e}")),
    };
    if let Err(e) = engine.run_admin_user(tenant, seeds, &CHECK_ADMIN).await {
        return fail(format!(
            "fails when it runs a second time, as it does for a redelivered registration: {e}"
        ));
    }
    let twice = match engine.row_counts(tenant).await {
        Ok(counts) => counts,
        Err(e) => return fail(format!("cannot count the scratch tenant's rows: {e}")),
    };
    let grew = added_rows(&once, &twice);
    if !grew.is_empty() {
        let detail = grew
            .iter()
            .map(|(table, rows)| format!("{table} +{rows}"))
            .collect::<Vec<_>>()
            .join(", ");
        return fail(format!(
            "is not idempotent: running it a second time added rows ({detail}), so a redelivered registration would add a second administrator; skip what exists (e.g. `ON CONFLICT … DO NOTHING`)"
        ));
    }
    AdminUserOutcome::Idempotent {
        added: added_rows(&before, &once),
    }
}

/// The tables that have more rows in `after` than in `before`, and how many more.
fn added_rows(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) -> Vec<(String, i64)> {
    after
        .iter()
        .filter_map(|(table, rows)| {
            let more = rows - before.get(table).copied().unwrap_or(0);
            (more > 0).then(|| (table.clone(), more))
        })
        .collect()
}
