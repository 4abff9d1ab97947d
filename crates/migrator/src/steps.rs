//! The steps both handlers share: read the tenant, take a server slot, and carry out a
//! [`Decision`]: the result row written while the event is published, then the message settled.
//! Which row and which event is the decision's; how they read is the [`Job`]'s.

use std::future::Future;
use std::time::Instant;

use domain::message::{CloudEvent, Event, MigrationFailed};
use domain::{Isolation, Version};
use engine::backend::BackendError;
use engine::{EngineError, RunReport, SlotConn, Target};
use shared::bus::consumer::Delivered;
use shared::bus::{EventPublisher, Outcome};
use shared::platform::deploys::{MigrationResult, MigrationTenant, ResultStatus};
use shared::tenant_storage::TenantStorage;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::Migrator;
use crate::decision::{Announce, Command, Decision, RunEnd, Situation};

/// One command being handled: whom it is for, and how far along its message is.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub command: Command,
    pub tenant_id: Uuid,
    /// The deploy a migrate belongs to; `None` for a rollback.
    pub deploy_id: Option<Uuid>,
    /// Who asked for a rollback.
    pub operator: Option<String>,
    /// 1 for the first delivery.
    pub delivery: u32,
    pub last_delivery: bool,
    pub started: Instant,
}

impl Job {
    pub(crate) fn new<T>(
        command: Command,
        tenant_id: Uuid,
        deploy_id: Option<Uuid>,
        message: &Delivered<T>,
    ) -> Self {
        Job {
            command,
            tenant_id,
            deploy_id,
            operator: None,
            delivery: message.delivery,
            last_delivery: message.is_last_delivery(),
            started: Instant::now(),
        }
    }

    pub(crate) fn situation(&self, run: RunEnd, shutting_down: bool) -> Situation {
        Situation {
            command: self.command,
            run,
            last_delivery: self.last_delivery,
            shutting_down,
        }
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The result row, timed up to now.
    pub(crate) fn result(
        &self,
        status: ResultStatus,
        from_version: Option<Version>,
        to_version: Option<Version>,
        applied: u32,
        error: Option<String>,
    ) -> MigrationResult {
        MigrationResult {
            tenant_id: self.tenant_id,
            deploy_id: self.deploy_id,
            status,
            from_version,
            to_version,
            applied,
            error,
            duration_ms: i64::try_from(self.elapsed_ms()).unwrap_or(i64::MAX),
        }
    }

    /// A failure as `migration.failed` tells it: a rollback names its operator.
    fn announced_reason(&self, reason: &str) -> String {
        match &self.operator {
            Some(operator) => format!("rollback by {operator}: {reason}"),
            None => reason.to_owned(),
        }
    }

    /// A failure as `migration_error` keeps it: a rollback's says so.
    fn recorded_error(&self, reason: &str) -> String {
        match self.command {
            Command::Migrate => reason.to_owned(),
            Command::Rollback => format!("rollback: {reason}"),
        }
    }
}

impl<P: EventPublisher> Migrator<P> {
    /// The tenant row, or what to do with the command when there is none.
    pub(crate) async fn read_tenant(&self, id: Uuid) -> Result<MigrationTenant, Outcome> {
        match self.tenants.read(id).await {
            Ok(Some(tenant)) => Ok(tenant),
            Ok(None) => Err(Outcome::DeadLetter {
                reason: format!("there is no tenant {id} in the platform database"),
            }),
            Err(reason) => Err(Outcome::Retry { reason }),
        }
    }

    /// The storage of the tenant's server, or why it cannot be reached (a failure of the run,
    /// retried, recorded and in the end dead-lettered like any other).
    pub(crate) async fn storage_of(
        &self,
        tenant: &MigrationTenant,
    ) -> Result<TenantStorage, EngineError> {
        self.servers
            .storage(&tenant.server)
            .await
            .map_err(|error| error.into_engine_error(&tenant.slug))
    }

    /// In database isolation, a slot of the tenant's server held beside the tenant database's
    /// connection (in schema isolation the engine's session runs on a slot's connection
    /// itself). `Err(Ok(outcome))`: the command is given back (shutdown); `Err(Err(error))`:
    /// the server cannot be reached, a failure of the run like any other (retried, recorded,
    /// in the end dead-lettered).
    pub(crate) async fn database_slot(
        &self,
        tenant_id: Uuid,
        tenant: &MigrationTenant,
    ) -> Result<Option<SlotConn>, Result<Outcome, EngineError>> {
        if tenant.isolation == Isolation::Schema {
            return Ok(None);
        }
        let slots = match self.servers.slots(&tenant.server).await {
            Ok(Some(slots)) => slots,
            Ok(None) => return Ok(None),
            Err(error) => return Err(Err(error.into_engine_error(&tenant.slug))),
        };
        match slots.acquire(tenant_id.as_u128()).await {
            Ok(Some(slot)) => Ok(Some(slot)),
            Ok(None) => Err(Ok(Outcome::Retry {
                reason: "shutting down".into(),
            })),
            Err(error) => Err(Err(EngineError::Backend {
                target: Target::Tenant(tenant.slug.clone()),
                source: Box::new(BackendError::Sql {
                    source: error,
                    line: None,
                }),
            })),
        }
    }

    /// Ends a command the policy stopped before the engine ran: its reason on record, if the
    /// decision records one.
    pub(crate) async fn end_before_running(&self, job: &Job, decision: Decision) -> Outcome {
        let reason = match &decision.outcome {
            Outcome::Ack => None,
            Outcome::Retry { reason } | Outcome::DeadLetter { reason } => Some(reason.clone()),
        };
        self.conclude(
            decision,
            |status| job.result(status, None, None, 0, reason),
            std::future::ready(()),
        )
        .await
    }

