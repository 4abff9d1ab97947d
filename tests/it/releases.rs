//! The released record from the provisioning side: the first tenant a provisioner migrates
//! records its sets, and from then on a provisioner or migrator carrying an edited file does not
//! start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use engine::{Catalog, SetKind};
use testkit::ScratchDir;

use crate::support::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_provisioned_tenant_releases_the_sets_and_an_edit_stops_the_services() {
    let sets = ScratchDir::new();
    testkit::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations"),
        sets.path(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let env = Env::with_migrations(sets.path()).await;
    assert!(
        env.ctx
            .platform
            .released_migrations()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty(),
        "nothing is released before a tenant is migrated"
    );
    let (stop, provisioner) = env.start_provisioner();
    let (tenant, _) = env.register(Some("schema")).await;
    env.wait_for_status(tenant, "active", Duration::from_secs(60))
        .await;
    testkit::stop_service((stop, provisioner)).await;

    let released = env
        .ctx
        .platform
        .released_migrations()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let count = |kind: SetKind| released.iter().filter(|r| r.set == kind).count();
    assert_eq!(
        count(SetKind::Tenant),
        env.ctx.catalog.tenant.migrations.len()
    );
    assert_eq!(
        count(SetKind::TenantSeeds),
        env.ctx.catalog.tenant_seeds.migrations.len()
    );
    env.ctx
        .check_released_sets()
        .await
        .unwrap_or_else(|e| panic!("the sets as released: {e}"));

    // Edit the newest tenant migration: a service with this set refuses to start.
    let newest = env
        .ctx
        .catalog
        .tenant
        .migrations
        .last()
        .map(|m| m.primary().file.clone());
    let newest = newest.unwrap_or_else(|| panic!("no tenant migrations"));
    let file = sets.path().join("tenant").join(&newest);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&file, text.replace(';', ";\n-- reformatted")).unwrap_or_else(|e| panic!("{e}"));
    let edited = shared::service::Context {
        catalog: Arc::new(Catalog::load(Some(sets.path())).unwrap_or_else(|e| panic!("{e}"))),
        ..env.ctx.clone()
    };
    let refused = edited.wait_for_platform_schema(&Default::default()).await;
    let said = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        said.contains(&format!("tenant/{newest}: edited after it was released")),
        "{said}"
    );
}

/// A rolling upgrade: the next release's `tenantctl setup` adds a platform migration before the
/// previous release's services restart. They start on it (platform migrations only add); a
/// platform migration edited after it ran still stops them at once, instead of a wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_the_previous_release_starts_on_a_newer_platform_schema() {
    let next = ScratchDir::new();
    testkit::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations"),
        next.path(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for dir in ["platform", "platform/sqlite"] {
        std::fs::write(
            next.path()
                .join(dir)
                .join("20991231000000_add_tenants_next_release_note.up.sql"),
            "ALTER TABLE tenants ADD COLUMN next_release_note TEXT;",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // The next release's setup.
    let env = Env::with_migrations(next.path()).await;

    let previous = shared::service::Context {
        catalog: Arc::new(Catalog::load(None).unwrap_or_else(|e| panic!("{e}"))),
        ..env.ctx.clone()
    };
    tokio::time::timeout(
        Duration::from_secs(20),
        previous.wait_for_platform_schema(&Default::default()),
    )
    .await
    .unwrap_or_else(|_| panic!("the previous release still waits for its platform schema"))
    .unwrap_or_else(|e| panic!("the previous release refused a newer platform schema: {e}"));

    let first = previous
        .catalog
        .platform
        .migrations
        .first()
        .map(|m| m.primary().file.clone())
        .unwrap_or_else(|| panic!("no platform migrations"));
    let file = next.path().join("platform").join(&first);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&file, format!("{text}\n-- edited after it ran\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let edited = shared::service::Context {
        catalog: Arc::new(Catalog::load(Some(next.path())).unwrap_or_else(|e| panic!("{e}"))),
        ..env.ctx.clone()
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        edited.wait_for_platform_schema(&Default::default()),
    )
    .await
    .unwrap_or_else(|_| panic!("an edited platform migration is waited on, not refused"));
    let said = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        said.contains(&first) && said.contains("edited after it was applied"),
        "{said}"
    );
}
