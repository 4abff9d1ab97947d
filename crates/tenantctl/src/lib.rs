//! The library of `tenantctl`, the operator CLI: the operator's tools, which the commands of
//! the binary (`src/main.rs`, `src/cmd/`) call and print. Nothing here prints.
//!
//! - [`dead_letters`]: counting, listing, replaying and purging dead-letter queues.

pub mod dead_letters;
