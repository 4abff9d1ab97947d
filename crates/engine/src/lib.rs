//! The migration engine: versioned SQL sets applied per target (the platform database or one
//! tenant), with checksums, per-target locks, timeouts, batched data migrations, reverts and
//! lints.
//!
//! It depends on `domain` (tenant slugs, versions) and reaches the databases it migrates through
//! sqlx. It must not depend on lapin, on `shared` or on the platform database's tables: it runs
//! migrations against a target and knows nothing of the bus, of the services or of who asked
//! (the platform store records releases; [`release`] only decides what to record).
//!
//! # Layout
//! - vocabulary: [`dialect`] (PostgreSQL or SQLite), [`target`] (the platform or a tenant),
//!   [`history`] (a history row: data only), [`events`] (what a run reports), [`error`];
//! - pure (no I/O, no clock): [`sql`] (lexer, statements, tokens read keyword by keyword),
//!   [`lint`] (the rules, one file per family), [`directives`] (a file's header), [`settings`]
//!   (a set's `settings.conf`), [`admin`] (the tenant-seeds set's admin-user script), [`plan`]
//!   (what to run, from a set and a history), [`release`] (the released record), [`fingerprint`]
//!   (what a schema contains, its digest and differences), [`template`] (a set's latest version
//!   as DDL, history rows and fingerprint), and the parsing
//!   half of [`source`] (sets, their migrations and scripts, with [`SetKind`] and
//!   [`Direction`]);
//! - adapters: [`backend`] (PostgreSQL schema / database per tenant, SQLite file per tenant, the
//!   server slots) and [`engine`], which runs plans through a backend and is the only place the
//!   apply and revert protocol is written down;
//! - [`check`]: everything `tenantctl migrations check` proves about the sets.
//!
//! File layout and directives: `docs/MIGRATION_FORMAT.md`. Why not sqlx's own `Migrator::run`
//! per tenant: its lock is one advisory lock per *database* (every tenant schema serialises
//! behind it), it leaks that lock on a failed migration, and it finds its table through the
//! `search_path`. See `docs/MIGRATIONS.md` and this crate's `README.md`.

pub mod admin;
pub mod backend;
mod backoff;
pub mod check;
pub mod dialect;
pub mod directives;
pub mod engine;
pub mod error;
pub mod events;
pub mod fingerprint;
pub mod history;
pub mod lint;
pub mod plan;
pub mod release;
pub mod settings;
pub mod source;
pub mod sql;
pub mod target;
pub mod template;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_migrations.rs"));
}

pub use admin::{AdminUserScript, AdminValues};
pub use backend::{
    MigrationBackend, PgDatabaseBackend, PgSchemaBackend, ProvisionedStorage, ServerSlots,
    SlotConn, SlotUsage, SlotUsageProbe, SqliteBackend, Timeouts,
};
pub use dialect::Dialect;
pub use engine::{Engine, EngineOptions, RevertPreview, RunReport, StepReport};
pub use error::EngineError;
pub use events::{MigrationEvent, ProgressSink};
pub use source::{Catalog, Direction, MigrationSet, SetKind};
pub use target::Target;
