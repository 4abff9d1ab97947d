//! The real [`ProvisioningEffects`]: the platform database, the tenant server and the bus, with
//! the provisioning metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use domain::Version;
use domain::message::{Provisioned, ProvisioningFailed, ProvisioningStep};
use domain::provisioning::{Progress, Step, StepOutcome, TenantStatus};
use engine::Catalog;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use shared::bus::Publisher;
use shared::platform::PlatformDb;
use shared::tenant_servers::TenantServers;
use uuid::Uuid;

use crate::effects::{Emitted, ProvisioningEffects};
use crate::error::StepError;
use crate::request::Request;
use crate::steps::{self, StepContext};

/// Provisions tenants.
pub struct Provisioner {
    context: StepContext,
    metrics: Metrics,
    /// Attempts of a step whose outcome could not be recorded (the platform database was
    /// gone): added to the step's count by its next record, so `provisioning_steps.attempts`
    /// counts every attempt this process made.
    unrecorded: Mutex<HashMap<(Uuid, Step), i32>>,
}

struct Metrics {
    step_duration: Histogram<f64>,
    total_duration: Histogram<f64>,
    tenants: Counter<u64>,
}

/// Boundaries for one provisioning step: milliseconds for most, seconds for a database
/// created from a template or a long migration set.
const STEP_SECONDS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Boundaries for registration to `active`, retries included.
const TOTAL_SECONDS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

impl Metrics {
    fn new() -> Self {
        let meter = shared::telemetry::meter();
        let metrics = Metrics {
            step_duration: meter
                .f64_histogram("tenancy.provisioning.step.duration")
                .with_unit("s")
                .with_description(
                    "duration of one attempt at a provisioning step, by step and outcome",
                )
                .with_boundaries(STEP_SECONDS.to_vec())
                .build(),
            total_duration: meter
                .f64_histogram("tenancy.provisioning.duration")
                .with_unit("s")
                .with_description("from registration to active, across retries")
                .with_boundaries(TOTAL_SECONDS.to_vec())
                .build(),
            tenants: meter
                .u64_counter("tenancy.provisioning.tenants")
                .with_unit("{tenant}")
                .with_description("tenants whose provisioning ended, by outcome (active, failed)")
                .build(),
        };
        // Both outcomes show from the start at 0: Prometheus's rate() ignores the value a series
        // is first seen with, so a `failed` series born at 1 would hide this process's first
        // failure from the failure-rate alert.
        for outcome in ["active", "failed"] {
            metrics.tenants.add(0, &[KeyValue::new("outcome", outcome)]);
        }
        metrics
    }
}

impl Provisioner {
    pub fn new(
        platform: PlatformDb,
        servers: TenantServers,
        catalog: Arc<Catalog>,
        publisher: Publisher,
    ) -> Self {
        Provisioner {
            context: StepContext::new(platform, servers, catalog, publisher),
            metrics: Metrics::new(),
            unrecorded: Mutex::default(),
        }
    }

    /// Step 3 instantiates a verified template of the tenant set on schema-isolated tenants
    /// (`true`, the default) or always replays the migrations (`false`).
    pub fn with_templates(mut self, on: bool) -> Self {
        self.context.templates = on.then(crate::templates::Templates::new);
        self
    }

    fn unrecorded(&self) -> MutexGuard<'_, HashMap<(Uuid, Step), i32>> {
        self.unrecorded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ProvisioningEffects for Provisioner {
    async fn progress(&self, request: &Request) -> Result<Progress, StepError> {
        Ok(self
            .context
            .platform
            .provisioning_progress(request.tenant_id)
            .await?)
    }

    async fn run(&self, step: Step, request: &Request) -> Result<(), StepError> {
        steps::run(&self.context, step, request).await
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
        let earlier = self.unrecorded().remove(&key).unwrap_or(0);
        let recorded = self
            .context
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
                *self.unrecorded().entry(key).or_default() += 1 + earlier;
                return Err(error.into());
            }
        };
        let result = if *outcome == StepOutcome::Succeeded {
            "ok"
        } else {
            "error"
        };
        self.metrics.step_duration.record(
            duration_ms as f64 / 1000.0,
            &[
                KeyValue::new("step", step.as_str()),
                KeyValue::new("outcome", result),
            ],
        );
        Ok(u32::try_from(attempts).unwrap_or(0))
    }

    async fn set_status(&self, request: &Request, status: TenantStatus) -> Result<(), StepError> {
        Ok(self
            .context
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
                self.context
                    .publish(&format!("{tenant}/{step}/{status}/{attempt}"), data)
                    .await?;
            }
            Emitted::Provisioned => {
                let standing = self
                    .context
                    .storage(request)
                    .await?
                    .status(
                        &request.slug,
                        request.isolation,
                        &self.context.catalog.tenant,
                    )
                    .await?;
                let duration_ms = self.context.platform.tenant_age_ms(tenant).await?;
                let data = Provisioned {
                    tenant_id: tenant,
                    slug: request.slug.clone(),
                    isolation: request.isolation,
                    schema_version: standing.applied_version.unwrap_or(Version::ZERO),
                    duration_ms: u64::try_from(duration_ms).unwrap_or(0),
                };
                self.context
                    .publish(&format!("{tenant}/provisioned"), data)
                    .await?;
                self.metrics
                    .tenants
                    .add(1, &[KeyValue::new("outcome", "active")]);
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
                self.context
                    .publish(&format!("{tenant}/failed/{step}/{attempt}"), data)
                    .await?;
                self.metrics
                    .tenants
                    .add(1, &[KeyValue::new("outcome", "failed")]);
            }
        }
        Ok(())
    }
}
