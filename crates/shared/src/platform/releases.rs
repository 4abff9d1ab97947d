//! `released_migrations`: the record behind [`engine::release`], and the
//! [`ReleaseRecorder`] through which the services add to it.
//!
//! A migration is released when it first completes on a tenant (the provisioner's or the
//! migrator's engine run). One that failed everywhere never reached a tenant: it may still be
//! fixed, as the engine has always allowed for a file that never completed.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{PlatformDb, StoreError, not_migrated, with_pool};
use domain::Version;
use engine::release::{self, Coverage, ReleaseConflict, Released};
use engine::{MigrationSet, SetKind};

impl PlatformDb {
    /// Every released migration, by set and version. Empty before the platform migrations have
    /// created the record (a fleet's first deploy).
    ///
    /// # Errors
    /// A database error, or a row this build cannot read.
    pub async fn released_migrations(&self) -> Result<Vec<Released>, StoreError> {
        const SQL: &str = "SELECT migration_set, version, description, checksum FROM released_migrations ORDER BY migration_set, version";
        type Row = (String, i64, String, String);
        let rows: Result<Vec<Row>, sqlx::Error> =
            with_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await);
        let rows = match rows.map_err(not_migrated("released_migrations")) {
            Ok(rows) => rows,
            Err(StoreError::NotMigrated(_)) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        rows.into_iter()
            .map(|(set, version, description, checksum)| {
                let set = SetKind::ALL
                    .into_iter()
                    .find(|kind| kind.dir_name() == set)
                    .ok_or_else(|| StoreError::InvalidRow(format!("released set {set:?}")))?;
                let version =
                    Version::new(version).map_err(|e| StoreError::InvalidRow(e.to_string()))?;
                Ok(Released {
                    set,
                    version,
                    description,
                    checksum,
                })
            })
            .collect()
    }

    /// Records the migrations of `set` up to `up_to` that are not recorded yet (the first
    /// record of a version wins), then compares the whole set with the record (as far as
    /// `coverage` says): the conflicts come back, and none of the set's files may be used while there are any. Safe to run
    /// from several processes at once: whichever records a version first, every other one
    /// compares with that.
    ///
    /// # Errors
    /// A database error.
    pub async fn release(
        &self,
        set: &MigrationSet,
        up_to: Option<Version>,
        released_by: &str,
        coverage: Coverage,
    ) -> Result<Vec<ReleaseConflict>, StoreError> {
        let releasing = release::releasable(set, up_to);
        let insert = "INSERT INTO released_migrations (migration_set, version, description, checksum, released_by)
                      VALUES ($1, $2, $3, $4, $5) ON CONFLICT (migration_set, version) DO NOTHING";
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for migration in &releasing {
                sqlx::query(insert)
                    .bind(migration.set.dir_name())
                    .bind(migration.version.get())
                    .bind(&migration.description)
                    .bind(&migration.checksum)
                    .bind(released_by)
                    .execute(&mut *tx)
                    .await
                    .map_err(not_migrated("released_migrations"))?;
            }
            tx.commit().await?;
        });
        let recorded = self.released_migrations().await?;
        Ok(release::conflicts(&recorded, set, coverage))
    }

    /// What `set` contradicts in the record, without recording anything.
    ///
    /// # Errors
    /// A database error.
    pub async fn release_conflicts(
        &self,
        set: &MigrationSet,
        coverage: Coverage,
    ) -> Result<Vec<ReleaseConflict>, StoreError> {
        let recorded = self.released_migrations().await?;
        Ok(release::conflicts(&recorded, set, coverage))
    }
}

/// Adds what a process applies to the released record: one statement the first time a tenant
/// reaches a newer version of a set, none after (a fleet deploy costs one per process).
#[derive(Debug)]
pub struct ReleaseRecorder {
    platform: PlatformDb,
    released_by: String,
    recorded: Mutex<HashMap<SetKind, Version>>,
}

impl ReleaseRecorder {
    /// `released_by` says who applied them (`provisioner`, `migrator`), in the record.
    pub fn new(platform: PlatformDb, released_by: impl Into<String>) -> Self {
        ReleaseRecorder {
            platform,
            released_by: released_by.into(),
            recorded: Mutex::default(),
        }
    }

    /// After a tenant reached `reached` in `set` through the engine, which checked the tenant's
    /// history against these very files on the way: the migrations of `set` up to `reached`
    /// are released. Never fails the caller (the tenant's migration is done): a record that
    /// cannot be written is tried again with the next tenant, and contents that contradict the
    /// record (another build applied other files under the same versions) are an error in the
    /// log, which every later deploy and service start refuses.
    pub async fn applied(&self, set: &MigrationSet, reached: Version) {
        let known = self.lock().get(&set.kind).copied();
        if known.is_some_and(|known| reached <= known) {
            return;
        }
        match self
            .platform
            .release(set, Some(reached), &self.released_by, Coverage::UpToNewest)
            .await
        {
            Ok(conflicts) => {
                for conflict in &conflicts {
                    tracing::error!(
                        set = %set.kind,
                        %conflict,
                        "tenants now hold a released migration in two versions: deploys and service starts refuse this set until the file is restored"
                    );
                }
                let mut recorded = self.lock();
                let entry = recorded.entry(set.kind).or_insert(reached);
                *entry = (*entry).max(reached);
            }
            Err(error) => tracing::warn!(
                set = %set.kind,
                %error,
                "could not record the released migrations; trying again with the next tenant"
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SetKind, Version>> {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }
}
