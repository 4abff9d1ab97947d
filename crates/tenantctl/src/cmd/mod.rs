//! One module per top-level command.

mod audit;
mod deploy;
mod dlq;
mod event;
mod migrations;
mod rollback;
mod tenant;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing::Instrument as _;

/// Operator CLI of the tenant fleet: schema lifecycle of the platform database and of every
/// tenant's schema or database.
///
/// Configuration comes from the environment (DATABASE_URL, TENANT_DATABASE_URL,
/// TENANT_ISOLATION, AMQP_URL, TENANCY_NAMESPACE, MIGRATIONS_DIR); see docs/CONFIG.md.
#[derive(Debug, Parser)]
#[command(name = "tenantctl", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system in this process (for development and the quick start): apply the
    /// platform migrations, declare the RabbitMQ topology, run the services, serve /healthz and
    /// /readyz. Stops cleanly on Ctrl-C or SIGTERM.
    Up(up::Args),
    /// Print the audit trail.
    Audit(audit::Args),
    /// Deploy: apply the platform migrations, then publish one `migrate.tenant` per tenant
    /// (the migrator applies them); `--wait` follows it to a per-tenant summary.
    Deploy(deploy::Args),
    /// Roll tenants back to a version (a manual, audited decision): checks every tenant's down
    /// scripts first, then publishes `rollback.tenant` commands.
    Rollback(rollback::Args),
    /// Publish an event by hand.
    #[command(subcommand)]
    Event(event::EventCommand),
    /// Inspect, replay and purge dead-letter queues.
    #[command(subcommand)]
    Dlq(dlq::Dlq),
    /// Author, check and inspect migrations.
    #[command(subcommand)]
    Migrations(migrations::Migrations),
    /// Register a tenant, show one, retry a failed provisioning.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Every tenant with its state, schema version and pending migrations (and the platform's).
    Status(migrations::StatusArgs),
}

/// How a command prints what it found.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON object per line, for scripts.
    Json,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = match cli.command {
        // `up` sets up the services' telemetry itself.
        Command::Up(args) => return up::run(args).await,
        command => command,
    };
    // Logs go to stderr as LOG_FORMAT says, warnings and errors only unless RUST_LOG says
    // otherwise; the command runs in a root span whose trace context what it publishes carries.
    let settings = shared::config::TelemetrySettings::from_env()?;
    let telemetry = shared::telemetry::init_with_filter(
        &settings.otel,
        "tenantctl",
        settings.log_format,
        shared::telemetry::CLI_LOG_FILTER,
    )?;
    let span = shared::telemetry::command_span(&format!("tenantctl {}", command.name()));
    let outcome = async move {
        match command {
            Command::Up(_) => unreachable!("handled above"),
            Command::Audit(args) => audit::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::Rollback(args) => rollback::run(args).await,
            Command::Dlq(command) => dlq::run(command).await,
            Command::Event(command) => event::run(command).await,
            Command::Migrations(command) => migrations::run(command).await,
            Command::Tenant(command) => tenant::run(command).await,
            Command::Status(args) => migrations::status(args).await,
        }
    }
    .instrument(span)
    .await;
    // Flushes the command's spans (bounded: a dead collector delays the exit by seconds).
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    outcome
}

impl Command {
    /// The command's name, for its span.
    fn name(&self) -> &'static str {
        match self {
            Command::Up(_) => "up",
            Command::Audit(_) => "audit",
            Command::Deploy(_) => "deploy",
            Command::Rollback(_) => "rollback",
            Command::Event(_) => "event",
            Command::Dlq(_) => "dlq",
            Command::Migrations(_) => "migrations",
            Command::Tenant(_) => "tenant",
            Command::Status(_) => "status",
        }
    }
}
