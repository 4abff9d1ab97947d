//! The library of `tenantctl`, the operator CLI: the operator's tools, which the commands of
//! the binary (`src/main.rs`, `src/cmd/`) call and print. Nothing here prints.
//!
//! - [`dead_letters`]: counting, listing, replaying and purging dead-letter queues.
//! - [`deploy`]: a deploy's steps, in order.
//! - [`rollback`]: a rollback's steps, in order.
//! - [`follow`]: following a deploy or a rollback to its end.

pub mod dead_letters;
pub mod deploy;
pub mod follow;
pub mod rollback;
