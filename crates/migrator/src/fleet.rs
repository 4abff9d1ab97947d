//! The fleet gauges (docs/OBSERVABILITY.md, "Fleet"): tenants by status and version, behind the
//! latest version, needing reprocessing, drifted, the newest deploy's progress, queue depths and
//! replayed dead letters.
//!
//! Every replica runs this, but only one reports at a time: the one whose own connection holds
//! the `fleet-metrics` advisory lock on the platform database. The census runs on that very
//! connection, so a leader whose connection died notices on its next read, stops reporting, and
//! another replica takes the lock within an interval. The gauges read the last census; a
//! process that does not lead observes nothing, so the series never count twice.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use domain::version::Version;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, ObservableCounter, ObservableGauge};
use shared::bus::{Bus, QueueDepth, WorkQueue};
use shared::platform::PlatformDb;
use shared::platform::fleet::FleetCensus;
use tokio_util::sync::CancellationToken;

/// What the gauges show: the last reading, `None` when this process does not report.
#[derive(Debug, Default)]
struct Reading {
    census: Option<FleetCensus>,
    queues: Option<Vec<QueueDepth>>,
    latest: i64,
}

type Shared = Arc<Mutex<Reading>>;

fn read<T>(shared: &Shared, f: impl FnOnce(&Reading) -> T) -> T {
    f(&shared.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Emits a gauge's values (and their attributes) from a reading.
type Observe = fn(&Reading, &mut dyn FnMut(u64, &[KeyValue]));

/// The instruments; they live as long as this value.
struct Gauges {
    _gauges: Vec<ObservableGauge<u64>>,
    _replayed: ObservableCounter<u64>,
}

fn gauge(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    shared: &Shared,
    observe: Observe,
) -> ObservableGauge<u64> {
    let shared = shared.clone();
    meter
        .u64_observable_gauge(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |observer| {
            read(&shared, |reading| {
                observe(reading, &mut |value, attributes| {
                    observer.observe(value, attributes);
                });
            });
        })
        .build()
}

fn instruments(shared: &Shared) -> Gauges {
    let meter = shared::telemetry::meter();
    let gauges = vec![
        gauge(
            &meter,
            "tenancy.tenants",
            "{tenant}",
            "tenants by status and schema version",
            shared,
            |r, emit| {
                for count in r.census.iter().flat_map(|c| &c.tenants) {
                    emit(
                        count.tenants,
                        &[
                            KeyValue::new("status", count.status.clone()),
                            KeyValue::new("schema_version", count.schema_version.to_string()),
                        ],
                    );
                }
            },
        ),
        gauge(
            &meter,
            "tenancy.tenants.latest_version",
            "",
            "the newest version of the tenant migration set",
            shared,
            |r, emit| {
                if r.census.is_some() {
                    emit(u64::try_from(r.latest).unwrap_or(0), &[]);
                }
            },
        ),
        gauge(
            &meter,
            "tenancy.tenants.behind",
            "{tenant}",
            "active tenants below the latest version",
            shared,
            |r, emit| {
                if let Some(census) = &r.census {
                    emit(census.behind, &[]);
                }
            },
        ),
        gauge(
            &meter,
            "tenancy.tenants.needing_reprocessing",
            "{tenant}",
            "tenants whose last migration or rollback failed for good",
            shared,
            |r, emit| {
                if let Some(census) = &r.census {
                    emit(census.needing_reprocessing, &[]);
                }
            },
        ),
        gauge(
            &meter,
            "tenancy.tenants.drifted",
            "{tenant}",
            "active and suspended tenants whose schema differed from their version's when last checked (tenantctl drift)",
            shared,
            |r, emit| {
                if let Some(census) = &r.census {
                    emit(census.drifted, &[]);
                }
            },
        ),
        gauge(
            &meter,
            "tenancy.tenants.provisioning.oldest_age",
            "s",
            "since the row of the oldest tenant still provisioning last changed (0 when none)",
            shared,
            |r, emit| {
                if let Some(census) = &r.census {
                    emit(census.provisioning_oldest_age.as_secs(), &[]);
                }
            },
        ),
        gauge(
            &meter,
            "tenancy.deploy.tenants",
            "{tenant}",
            "tenants of the newest deploy, by status",
            shared,
            |r, emit| {
                for (status, count) in r
                    .census
                    .iter()
                    .filter_map(|c| c.deploy.as_ref())
                    .flat_map(|d| &d.tenants)
                {
                    emit(*count, &[KeyValue::new("status", *status)]);
                }
            },
        ),
        gauge(
            &meter,
            "tenancy.deploy.target_version",
            "",
            "the newest deploy's target version",
            shared,
            |r, emit| {
                if let Some(deploy) = r.census.as_ref().and_then(|c| c.deploy.as_ref()) {
                    emit(u64::try_from(deploy.target_version).unwrap_or(0), &[]);
                }
            },
        ),
        gauge(
            &meter,
            "tenancy.queue.messages",
            "{message}",
            "messages waiting in each work and dead-letter queue",
            shared,
            |r, emit| {
                for depth in r.queues.iter().flatten() {
                    emit(
                        u64::from(depth.messages),
                        &[KeyValue::new("queue", depth.queue.clone())],
                    );
                }
            },
        ),
        gauge(
            &meter,
            "tenancy.queue.consumers",
            "{consumer}",
            "consumers attached to each queue",
            shared,
            |r, emit| {
                for depth in r.queues.iter().flatten() {
                    emit(
                        u64::from(depth.consumers),
                        &[KeyValue::new("queue", depth.queue.clone())],
                    );
                }
            },
        ),
    ];
    let replayed = {
        let shared = shared.clone();
        meter
            .u64_observable_counter("tenancy.dlq.replayed")
            .with_unit("{message}")
            .with_description("dead letters replayed by operators, per queue (from dlq_replays)")
            .with_callback(move |observer| {
                read(&shared, |reading| {
                    let Some(census) = &reading.census else {
                        return;
                    };
                    // Every work queue, at 0 until its first replay: a rate has a series.
                    for queue in WorkQueue::ALL.map(WorkQueue::base_name) {
                        let count = census
                            .replayed
                            .iter()
                            .find(|(replayed, _)| replayed == queue)
                            .map_or(0, |(_, n)| *n);
                        observer.observe(count, &[KeyValue::new("queue", queue)]);
                    }
                });
            })
            .build()
    };
    Gauges {
        _gauges: gauges,
        _replayed: replayed,
    }
}

/// Reads the census every `interval` while this process holds the lock (and tries to take it
/// otherwise), until `shutdown`.
pub async fn report(
    platform: PlatformDb,
    bus: Arc<Bus>,
    latest: Version,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let shared: Shared = Arc::new(Mutex::new(Reading {
        latest: latest.get(),
        ..Reading::default()
    }));
    let _gauges = instruments(&shared);
    let mut leader = None;
    loop {
        if leader.is_none() {
            leader = platform.lead_fleet_metrics().await;
            if leader.is_some() {
                tracing::debug!("this process reports the fleet metrics");
            }
        }
        let census = match leader.as_mut() {
            Some(reporter) => match reporter.census(latest).await {
                Ok(census) => Some(census),
                Err(error) => {
                    tracing::warn!(%error, "the fleet census failed; another replica may report the fleet metrics");
                    if let Some(reporter) = leader.take() {
                        reporter.close().await;
                    }
                    None
                }
            },
            None => None,
        };
        let queues = match &census {
            Some(_) => bus
                .queue_depths()
                .await
                .map_err(|error| {
                    tracing::debug!(%error, "queue depths not read");
                })
                .ok(),
            None => None,
        };
        {
            let mut reading = shared.lock().unwrap_or_else(PoisonError::into_inner);
            reading.census = census;
            reading.queues = queues;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    if let Some(reporter) = leader {
        reporter.close().await;
    }
}
