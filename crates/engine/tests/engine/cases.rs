//! The engine's behaviour, written once and run on every backend (see `main.rs`).

use std::sync::Arc;
use std::time::Duration;

use domain::Version;
use engine::backend::{BackendError, MigrationBackend as _};
use engine::plan::{Drift, PlanError};
use engine::{
    AdminValues, Catalog, Dialect, Direction, EngineError, EngineOptions, MigrationEvent,
    MigrationSet, SetKind, Target,
};
use testkit::{SetBuilder, wait_until};

use crate::fixtures::Fixture;
use crate::sinks::{Gate, Panicking, Recorder};

fn v(n: u32) -> Version {
    SetBuilder::version(n)
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

const CREATE_WIDGETS: &str = "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);";
const DROP_WIDGETS: &str = "DROP TABLE widgets;";

/// Three reversible migrations: widgets, gadgets, a column on widgets.
fn three() -> SetBuilder {
    SetBuilder::new(SetKind::Tenant)
        .migration(1, "widgets", CREATE_WIDGETS, DROP_WIDGETS)
        .migration(
            2,
            "gadgets",
            "CREATE TABLE gadgets (id INTEGER PRIMARY KEY);",
            "DROP TABLE gadgets;",
        )
        .migration(
            3,
            "widget_colour",
            "ALTER TABLE widgets ADD COLUMN colour TEXT;",
            "ALTER TABLE widgets DROP COLUMN colour;",
        )
}

fn default_engine<F: Fixture>(f: &F) -> engine::Engine<F::Backend> {
    f.engine(EngineOptions::default())
}

async fn tables<F: Fixture>(f: &F, target: &Target) -> Vec<String> {
    let snapshot = default_engine(f)
        .snapshot(target)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    snapshot.tables.keys().cloned().collect()
}

async fn recorded<F: Fixture>(f: &F, target: &Target, set: &MigrationSet) -> Vec<(Version, bool)> {
    let standing = default_engine(f)
        .status(target, set)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rows: Vec<(Version, bool)> = set
        .migrations
        .iter()
        .map(|m| m.version)
        .filter(|v| !standing.pending.contains(v))
        .map(|v| (v, true))
        .collect();
    rows.extend(standing.unfinished.iter().map(|r| (r.version, false)));
    rows.sort();
    rows
}

pub async fn applies_all_in_order_and_records_them<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let set = three().build();
    let events = Recorder::default();
    let report = default_engine(&f)
        .apply(&target, &set, None, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(report.before, None);
    assert_eq!(report.after, Some(v(3)));
    assert_eq!(
        report.steps.iter().map(|s| s.version).collect::<Vec<_>>(),
        [v(1), v(2), v(3)]
    );
    assert_eq!(tables(&f, &target).await, ["gadgets", "widgets"]);
    assert_eq!(
        recorded(&f, &target, &set).await,
        [(v(1), true), (v(2), true), (v(3), true)]
    );
    let kinds: Vec<String> = events
        .events()
        .iter()
        .map(|e| match e {
            MigrationEvent::Started { version, .. } => format!("started {version}"),
            MigrationEvent::Completed { version, .. } => format!("completed {version}"),
            other => format!("{other:?}"),
        })
        .collect();
    let expected: Vec<String> = (1..=3)
        .flat_map(|n| [format!("started {}", v(n)), format!("completed {}", v(n))])
        .collect();
    assert_eq!(kinds, expected);
}

pub async fn applying_again_does_nothing<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let set = three().build();
    let engine = default_engine(&f);
    engine
        .apply(&target, &set, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = Recorder::default();
    let again = engine
        .apply(&target, &set, None, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.is_noop(), "{again:?}");
    assert_eq!((again.before, again.after), (Some(v(3)), Some(v(3))));
    assert!(
        events.events().is_empty(),
        "a no-op run emits nothing and takes no lock: {:?}",
        events.events()
    );
}

pub async fn stops_at_a_target_version_and_refuses_an_unknown_one<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let set = three().build();
    let engine = default_engine(&f);
    let report = engine
        .apply(&target, &set, Some(v(2)), &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.after, Some(v(2)));
    let err = engine.apply(&target, &set, Some(v(9)), &()).await.err();
    assert!(
        matches!(
            err,
            Some(EngineError::Plan {
                source: PlanError::UnknownTarget { .. },
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        recorded(&f, &target, &set).await,
        [(v(1), true), (v(2), true)]
    );
}

pub async fn an_edited_applied_file_is_refused<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    engine
        .apply(&target, &three().build(), Some(v(2)), &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let edited = three()
        .edit(
            1,
            "up",
            "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT);",
        )
        .build();
    let events = Recorder::default();
    let err = engine.apply(&target, &edited, None, &events).await.err();
    let Some(EngineError::Plan {
        source: PlanError::Drift(drift),
        ..
    }) = &err
    else {
        panic!("{err:?}")
    };
    assert!(
        matches!(&drift[..], [Drift::Changed { version, file, .. }] if *version == v(1) && file.ends_with("20260101000001_widgets.up.sql")),
        "{drift:?}"
    );
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        message.contains("20260101000001_widgets.up.sql") && message.contains("20260101000001"),
        "{message}"
    );
    assert!(events.events().is_empty(), "nothing ran");
    assert_eq!(
        recorded(&f, &target, &three().build()).await,
        [(v(1), true), (v(2), true)]
    );
}

pub async fn a_missing_applied_file_is_refused<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    engine
        .apply(&target, &three().build(), None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = engine
        .apply(&target, &three().without(2).build(), None, &())
        .await
        .err();
    let Some(EngineError::Plan {
        source: PlanError::Drift(drift),
        ..
    }) = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        drift,
        &[Drift::Missing {
            version: v(2),
            description: "gadgets".into()
        }]
    );
}

pub async fn an_out_of_order_new_file_is_refused<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    let without_two = three().without(2).build();
    engine
        .apply(&target, &without_two, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = engine
        .apply(&target, &three().build(), None, &())
        .await
        .err();
    let Some(EngineError::Plan {
        source: PlanError::Drift(drift),
        ..
    }) = &err
    else {
        panic!("{err:?}")
    };
    assert!(
        matches!(&drift[..], [Drift::OutOfOrder { version, last_applied, .. }] if *version == v(2) && *last_applied == v(3)),
        "{drift:?}"
    );
    assert!(!tables(&f, &target).await.contains(&"gadgets".to_owned()));
}

pub async fn a_migration_blocked_by_a_lock_times_out_and_leaves_the_version<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    let set = SetBuilder::new(SetKind::Tenant)
        .migration(1, "widgets", CREATE_WIDGETS, DROP_WIDGETS)
        .migration(
            2,
            "widget_colour",
            "-- lock-timeout: 300ms\nALTER TABLE widgets ADD COLUMN colour TEXT;",
            "ALTER TABLE widgets DROP COLUMN colour;",
        )
        .build();
    engine
        .apply(&target, &set, Some(v(1)), &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let holder = f.hold_write_lock(&target, "widgets").await;
    let started = std::time::Instant::now();
    let err = engine.apply(&target, &set, None, &()).await.err();
    let waited = started.elapsed();
    holder.release().await;

    let Some(
        error @ EngineError::Script {
            version, completed, ..
        },
    ) = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*version, completed.as_slice()), (v(2), &[][..]));
    assert!(
        error.is_transient(),
        "a lock timeout is worth retrying: {error}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "the file's 300ms lock timeout applied, not the 5s default: {waited:?}"
    );
    let standing = engine
        .status(&target, &set)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(standing.applied_version, Some(v(1)));
    assert!(
        standing.unfinished.is_empty(),
        "a transactional failure leaves no row"
    );

    let retried = engine
        .apply(&target, &set, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(retried.after, Some(v(2)));
}

