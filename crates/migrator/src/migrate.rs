//! `migrate.tenant`: bring one tenant to the deploy's target version, in named steps.
//!
//! 1. **Check the target**: it must be a version this build knows; otherwise (an older build
//!    during a rolling upgrade) the command is given back, never acknowledged, for a build
//!    that knows it.
//! 2. **Read the tenant** (one batched read of its row) and **admit** the command: at the
//!    target already and healthy, there is nothing to do and the tenant server is not touched.
//! 3. **Apply**: within the server's share of the commands in hand (a crowded server's
//!    command goes back to the end of the queue while other servers have work, see
//!    [`crate::shares`]), on a server slot (see [`engine::ServerSlots`]) through the engine, which
//!    locks the tenant, verifies checksums and applies with timeouts; then the structural seed
//!    when the target is the newest version. `migration.started` is published meanwhile.
//! 4. **Record and announce** what the policy ([`crate::decision`]) makes of the run's end.
//!
//! A permanent failure (a script that fails, drift) dead-letters the command at once and marks
//! the tenant for reprocessing; a transient one (a lock timeout, a lost connection) is retried
//! until the delivery limit, then dead-lettered the same way.

use std::sync::Arc;
use std::time::Instant;

use domain::Version;
use domain::message::{CloudEvent, MigrateTenant, MigrationCompleted, MigrationStarted};
use engine::{EngineError, RunReport};
use shared::bus::consumer::{Delivered, Handler};
use shared::bus::{EventPublisher, Outcome, Publisher};
use shared::platform::deploys::MigrationTenant;
use shared::tenant_storage::TenantStorage;
use tracing::Instrument as _;

use crate::Migrator;
use crate::decision::{Admission, Command, Failure, RunEnd, admit, check_known, decide};
use crate::steps::Job;

/// Handles `migrate.tenant`.
pub struct MigrateHandler<P = Publisher>(pub(crate) Arc<Migrator<P>>);

impl<P: EventPublisher> Handler for MigrateHandler<P> {
    type Event = MigrateTenant;

    async fn handle(&self, message: &Delivered<CloudEvent<MigrateTenant>>) -> Outcome {
        let command = &message.event.data;
        let span = tracing::info_span!("migrate", tenant.id = %command.tenant_id, deploy.id = %command.deploy_id);
        self.0.migrate(message).instrument(span).await
    }
}

/// How the tenant's migration went.
enum Run {
    NothingToDo,
    Applied(RunReport),
    Failed(EngineError),
}

impl<P: EventPublisher> Migrator<P> {
    async fn migrate(&self, message: &Delivered<CloudEvent<MigrateTenant>>) -> Outcome {
        let command = &message.event.data;
        let job = Job::new(
            Command::Migrate,
            command.tenant_id,
            Some(command.deploy_id),
            message,
        );
        let latest = self.catalog.tenant.latest().unwrap_or(Version::ZERO);
        let target = command.target_version.unwrap_or(latest);
        if let Err(decision) = check_known(Command::Migrate, &self.catalog.tenant, target) {
            tracing::warn!(%target, %latest, "giving back a command for an unknown target version");
            self.metrics.command("migrate", "retried");
            return self.end_before_running(&job, decision).await;
        }
        let tenant = match self.read_tenant(job.tenant_id).await {
            Ok(tenant) => tenant,
            Err(outcome) => return outcome,
        };
        let run = match admit(&tenant, target) {
            Err(decision) => return self.end_before_running(&job, decision).await,
            Ok(Admission::NothingToDo) => Run::NothingToDo,
            Ok(Admission::Run) => {
                let Some(_share) = self.shares.enter(&tenant.server, Instant::now()) else {
                    return self.put_back(message, &tenant).await;
                };
                match self.apply_on_a_slot(&job, &tenant, target).await {
                    Ok(run) => run,
                    Err(outcome) => return outcome,
                }
            }
        };
        self.record_and_announce(&job, &tenant, run).await
    }

