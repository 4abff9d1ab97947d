//! The handlers against a real platform database and tenant server (a PostgreSQL database of
//! the test's own), with the bus replaced by an in-memory recorder: what each command leaves on
//! record, publishes, and does with its message. The end-to-end tests over RabbitMQ are in
//! `crates/tenantctl/tests/deploy.rs`.

mod fixture;
mod migrate;
mod rollback;
