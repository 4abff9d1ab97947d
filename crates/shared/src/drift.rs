//! Drift: tenants whose schema is not what their version's migrations build, because someone
//! changed it by hand (or a migration ran outside the engine). Each tenant's fingerprint is
//! compared with the expected one of its isolation mode and version; a difference is drift,
//! listed object by object.
//!
//! ```text
//!   tenants (platform) ──► by server ──► expected fingerprints: kept ones, or computed once on a
//!                                        scratch tenant of that server and kept
//!                                   ──► schemas: catalog stamps, one query per 5,000; a stamp
//!                                       as kept (same version and expectation): last result
//!                                       stands; the others: one catalog query per batch
//!                                       databases: one connection and query per tenant
//!                                   ──► compare ──► record (tenant_drift, stamps) ──► report
//! ```
//!
//! Stamps ([`engine::fingerprint::CatalogStamp`]) make a steady check of an unchanged fleet cost
//! a count per schema instead of a deparse of its every definition. Each stamp is read before
//! the fingerprint it is kept with, so a change made between the two reads changes the stamp
//! the next check sees, and that check reads the tenant again. Database-isolated tenants are
//! always read in full: each needs a connection of its own, which costs more than the
//! deparsing a stamp would spare. `full` ignores kept stamps (and keeps new ones).
//!
//! The tenant's version is the one the services recorded: a tenant whose history says
//! otherwise differs from its recorded version's shape, which is worth knowing too.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::platform::fingerprints::{
    DriftCandidate, DriftRecord, Expected, ExpectedKey, KeptResult, KeptStamp,
};
use crate::platform::{PlatformDb, StoreError};
use crate::tenant_servers::TenantServers;
use crate::tenant_storage::TenantStorage;
use domain::server::ServerName;
use domain::{Isolation, Version};
use engine::MigrationSet;
use engine::fingerprint::{CatalogStamp, Difference};
use futures_util::{StreamExt as _, stream};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// Schemas read by one catalog query, unless told otherwise: large enough that 10,000 tenants
/// take a few dozen queries, small enough that one answer stays a few megabytes.
pub const DEFAULT_BATCH: u32 = 500;

/// Schemas whose stamps one query reads, at least: `pg_class` and `pg_type` have no index by
/// namespace, so each stamp query scans them whole (a third of a second on a 10,000-tenant
/// database), and the answer is one short row per schema. Measured on 10,000 schemas: 500 to a
/// query cost three times what 5,000 did per tenant.
const STAMP_BATCH: usize = 5_000;

/// Batches of one server read at once: the server deparses every object's definition, which
/// is CPU work a second connection spreads over a second core, and two keep the next batch
/// ready while this process compares the last.
const BATCHES_AT_ONCE: usize = 2;

/// A tenant that differs from its version's expected schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drifted {
    pub tenant: DriftCandidate,
    pub expected_digest: String,
    pub digest: String,
    pub differences: Vec<Difference>,
}

/// A tenant the check could not compare, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchecked {
    pub tenant: DriftCandidate,
    pub reason: String,
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftReport {
    /// Tenants compared (clean or drifted).
    pub checked: usize,
    pub drifted: Vec<Drifted>,
    pub unchecked: Vec<Unchecked>,
    /// Full catalog reads issued to tenant servers (reading tenants' fingerprints, not
    /// computing expectations nor reading stamps).
    pub catalog_queries: usize,
    /// Stamp queries issued to tenant servers (one per 5,000 schema-isolated tenants, or per
    /// batch when batches are larger).
    pub stamp_queries: usize,
    /// Tenants whose stamp was as kept: their last result stands, without a full read.
    pub stamps_unchanged: usize,
    /// Expected fingerprints computed (and kept) by this check.
    pub computed: Vec<ExpectedKey>,
    /// Servers the check read.
    pub servers: usize,
}