pub async fn a_statement_timeout_fails_cleanly<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    let slow_pg =
        "-- statement-timeout: 200ms\nCREATE TABLE slow (id INTEGER);\nSELECT pg_sleep(10);";
    let slow_sqlite = "-- statement-timeout: 200ms\nCREATE TABLE slow (id INTEGER);\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c;";
    let set = SetBuilder::new(SetKind::Tenant)
        .migration(1, "widgets", CREATE_WIDGETS, DROP_WIDGETS)
        .dialects(
            2,
            "slow",
            (slow_pg, slow_sqlite),
            Some(("DROP TABLE slow;", "DROP TABLE slow;")),
        )
        .build();
    let started = std::time::Instant::now();
    let err = engine.apply(&target, &set, None, &()).await.err();
    let Some(
        error @ EngineError::Script {
            version, completed, ..
        },
    ) = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((*version, completed.as_slice()), (v(2), &[v(1)][..]));
    assert!(error.is_transient(), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "interrupted near 200ms, took {:?}",
        started.elapsed()
    );
    assert_eq!(
        tables(&f, &target).await,
        ["widgets"],
        "the half-run script was rolled back"
    );
    assert_eq!(
        engine
            .status(&target, &set)
            .await
            .map(|s| s.applied_version)
            .ok()
            .flatten(),
        Some(v(1))
    );
}

