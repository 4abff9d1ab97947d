//! `rollback.tenant`: an operator's decision to revert one tenant to a version.
//!
//! 1. **Check the version**: one this build knows (or 0); otherwise the command is given back
//!    for a build that knows it.
//! 2. **Read the tenant**, then **revert** on a server slot through the engine.
//! 3. **Record and announce** what the policy ([`crate::decision`]) makes of the run's end.
//!
//! The engine refuses, before anything runs, a range with an irreversible migration and down
//! scripts that destroy data unless the command allows it; such a refusal dead-letters the
//! command with the reason and leaves the tenant as it was. A completed rollback records the
//! new version and emits `migration.rollback` with the operator, which the auditor stores.

use std::sync::Arc;

use domain::Version;
use domain::message::{CloudEvent, MigrationRollback, RollbackTenant};
use engine::{EngineError, RunReport};
use shared::bus::consumer::{Delivered, Handler};
use shared::bus::{EventPublisher, Outcome, Publisher};
use shared::platform::deploys::MigrationTenant;
use tracing::Instrument as _;

use crate::Migrator;
use crate::decision::{Command, Failure, RunEnd, check_known, decide};
use crate::steps::Job;

/// Handles `rollback.tenant`.
pub struct RollbackHandler<P = Publisher>(pub(crate) Arc<Migrator<P>>);

impl<P: EventPublisher> Handler for RollbackHandler<P> {
    type Event = RollbackTenant;

    async fn handle(&self, message: &Delivered<CloudEvent<RollbackTenant>>) -> Outcome {
        let command = &message.event.data;
        let span = tracing::info_span!("rollback", tenant.id = %command.tenant_id, to = %command.to_version, operator = %command.operator);
        self.0.rollback(message).instrument(span).await
    }
}

impl<P: EventPublisher> Migrator<P> {
    async fn rollback(&self, message: &Delivered<CloudEvent<RollbackTenant>>) -> Outcome {
        let command = &message.event.data;
        let job = Job {
            operator: Some(command.operator.clone()),
            ..Job::new(Command::Rollback, command.tenant_id, None, message)
        };
        if let Err(decision) =
            check_known(Command::Rollback, &self.catalog.tenant, command.to_version)
        {
            return self.end_before_running(&job, decision).await;
        }
        let tenant = match self.read_tenant(job.tenant_id).await {
            Ok(tenant) => tenant,
            Err(outcome) => return outcome,
        };
        let reverted = match self.revert_on_a_slot(command, &tenant).await {
            Ok(reverted) => reverted,
            Err(outcome) => return outcome,
        };
        self.record_and_announce_rollback(&job, command, &tenant, reverted)
            .await
    }

    /// Takes the tenant's server slot and reverts; or gives the command back when no slot can
    /// be had.
    async fn revert_on_a_slot(
        &self,
        command: &RollbackTenant,
        tenant: &MigrationTenant,
    ) -> Result<Result<RunReport, EngineError>, Outcome> {
        let storage = match self.storage_of(tenant).await {
            Ok(storage) => storage,
            Err(unreachable) => return Ok(Err(unreachable)),
        };
        let slot = match self.database_slot(command.tenant_id, tenant).await {
            Ok(slot) => slot,
            Err(Ok(given_back)) => return Err(given_back),
            Err(Err(unreachable)) => return Ok(Err(unreachable)),
        };
        let reverted = storage
            .revert(
                &tenant.slug,
                tenant.isolation,
                &self.catalog.tenant,
                command.to_version,
                command.allow_data_loss,
                &(),
            )
            .await;
        drop(slot);
        Ok(reverted)
    }

    /// Asks the policy what the run's end means, and carries it out.
    async fn record_and_announce_rollback(
        &self,
        job: &Job,
        command: &RollbackTenant,
        tenant: &MigrationTenant,
        reverted: Result<RunReport, EngineError>,
    ) -> Outcome {
        let end = match &reverted {
            Ok(_) => RunEnd::Reached,
            Err(error) => RunEnd::Failed(Failure::of(error, &tenant.server)),
        };
        let decision = decide(job.situation(end, self.shutdown.is_cancelled()));
        match reverted {
            Ok(report) => {
                let rolled_back = MigrationRollback {
                    tenant_id: job.tenant_id,
                    from_version: report.before.unwrap_or(Version::ZERO),
                    to_version: report.after.unwrap_or(Version::ZERO),
                    reverted: report.steps.iter().map(|s| s.version).collect(),
                    operator: command.operator.clone(),
                    allow_data_loss: command.allow_data_loss,
                    duration_ms: job.elapsed_ms(),
                };
                self.succeed(job, &report, decision, rolled_back).await
            }
            Err(error) => self.fail(job, tenant, &error, decision).await,
        }
    }
}
