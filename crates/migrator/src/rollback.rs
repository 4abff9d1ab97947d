//! `rollback.tenant`: an operator's decision to revert one tenant to a version.
//!
//! The engine refuses, before anything runs, a range with an irreversible migration and down
//! scripts that destroy data unless the command allows it; such a refusal dead-letters the
//! command with the reason and leaves the tenant as it was. A completed rollback records the
//! new version and emits `migration.rollback` with the operator, which the auditor stores.

use std::time::Instant;

use domain::Version;
use domain::message::{CloudEvent, MigrationFailed, MigrationRollback, RollbackTenant};
use engine::EngineError;
use shared::bus::consumer::{Delivered, Handler, Outcome};
use shared::platform::deploys::{MigrationResult, ResultStatus};
use tracing::Instrument as _;

use crate::Migrator;

/// Handles `rollback.tenant`.
pub struct RollbackHandler(pub(crate) std::sync::Arc<Migrator>);

impl Handler for RollbackHandler {
    type Event = RollbackTenant;

    async fn handle(&self, message: &Delivered<CloudEvent<RollbackTenant>>) -> Outcome {
        let command = &message.event.data;
        let span = tracing::info_span!("rollback", tenant.id = %command.tenant_id, to = %command.to_version, operator = %command.operator);
        self.0.rollback(message).instrument(span).await
    }
}

impl Migrator {
    async fn rollback(&self, message: &Delivered<CloudEvent<RollbackTenant>>) -> Outcome {
        let command = &message.event.data;
        let started = Instant::now();
        let set = &self.catalog.tenant;
        let to = command.to_version;
        if !to.is_zero() && !set.migrations.iter().any(|m| m.version == to) {
            let latest = set.latest().unwrap_or(Version::ZERO);
            return Outcome::Retry {
                reason: format!(
                    "version {to} is unknown to this migrator (it knows up to {latest}): a newer build must roll back to it"
                ),
            };
        }
        let tenant = match self.tenant(command.tenant_id).await {
            Ok(tenant) => tenant,
            Err(outcome) => return outcome,
        };
        let slot = match self
            .database_slot(command.tenant_id, tenant.isolation)
            .await
        {
            Ok(slot) => slot,
            Err(outcome) => return outcome,
        };
        let reverted = self
            .storage
            .revert(
                &tenant.slug,
                tenant.isolation,
                set,
                to,
                command.allow_data_loss,
                &(),
            )
            .await;
        drop(slot);
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match reverted {
            Ok(report) => {
                self.metrics.ran(&report, "down");
                let before = report.before.unwrap_or(Version::ZERO);
                let after = report.after.unwrap_or(Version::ZERO);
                let recorded = self
                    .recorder
                    .record(MigrationResult {
                        tenant_id: command.tenant_id,
                        deploy_id: None,
                        status: ResultStatus::Succeeded,
                        from_version: Some(before),
                        to_version: Some(after),
                        applied: 0,
                        error: None,
                        duration_ms,
                    })
                    .await;
                if let Err(reason) = recorded {
                    return Outcome::Retry { reason };
                }
                tracing::info!(from = %before, to = %after, reverted = report.steps.len(), "tenant rolled back");
                self.emit(MigrationRollback {
                    tenant_id: command.tenant_id,
                    from_version: before,
                    to_version: after,
                    reverted: report.steps.iter().map(|s| s.version).collect(),
                    operator: command.operator.clone(),
                    allow_data_loss: command.allow_data_loss,
                    duration_ms: u64::try_from(duration_ms).unwrap_or(0),
                })
                .await;
                self.metrics.command("rollback", "reverted");
                Outcome::Ack
            }
            Err(error) if error.is_transient() && self.shutdown.is_cancelled() => Outcome::Retry {
                reason: format!("interrupted by shutdown: {error}"),
            },
            Err(error) => {
                let transient = error.is_transient();
                let last = !transient || message.is_last_delivery();
                let reason = error.to_string();
                // A refusal leaves the tenant untouched; a down script that failed midway
                // leaves it needing attention.
                let refused = matches!(
                    error,
                    EngineError::Plan { .. } | EngineError::DataLoss { .. }
                );
                let version = match &error {
                    EngineError::Script { version, .. } => Some(*version),
                    _ => None,
                };
                tracing::warn!(%reason, transient, final_attempt = last, "tenant rollback failed");
                self.emit(MigrationFailed::new(
                    command.tenant_id,
                    None,
                    version,
                    &format!("rollback by {}: {reason}", command.operator),
                    transient && !last,
                    message.delivery,
                ))
                .await;
                self.metrics.failed(None, !last);
                self.metrics.command("rollback", "failed");
                if !last {
                    return Outcome::Retry { reason };
                }
                if !refused {
                    let now_at = self
                        .storage
                        .status(&tenant.slug, tenant.isolation, set)
                        .await
                        .ok()
                        .map(|s| s.applied_version.unwrap_or(Version::ZERO));
                    let recorded = self
                        .recorder
                        .record(MigrationResult {
                            tenant_id: command.tenant_id,
                            deploy_id: None,
                            status: ResultStatus::Failed,
                            from_version: Some(tenant.schema_version),
                            to_version: now_at,
                            applied: 0,
                            error: Some(format!("rollback: {reason}")),
                            duration_ms,
                        })
                        .await;
                    if let Err(record_error) = recorded {
                        return Outcome::Retry {
                            reason: format!("{reason}; {record_error}"),
                        };
                    }
                }
                Outcome::DeadLetter { reason }
            }
        }
    }
}