pub async fn a_failure_mid_set_leaves_exactly_the_earlier_migrations<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    let set = three()
        .migration(
            4,
            "broken",
            "CREATE TABLE half (id INTEGER);\nCREATE TABLE broken (;",
            "DROP TABLE half;",
        )
        .migration(
            5,
            "after",
            "CREATE TABLE after_broken (id INTEGER);",
            "DROP TABLE after_broken;",
        )
        .build();
    let events = Recorder::default();
    let err = engine.apply(&target, &set, None, &events).await.err();
    let Some(
        error @ EngineError::Script {
            version,
            completed,
            file,
            ..
        },
    ) = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*version, v(4));
    assert_eq!(completed, &[v(1), v(2), v(3)]);
    assert!(file.ends_with("20260101000004_broken.up.sql"), "{file}");
    assert!(
        !error.is_transient(),
        "a syntax error is permanent: {error}"
    );
    assert_eq!(
        recorded(&f, &target, &set).await,
        [(v(1), true), (v(2), true), (v(3), true)]
    );
    assert_eq!(
        tables(&f, &target).await,
        ["gadgets", "widgets"],
        "the failed script's first table was rolled back"
    );
    assert!(events.saw(|e| matches!(e, MigrationEvent::Failed { version, direction: Direction::Up, transient: false, .. } if *version == v(4))));
    assert!(
        !events.saw(|e| matches!(e, MigrationEvent::Started { version, .. } if *version == v(5)))
    );
}

pub async fn reverts_to_a_version<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    let set = three().build();
    engine
        .apply(&target, &set, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = Recorder::default();
    let report = engine
        .revert(&target, &set, v(1), true, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.steps.iter().map(|s| s.version).collect::<Vec<_>>(),
        [v(3), v(2)]
    );
    assert_eq!((report.before, report.after), (Some(v(3)), Some(v(1))));
    assert_eq!(tables(&f, &target).await, ["widgets"]);
    assert_eq!(recorded(&f, &target, &set).await, [(v(1), true)]);
    assert!(
        events.saw(|e| matches!(e, MigrationEvent::RolledBack { version, .. } if *version == v(3)))
    );
    let columns = default_engine(&f)
        .snapshot(&target)
        .await
        .map(|s| s.tables["widgets"].columns.len())
        .ok();
    assert_eq!(columns, Some(2), "the colour column is gone");
    let again = engine
        .apply(&target, &set, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.after, Some(v(3)), "and it can go forward again");
}