    /// Ends a command whose run reached its target: the result on record while `event`
    /// (`migration.completed` or `migration.rollback`) is published.
    pub(crate) async fn succeed<E: Event>(
        &self,
        job: &Job,
        report: &RunReport,
        decision: Decision,
        event: E,
    ) -> Outcome {
        let (direction, done) = match job.command {
            Command::Migrate => ("up", "applied"),
            Command::Rollback => ("down", "reverted"),
        };
        self.metrics.ran(report, direction);
        let before = report.before.unwrap_or(Version::ZERO);
        let after = report.after.unwrap_or(Version::ZERO);
        // A deploy row counts what was applied; a rollback applies nothing.
        let applied = match job.command {
            Command::Migrate => u32::try_from(report.steps.len()).unwrap_or(u32::MAX),
            Command::Rollback => 0,
        };
        let announce = decision.announce;
        let announcement = async {
            if announce == Announce::Completed {
                self.emit(event).await;
            }
        };
        let outcome = self
            .conclude(
                decision,
                |status| job.result(status, Some(before), Some(after), applied, None),
                announcement,
            )
            .await;
        if outcome == Outcome::Ack {
            match job.command {
                Command::Migrate => {
                    tracing::info!(from = %before, to = %after, applied, "tenant migrated");
                }
                Command::Rollback => {
                    tracing::info!(from = %before, to = %after, reverted = report.steps.len(), "tenant rolled back");
                }
            }
            self.metrics.command(job.command.as_str(), done);
        }
        outcome
    }

    /// Ends a command whose run failed. When the failure is recorded, the row says where the
    /// tenant actually stands: the scripts before the failing one stay applied, and are
    /// released.
    pub(crate) async fn fail(
        &self,
        job: &Job,
        tenant: &MigrationTenant,
        error: &EngineError,
        decision: Decision,
    ) -> Outcome {
        let reason = error.to_string();
        let now_at = match decision.record {
            Some(_) => self.version_now(tenant).await,
            None => None,
        };
        if let Some(reached) = now_at.filter(|v| *v > tenant.schema_version) {
            self.released.applied(&self.catalog.tenant, reached).await;
        }
        let retried = match decision.announce {
            Announce::Failed { retried } => Some(retried),
            Announce::Nothing | Announce::Completed => None,
        };
        if let Some(retried) = retried {
            let transient = error.is_transient();
            match job.command {
                Command::Migrate => {
                    tracing::warn!(%reason, transient, final_attempt = !retried, "tenant migration failed");
                }
                Command::Rollback => {
                    tracing::warn!(%reason, transient, final_attempt = !retried, "tenant rollback failed");
                }
            }
            let outcome = if retried { "retried" } else { "failed" };
            self.metrics.command(job.command.as_str(), outcome);
        }
        let version = match error {
            EngineError::Script { version, .. } => Some(*version),
            _ => None,
        };
        let announcement = async {
            if let Some(retried) = retried {
                let failed = MigrationFailed::new(
                    job.tenant_id,
                    job.deploy_id,
                    version,
                    &job.announced_reason(&reason),
                    retried,
                    job.delivery,
                );
                self.emit(failed).await;
            }
        };
        self.conclude(
            decision,
            |status| {
                job.result(
                    status,
                    Some(tenant.schema_version),
                    now_at,
                    0,
                    Some(job.recorded_error(&reason)),
                )
            },
            announcement,
        )
        .await
    }

    /// Carries out `decision`: its result row (`row` of its status) is written while
    /// `announcement` is published, then the message is settled.
    pub(crate) async fn conclude(
        &self,
        decision: Decision,
        row: impl FnOnce(ResultStatus) -> MigrationResult,
        announcement: impl Future<Output = ()>,
    ) -> Outcome {
        let status = decision.record.clone();
        let recording = async {
            match status {
                Some(status) => self.recorder.record(row(status)).await,
                None => Ok(()),
            }
        };
        let (recorded, ()) = tokio::join!(recording, announcement);
        decision.settle(recorded)
    }

    /// The tenant's version as its history says now, if it can be read.
    async fn version_now(&self, tenant: &MigrationTenant) -> Option<Version> {
        self.servers
            .storage(&tenant.server)
            .await
            .ok()?
            .status(&tenant.slug, tenant.isolation, &self.catalog.tenant)
            .await
            .ok()
            .map(|standing| standing.applied_version.unwrap_or(Version::ZERO))
    }

    /// [`Migrator::emit`] in a task of its own, to overlap the broker's confirm with other work.
    pub(crate) fn emit_in_background<T: Event>(&self, data: T) -> tokio::task::JoinHandle<()> {
        let publisher = self.publisher.clone();
        let event = publisher.event(data);
        tokio::spawn(
            async move {
                announce(&publisher, &event).await;
            }
            .in_current_span(),
        )
    }

    /// Publishes a lifecycle event. A lost event is logged, not retried: the result is already
    /// recorded in the platform database, which is the source of truth for deploys.
    pub(crate) async fn emit<T: Event>(&self, data: T) {
        announce(&self.publisher, &self.publisher.event(data)).await;
    }
}

async fn announce<P: EventPublisher, T: Event>(publisher: &P, event: &CloudEvent<T>) {
    if let Err(error) = publisher.publish(event).await {
        tracing::warn!(event = T::TYPE, %error, "could not publish a lifecycle event");
    }
}
