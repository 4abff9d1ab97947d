//! `migrate.tenant`: bring one tenant to the deploy's target version.
//!
//! 1. The target must be a version this build knows; otherwise (an older build during a rolling
//!    upgrade) the command is given back, never acknowledged, for a build that knows it.
//! 2. One read of the tenant row. At the target already and healthy: record and acknowledge,
//!    without touching the tenant server.
//! 3. Otherwise apply on a server slot (see [`engine::ServerSlots`]) through the engine
//!    (which locks the tenant, verifies checksums, applies with timeouts), apply the structural
//!    seed when the target is the newest version, record the result, emit the events.
//!
//! A permanent failure (a script that fails, drift) dead-letters the command at once and marks
//! the tenant for reprocessing; a transient one (a lock timeout, a lost connection) is retried
//! until the delivery limit, then dead-lettered the same way.

use std::time::Instant;

use domain::Isolation;
use domain::Version;
use domain::message::{
    CloudEvent, Event, MigrateTenant, MigrationCompleted, MigrationFailed, MigrationStarted,
};
use engine::{EngineError, SlotConn};
use shared::bus::consumer::{Delivered, Handler, Outcome};
use shared::platform::deploys::{MigrationResult, MigrationTenant, ResultStatus};
use tracing::Instrument as _;

use crate::Migrator;

/// Handles `migrate.tenant`.
pub struct MigrateHandler(pub(crate) std::sync::Arc<Migrator>);

impl Handler for MigrateHandler {
    type Event = MigrateTenant;

    async fn handle(&self, message: &Delivered<CloudEvent<MigrateTenant>>) -> Outcome {
        let command = &message.event.data;
        let span = tracing::info_span!("migrate", tenant.id = %command.tenant_id, deploy.id = %command.deploy_id);
        self.0.migrate(message).instrument(span).await
    }
}

impl Migrator {
    async fn migrate(&self, message: &Delivered<CloudEvent<MigrateTenant>>) -> Outcome {
        let command = &message.event.data;
        let started = Instant::now();
        let set = &self.catalog.tenant;
        let latest = set.latest().unwrap_or(Version::ZERO);
        let target = command.target_version.unwrap_or(latest);
        let result = |status, from, to, applied, error: Option<String>| MigrationResult {
            tenant_id: command.tenant_id,
            deploy_id: Some(command.deploy_id),
            status,
            from_version: from,
            to_version: to,
            applied,
            error,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        };

        if !set.migrations.iter().any(|m| m.version == target) {
            let reason = format!(
                "target version {target} is unknown to this migrator (it knows up to {latest}): a newer build must apply it"
            );
            tracing::warn!(%target, %latest, "giving back a command for an unknown target version");
            let _ = self
                .recorder
                .record(result(
                    ResultStatus::Retrying,
                    None,
                    None,
                    0,
                    Some(reason.clone()),
                ))
                .await;
            self.metrics.command("migrate", "unknown_target");
            return Outcome::Retry { reason };
        }

        let tenant = match self.tenant(command.tenant_id).await {
            Ok(tenant) => tenant,
            Err(outcome) => return outcome,
        };
        match tenant.status.as_str() {
            "active" | "suspended" => {}
            "provisioning" => {
                // Its activation enqueues it into the latest deploy; until then, wait.
                return Outcome::Retry {
                    reason: "the tenant is still provisioning".into(),
                };
            }
            other => {
                let reason = format!("the tenant is {other}: there is nothing to migrate");
                let _ = self
                    .recorder
                    .record(result(
                        ResultStatus::Failed,
                        None,
                        None,
                        0,
                        Some(reason.clone()),
                    ))
                    .await;
                return Outcome::DeadLetter { reason };
            }
        }

        if tenant.schema_version >= target && tenant.migration_error.is_none() {
            let version = Some(tenant.schema_version);
            return match self
                .recorder
                .record(result(ResultStatus::Succeeded, version, None, 0, None))
                .await
            {
                Ok(()) => {
                    self.metrics.command("migrate", "noop");
                    Outcome::Ack
                }
                Err(reason) => Outcome::Retry { reason },
            };
        }

        let pending = set
            .migrations
            .iter()
            .filter(|m| m.version > tenant.schema_version && m.version <= target)
            .count();
        self.metrics.pending(pending);
        let slot = match self
            .database_slot(command.tenant_id, tenant.isolation)
            .await
        {
            Ok(slot) => slot,
            Err(outcome) => return outcome,
        };
        // Confirmed while the migration runs; awaited before the command is acknowledged.
        let announced = self.emit_in_background(MigrationStarted {
            tenant_id: command.tenant_id,
            deploy_id: Some(command.deploy_id),
            from_version: tenant.schema_version,
            target_version: target,
        });
        let applied = async {
            let report = self
                .storage
                .apply(&tenant.slug, tenant.isolation, set, Some(target), &())
                .await?;
            if let Some(reached) = report.after {
                self.released.applied(set, reached).await;
            }
            if target == latest && !self.catalog.tenant_seeds.migrations.is_empty() {
                let seeded = self
                    .storage
                    .apply(
                        &tenant.slug,
                        tenant.isolation,
                        &self.catalog.tenant_seeds,
                        None,
                        &(),
                    )
                    .await?;
                if let Some(reached) = seeded.after {
                    self.released
                        .applied(&self.catalog.tenant_seeds, reached)
                        .await;
                }
            }
            Ok::<_, EngineError>(report)
        }
        .await;
        drop(slot);
        let _ = announced.await;

        match applied {
            Ok(report) => {
                self.metrics.ran(&report, "up");
                let before = report.before.unwrap_or(Version::ZERO);
                let after = report.after.unwrap_or(Version::ZERO);
                let versions: Vec<Version> = report.steps.iter().map(|s| s.version).collect();
                let applied_count = u32::try_from(versions.len()).unwrap_or(u32::MAX);
                let completed = MigrationCompleted {
                    tenant_id: command.tenant_id,
                    deploy_id: Some(command.deploy_id),
                    from_version: before,
                    to_version: after,
                    applied: versions,
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                };
                // The result's commit and the event's confirm, at once.
                let (recorded, ()) = tokio::join!(
                    self.recorder.record(result(
                        ResultStatus::Succeeded,
                        Some(before),
                        Some(after),
                        applied_count,
                        None,
                    )),
                    self.emit(completed)
                );
                if let Err(reason) = recorded {
                    return Outcome::Retry { reason };
                }
                tracing::info!(from = %before, to = %after, applied = applied_count, "tenant migrated");
                self.metrics.command("migrate", "applied");
                Outcome::Ack
            }
            Err(error) if error.is_transient() && self.shutdown.is_cancelled() => Outcome::Retry {
                reason: format!("interrupted by shutdown: {error}"),
            },
            Err(error) => {
                let transient = error.is_transient();
                let last = !transient || message.is_last_delivery();
                let reason = error.to_string();
                let version = match &error {
                    EngineError::Script { version, .. } => Some(*version),
                    _ => None,
                };
                // Record where the tenant actually stands: the scripts before the failing one
                // stay applied.
                let now_at = self
                    .storage
                    .status(&tenant.slug, tenant.isolation, set)
                    .await
                    .ok()
                    .map(|s| s.applied_version.unwrap_or(Version::ZERO));
                if let Some(reached) = now_at.filter(|v| *v > tenant.schema_version) {
                    // The scripts before the failing one completed: they are released.
                    self.released.applied(set, reached).await;
                }
                let status = if last {
                    ResultStatus::Failed
                } else {
                    ResultStatus::Retrying
                };
                let recorded = self
                    .recorder
                    .record(result(
                        status,
                        Some(tenant.schema_version),
                        now_at,
                        0,
                        Some(reason.clone()),
                    ))
                    .await;
                tracing::warn!(%reason, transient, final_attempt = last, "tenant migration failed");
                self.emit(MigrationFailed::new(
                    command.tenant_id,
                    Some(command.deploy_id),
                    version,
                    &reason,
                    transient && !last,
                    message.delivery,
                ))
                .await;
                self.metrics.failed(Some(command.deploy_id), !last);
                self.metrics.command("migrate", "failed");
                match (last, recorded) {
                    // The failure must be on record before the message leaves for the DLQ.
                    (true, Err(record_error)) => Outcome::Retry {
                        reason: format!("{reason}; {record_error}"),
                    },
                    (true, Ok(())) => Outcome::DeadLetter { reason },
                    (false, _) => Outcome::Retry { reason },
                }
            }
        }
    }