pub async fn an_irreversible_revert_is_refused_before_anything_runs<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    let set = SetBuilder::new(SetKind::Tenant)
        .migration(1, "widgets", CREATE_WIDGETS, DROP_WIDGETS)
        .irreversible(2, "backfill", "-- irreversible: the old names are overwritten\nUPDATE widgets SET name = upper(name);")
        .migration(3, "gadgets", "CREATE TABLE gadgets (id INTEGER PRIMARY KEY);", "DROP TABLE gadgets;")
        .build();
    engine
        .apply(&target, &set, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = Recorder::default();
    let err = engine
        .revert(&target, &set, Version::ZERO, true, &events)
        .await
        .err();
    let Some(EngineError::Plan {
        source: PlanError::Irreversible {
            version, reason, ..
        },
        ..
    }) = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*version, v(2));
    assert_eq!(reason, "the old names are overwritten");
    assert!(
        events.events().is_empty(),
        "nothing ran, not even the revert of 3"
    );
    assert_eq!(tables(&f, &target).await, ["gadgets", "widgets"]);
    let preview = engine
        .preview_revert(&target, &set, v(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        preview.iter().map(|p| p.version).collect::<Vec<_>>(),
        [v(3)],
        "reverting above it is allowed"
    );
}

pub async fn a_revert_that_destroys_data_needs_permission<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    let set = three().build();
    engine
        .apply(&target, &set, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let preview = engine
        .preview_revert(&target, &set, Version::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let destructive: Vec<Version> = preview
        .iter()
        .filter(|p| !p.destroys_data.is_empty())
        .map(|p| p.version)
        .collect();
    assert_eq!(
        destructive,
        [v(3), v(2), v(1)],
        "DROP COLUMN and DROP TABLE destroy data"
    );

    let err = engine
        .revert(&target, &set, Version::ZERO, false, &())
        .await
        .err();
    let Some(EngineError::DataLoss { findings, .. }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(findings.len(), 3);
    assert_eq!(
        tables(&f, &target).await,
        ["gadgets", "widgets"],
        "refused before anything ran"
    );

    engine
        .revert(&target, &set, Version::ZERO, true, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(tables(&f, &target).await.is_empty());
}

pub async fn a_failed_no_transaction_migration_is_recorded_and_retried<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    let broken_pg = "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS widgets_name ON widgets (name);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS nope ON missing_table (x);";
    let broken_lite = "-- no-transaction\nCREATE INDEX IF NOT EXISTS widgets_name ON widgets (name);\nCREATE INDEX IF NOT EXISTS nope ON missing_table (x);";
    let down = "-- no-transaction\nDROP INDEX IF EXISTS widgets_name;\nDROP INDEX IF EXISTS widgets_id_name;";
    let builder =
        SetBuilder::new(SetKind::Tenant).migration(1, "widgets", CREATE_WIDGETS, DROP_WIDGETS);
    let broken = builder
        .clone()
        .dialects(2, "indexes", (broken_pg, broken_lite), Some((down, down)))
        .build();

    let err = engine.apply(&target, &broken, None, &()).await.err();
    let Some(EngineError::Script {
        version, source, ..
    }) = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*version, v(2));
    assert!(
        matches!(**source, BackendError::Sql { line: Some(3), .. }),
        "points at line 3 of the file: {source:?}"
    );

    let standing = engine
        .status(&target, &broken)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(standing.applied_version, Some(v(1)));
    assert_eq!(standing.pending, [v(2)]);
    let [unfinished] = standing.unfinished.as_slice() else {
        panic!("{standing:?}")
    };
    assert_eq!(unfinished.version, v(2));
    assert!(
        unfinished
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("missing_table"),
        "{unfinished:?}"
    );
    let indexes = default_engine(&f)
        .snapshot(&target)
        .await
        .map(|s| s.tables["widgets"].indexes.len())
        .ok();
    assert_eq!(
        indexes,
        Some(1 + pk_index::<F>()),
        "the first statement's index exists: the partial state is real"
    );

    // The author fixes the file; an unfinished migration may be edited, and it runs again.
    let fixed_pg = "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS widgets_name ON widgets (name);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS widgets_id_name ON widgets (id, name);";
    let fixed_lite = "-- no-transaction\nCREATE INDEX IF NOT EXISTS widgets_name ON widgets (name);\nCREATE INDEX IF NOT EXISTS widgets_id_name ON widgets (id, name);";
    let fixed = builder
        .dialects(2, "indexes", (fixed_pg, fixed_lite), Some((down, down)))
        .build();
    let report = engine
        .apply(&target, &fixed, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.steps.iter().map(|s| s.version).collect::<Vec<_>>(),
        [v(2)]
    );
    let standing = engine
        .status(&target, &fixed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (standing.applied_version, standing.unfinished.len()),
        (Some(v(2)), 0)
    );

    engine
        .revert(&target, &fixed, v(1), true, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let indexes = default_engine(&f)
        .snapshot(&target)
        .await
        .map(|s| s.tables["widgets"].indexes.len())
        .ok();
    assert_eq!(indexes, Some(pk_index::<F>()));
}

/// PostgreSQL lists the primary key's index; SQLite's INTEGER PRIMARY KEY has none.
fn pk_index<F: Fixture>() -> usize {
    usize::from(std::any::type_name::<F>().contains("Pg"))
}

pub async fn a_batched_data_migration_resumes_after_an_interruption<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = default_engine(&f);
    let create = "CREATE TABLE items (id INTEGER PRIMARY KEY, x INTEGER NOT NULL, y INTEGER CHECK (y IS NULL OR y < 100));";
    let backfill = "-- batch-size: 3\nUPDATE items SET y = x WHERE id IN (SELECT id FROM items WHERE y IS NULL ORDER BY id LIMIT :batch_size);";
    let undo = "-- batch-size: 3\nUPDATE items SET y = NULL WHERE id IN (SELECT id FROM items WHERE y IS NOT NULL ORDER BY id LIMIT :batch_size);";
    let set = SetBuilder::new(SetKind::Tenant)
        .migration(1, "items", create, "DROP TABLE items;")
        .migration(2, "backfill_y", backfill, undo)
        .build();
    engine
        .apply(&target, &set, Some(v(1)), &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Ten rows; row 7 violates the check, so the third batch (rows 7..=9) fails.
    let values: Vec<String> = (1..=10)
        .map(|id| format!("({id}, {})", if id == 7 { 500 } else { id }))
        .collect();
    assert_eq!(
        f.execute(
            &target,
            &format!("INSERT INTO items (id, x) VALUES {}", values.join(", "))
        )
        .await,
        10
    );

    let events = Recorder::default();
    let err = engine.apply(&target, &set, None, &events).await.err();
    assert!(
        matches!(err, Some(EngineError::Script { version, .. }) if version == v(2)),
        "{err:?}"
    );
    let standing = engine
        .status(&target, &set)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let [row] = standing.unfinished.as_slice() else {
        panic!("{standing:?}")
    };
    assert_eq!(
        (row.batches_done, row.rows_done, row.success),
        (2, 6, false),
        "two batches committed before the failure"
    );
    assert_eq!(
        f.execute(&target, "UPDATE items SET y = y WHERE y IS NOT NULL")
            .await,
        6
    );

    // Fix the data and run again: it continues with rows 7..=10 only.
    f.execute(&target, "UPDATE items SET x = 7 WHERE id = 7")
        .await;
    let events = Recorder::default();
    engine
        .apply(&target, &set, None, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let progress: Vec<(i64, i64)> = events
        .events()
        .iter()
        .filter_map(|e| match e {
            MigrationEvent::BatchCommitted { batches, rows, .. } => Some((*batches, *rows)),
            _ => None,
        })
        .collect();
    assert_eq!(
        progress,
        [(3, 9), (4, 10)],
        "resumed from the recorded progress"
    );
    assert_eq!(
        f.execute(&target, "UPDATE items SET y = y WHERE y = x")
            .await,
        10
    );
    let standing = engine
        .status(&target, &set)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (standing.applied_version, standing.unfinished.len()),
        (Some(v(2)), 0)
    );

    engine
        .revert(&target, &set, v(1), false, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.execute(&target, "UPDATE items SET y = y WHERE y IS NULL")
            .await,
        10,
        "the down ran in batches too"
    );
}

pub async fn two_runners_on_one_tenant_serialize<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = Arc::new(default_engine(&f));
    let set = Arc::new(three().build());

    let gate = Gate::closed();
    let first = tokio::spawn({
        let (engine, set, target, gate) =
            (engine.clone(), set.clone(), target.clone(), gate.clone());
        async move { engine.apply(&target, &set, None, &gate).await }
    });
    gate.wait_reached(1).await;
    assert!(
        f.migration_lock_held(&target).await,
        "the first runner holds the tenant's lock"
    );

    let waiting = Recorder::default();
    let second = tokio::spawn({
        let (engine, set, target, waiting) =
            (engine.clone(), set.clone(), target.clone(), waiting.clone());
        async move { engine.apply(&target, &set, None, &waiting).await }
    });
    wait_until(
        Duration::from_secs(20),
        "the second runner waits for the lock",
        || {
            let waiting = waiting.clone();
            async move { waiting.saw(|e| matches!(e, MigrationEvent::LockWaiting { .. })) }
        },
    )
    .await;
    assert!(!second.is_finished());
    gate.open();

    let first = first
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let second = second
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.steps.len(), 3);
    assert!(
        second.is_noop(),
        "the second runner re-read the history under the lock and applied nothing: {second:?}"
    );
    assert!(!waiting.saw(|e| matches!(e, MigrationEvent::Started { .. })));
    assert_eq!(recorded(&f, &target, &set).await.len(), 3);
    assert!(!f.migration_lock_held(&target).await, "released");
}

