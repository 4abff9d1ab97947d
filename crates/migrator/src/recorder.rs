//! Writes the migrator's results to the platform database in batches: every handler waits for
//! its own result to be committed before its message is acknowledged, and the results of
//! concurrent handlers share one transaction. A no-op command then costs a share of one read
//! and a share of one write, which is what makes a deploy with nothing pending fast.

use std::time::Duration;

use shared::platform::PlatformDb;
use shared::platform::deploys::MigrationResult;
use tokio::task::JoinHandle;

use crate::batcher::Batcher;

/// How long the writer waits for more results once it has one: short, because every handler of
/// the batch waits for it.
const LINGER: Duration = Duration::from_millis(2);
const MAX_BATCH: usize = 512;

/// The handle handlers record through.
#[derive(Debug, Clone)]
pub struct Recorder(Batcher<MigrationResult, Result<(), String>>);

impl Recorder {
    /// Starts the writer; it ends once every `Recorder` is dropped.
    pub fn spawn(platform: PlatformDb) -> (Recorder, JoinHandle<()>) {
        let (batcher, writer) = Batcher::spawn(LINGER, MAX_BATCH, move |results| {
            let platform = platform.clone();
            async move {
                let outcome = platform
                    .record_migration_results(&results)
                    .await
                    .map_err(|e| format!("recording the result failed: {e}"));
                vec![outcome; results.len()]
            }
        });
        (Recorder(batcher), writer)
    }

    /// Records `result`; returns once it is committed.
    ///
    /// # Errors
    /// The platform database refused or is unreachable (the caller retries the message).
    pub async fn record(&self, result: MigrationResult) -> Result<(), String> {
        self.0
            .call(result)
            .await
            .map_err(|_| "the result writer has stopped".to_owned())?
    }
}
