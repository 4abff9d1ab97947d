//! Reads the tenant rows of concurrent commands in one statement: the first command to ask
//! reads at once, and those that ask meanwhile share the next read: a deploy's commands cost
//! the platform database one read per batch instead of one per command.

use std::time::Duration;

use shared::platform::PlatformDb;
use shared::platform::deploys::MigrationTenant;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::batcher::Batcher;

const MAX_BATCH: usize = 512;

type Answer = Result<Option<MigrationTenant>, String>;

/// The handle handlers read through.
#[derive(Debug, Clone)]
pub struct TenantReader(Batcher<Uuid, Answer>);

impl TenantReader {
    /// Starts the reader; it ends once every `TenantReader` is dropped.
    pub fn spawn(platform: PlatformDb) -> (TenantReader, JoinHandle<()>) {
        // No linger: a read that waited for company would delay every command alone.
        let (batcher, reader) = Batcher::spawn(Duration::ZERO, MAX_BATCH, move |ids: Vec<Uuid>| {
            let platform = platform.clone();
            async move {
                match platform.migration_tenants(&ids).await {
                    Ok(found) => ids.iter().map(|id| Ok(found.get(id).cloned())).collect(),
                    Err(error) => vec![Err(error.to_string()); ids.len()],
                }
            }
        });
        (TenantReader(batcher), reader)
    }

    /// The tenant `id`, or `None` if the platform database has no such tenant.
    ///
    /// # Errors
    /// The platform database is unreachable or refused (the caller retries the message).
    pub async fn read(&self, id: Uuid) -> Answer {
        self.0
            .call(id)
            .await
            .map_err(|_| "the tenant reader has stopped".to_owned())?
    }
}