    /// Puts a command of a crowded server (see [`crate::shares`]) at the end of the queue: the
    /// same event published again, then this delivery acknowledged; no attempt is spent.
    async fn put_back(
        &self,
        message: &Delivered<CloudEvent<MigrateTenant>>,
        tenant: &MigrationTenant,
    ) -> Outcome {
        match self.publisher.publish(&message.event).await {
            Ok(()) => {
                tracing::debug!(server = %tenant.server, "the server has its share of commands in hand; put back at the end of the queue");
                self.metrics.command("migrate", "put_back");
                Outcome::Ack
            }
            Err(error) => Outcome::Retry {
                reason: format!("putting the command back in the queue failed: {error}"),
            },
        }
    }

    /// Takes the tenant's server slot and applies, announcing the start meanwhile; or gives
    /// the command back when no slot can be had.
    async fn apply_on_a_slot(
        &self,
        job: &Job,
        tenant: &MigrationTenant,
        target: Version,
    ) -> Result<Run, Outcome> {
        let pending = self
            .catalog
            .tenant
            .migrations
            .iter()
            .filter(|m| m.version > tenant.schema_version && m.version <= target)
            .count();
        self.metrics.pending(pending);
        let storage = match self.storage_of(tenant).await {
            Ok(storage) => storage,
            Err(unreachable) => return Ok(Run::Failed(unreachable)),
        };
        let slot = match self.database_slot(job.tenant_id, tenant).await {
            Ok(slot) => slot,
            Err(Ok(given_back)) => return Err(given_back),
            Err(Err(unreachable)) => return Ok(Run::Failed(unreachable)),
        };
        // Confirmed while the migration runs; awaited before the command is acknowledged.
        let announced = self.emit_in_background(MigrationStarted {
            tenant_id: job.tenant_id,
            deploy_id: job.deploy_id,
            from_version: tenant.schema_version,
            target_version: target,
        });
        let applied = self.apply(&storage, tenant, target).await;
        drop(slot);
        let _ = announced.await;
        Ok(match applied {
            Ok(report) => Run::Applied(report),
            Err(error) => Run::Failed(error),
        })
    }

    /// The engine's part: the tenant set up to `target`, then the structural seed when
    /// `target` is the newest version; what completes is released.
    async fn apply(
        &self,
        storage: &TenantStorage,
        tenant: &MigrationTenant,
        target: Version,
    ) -> Result<RunReport, EngineError> {
        let (set, seeds) = (&self.catalog.tenant, &self.catalog.tenant_seeds);
        let report = storage
            .apply(&tenant.slug, tenant.isolation, set, Some(target), &())
            .await?;
        if let Some(reached) = report.after {
            self.released.applied(set, reached).await;
        }
        if Some(target) == set.latest() && !seeds.migrations.is_empty() {
            let seeded = storage
                .apply(&tenant.slug, tenant.isolation, seeds, None, &())
                .await?;
            if let Some(reached) = seeded.after {
                self.released.applied(seeds, reached).await;
            }
        }
        Ok(report)
    }

    /// Asks the policy what the run's end means, and carries it out.
    async fn record_and_announce(&self, job: &Job, tenant: &MigrationTenant, run: Run) -> Outcome {
        let end = match &run {
            Run::NothingToDo => RunEnd::NothingToDo,
            Run::Applied(_) => RunEnd::Reached,
            Run::Failed(error) => RunEnd::Failed(Failure::of(error, &tenant.server)),
        };
        let decision = decide(job.situation(end, self.shutdown.is_cancelled()));
        match run {
            Run::NothingToDo => {
                let at = Some(tenant.schema_version);
                let outcome = self
                    .conclude(
                        decision,
                        |status| job.result(status, at, None, 0, None),
                        std::future::ready(()),
                    )
                    .await;
                if outcome == Outcome::Ack {
                    self.metrics.command("migrate", "noop");
                }
                outcome
            }
            Run::Applied(report) => {
                let completed = MigrationCompleted {
                    tenant_id: job.tenant_id,
                    deploy_id: job.deploy_id,
                    from_version: report.before.unwrap_or(Version::ZERO),
                    to_version: report.after.unwrap_or(Version::ZERO),
                    applied: report.steps.iter().map(|s| s.version).collect(),
                    duration_ms: job.elapsed_ms(),
                };
                self.succeed(job, &report, decision, completed).await
            }
            Run::Failed(error) => self.fail(job, tenant, &error, decision).await,
        }
    }
}
