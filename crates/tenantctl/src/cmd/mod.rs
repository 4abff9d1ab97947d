//! One module per top-level command.

mod migrations;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Author, check and inspect migrations.
    #[command(subcommand)]
    Migrations(migrations::Migrations),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Migrations(command) => migrations::run(command).await,
    }
}