impl DriftReport {
    pub fn is_clean(&self) -> bool {
        self.drifted.is_empty() && self.unchecked.is_empty()
    }
}

/// A drift check of some tenants against `set`.
#[derive(Debug)]
pub struct DriftCheck<'a> {
    pub platform: &'a PlatformDb,
    pub servers: &'a TenantServers,
    pub set: &'a MigrationSet,
    /// Schemas per catalog query.
    pub batch: u32,
    /// Reads every tenant in full, whatever its kept stamp says (and keeps the new stamps).
    pub full: bool,
}

/// What a check does with a tenant, given its kept result and its stamp now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reuse {
    /// Clean when last read, and nothing changed since.
    Clean,
    /// Drifted when last read (its fingerprint's digest then) with these differences, and
    /// nothing changed since.
    Drifted {
        digest: String,
        differences: Vec<Difference>,
    },
}

/// Whether `tenant`'s last result stands: its stamp now is the one kept, and so are its
/// server, version and expectation (a deploy or an edited migration changes what the same
/// schema should be compared with). A drifted result stands only with its differences, read
/// back exactly; otherwise the tenant is read again. Pure.
fn reuse(
    tenant: &DriftCandidate,
    now: Option<&CatalogStamp>,
    kept: Option<&KeptResult>,
    wanted: &Expected,
) -> Option<Reuse> {
    let kept = kept?;
    let same = now == Some(&kept.stamp.stamp)
        && kept.stamp.server == tenant.server
        && kept.stamp.schema_version == tenant.schema_version
        && kept.stamp.expected_digest == wanted.digest();
    if !same {
        return None;
    }
    if kept.stamp.digest == wanted.digest() {
        return Some(Reuse::Clean);
    }
    let (digest, lines) = kept.drift.as_ref()?;
    if *digest != kept.stamp.digest || lines.is_empty() {
        return None;
    }
    lines
        .iter()
        .map(|line| Difference::read(line, wanted.fingerprint()))
        .collect::<Option<Vec<_>>>()
        .map(|differences| Reuse::Drifted {
            digest: digest.clone(),
            differences,
        })
}

