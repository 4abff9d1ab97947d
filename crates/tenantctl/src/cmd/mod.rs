//! One module per top-level command, and what several of them share: connecting to the broker
//! (`connect`), who operates (`operator`), progress on stderr (`progress`).

mod audit;
mod connect;
mod deploy;
mod dlq;
mod drift;
mod event;
mod healthcheck;
mod migrations;
mod operator;
mod progress;
mod rollback;
mod servers;
mod setup;
mod tenant;
mod up;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use tracing::Instrument as _;

use crate::out::{self, ColorChoice};

/// Operator CLI of the tenant fleet: schema lifecycle of the platform database and of every
/// tenant's schema or database.
///
/// Configuration comes from the environment (DATABASE_URL, TENANT_DATABASE_URL,
/// TENANT_ISOLATION, AMQP_URL, TENANCY_NAMESPACE, MIGRATIONS_DIR); see docs/CONFIG.md.
#[derive(Debug, Parser)]
#[command(
    name = "tenantctl",
    version,
    propagate_version = true,
    after_long_help = "Examples:\n  tenantctl status\n  tenantctl deploy --canary 20 --wait\n  tenantctl dlq list migrator --output json | jq .\n  tenantctl completions bash > /etc/bash_completion.d/tenantctl"
)]
pub struct Cli {
    /// When to colour the output: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    pub fn color(&self) -> ColorChoice {
        self.color
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system in this process (for development and the quick start): apply the
    /// platform migrations, declare the RabbitMQ topology, run the services, serve /healthz,
    /// /readyz and /metrics. Stops cleanly on Ctrl-C or SIGTERM.
    #[command(after_long_help = up::EXAMPLES)]
    Up(up::Args),
    /// Install or upgrade, as the owners: create and migrate the platform database, grant the
    /// service roles their rights on it, declare the RabbitMQ topology. Then the services need
    /// neither DDL nor configure rights.
    #[command(after_long_help = setup::EXAMPLES)]
    Setup(setup::Args),
    /// Which tenants' schemas differ from what their version's migrations build (a change made
    /// by hand), with each difference; exit code 1 when any does.
    #[command(after_long_help = drift::EXAMPLES)]
    Drift(drift::Args),
    /// Print the audit trail, newest first.
    #[command(after_long_help = audit::EXAMPLES)]
    Audit(audit::Args),
    /// Deploy: apply the platform migrations, then publish one `migrate.tenant` per tenant
    /// (the migrator applies them); `--wait` follows it to a per-tenant summary.
    #[command(after_long_help = deploy::EXAMPLES)]
    Deploy(deploy::Args),
    /// Roll tenants back to a version (a manual, audited decision): checks every tenant's down
    /// scripts first, then publishes `rollback.tenant` commands.
    #[command(after_long_help = rollback::EXAMPLES)]
    Rollback(rollback::Args),
    /// Publish an event by hand.
    #[command(subcommand, after_long_help = event::EXAMPLES)]
    Event(event::EventCommand),
    /// Inspect, replay and purge dead-letter queues.
    #[command(subcommand, after_long_help = dlq::EXAMPLES)]
    Dlq(dlq::Dlq),
    /// Author, check and inspect migrations.
    #[command(subcommand, after_long_help = migrations::EXAMPLES)]
    Migrations(migrations::Migrations),
    /// Register a tenant, show one, retry a failed provisioning.
    #[command(subcommand, after_long_help = tenant::EXAMPLES)]
    Tenant(tenant::TenantCommand),
    /// The PostgreSQL servers that hold tenants: register one, list them, drain or reopen one.
    #[command(subcommand, after_long_help = servers::EXAMPLES)]
    Servers(servers::ServersCommand),
    /// Every tenant with its state, schema version and pending migrations (and the platform's).
    #[command(after_long_help = migrations::STATUS_EXAMPLES)]
    Status(migrations::StatusArgs),
    /// Ask a running process's health port whether it is ready (exit 0) or not (exit 1): a
    /// container's health check.
    #[command(after_long_help = healthcheck::EXAMPLES)]
    Healthcheck(healthcheck::Args),
    /// Print a shell completion script for bash, zsh or fish.
    #[command(after_long_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const COMPLETIONS_EXAMPLES: &str = "Examples:
  tenantctl completions bash > ~/.local/share/bash-completion/completions/tenantctl
  tenantctl completions zsh > ~/.zfunc/_tenantctl      # with fpath+=~/.zfunc before compinit
  tenantctl completions fish > ~/.config/fish/completions/tenantctl.fish";

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
        Command::Healthcheck(args) => return Ok(healthcheck::run(&args)),
        Command::Completions { shell } => {
            // Generated into memory first: the generator panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tenantctl", &mut script);
            out::write_bytes(&script);
            return Ok(ExitCode::SUCCESS);
        }
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
            Command::Up(_) | Command::Healthcheck(_) | Command::Completions { .. } => {
                unreachable!("handled above")
            }
            Command::Audit(args) => audit::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::Drift(args) => drift::run(args).await,
            Command::Setup(args) => setup::run(args).await,
            Command::Rollback(args) => rollback::run(args).await,
            Command::Dlq(command) => dlq::run(command).await,
            Command::Event(command) => event::run(command).await,
            Command::Migrations(command) => migrations::run(command).await,
            Command::Tenant(command) => tenant::run(command).await,
            Command::Servers(command) => servers::run(command).await,
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
            Command::Setup(_) => "setup",
            Command::Audit(_) => "audit",
            Command::Deploy(_) => "deploy",
            Command::Drift(_) => "drift",
            Command::Rollback(_) => "rollback",
            Command::Event(_) => "event",
            Command::Dlq(_) => "dlq",
            Command::Migrations(_) => "migrations",
            Command::Tenant(_) => "tenant",
            Command::Servers(_) => "servers",
            Command::Status(_) => "status",
            Command::Healthcheck(_) => "healthcheck",
            Command::Completions { .. } => "completions",
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every argument of every command, by path, that has no help text; every command without
    /// an example in its long help.
    fn undocumented(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {}: no help", arg.get_id()));
            }
        }
        if command.get_about().is_none() && command.get_long_about().is_none() {
            missing.push(format!("{path}: no description"));
        }
        let example = command
            .get_after_long_help()
            .is_some_and(|help| help.to_string().contains("tenantctl "));
        if !example {
            missing.push(format!("{path}: no example in the long help"));
        }
        for sub in command.get_subcommands() {
            // clap's own `help` subcommand.
            if sub.get_name() != "help" {
                undocumented(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
    }

    #[test]
    fn every_argument_has_help_and_every_command_an_example() {
        Cli::command().debug_assert();
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        undocumented(&command, "tenantctl", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
