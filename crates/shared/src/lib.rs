#![doc = include_str!("../README.md")]
//!
//! # Error policy
//! - Each module has its own `thiserror` enum (`platform::StoreError`, `bus::BusError`,
//!   `config::ConfigError`, …), `#[non_exhaustive]` when public and growing, with causes chained
//!   through `#[source]`.
//! - Errors that a retry may cure say so: `is_transient()`. Callers retry transient errors with
//!   backoff and treat the rest as permanent (a failed step, a dead-lettered message).
//! - Binaries and CLI commands use `anyhow` with context at the top.
//! - An error is logged once, where it is handled, not at every `?`.
//! - Messages say what was wrong and what to do about it, and never carry credentials or
//!   personal data.

pub mod backoff;
pub mod bus;
pub mod config;
pub mod drift;
pub mod health;
pub mod platform;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod tenant_servers;
pub mod tenant_storage;