pub async fn runners_on_different_tenants_proceed_in_parallel<F: Fixture>(f: F) {
    let (a, b) = (f.tenant().await, f.tenant().await);
    let engine = Arc::new(default_engine(&f));
    let set = Arc::new(three().build());
    // Each run stops at its first script, lock held, until the gate opens: if the two tenants
    // shared a lock, the second could never get there and this would time out.
    let gate = Gate::closed();
    let runs: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|target| {
            let (engine, set, gate) = (engine.clone(), set.clone(), gate.clone());
            tokio::spawn(async move { engine.apply(&target, &set, None, &gate).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(20), gate.wait_reached(2))
        .await
        .unwrap_or_else(|_| panic!("both runners should hold their locks at the same time"));
    let (held_a, held_b) = (
        f.migration_lock_held(&a).await,
        f.migration_lock_held(&b).await,
    );
    assert!(
        held_a && held_b,
        "both tenant locks are held at once: {held_a} {held_b}"
    );
    gate.open();
    for run in runs {
        let report = run
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.steps.len(), 3);
    }
    assert!(
        !gate
            .events()
            .iter()
            .any(|e| matches!(e, MigrationEvent::LockWaiting { .. })),
        "neither ever waited"
    );
}

pub async fn the_lock_is_released_when_a_run_panics_or_is_cancelled<F: Fixture>(f: F) {
    let target = f.tenant().await;
    let engine = Arc::new(f.engine(EngineOptions {
        lock_wait: Duration::from_secs(10),
        ..EngineOptions::default()
    }));
    let set = Arc::new(three().build());

    let panicked = tokio::spawn({
        let (engine, set, target) = (engine.clone(), set.clone(), target.clone());
        async move { engine.apply(&target, &set, None, &Panicking).await }
    })
    .await;
    assert!(panicked.is_err_and(|e| e.is_panic()));
    wait_until(
        Duration::from_secs(5),
        "the panicked run's lock is released",
        || {
            let (f, target) = (&f, &target);
            async move { !f.migration_lock_held(target).await }
        },
    )
    .await;

    let gate = Gate::closed();
    let cancelled = tokio::spawn({
        let (engine, set, target, gate) =
            (engine.clone(), set.clone(), target.clone(), gate.clone());
        async move { engine.apply(&target, &set, None, &gate).await }
    });
    gate.wait_reached(1).await;
    assert!(f.migration_lock_held(&target).await);
    cancelled.abort();
    assert!(cancelled.await.is_err_and(|e| e.is_cancelled()));

    let report = engine
        .apply(&target, &set, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.steps.len(),
        3,
        "the next runner got the lock and applied everything"
    );
    assert!(!f.migration_lock_held(&target).await);
}

pub async fn a_missing_tenant_is_reported_not_created<F: Fixture>(f: F) {
    let target = Target::Tenant(testkit::unique_slug());
    let err = default_engine(&f)
        .apply(&target, &three().build(), None, &())
        .await
        .err();
    assert!(
        matches!(&err, Some(EngineError::Backend { source, .. }) if matches!(**source, BackendError::StorageMissing { .. })),
        "{err:?}"
    );
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("does not exist") && message.contains("tenant_tt_"),
        "{message}"
    );
}

