//! `released_migrations`: the record behind [`crate::migrate::release`].

use super::{PlatformDb, StoreError, not_migrated};
use crate::migrate::release::{self, Coverage, ReleaseConflict, Released};
use crate::migrate::{MigrationSet, SetKind, Version};

impl PlatformDb {
    /// Every released migration, by set and version. Empty before the platform migrations have
    /// created the record (a fleet's first deploy).
    ///
    /// # Errors
    /// A database error, or a row this build cannot read.
    pub async fn released_migrations(&self) -> Result<Vec<Released>, StoreError> {
        const SQL: &str = "SELECT migration_set, version, description, checksum FROM released_migrations ORDER BY migration_set, version";
        type Row = (String, i64, String, String);
        let rows: Result<Vec<Row>, sqlx::Error> = match self {
            PlatformDb::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
            PlatformDb::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
        };
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
        match self {
            PlatformDb::Postgres(pool) => {
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
            }
            PlatformDb::Sqlite(pool) => {
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
            }
        }
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
