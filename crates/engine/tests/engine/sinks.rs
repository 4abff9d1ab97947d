//! Progress sinks that let a test observe a run and hold it at a chosen point.

use std::sync::{Arc, Mutex};

use engine::{MigrationEvent, ProgressSink};
use tokio::sync::watch;

/// Records every event.
#[derive(Default, Clone)]
pub struct Recorder(Arc<Mutex<Vec<MigrationEvent>>>);

impl Recorder {
    pub fn events(&self) -> Vec<MigrationEvent> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn saw(&self, predicate: impl Fn(&MigrationEvent) -> bool) -> bool {
        self.events().iter().any(predicate)
    }
}

impl ProgressSink for Recorder {
    async fn emit(&self, event: MigrationEvent) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

/// Holds every run at its first `Started` event (its lock is held by then) until opened.
#[derive(Clone)]
pub struct Gate {
    recorder: Recorder,
    reached: watch::Sender<usize>,
    open: watch::Sender<bool>,
}

impl Gate {
    pub fn closed() -> Self {
        Gate {
            recorder: Recorder::default(),
            reached: watch::channel(0).0,
            open: watch::channel(false).0,
        }
    }

    pub async fn wait_reached(&self, runs: usize) {
        let mut reached = self.reached.subscribe();
        let _ = reached.wait_for(|n| *n >= runs).await;
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub fn events(&self) -> Vec<MigrationEvent> {
        self.recorder.events()
    }
}

impl ProgressSink for Gate {
    async fn emit(&self, event: MigrationEvent) {
        let first_start = matches!(event, MigrationEvent::Started { .. })
            && !self.recorder.saw(|e| matches!(e, MigrationEvent::Started { target, .. } if Some(target) == event_target(&event)));
        self.recorder.emit(event).await;
        if !first_start {
            return;
        }
        self.reached.send_modify(|n| *n += 1);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
}

fn event_target(event: &MigrationEvent) -> Option<&engine::Target> {
    match event {
        MigrationEvent::Started { target, .. } => Some(target),
        _ => None,
    }
}

/// Panics at the first `Started` event, as a bug in a caller's sink would.
pub struct Panicking;

impl ProgressSink for Panicking {
    async fn emit(&self, event: MigrationEvent) {
        if matches!(event, MigrationEvent::Started { .. }) {
            panic!("a sink panicked while the lock was held");
        }
    }
}
