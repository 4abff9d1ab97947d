//! `tenantctl servers add|list|drain|open`: the tenant servers and whether new tenants go to
//! them (`shared::platform::servers`).

use std::process::ExitCode;

use domain::server::{ServerName, ServerState};
use shared::config::Config;
use shared::platform::PlatformDb;
use shared::platform::servers::TenantServer;
use sqlx::ConnectOptions as _;

use super::OutputFormat;
use crate::out::{self, Table, Tone, outln};

pub const EXAMPLES: &str = "Examples:
  tenantctl servers list
  tenantctl servers add pg-2 postgres://tenancy_provisioner@pg-2.internal:5432/tenants --capacity 5000
  tenantctl servers drain pg-1      # keeps its tenants, takes no new ones
  tenantctl servers open pg-1
  tenantctl servers list --output json | jq 'select(.state == \"open\")'";

#[derive(Debug, clap::Subcommand)]
pub enum ServersCommand {
    /// Register a PostgreSQL server for tenants, open to new ones. The URL holds no password:
    /// every process that reaches the server finds it in its PostgreSQL password file
    /// (PGPASSFILE). The server is connected to first, with this process's password file.
    #[command(
        after_long_help = "Examples:\n  tenantctl servers add pg-2 postgres://tenancy_provisioner@pg-2.internal:5432/tenants\n  tenantctl servers add pg-3 postgres://tenancy_provisioner@pg-3.internal:5432/tenants --capacity 5000"
    )]
    Add {
        /// Its name: 1 to 40 of a-z, 0-9, `_` and `-`, starting with a letter.
        name: ServerName,
        /// `postgres://USER@HOST:PORT/DATABASE`, without a password: the database that holds
        /// schema-mode tenants (database-mode tenants get databases of their own beside it).
        url: String,
        /// How many tenants it may hold (not deleted ones); no limit when left out.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        capacity: Option<u32>,
        /// Register it without connecting to it first.
        #[arg(long)]
        no_check: bool,
    },
    /// Every tenant server: its state, its tenants and its capacity.
    #[command(
        after_long_help = "Examples:\n  tenantctl servers list\n  tenantctl servers list --output json | jq 'select(.state == \"open\")'"
    )]
    List {
        /// `text` for people; `json`: one JSON object per server.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Stop placing new tenants on a server; its tenants stay and keep being migrated.
    #[command(after_long_help = "Examples:\n  tenantctl servers drain pg-1")]
    Drain {
        /// The server's name (`tenantctl servers list`).
        name: ServerName,
    },
    /// Place new tenants on a server again.
    #[command(after_long_help = "Examples:\n  tenantctl servers open pg-1")]
    Open {
        /// The server's name (`tenantctl servers list`).
        name: ServerName,
    },
}

pub async fn run(command: ServersCommand) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
    match command {
        ServersCommand::Add {
            name,
            url,
            capacity,
            no_check,
        } => {
            let options = shared::tenant_servers::server_url(&url)
                .map_err(|reason| anyhow::anyhow!("{url}: {reason}"))?;
            if !no_check {
                let connection = options.connect().await.map_err(|e| {
                    anyhow::anyhow!(
                        "could not connect to {url}: {e}. Check the URL, that this host may reach the server, and the password file (PGPASSFILE); `--no-check` registers it anyway"
                    )
                })?;
                let _ = sqlx::Connection::close(connection).await;
            }
            platform.add_tenant_server(&name, &url, capacity).await?;
            outln!(
                "registered tenant server {name} ({url}){}: new tenants may be placed on it",
                capacity.map_or(String::new(), |c| format!(", capacity {c}"))
            );
            Ok(ExitCode::SUCCESS)
        }
        ServersCommand::List { output } => {
            let servers = platform.tenant_servers().await?;
            if matches!(output, OutputFormat::Json) {
                for server in &servers {
                    out::json(&json(server));
                }
            } else {
                print(&servers);
            }
            Ok(ExitCode::SUCCESS)
        }
        ServersCommand::Drain { name } => {
            let before = platform
                .set_tenant_server_state(&name, ServerState::Draining)
                .await?;
            outln!(
                "{name}: {before} -> draining; its tenants stay where they are, new tenants go elsewhere"
            );
            Ok(ExitCode::SUCCESS)
        }
        ServersCommand::Open { name } => {
            let before = platform
                .set_tenant_server_state(&name, ServerState::Open)
                .await?;
            outln!("{name}: {before} -> open");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Refuses a server that is not registered, naming the ones that are.
///
/// # Errors
/// The server is not registered, or a database error.
pub async fn ensure_registered(platform: &PlatformDb, name: &ServerName) -> anyhow::Result<()> {
    let servers = platform.tenant_servers().await?;
    if servers.iter().any(|server| &server.name == name) {
        return Ok(());
    }
    let known: Vec<String> = servers.iter().map(|s| s.name.to_string()).collect();
    anyhow::bail!(
        "there is no tenant server {name} (registered: {}); `tenantctl servers list` shows them",
        known.join(", ")
    )
}

fn json(server: &TenantServer) -> serde_json::Value {
    serde_json::json!({
        "type": "server",
        "name": server.name.as_str(),
        "url": server.url,
        "state": server.state.as_str(),
        "tenants": server.tenants,
        "capacity": server.capacity,
        "created_at": server.created_at,
    })
}

fn print(servers: &[TenantServer]) {
    let mut table = Table::new(&["SERVER", "STATE", "TENANTS", "CAPACITY", "URL"]).right(&[2, 3]);
    for server in servers {
        let full = server
            .capacity
            .is_some_and(|capacity| server.tenants >= u64::from(capacity));
        let tone = match server.state {
            ServerState::Open if full => Tone::Warn,
            ServerState::Open => Tone::Good,
            ServerState::Draining => Tone::Warn,
            ServerState::Closed => Tone::Bad,
        };
        table.row(
            tone,
            [
                server.name.to_string(),
                if full && server.state == ServerState::Open {
                    "open (full)".to_owned()
                } else {
                    server.state.to_string()
                },
                server.tenants.to_string(),
                server
                    .capacity
                    .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                server.url.clone(),
            ],
        );
    }
    table.print();
}
