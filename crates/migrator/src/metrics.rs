//! The migrator's instruments (docs/OBSERVABILITY.md): on `/metrics`, and over OTLP when an
//! endpoint is set.

use engine::RunReport;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, ObservableCounter, ObservableGauge};
use shared::tenant_servers::TenantServers;

/// Boundaries for one migration script on one tenant: most take milliseconds, a backfill
/// minutes; the statement timeout caps them.
const MIGRATION_SECONDS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// Boundaries for the migrations pending when a command arrives: usually 0 or 1.
const PENDING: [f64; 9] = [0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0];

pub struct Metrics {
    duration: Histogram<f64>,
    pending: Histogram<u64>,
    commands: Counter<u64>,
    _slots_in_use: ObservableGauge<u64>,
    _slot_waits: ObservableCounter<u64>,
}

impl Metrics {
    pub fn new(servers: TenantServers) -> Self {
        let meter = shared::telemetry::meter();
        let in_use = servers.clone();
        Metrics {
            duration: meter
                .f64_histogram("tenancy.migration.duration")
                .with_unit("s")
                .with_description("duration of one migration script on one tenant, by version and direction")
                .with_boundaries(MIGRATION_SECONDS.to_vec())
                .build(),
            pending: meter
                .u64_histogram("tenancy.migration.pending")
                .with_unit("{migration}")
                .with_description("migrations pending per tenant when its command arrived")
                .with_boundaries(PENDING.to_vec())
                .build(),
            commands: meter
                .u64_counter("tenancy.migration.commands")
                .with_unit("{command}")
                .with_description("commands handled, by command and outcome")
                .build(),
            _slots_in_use: meter
                .u64_observable_gauge("tenancy.migrator.server_slots.in_use")
                .with_unit("{slot}")
                .with_description("tenant-server slots this process holds, by server: busy migrating, or idle and kept for the next command")
                .with_callback(move |observer| {
                    for (server, usage) in in_use.slot_usage() {
                        let server = KeyValue::new("server", server.as_str().to_owned());
                        observer.observe(usage.busy as u64, &[KeyValue::new("state", "busy"), server.clone()]);
                        observer.observe(usage.idle as u64, &[KeyValue::new("state", "idle"), server]);
                    }
                })
                .build(),
            _slot_waits: meter
                .u64_observable_counter("tenancy.migrator.server_slot.waits")
                .with_unit("{wait}")
                .with_description("times this process found every slot of a tenant server taken and waited, by server")
                .with_callback(move |observer| {
                    for (server, usage) in servers.slot_usage() {
                        observer.observe(usage.waits, &[KeyValue::new("server", server.as_str().to_owned())]);
                    }
                })
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

    /// One command ended: `outcome` is `noop`, `applied`, `reverted`, `retried` (given back or
    /// to be tried again), `put_back` (its server had its share in hand: republished at the
    /// end of the queue) or `failed` (for good: dead-lettered).
    pub fn command(&self, command: &'static str, outcome: &'static str) {
        self.commands.add(
            1,
            &[
                KeyValue::new("command", command),
                KeyValue::new("outcome", outcome),
            ],
        );
    }
}
