#![doc = include_str!("../README.md")]

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use domain::message::AnyEvent;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use shared::bus::WorkQueue;
use shared::bus::consumer::{self, BatchHandler, ConsumerOptions, Delivered};
use shared::platform::{AuditRecord, PlatformDb};
use shared::service::Context;
use tokio_util::sync::CancellationToken;

/// Runs the auditor until `shutdown`.
///
/// # Errors
/// The consumer could not run (the broker connection could not be recovered).
pub async fn run(ctx: Context, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handler = Arc::new(Auditor::new(ctx.platform.clone()));
    let options = ConsumerOptions {
        batch_size: 1000,
        ready: Some(ctx.health.component("auditor")),
        ..ConsumerOptions::default()
    };
    consumer::consume_batches(
        &ctx.bus,
        WorkQueue::AuditorEvents,
        handler,
        options,
        shutdown,
    )
    .await?;
    Ok(())
}

/// Stores batches of events.
pub struct Auditor {
    platform: PlatformDb,
    events: Counter<u64>,
    lag: Histogram<f64>,
    batch_duration: Histogram<f64>,
}

/// Boundaries for recorded minus occurred: milliseconds when the auditor keeps up, up to an
/// hour when it was down or a backlog is draining.
const LAG_SECONDS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Boundaries for storing one batch (up to 500 events in one statement).
const BATCH_SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Auditor {
    pub fn new(platform: PlatformDb) -> Self {
        let meter = shared::telemetry::meter();
        Auditor {
            platform,
            events: meter
                .u64_counter("tenancy.audit.events")
                .with_unit("{event}")
                .with_description(
                    "events recorded, by outcome: stored; duplicate (a redelivery, already stored); \
                     conflict (an id reused for other content, stored as a conflict row)",
                )
                .build(),
            lag: meter
                .f64_histogram("tenancy.audit.lag")
                .with_unit("s")
                .with_description("recorded minus occurred, per event of each stored batch")
                .with_boundaries(LAG_SECONDS.to_vec())
                .build(),
            batch_duration: meter
                .f64_histogram("tenancy.audit.batch.duration")
                .with_unit("s")
                .with_description("time to store one batch")
                .with_boundaries(BATCH_SECONDS.to_vec())
                .build(),
        }
    }
}

/// The row stored for an event: personal data removed (contract §2.3), with the digest of the
/// content as received, which tells a redelivery from an id reused for another event.
pub fn record_of(event: &AnyEvent) -> AuditRecord {
    AuditRecord {
        id: event.id,
        event_type: event.type_.clone(),
        tenant_id: event.tenant_id(),
        source: event.redacted_source().to_owned(),
        occurred_at: event.time,
        data: event.redacted_data(),
        content_digest: Some(event.content_digest()),
        conflicts_with: None,
    }
}

impl BatchHandler for Auditor {
    async fn handle_batch(&self, events: &[Delivered<AnyEvent>]) -> Result<(), String> {
        let started = Instant::now();
        let records: Vec<AuditRecord> = events
            .iter()
            .map(|delivered| record_of(&delivered.event))
            .collect();
        let inserted = self
            .platform
            .insert_audit_events(&records)
            .await
            .map_err(|e| e.to_string())?;
        self.batch_duration
            .record(started.elapsed().as_secs_f64(), &[]);
        let recorded = Utc::now();
        for delivered in events {
            let lag = (recorded - delivered.event.time)
                .to_std()
                .unwrap_or_default();
            self.lag.record(lag.as_secs_f64(), &[]);
        }
        for (outcome, count) in [
            ("stored", inserted.stored),
            ("duplicate", inserted.duplicates),
            ("conflict", inserted.conflicts.len() as u64),
        ] {
            self.events.add(count, &[KeyValue::new("outcome", outcome)]);
        }
        for conflict in &inserted.conflicts {
            // Ids, type and (redacted) source only: the data may hold what the producer should
            // not have sent.
            tracing::warn!(
                event_id = %conflict.conflicts_with,
                conflict_id = %conflict.id,
                event_type = %conflict.event_type,
                source = %conflict.source,
                "an event id was reused for different content (a producer bug); stored as a conflict row beside the first"
            );
        }
        tracing::debug!(
            events = records.len(),
            stored = inserted.stored,
            conflicts = inserted.conflicts.len(),
            "batch stored"
        );
        Ok(())
    }
}
