//! Writes the migrator's results to the platform database in batches: every handler waits for
//! its own result to be committed before its message is acknowledged, and the results of
//! concurrent handlers share one transaction. A no-op command then costs one read and a share
//! of a write, which is what makes a deploy with nothing pending fast.

use std::time::Duration;

use shared::store::PlatformDb;
use shared::store::deploys::MigrationResult;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

type Request = (MigrationResult, oneshot::Sender<Result<(), String>>);

/// How long the writer waits for more results once it has one: short, because every handler of
/// the batch waits for it.
const LINGER: Duration = Duration::from_millis(2);
const MAX_BATCH: usize = 512;

/// The handle handlers record through.
#[derive(Debug, Clone)]
pub struct Recorder {
    requests: mpsc::Sender<Request>,
}

impl Recorder {
    /// Starts the writer; it ends once every `Recorder` is dropped.
    pub fn spawn(platform: PlatformDb) -> (Recorder, JoinHandle<()>) {
        let (requests, mut incoming) = mpsc::channel::<Request>(MAX_BATCH * 2);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = incoming.recv().await {
                batch.push(first);
                let deadline = tokio::time::Instant::now() + LINGER;
                while batch.len() < MAX_BATCH {
                    match tokio::time::timeout_at(deadline, incoming.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        Ok(None) | Err(_) => break,
                    }
                }
                let results: Vec<MigrationResult> = batch.iter().map(|(r, _)| r.clone()).collect();
                let outcome = platform
                    .record_migration_results(&results)
                    .await
                    .map_err(|e| format!("recording the result failed: {e}"));
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(outcome.clone());
                }
            }
        });
        (Recorder { requests }, writer)
    }

    /// Records `result`; returns once it is committed.
    ///
    /// # Errors
    /// The platform database refused or is unreachable (the caller retries the message).
    pub async fn record(&self, result: MigrationResult) -> Result<(), String> {
        let (reply, committed) = oneshot::channel();
        self.requests
            .send((result, reply))
            .await
            .map_err(|_| "the result writer has stopped".to_owned())?;
        committed
            .await
            .map_err(|_| "the result writer has stopped".to_owned())?
    }
}
