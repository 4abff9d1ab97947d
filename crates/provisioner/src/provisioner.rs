//! The real [`Port`]: the platform database, the tenant server and the bus.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::Version;
use domain::message::{
    CloudEvent, Event, MigrateTenant, Provisioned, ProvisioningFailed, ProvisioningStep,
};
use domain::provisioning::{Progress, Step, StepOutcome, TenantStatus};
use engine::Catalog;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use sha2::{Digest, Sha256};
use shared::bus::Publisher;
use shared::platform::{PlatformDb, ReleaseRecorder};
use shared::tenant_storage::TenantStorage;
use uuid::Uuid;

use crate::port::{Emitted, Port, Request, StepError};
use crate::steps;

/// Provisions tenants.
pub struct Provisioner {
    pub(crate) platform: PlatformDb,
    pub(crate) storage: TenantStorage,
    pub(crate) catalog: Arc<Catalog>,
    publisher: Publisher,
    metrics: Metrics,
    /// What this process applies joins the released record.
    pub(crate) released: ReleaseRecorder,
    /// Attempts of a step whose outcome could not be recorded (the platform database was
    /// gone): added to the step's count by its next record, so `provisioning_steps.attempts`
    /// counts every attempt this process made.
    unrecorded: std::sync::Mutex<HashMap<(Uuid, Step), i32>>,
}

struct Metrics {
    step_duration: Histogram<f64>,
    total_duration: Histogram<f64>,
    provisioned: Counter<u64>,
    failed: Counter<u64>,
}

impl Provisioner {
    pub fn new(
        platform: PlatformDb,
        storage: TenantStorage,
        catalog: Arc<Catalog>,
        publisher: Publisher,
    ) -> Self {
        let meter = shared::telemetry::meter();
        let released = ReleaseRecorder::new(platform.clone(), "provisioner");
        Provisioner {
            platform,
            storage,
            catalog,
            publisher,
            released,
            unrecorded: std::sync::Mutex::default(),
            metrics: Metrics {
                step_duration: meter
                    .f64_histogram("tenancy.provisioning.step_duration")
                    .with_unit("s")
                    .with_description("duration of a successful provisioning step, by step")
                    .build(),
                total_duration: meter
                    .f64_histogram("tenancy.provisioning.duration")
                    .with_unit("s")
                    .with_description("from registration to active, across retries")
                    .build(),
                provisioned: meter
                    .u64_counter("tenancy.provisioning.provisioned")
                    .with_description("tenants that became active")
                    .build(),
                failed: meter
                    .u64_counter("tenancy.provisioning.failed")
                    .with_description(
                        "tenants given up (failed); with provisioned, the failure rate",
                    )
                    .build(),
            },
        }
    }

    /// Publishes the tenant's `migrate.tenant` for `deploy` (see the activate step).
    pub(crate) async fn enqueue_migration(
        &self,
        tenant: Uuid,
        deploy: Uuid,
        target: Version,
    ) -> Result<(), StepError> {
        let command = MigrateTenant {
            tenant_id: tenant,
            deploy_id: deploy,
            target_version: Some(target),
        };
        self.publisher
            .publish(&self.event(&format!("{tenant}/migrate/{deploy}"), command))
            .await?;
        Ok(())
    }

    fn take_unrecorded(&self, key: (Uuid, Step)) -> i32 {
        self.unrecorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key)
            .unwrap_or(0)
    }

    /// An event with an id derived from what it says, so that a run that emits it again after
    /// a crash emits the same event (stored once by the auditor).
    fn event<T: Event>(&self, key: &str, data: T) -> CloudEvent<T> {
        let mut event = self.publisher.event(data);
        let digest = Sha256::digest(
            [
                format!("tenancy/provisioning/{key}/").as_bytes(),
                &event.content_digest(),
            ]
            .concat(),
        );
        let mut bytes = [0_u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        event.id = Uuid::new_v8(bytes);
        event
    }
}

impl Port for Provisioner {
    async fn progress(&self, request: &Request) -> Result<Progress, StepError> {
        Ok(self
            .platform
            .provisioning_progress(request.tenant_id)
            .await?)
    }

    async fn run(&self, step: Step, request: &Request) -> Result<(), StepError> {
        steps::run(self, step, request).await
    }

    async fn record(
        &self,
        request: &Request,
        step: Step,
        outcome: &StepOutcome,
        started_at: DateTime<Utc>,
        duration_ms: i64,
    ) -> Result<u32, StepError> {
        let key = (request.tenant_id, step);
        let earlier = self.take_unrecorded(key);
        let recorded = self
            .platform
            .record_step(
                request.tenant_id,
                step,
                outcome,
                started_at,
                duration_ms,
                1 + earlier,
            )
            .await;
        let attempts = match recorded {
            Ok(attempts) => attempts,
            Err(error) => {
                *self
                    .unrecorded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key)
                    .or_default() += 1 + earlier;
                return Err(error.into());
            }
        };
        if *outcome == StepOutcome::Succeeded {
            self.metrics.step_duration.record(
                duration_ms as f64 / 1000.0,
                &[KeyValue::new("step", step.as_str())],
            );
        }
        Ok(u32::try_from(attempts).unwrap_or(0))
    }

    async fn set_status(&self, request: &Request, status: TenantStatus) -> Result<(), StepError> {
        Ok(self
            .platform
            .set_tenant_status(request.tenant_id, status)
            .await?)
    }

    async fn emit(&self, request: &Request, event: Emitted) -> Result<(), StepError> {
        let tenant = request.tenant_id;
        match event {
            Emitted::Step {
                step,
                status,
                attempt,
                duration_ms,
                error,
            } => {
                let data = ProvisioningStep::new(
                    tenant,
                    step,
                    status,
                    attempt.max(1),
                    duration_ms,
                    error.as_deref(),
                );
                // The id covers the content too: an attempt that could not be recorded (number
                // 0) and its successors never share one.
                self.publisher
                    .publish(&self.event(&format!("{tenant}/{step}/{status}/{attempt}"), data))
                    .await?;
            }
            Emitted::Provisioned => {
                let standing = self
                    .storage
                    .status(&request.slug, request.isolation, &self.catalog.tenant)
                    .await?;
                let duration_ms = self.platform.tenant_age_ms(tenant).await?;
                let data = Provisioned {
                    tenant_id: tenant,
                    slug: request.slug.clone(),
                    isolation: request.isolation,
                    schema_version: standing.applied_version.unwrap_or(Version::ZERO),
                    duration_ms: u64::try_from(duration_ms).unwrap_or(0),
                };
                self.publisher
                    .publish(&self.event(&format!("{tenant}/provisioned"), data))
                    .await?;
                self.metrics.provisioned.add(1, &[]);
                self.metrics
                    .total_duration
                    .record(duration_ms as f64 / 1000.0, &[]);
            }
            Emitted::Failed {
                step,
                reason,
                attempt,
            } => {
                let data =
                    ProvisioningFailed::new(tenant, Some(request.slug.clone()), step, &reason);
                self.publisher
                    .publish(&self.event(&format!("{tenant}/failed/{step}/{attempt}"), data))
                    .await?;
                self.metrics
                    .failed
                    .add(1, &[KeyValue::new("step", step.as_str())]);
            }
        }
        Ok(())
    }
}
