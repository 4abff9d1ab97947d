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