    /// The tenant row, or what to do with the command when there is none.
    pub(crate) async fn tenant(&self, id: uuid::Uuid) -> Result<MigrationTenant, Outcome> {
        match self.tenants.read(id).await {
            Ok(Some(tenant)) => Ok(tenant),
            Ok(None) => Err(Outcome::DeadLetter {
                reason: format!("there is no tenant {id} in the platform database"),
            }),
            Err(reason) => Err(Outcome::Retry { reason }),
        }
    }

    /// In database isolation, a server slot held beside the tenant database's connection (in
    /// schema isolation the engine's session runs on a slot's connection itself), or the
    /// command given back (shutdown, server unreachable).
    pub(crate) async fn database_slot(
        &self,
        tenant: uuid::Uuid,
        isolation: Isolation,
    ) -> Result<Option<SlotConn>, Outcome> {
        if isolation == Isolation::Schema {
            return Ok(None);
        }
        match self.slots.acquire(tenant.as_u128()).await {
            Ok(Some(slot)) => Ok(Some(slot)),
            Ok(None) => Err(Outcome::Retry {
                reason: "shutting down".into(),
            }),
            Err(error) => Err(Outcome::Retry {
                reason: format!("no migration slot on the tenant server: {error}"),
            }),
        }
    }

    /// [`Migrator::emit`] in a task of its own, to overlap the broker's confirm with other work.
    pub(crate) fn emit_in_background<T: Event + Send + Sync + 'static>(
        &self,
        data: T,
    ) -> tokio::task::JoinHandle<()> {
        let publisher = self.publisher.clone();
        let event = publisher.event(data);
        tokio::spawn(
            async move {
                if let Err(error) = publisher.publish(&event).await {
                    tracing::warn!(event = T::TYPE, %error, "could not publish a lifecycle event");
                }
            }
            .in_current_span(),
        )
    }

    /// Publishes a lifecycle event. A lost event is logged, not retried: the result is already
    /// recorded in the platform database, which is the source of truth for deploys.
    pub(crate) async fn emit<T: Event>(&self, data: T) {
        let event = self.publisher.event(data);
        if let Err(error) = self.publisher.publish(&event).await {
            tracing::warn!(event = T::TYPE, %error, "could not publish a lifecycle event");
        }
    }
}
