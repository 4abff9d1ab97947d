//! The migrator's instruments (OpenTelemetry; exported when `OTEL_*` is set).

use engine::RunReport;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use uuid::Uuid;

pub struct Metrics {
    duration: Histogram<f64>,
    pending: Histogram<u64>,
    failures: Counter<u64>,
    commands: Counter<u64>,
}

impl Metrics {
    pub fn new() -> Self {
        let meter = shared::telemetry::meter();
        Metrics {
            duration: meter
                .f64_histogram("tenancy.migration.duration")
                .with_unit("s")
                .with_description(
                    "duration of one tenant migration script, by version and direction",
                )
                .build(),
            pending: meter
                .u64_histogram("tenancy.migration.pending")
                .with_description("migrations pending per tenant when its command arrived")
                .build(),
            failures: meter
                .u64_counter("tenancy.migration.failures")
                .with_description(
                    "failed tenant migrations, by deploy and whether they will be retried",
                )
                .build(),
            commands: meter
                .u64_counter("tenancy.migration.commands")
                .with_description(
                    "commands handled, by kind and outcome (noop, applied, reverted, failed)",
                )
                .build(),
        }
    }

    pub fn pending(&self, count: usize) {
        self.pending.record(count as u64, &[]);
    }

    pub fn ran(&self, report: &RunReport, direction: &'static str) {
        for step in &report.steps {
            self.duration.record(
                step.duration.as_secs_f64(),
                &[
                    KeyValue::new("version", step.version.to_string()),
                    KeyValue::new("direction", direction),
                ],
            );
        }
    }

    pub fn command(&self, kind: &'static str, outcome: &'static str) {
        self.commands.add(
            1,
            &[
                KeyValue::new("kind", kind),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    pub fn failed(&self, deploy: Option<Uuid>, transient: bool) {
        self.failures.add(
            1,
            &[
                KeyValue::new(
                    "deploy_id",
                    deploy.map_or_else(|| "none".to_owned(), |d| d.to_string()),
                ),
                KeyValue::new("transient", transient),
            ],
        );
    }
}
