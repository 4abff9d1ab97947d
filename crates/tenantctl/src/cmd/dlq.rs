//! `tenantctl dlq list|replay|purge`: dead-letter queues, for SREs.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Subcommand;
use shared::bus::dead_letter::{DeadLetterInfo, DeadLetterQueue, Selection};
use shared::bus::{Bus, Topology, WorkQueue};
use shared::config::Config;
use shared::message::lifecycle::DlqReplayed;
use shared::store::PlatformDb;
use shared::tenant::TenantSlug;
use tokio_util::sync::CancellationToken;

use super::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum Dlq {
    /// How many messages wait in a dead-letter queue, and for each: id, type, tenant, reason,
    /// deliveries and first failure (never the body).
    List {
        /// The work queue (provisioner.tenant-registered, migrator.migrate-tenant,
        /// migrator.rollback-tenant, auditor.events, with or without .dlq, or provisioner,
        /// migrator, rollback, auditor).
        queue: String,
        /// Show at most this many messages.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Send dead letters back to where they came from. Each is republished (confirmed), recorded,
    /// and only then removed, so an interrupted replay loses nothing and, run again, skips what
    /// it already replayed. Every replayed message is an audited dlq.replayed event.
    Replay {
        queue: String,
        /// Only the message with this id.
        #[arg(long, group = "selection")]
        id: Option<String>,
        /// Only the messages of this tenant (slug or id).
        #[arg(long, group = "selection")]
        tenant: Option<String>,
        /// Every message.
        #[arg(long, group = "selection")]
        all: bool,
        /// Show what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who replays (an operator handle, recorded in the audit trail) [default: $USER].
        #[arg(long)]
        operator: Option<String>,
    },
    /// Delete every message of a dead-letter queue.
    Purge {
        queue: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(command: Dlq) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let shutdown = CancellationToken::new();
    let queue_arg = match &command {
        Dlq::List { queue, .. } | Dlq::Replay { queue, .. } | Dlq::Purge { queue, .. } => {
            queue.clone()
        }
    };
    let queue = WorkQueue::parse(&queue_arg).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown queue {queue_arg:?}: use one of {}",
            WorkQueue::ALL
                .iter()
                .map(|q| q.base_name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let connect = Bus::connect(
        &config.amqp_url,
        Topology::new(config.namespace.clone()),
        "tenantctl",
        "tenantctl",
        &shutdown,
    );
    let bus = tokio::time::timeout(std::time::Duration::from_secs(30), connect)
        .await
        .map_err(|_| {
            anyhow::anyhow!("RabbitMQ at {} did not answer within 30s", config.amqp_url)
        })??;
    let dlq = DeadLetterQueue::new(&bus, queue);
    let code = match command {
        Dlq::List { limit, output, .. } => {
            let (total, listed) = dlq.list(limit).await?;
            match output {
                OutputFormat::Json => {
                    for info in &listed {
                        println!("{}", json_of(info));
                    }
                }
                OutputFormat::Text => {
                    println!("{}: {total} message(s)", dlq.name());
                    if !listed.is_empty() {
                        println!(
                            "{:<36}  {:<26} {:<36} {:>5}  {:<20}  REASON",
                            "MESSAGE ID", "TYPE", "TENANT", "TRIES", "FIRST FAILURE"
                        );
                    }
                    for info in &listed {
                        println!(
                            "{:<36}  {:<26} {:<36} {:>5}  {:<20}  {}",
                            info.message_id.as_deref().unwrap_or("-"),
                            info.event_type.as_deref().unwrap_or("-"),
                            info.tenant_id.as_deref().unwrap_or("-"),
                            info.deliveries,
                            info.first_failure.map_or("-".to_owned(), |t| t
                                .format("%Y-%m-%dT%H:%M:%SZ")
                                .to_string()),
                            info.reason
                        );
                    }
                    if listed.len() < total as usize {
                        println!("(showing {} of {total}; --limit shows more)", listed.len());
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Dlq::Replay {
            id,
            tenant,
            all,
            dry_run,
            operator,
            ..
        } => {
            let selection = match (id, tenant, all) {
                (Some(id), None, false) => Selection::MessageId(id),
                (None, Some(tenant), false) => {
                    Selection::Tenant(tenant_id(&config, &tenant).await?)
                }
                (None, None, true) => Selection::All,
                _ => anyhow::bail!("say what to replay: --id ID, --tenant SLUG or --all"),
            };
            let operator = operator_handle(operator)?;
            let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
            let publisher = bus.publisher().clone();
            let queue_name = queue.base_name().to_owned();
            // Ctrl-C stops between two messages: nothing is lost or replayed twice.
            let stop = shared::shutdown::on_signal();
            let summary = dlq
                .replay(&selection, dry_run, &platform, &stop, |info| {
                    let (publisher, operator, queue_name) = (publisher.clone(), operator.clone(), queue_name.clone());
                    async move {
                        let event = publisher.event(DlqReplayed {
                            queue: queue_name,
                            // A dead letter without an id (not one of ours) is still audited.
                            original_message_id: info.message_id.clone().unwrap_or_else(|| "none".to_owned()),
                            original_type: info.event_type.clone(),
                            tenant_id: info.tenant_id.as_deref().and_then(|t| uuid::Uuid::parse_str(t).ok()),
                            operator,
                        });
                        if let Err(error) = publisher.publish(&event).await {
                            eprintln!("warning: replayed {:?} but could not publish its audit event: {error}", info.message_id);
                        }
                    }
                })
                .await?;
            let verb = if dry_run { "would replay" } else { "replayed" };
            for info in &summary.replayed {
                println!(
                    "{verb} {} ({}, tenant {}) to {}/{}",
                    info.message_id.as_deref().unwrap_or("-"),
                    info.event_type.as_deref().unwrap_or("-"),
                    info.tenant_id.as_deref().unwrap_or("-"),
                    info.original_exchange.as_deref().unwrap_or("-"),
                    info.original_routing_key.as_deref().unwrap_or("-"),
                );
            }
            for info in &summary.unroutable {
                println!(
                    "left {}: its original destination is unknown",
                    info.message_id.as_deref().unwrap_or("-")
                );
            }
            println!(
                "{}: {verb} {}, removed {} already replayed by an earlier run, left {}",
                dlq.name(),
                summary.replayed.len(),
                summary.already_replayed,
                summary.left
            );
            ExitCode::SUCCESS
        }
        Dlq::Purge { yes, .. } => {
            let count = dlq.count().await?;
            if count == 0 {
                println!("{} is empty", dlq.name());
            } else if yes || confirm(&dlq.name(), count)? {
                let purged = dlq.purge().await?;
                println!("purged {purged} message(s) from {}", dlq.name());
            } else {
                println!("nothing purged");
                bus.close().await;
                return Ok(ExitCode::FAILURE);
            }
            ExitCode::SUCCESS
        }
    };
    bus.close().await;
    Ok(code)
}

fn json_of(info: &DeadLetterInfo) -> serde_json::Value {
    serde_json::json!({
        "message_id": info.message_id,
        "type": info.event_type,
        "tenant_id": info.tenant_id,
        "reason": info.reason,
        "deliveries": info.deliveries,
        "first_failure": info.first_failure,
        "dead_lettered_at": info.dead_lettered_at,
        "original_exchange": info.original_exchange,
        "original_routing_key": info.original_routing_key,
    })
}

async fn tenant_id(config: &Config, text: &str) -> anyhow::Result<String> {
    if let Ok(id) = uuid::Uuid::parse_str(text) {
        return Ok(id.to_string());
    }
    let slug = TenantSlug::parse(text)?;
    let platform = PlatformDb::connect(&config.database_url, false, 1).await?;
    let tenants = platform.tenants(Some(&slug)).await?;
    tenants.first().map(|t| t.id.to_string()).ok_or_else(|| {
        anyhow::anyhow!("there is no tenant {slug}; give its id if it never got a row")
    })
}

/// The operator recorded in the audit trail: a handle, never an email address.
pub fn operator_handle(given: Option<String>) -> anyhow::Result<String> {
    resolve_operator(given, |name| std::env::var(name).ok())
}

/// [`operator_handle`] with the environment passed in.
fn resolve_operator(
    given: Option<String>,
    environment: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let operator = given
        .or_else(|| environment("USER"))
        .or_else(|| environment("LOGNAME"))
        .unwrap_or_default();
    anyhow::ensure!(
        !operator.is_empty(),
        "who is operating? pass --operator HANDLE (USER and LOGNAME are not set, so it cannot be taken from the environment)"
    );
    let valid = operator.len() <= 64
        && operator
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    anyhow::ensure!(
        valid,
        "--operator must be a handle of up to 64 letters, digits, `.`, `_` or `-` (not an email address)"
    );
    Ok(operator)
}

fn confirm(queue: &str, count: u32) -> anyhow::Result<bool> {
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "refusing to purge {count} message(s) from {queue} without confirmation: pass --yes"
    );
    print!(
        "This deletes {count} message(s) from {queue} for good. Type the queue name to confirm: "
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == queue)
}

#[cfg(test)]
mod tests {
    use super::resolve_operator;

    #[test]
    fn the_operator_is_a_handle_from_the_flag_or_the_environment() {
        let none = |_: &str| None;
        let user = |name: &str| (name == "USER").then(|| "sre-ana".to_owned());
        assert_eq!(
            resolve_operator(Some("bruno".into()), user).ok(),
            Some("bruno".into())
        );
        assert_eq!(resolve_operator(None, user).ok(), Some("sre-ana".into()));
        let missing = resolve_operator(None, none).err().map(|e| e.to_string());
        assert!(
            missing
                .as_deref()
                .is_some_and(|m| m.contains("pass --operator")),
            "{missing:?}"
        );
        let email = resolve_operator(Some("ana@example.com".into()), none)
            .err()
            .map(|e| e.to_string());
        assert!(
            email
                .as_deref()
                .is_some_and(|m| m.contains("not an email address")),
            "{email:?}"
        );
    }
}
