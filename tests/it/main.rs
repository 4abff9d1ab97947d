//! End-to-end tests: real PostgreSQL and RabbitMQ, the services in-process, real messages.
//! Each test has its own database and its own `TENANCY_NAMESPACE`; fault tests that stop or
//! disconnect a server use a private one (`testkit::cluster`, `testkit::broker`).

mod audit;
mod broker_refusals;
mod cluster;
mod consumer;
mod content_modes;
mod deploy_records;
mod dlq;
mod faults;
mod fleet_metrics;
mod observability_stack;
mod personal_data;
mod provisioning;
mod provisioning_faults;
mod publisher;
mod releases;
mod support;
mod trace;