impl DriftCheck<'_> {
    /// Compares `tenants` with their expected fingerprints, records the result (the drifted
    /// ones in `tenant_drift`, the clean ones out of it) and reports it.
    ///
    /// # Errors
    /// A platform database error. A server that cannot be reached, or an expected fingerprint
    /// that cannot be computed, leaves its tenants unchecked (in the report), not an error.
    pub async fn run(&self, tenants: Vec<DriftCandidate>) -> Result<DriftReport, StoreError> {
        let mut expected = self.platform.expected_fingerprints().await?;
        let kept = if self.full {
            HashMap::new()
        } else {
            let ids: Vec<Uuid> = tenants
                .iter()
                .filter(|t| t.isolation == Isolation::Schema)
                .map(|t| t.id)
                .collect();
            self.platform.kept_results(&ids).await?
        };
        let mut by_server: BTreeMap<ServerName, Vec<DriftCandidate>> = BTreeMap::new();
        for tenant in tenants {
            by_server
                .entry(tenant.server.clone())
                .or_default()
                .push(tenant);
        }
        let mut report = DriftReport {
            servers: by_server.len(),
            ..DriftReport::default()
        };
        let mut checked = Vec::new();
        let mut stamps = Vec::new();
        for (server, tenants) in by_server {
            match self
                .check_server(&server, tenants, &mut expected, &kept, &mut report)
                .await
            {
                Ok((ids, read)) => {
                    checked.extend(ids);
                    stamps.extend(read);
                }
                Err((tenants, reason)) => unchecked(&mut report, tenants, &reason),
            }
        }
        let records: Vec<DriftRecord> = report
            .drifted
            .iter()
            .map(|d| DriftRecord {
                tenant_id: d.tenant.id,
                schema_version: d.tenant.schema_version,
                expected_digest: d.expected_digest.clone(),
                digest: d.digest.clone(),
                differences: d.differences.iter().map(ToString::to_string).collect(),
            })
            .collect();
        self.platform
            .record_drift(&checked, &records, &stamps)
            .await?;
        Ok(report)
    }

    /// One server's tenants: their expectations first (kept or computed there), then the
    /// schemas' stamps, then the catalogs of those whose result cannot be reused, batch by
    /// batch. Returns the ids of the tenants compared and the stamps of those read in full;
    /// the whole server's tenants and the reason when it cannot be reached.
    async fn check_server(
        &self,
        server: &ServerName,
        tenants: Vec<DriftCandidate>,
        expected: &mut HashMap<ExpectedKey, Expected>,
        kept: &HashMap<Uuid, KeptResult>,
        report: &mut DriftReport,
    ) -> Result<(Vec<Uuid>, Vec<KeptStamp>), (Vec<DriftCandidate>, String)> {
        let storage = match self.servers.storage(server).await {
            Ok(storage) => storage,
            Err(error) => {
                return Err((
                    tenants,
                    format!("server {server} cannot be reached: {error}"),
                ));
            }
        };
        let major = match storage.server_major().await {
            Ok(major) => major,
            Err(error) => {
                return Err((
                    tenants,
                    format!("server {server}: reading its version: {error}"),
                ));
            }
        };
        let key = |tenant: &DriftCandidate| ExpectedKey {
            isolation: tenant.isolation,
            version: tenant.schema_version,
            server_major: major,
        };
        let mut refused = BTreeMap::new();
        for wanted in tenants.iter().map(key).collect::<BTreeSet<_>>() {
            match self.ensure_expected(&storage, wanted, expected).await {
                Ok(true) => report.computed.push(wanted),
                Ok(false) => {}
                Err(reason) => {
                    refused.insert(wanted, reason);
                }
            }
        }
        let (readable, without_expectation): (Vec<_>, Vec<_>) = tenants
            .into_iter()
            .partition(|t| !refused.contains_key(&key(t)));
        for tenant in without_expectation {
            let reason = refused[&key(&tenant)].clone();
            report.unchecked.push(Unchecked { tenant, reason });
        }

        let mut checked = Vec::new();
        let mut kept_now = Vec::new();
        let schema_batch = usize::try_from(self.batch.max(1)).unwrap_or(usize::MAX);
        for isolation in [Isolation::Schema, Isolation::Database] {
            let of_mode: Vec<&DriftCandidate> = readable
                .iter()
                .filter(|t| t.isolation == isolation)
                .collect();
            let stamps = match isolation {
                Isolation::Schema => {
                    let batch = schema_batch.max(STAMP_BATCH);
                    self.read_stamps(server, &storage, &of_mode, batch, report)
                        .await
                }
                Isolation::Database => HashMap::new(),
            };
            let mut of_mode_to_read = Vec::with_capacity(of_mode.len());
            for tenant in of_mode {
                let Some(wanted) = expected.get(&key(tenant)) else {
                    continue;
                };
                match reuse(tenant, stamps.get(&tenant.id), kept.get(&tenant.id), wanted) {
                    Some(reused) => {
                        report.checked += 1;
                        report.stamps_unchanged += 1;
                        checked.push(tenant.id);
                        if let Reuse::Drifted {
                            digest,
                            differences,
                        } = reused
                        {
                            report.drifted.push(Drifted {
                                tenant: tenant.clone(),
                                expected_digest: wanted.digest().to_owned(),
                                digest,
                                differences,
                            });
                        }
                    }
                    None => of_mode_to_read.push(tenant),
                }
            }
            let of_mode = of_mode_to_read;
            // A batch of schemas is one query; the databases are one batch, a query each.
            let batch = match isolation {
                Isolation::Schema => schema_batch,
                Isolation::Database => of_mode.len().max(1),
            };
            let mut reads = stream::iter(of_mode.chunks(batch))
                .map(|tenants| {
                    let storage = &storage;
                    async move {
                        let slugs: Vec<_> = tenants.iter().map(|t| t.slug.clone()).collect();
                        (tenants, storage.fingerprints(isolation, &slugs).await)
                    }
                })
                .buffered(BATCHES_AT_ONCE);
            while let Some((tenants, read)) = reads.next().await {
                let mut read = match read {
                    Ok(read) => read,
                    Err(error) => {
                        let reason = format!("server {server}: reading the catalogs: {error}");
                        let tenants = tenants.iter().map(|t| (*t).clone()).collect();
                        unchecked(report, tenants, &reason);
                        continue;
                    }
                };
                report.catalog_queries += match isolation {
                    Isolation::Schema => 1,
                    Isolation::Database => tenants.len(),
                };
                for tenant in tenants {
                    let Some(wanted) = expected.get(&key(tenant)) else {
                        continue;
                    };
                    let actual = read.remove(&tenant.slug).unwrap_or_default();
                    report.checked += 1;
                    checked.push(tenant.id);
                    let digest = actual.digest();
                    if let Some(stamp) = stamps.get(&tenant.id) {
                        kept_now.push(KeptStamp {
                            tenant_id: tenant.id,
                            server: tenant.server.clone(),
                            schema_version: tenant.schema_version,
                            expected_digest: wanted.digest().to_owned(),
                            stamp: stamp.clone(),
                            digest: digest.clone(),
                        });
                    }
                    if digest != wanted.digest() {
                        report.drifted.push(Drifted {
                            tenant: (*tenant).clone(),
                            expected_digest: wanted.digest().to_owned(),
                            digest,
                            differences: actual.diff(wanted.fingerprint()),
                        });
                    }
                }
            }
        }
        Ok((checked, kept_now))
    }

    /// The stamps of `tenants` (schema-isolated), a batch per query. A batch whose stamps
    /// cannot be read is read in full, without stamps: the full read says what is wrong.
    async fn read_stamps(
        &self,
        server: &ServerName,
        storage: &TenantStorage,
        tenants: &[&DriftCandidate],
        batch: usize,
        report: &mut DriftReport,
    ) -> HashMap<Uuid, CatalogStamp> {
        let mut stamps = HashMap::new();
        let mut reads = stream::iter(tenants.chunks(batch))
            .map(|tenants| async move {
                let slugs: Vec<_> = tenants.iter().map(|t| t.slug.clone()).collect();
                (
                    tenants,
                    storage.catalog_stamps(Isolation::Schema, &slugs).await,
                )
            })
            .buffered(BATCHES_AT_ONCE);
        while let Some((tenants, read)) = reads.next().await {
            report.stamp_queries += 1;
            let mut read = match read {
                Ok(read) => read,
                Err(error) => {
                    tracing::warn!(server = %server, error = %error, "reading catalog stamps; reading those tenants in full");
                    continue;
                }
            };
            for tenant in tenants {
                if let Some(stamp) = read.remove(&tenant.slug) {
                    stamps.insert(tenant.id, stamp);
                }
            }
        }
        stamps
    }

    /// Makes sure `expected` holds the fingerprint of `key` built from this set: `true` when it
    /// was computed now (and kept), `false` when it was there; the reason when it cannot be had.
    async fn ensure_expected(
        &self,
        storage: &TenantStorage,
        key: ExpectedKey,
        expected: &mut HashMap<ExpectedKey, Expected>,
    ) -> Result<bool, String> {
        let Some(set_checksum) = set_checksum(self.set, key.version) else {
            return Err(format!(
                "version {} is not one of this build's tenant migrations (newest {}): run the check from the build that deployed it",
                key.version,
                self.set
                    .latest()
                    .map_or_else(|| "none".to_owned(), |v| v.to_string())
            ));
        };
        if expected
            .get(&key)
            .is_some_and(|kept| kept.set_checksum() == set_checksum)
        {
            return Ok(false);
        }
        let fingerprint = storage
            .expected_fingerprint(key.isolation, self.set, key.version)
            .await
            .map_err(|error| {
                format!(
                    "no expected fingerprint of version {} ({} isolation, PostgreSQL {}) is kept yet, and computing it on a scratch tenant failed: {error}. Computing one needs the provisioner's rights on the tenant server (create schemas, databases and roles): run `tenantctl drift` once with them",
                    key.version, key.isolation, key.server_major
                )
            })?;
        let computed = Expected::new(set_checksum, fingerprint);
        self.platform
            .record_expected_fingerprint(key, &computed)
            .await
            .map_err(|error| format!("keeping the expected fingerprint: {error}"))?;
        expected.insert(key, computed);
        Ok(true)
    }
}

