#![doc = include_str!("../README.md")]

use std::sync::Arc;
use std::time::Instant;

use domain::message::AnyEvent;
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
    stored: Counter<u64>,
    duplicates: Counter<u64>,
    conflicts: Counter<u64>,
    batch_duration: Histogram<f64>,
}

impl Auditor {
    pub fn new(platform: PlatformDb) -> Self {
        let meter = shared::telemetry::meter();
        Auditor {
            platform,
            stored: meter
                .u64_counter("tenancy.auditor.events_stored")
                .with_description("events stored in audit_events")
                .build(),
            duplicates: meter
                .u64_counter("tenancy.auditor.events_duplicate")
                .with_description("redelivered events whose id was already stored")
                .build(),
            conflicts: meter
                .u64_counter("tenancy.auditor.events_conflicting")
                .with_description(
                    "events whose id was already stored with other content (a producer reusing ids), stored as conflict rows",
                )
                .build(),
            batch_duration: meter
                .f64_histogram("tenancy.auditor.batch_duration")
                .with_unit("s")
                .with_description("time to store one batch")
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
        self.stored.add(inserted.stored, &[]);
        self.duplicates.add(inserted.duplicates, &[]);
        self.conflicts.add(inserted.conflicts.len() as u64, &[]);
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
