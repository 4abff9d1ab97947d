//! The pure core of the tenant fleet: what a tenant is, how it is isolated, how migration
//! versions are written, how provisioning proceeds, and the messages of the contract with their
//! rules.
//!
//! Everything here is data in, decision out: no database, no broker, no file system, no async.
//! The crate depends on nothing that does I/O (see its `Cargo.toml`), so the compiler keeps it
//! that way. The one clock read is [`message::CloudEvent::new`], which stamps a new event.
//!
//! - [`tenant`]: the validated [`TenantSlug`] and the names derived from it;
//! - [`isolation`]: [`Isolation`], schema or database per tenant;
//! - [`version`]: [`Version`], a migration's `YYYYMMDDHHMMSS` timestamp;
//! - [`provisioning`]: the six steps, their statuses and outcomes, the tenant statuses and the
//!   state machine (the names stored and published come from these enums);
//! - [`message`]: the CloudEvents envelope, one type per message, decoding and the audit copy.

pub mod isolation;
pub mod message;
pub mod provisioning;
pub mod server;
pub mod tenant;
pub mod version;

pub use isolation::Isolation;
pub use tenant::TenantSlug;
pub use version::Version;
