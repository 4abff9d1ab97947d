//! `tenantctl event publish`: a CloudEvent sent by hand (operators, the quick start).

use std::process::ExitCode;

use clap::Subcommand;
use domain::message::{decode_any, known_types};
use shared::config::Config;

use crate::out::outln;

pub const EXAMPLES: &str = r#"Examples:
  tenantctl event publish tenant.registered --data @registration.json
  tenantctl event publish tenant.registered --data '{"tenant_id":"6f1d2c3b-1111-4222-8333-944455556666","slug":"acme_towers","name":"Acme Towers","admin":{"email":"ana@acme.example","name":"Ana Lima"}}'"#;

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Publish one event (confirmed by the broker). The envelope (id, time, source) is made for
    /// you; the data is checked against the contract before anything is sent.
    #[command(after_long_help = EXAMPLES)]
    Publish {
        /// The event type, e.g. tenant.registered.
        #[arg(value_name = "TYPE")]
        event_type: String,
        /// The event's data as JSON, or @FILE to read it from a file.
        #[arg(long)]
        data: String,
        /// The CloudEvents source.
        #[arg(long, default_value = "tenantctl")]
        source: String,
    },
}

pub async fn run(command: EventCommand) -> anyhow::Result<ExitCode> {
    let EventCommand::Publish {
        event_type,
        data,
        source,
    } = command;
    anyhow::ensure!(
        known_types().any(|known| known == event_type),
        "unknown event type {event_type:?}: one of {}",
        known_types().collect::<Vec<_>>().join(", ")
    );
    let data = match data.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?
        }
        None => data,
    };
    let data: serde_json::Value =
        serde_json::from_str(&data).map_err(|e| anyhow::anyhow!("--data is not JSON: {e}"))?;
    let subject = data
        .get("tenant_id")
        .and_then(|t| t.as_str())
        .map(str::to_owned);
    let envelope = serde_json::json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7(),
        "source": source,
        "type": event_type,
        "time": chrono::Utc::now(),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    });
    let bytes = serde_json::to_vec(&envelope)?;
    let event = decode_any(&bytes)
        .map_err(|e| anyhow::anyhow!("not a valid {event_type} event: {}", e.reason()))?;

    let config = Config::from_env()?;
    let bus = super::connect::bus(&config).await?;
    bus.publisher().publish_encoded(&event, &bytes).await?;
    bus.close().await;
    outln!("published {} {}", event.type_, event.id);
    Ok(ExitCode::SUCCESS)
}