fn unchecked(report: &mut DriftReport, tenants: Vec<DriftCandidate>, reason: &str) {
    report
        .unchecked
        .extend(tenants.into_iter().map(|tenant| Unchecked {
            tenant,
            reason: reason.to_owned(),
        }));
}

/// Names the migrations of `set` up to `version` (their versions and checksums); `None` when
/// `version` is not one of them.
pub fn set_checksum(set: &MigrationSet, version: Version) -> Option<String> {
    if !set.migrations.iter().any(|m| m.version == version) {
        return None;
    }
    let mut hasher = Sha256::new();
    for migration in set.migrations.iter().filter(|m| m.version <= version) {
        hasher.update(migration.version.get().to_be_bytes());
        hasher.update(migration.primary().checksum.to_hex().as_bytes());
    }
    Some(
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use engine::Catalog;
    use engine::fingerprint::{CatalogStamp, Fingerprint, ObjectKind};

    use super::{Reuse, reuse, set_checksum};
    use crate::platform::fingerprints::{DriftCandidate, Expected, KeptResult, KeptStamp};

    /// A tenant, the expectation of its version (one table) and what its last full read kept:
    /// stamp `1:1`, found `digest`, with `drift` when it was drifted.
    fn case(
        digest: Option<&str>,
        drift: Option<Vec<String>>,
    ) -> (DriftCandidate, Expected, KeptResult) {
        let tenant = DriftCandidate {
            id: uuid::Uuid::nil(),
            slug: domain::tenant::TenantSlug::parse("acme").unwrap(),
            server: domain::server::ServerName::parse("default").unwrap(),
            isolation: domain::Isolation::Schema,
            schema_version: domain::Version::new(20_261_124_110_000).unwrap(),
        };
        let expected = Expected::new(
            "0".repeat(64),
            [(ObjectKind::Table, "users".to_owned(), "r".to_owned())]
                .into_iter()
                .collect::<Fingerprint>(),
        );
        let digest = digest.map_or_else(|| expected.digest().to_owned(), str::to_owned);
        let kept = KeptResult {
            stamp: KeptStamp {
                tenant_id: tenant.id,
                server: tenant.server.clone(),
                schema_version: tenant.schema_version,
                expected_digest: expected.digest().to_owned(),
                stamp: CatalogStamp::new("1:1".to_owned()),
                digest: digest.clone(),
            },
            drift: drift.map(|lines| (digest, lines)),
        };
        (tenant, expected, kept)
    }

    #[test]
    fn a_result_stands_only_while_stamp_server_version_and_expectation_are_as_kept() {
        let same = CatalogStamp::new("1:1".to_owned());
        let (tenant, expected, kept) = case(None, None);
        assert_eq!(
            reuse(&tenant, Some(&same), Some(&kept), &expected),
            Some(Reuse::Clean)
        );
        assert_eq!(
            reuse(&tenant, Some(&same), None, &expected),
            None,
            "none kept"
        );
        assert_eq!(
            reuse(&tenant, None, Some(&kept), &expected),
            None,
            "no stamp now"
        );
        let other = CatalogStamp::new("2:7".to_owned());
        assert_eq!(reuse(&tenant, Some(&other), Some(&kept), &expected), None);
        let mut moved = kept.clone();
        moved.stamp.server = domain::server::ServerName::parse("pg-2").unwrap();
        assert_eq!(reuse(&tenant, Some(&same), Some(&moved), &expected), None);
        let mut migrated = kept.clone();
        migrated.stamp.schema_version = domain::Version::new(20_261_124_110_100).unwrap();
        assert_eq!(
            reuse(&tenant, Some(&same), Some(&migrated), &expected),
            None
        );
        let mut recomputed = kept;
        recomputed.stamp.expected_digest = "f".repeat(64);
        assert_eq!(
            reuse(&tenant, Some(&same), Some(&recomputed), &expected),
            None
        );
    }

    #[test]
    fn a_drifted_result_stands_only_with_its_differences_read_back() {
        let same = CatalogStamp::new("1:1".to_owned());
        let drifted = "a".repeat(64);
        let lines = vec![
            "+ column users.nickname: text".to_owned(),
            "~ table users: r -> p".to_owned(),
        ];
        let (tenant, expected, kept) = case(Some(&drifted), Some(lines.clone()));
        let Some(Reuse::Drifted {
            digest,
            differences,
        }) = reuse(&tenant, Some(&same), Some(&kept), &expected)
        else {
            panic!("reused as drifted")
        };
        assert_eq!(digest, drifted);
        assert_eq!(
            differences
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            lines
        );
        // No tenant_drift row, or one this build cannot read back: read again.
        let (tenant, expected, kept) = case(Some(&drifted), None);
        assert_eq!(reuse(&tenant, Some(&same), Some(&kept), &expected), None);
        let (tenant, expected, kept) = case(
            Some(&drifted),
            Some(vec!["~ table rooms: r -> p".to_owned()]),
        );
        assert_eq!(reuse(&tenant, Some(&same), Some(&kept), &expected), None);
    }

    #[test]
    fn a_set_checksum_names_the_migrations_up_to_its_version_and_nothing_after() {
        let built_in = Catalog::load(None).unwrap().tenant;
        let versions: Vec<_> = built_in.migrations.iter().map(|m| m.version).collect();
        let (first, second, latest) = (versions[0], versions[1], *versions.last().unwrap());
        assert_eq!(
            set_checksum(&built_in, latest),
            set_checksum(&Catalog::load(None).unwrap().tenant, latest),
            "stable"
        );
        assert_ne!(
            set_checksum(&built_in, first),
            set_checksum(&built_in, latest)
        );
        assert_eq!(
            set_checksum(&built_in, domain::Version::new(20_000_101_000_000).unwrap()),
            None,
            "not a version of the set"
        );

        // The second migration edited (before its release): versions from it on change, the
        // first does not; a migration added after the latest changes nothing up to it.
        let edited = testkit::migration_sets_with(&[(
            "20990101000000_create_later",
            "CREATE TABLE later (id bigint);\n",
            Some("DROP TABLE later;\n"),
        )]);
        let second_file = std::fs::read_dir(edited.path().join("tenant"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&second.to_string())
                    && p.to_string_lossy().ends_with(".up.sql")
            })
            .unwrap();
        let mut sql = std::fs::read_to_string(&second_file).unwrap();
        sql.push_str("-- edited\n");
        std::fs::write(&second_file, sql).unwrap();
        let edited = Catalog::load(Some(edited.path())).unwrap().tenant;
        assert_eq!(set_checksum(&edited, first), set_checksum(&built_in, first));
        assert_ne!(
            set_checksum(&edited, second),
            set_checksum(&built_in, second)
        );
        assert_ne!(
            set_checksum(&edited, latest),
            set_checksum(&built_in, latest)
        );
    }
}