pub async fn the_real_sets_apply_to_platform_and_tenant<F: Fixture>(f: F) {
    let catalog = Catalog::load(None).unwrap_or_else(|e| panic!("{e}"));
    let engine = default_engine(&f);
    let tenant = f.tenant().await;
    engine
        .apply(&Target::Platform, &catalog.platform, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .apply(&tenant, &catalog.tenant, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .apply(&tenant, &catalog.tenant_seeds, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let platform = tables(&f, &Target::Platform).await;
    for table in [
        "tenants",
        "provisioning_steps",
        "audit_events",
        "plans",
        "subscriptions",
        "invoices",
        "platform_users",
        "feature_flags",
    ] {
        assert!(
            platform.contains(&table.to_owned()),
            "platform lacks {table}: {platform:?}"
        );
    }
    let tenant_tables = tables(&f, &tenant).await;
    for table in [
        "users",
        "spaces",
        "reservations",
        "condominium_settings",
        "audit_log",
        "embeddings",
    ] {
        assert!(
            tenant_tables.contains(&table.to_owned()),
            "tenant lacks {table}: {tenant_tables:?}"
        );
    }
    assert!(
        !tenant_tables.contains(&"tenants".to_owned()),
        "tenant DDL never lands in the platform schema"
    );
    assert!(
        f.execute(&tenant, "UPDATE condominium_settings SET key = key")
            .await
            >= 3,
        "seeded"
    );
    for (target, set) in [
        (&Target::Platform, &catalog.platform),
        (&tenant, &catalog.tenant),
        (&tenant, &catalog.tenant_seeds),
    ] {
        let again = engine
            .apply(target, set, None, &())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(again.is_noop());
        assert_eq!(again.after, set.latest());
    }
}

fn admin_values<'a>(email: &'a str, slug: &'a str) -> AdminValues<'a> {
    AdminValues {
        tenant_id: uuid::Uuid::new_v4(),
        tenant_slug: slug,
        tenant_name: "Acme Towers",
        admin_email: email,
        admin_name: "Ana Lima",
    }
}

pub async fn the_built_in_admin_user_script_invites_one_admin_however_often_it_runs<F: Fixture>(
    f: F,
) {
    let catalog = Catalog::load(None).unwrap_or_else(|e| panic!("{e}"));
    let engine = default_engine(&f);
    let tenant = f.tenant().await;
    for set in [&catalog.tenant, &catalog.tenant_seeds] {
        engine
            .apply(&tenant, set, None, &())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let values = admin_values("Ana.Lima@Acme.Example", "acme");
    let first = engine
        .run_admin_user(&tenant, &catalog.tenant_seeds, &values)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = engine
        .run_admin_user(&tenant, &catalog.tenant_seeds, &values)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((first, second), (1, 0), "one admin, then nothing");
    assert_eq!(
        f.execute(
            &tenant,
            "UPDATE users SET role = role WHERE email = 'ana.lima@acme.example' AND full_name = 'Ana Lima' \
             AND role = 'admin' AND status = 'invited' AND invited_at IS NOT NULL \
             AND password_hash IS NULL AND invitation_token_hash IS NULL"
        )
        .await,
        1,
        "the email lower-cased, invited, without secrets"
    );
    assert_eq!(f.execute(&tenant, "UPDATE users SET role = role").await, 1);
}

pub async fn an_admin_user_script_binds_its_values_and_rolls_back_as_a_whole<F: Fixture>(f: F) {
    let engine = default_engine(&f);
    let tenant = f.tenant().await;
    let schema = SetBuilder::new(SetKind::Tenant)
        .migration(
            1,
            "members",
            "CREATE TABLE members (email TEXT NOT NULL, display_name TEXT NOT NULL, tenant TEXT, slug TEXT);",
            "DROP TABLE members;",
        )
        .build();
    engine
        .apply(&tenant, &schema, None, &())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The email is hostile: bound as a value, it is stored as written and runs nothing.
    let hostile = "x'); DROP TABLE members; --@acme.example";
    let script = |second: &str| {
        let text = format!(
            "-- Two statements: the member, then {second}.\n\
             INSERT INTO members (email, display_name, tenant, slug)\n\
             VALUES (:admin_email, :admin_name, CAST(:tenant_id AS TEXT), ':tenant_slug' || :tenant_slug);\n\
             {second};\n"
        );
        MigrationSet::from_files(
            SetKind::TenantSeeds,
            "test",
            [
                ("admin_user.sql".to_owned(), text.clone()),
                ("sqlite/admin_user.sql".to_owned(), text),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let values = admin_values(hostile, "acme");

    let failing = script("INSERT INTO missing_table VALUES (1)");
    let err = engine
        .run_admin_user(&tenant, &failing, &values)
        .await
        .err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        matches!(err, Some(EngineError::AdminUser { .. })) && message.contains("admin_user.sql"),
        "{message}"
    );
    assert!(
        !message.contains("DROP TABLE") && !message.contains("acme.example"),
        "no value in the error: {message}"
    );
    assert_eq!(
        f.execute(&tenant, "UPDATE members SET slug = slug").await,
        0,
        "the first statement was rolled back with the second"
    );

    if engine.backend().dialect() == Dialect::Postgres {
        // PostgreSQL quotes the value a cast fails on: the error names the parameter instead.
        let casting = script("SELECT CAST(:admin_email AS integer)");
        let message = engine
            .run_admin_user(&tenant, &casting, &values)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("invalid input syntax for type integer: \"<admin_email>\"")
                && !message.contains("acme.example"),
            "{message}"
        );
    }

    let working = script(
        "UPDATE members SET display_name = display_name || '!' WHERE slug = ':tenant_slugacme'",
    );
    let rows = engine
        .run_admin_user(&tenant, &working, &values)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows, 2);
    let stored = format!(
        "UPDATE members SET slug = slug WHERE email = '{}' AND display_name = 'Ana Lima!' AND tenant = '{}'",
        hostile.replace('\'', "''"),
        values.tenant_id
    );
    assert_eq!(f.execute(&tenant, &stored).await, 1, "stored as bound");

    let none = MigrationSet::from_files(SetKind::TenantSeeds, "/srv/seeds", [])
        .unwrap_or_else(|e| panic!("{e}"));
    let message = engine
        .run_admin_user(&tenant, &none, &values)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("/srv/seeds has no"), "{message}");
}
