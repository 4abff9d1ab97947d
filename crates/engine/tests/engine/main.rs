//! The migration engine's behaviour suite, against real PostgreSQL (schema per tenant and
//! database per tenant, each test in a database of its own) and SQLite (file per tenant, each
//! test in a scratch directory). Every case in `cases.rs` runs on all three backends.

mod cases;
mod database_templates;
mod fingerprints;
mod fixtures;
mod sinks;
mod templates;

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod pg_schema {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::cases::$case(<crate::fixtures::PgSchema as crate::fixtures::Fixture>::new().await).await;
                }
            )*
        }
        mod pg_database {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::cases::$case(<crate::fixtures::PgDatabase as crate::fixtures::Fixture>::new().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::cases::$case(<crate::fixtures::Sqlite as crate::fixtures::Fixture>::new().await).await;
                }
            )*
        }
    };
}

on_every_backend!(
    applies_all_in_order_and_records_them,
    applying_again_does_nothing,
    stops_at_a_target_version_and_refuses_an_unknown_one,
    an_edited_applied_file_is_refused,
    a_missing_applied_file_is_refused,
    an_out_of_order_new_file_is_refused,
    a_migration_blocked_by_a_lock_times_out_and_leaves_the_version,
    a_statement_timeout_fails_cleanly,
    a_failure_mid_set_leaves_exactly_the_earlier_migrations,
    reverts_to_a_version,
    an_irreversible_revert_is_refused_before_anything_runs,
    a_revert_that_destroys_data_needs_permission,
    a_failed_no_transaction_migration_is_recorded_and_retried,
    a_batched_data_migration_resumes_after_an_interruption,
    two_runners_on_one_tenant_serialize,
    runners_on_different_tenants_proceed_in_parallel,
    the_lock_is_released_when_a_run_panics_or_is_cancelled,
    a_missing_tenant_is_reported_not_created,
    the_real_sets_apply_to_platform_and_tenant,
    the_built_in_admin_user_script_invites_one_admin_however_often_it_runs,
    an_admin_user_script_binds_its_values_and_rolls_back_as_a_whole,
);

/// Hostile slugs never become a target: there is no way to build one without validation, so no
/// SQL can run with them.
#[test]
fn bad_slugs_and_identifiers_are_rejected_before_any_sql() {
    use domain::tenant::TenantSlug;
    use engine::{MigrationSet, SetKind};

    for hostile in [
        "acme\"; DROP SCHEMA public CASCADE; --",
        "acme'); DELETE FROM tenants; --",
        "tenant_a.users",
        "ACME",
        "acme\u{0000}",
        "acme\u{202e}gnp",
        "",
        &"x".repeat(64),
    ] {
        assert!(
            TenantSlug::parse(hostile).is_err(),
            "{hostile:?} was accepted"
        );
    }
    for name in [
        "20260101000001_x;drop.up.sql",
        "20260101000001_x\".up.sql",
        "20260101000001_X.up.sql",
    ] {
        let loaded = MigrationSet::from_files(
            SetKind::Tenant,
            "test",
            [(name.to_owned(), "SELECT 1;".to_owned())],
        );
        assert!(loaded.is_err(), "{name} was accepted as a migration file");
    }
}
