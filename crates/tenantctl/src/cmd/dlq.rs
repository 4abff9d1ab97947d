//! `tenantctl dlq list|replay|purge`: dead-letter queues, for SREs.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use domain::tenant::TenantSlug;
use shared::bus::WorkQueue;
use shared::config::Config;
use shared::platform::PlatformDb;
use tenantctl::dead_letters::{self, DeadLetterInfo, DeadLetterQueue, Selection};
use uuid::Uuid;

use super::OutputFormat;
use crate::out::{self, Table, Tone, outln};

pub const EXAMPLES: &str = "Examples:
  tenantctl dlq list migrator                   # count, and per message: id, type, tenant, tries, reason
  tenantctl dlq list auditor --output json
  tenantctl dlq replay migrator --tenant acme_towers --dry-run
  tenantctl dlq replay migrator --all
  tenantctl dlq purge migrator                  # asks you to type the queue name (or --yes)";

#[derive(Debug, Subcommand)]
pub enum Dlq {
    /// How many messages wait in a dead-letter queue, and for each: id, type, tenant, reason,
    /// deliveries and first failure (never the body).
    #[command(
        after_long_help = "Examples:\n  tenantctl dlq list migrator\n  tenantctl dlq list provisioner.tenant-registered --limit 20\n  tenantctl dlq list auditor --output json"
    )]
    List {
        /// The work queue (provisioner.tenant-registered, migrator.migrate-tenant,
        /// migrator.rollback-tenant, auditor.events, with or without .dlq, or provisioner,
        /// migrator, rollback, auditor).
        queue: String,
        /// Show at most this many messages.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// `text` for people; `json`: one JSON object per line, each with a `type`
        /// (docs/OPERATIONS.md, "Machine-readable output").
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Send dead letters back to where they came from. Each is republished (confirmed), recorded,
    /// and only then removed, so an interrupted replay loses nothing and, run again, skips what
    /// it already replayed. Every replayed message is an audited dlq.replayed event.
    #[command(
        after_long_help = "Examples:\n  tenantctl dlq replay migrator --tenant acme_towers --dry-run\n  tenantctl dlq replay migrator --all --operator ana.sre\n  tenantctl dlq replay provisioner --id 0190a4c2-7d1e-7c3a-9f00-5b2d8e6f1a20"
    )]
    Replay {
        /// The work queue whose dead letters to replay (as for `dlq list`).
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
        /// Who replays, a handle recorded in the audit trail [default: $TENANCY_OPERATOR,
        /// else $USER, else $LOGNAME].
        #[arg(long)]
        operator: Option<String>,
    },
    /// Delete every message of a dead-letter queue.
    #[command(
        after_long_help = "Examples:\n  tenantctl dlq purge auditor          # asks you to type the queue name\n  tenantctl dlq purge auditor --yes"
    )]
    Purge {
        /// The work queue whose dead-letter queue to empty (as for `dlq list`).
        queue: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(command: Dlq) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
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
    let bus = super::connect::bus(&config).await?;
    let dlq = DeadLetterQueue::new(&bus, queue);
    let code = match command {
        Dlq::List { limit, output, .. } => {
            let (total, listed) = dlq.list(limit).await?;
            let slugs = slugs_of(&config, &listed).await;
            let slug = |info: &DeadLetterInfo| -> Option<String> {
                let id = info.tenant_id.as_deref()?;
                match &slugs {
                    Ok(slugs) => Uuid::parse_str(id)
                        .ok()
                        .and_then(|id| slugs.get(&id).cloned()),
                    Err(_) => None,
                }
            };
            match output {
                OutputFormat::Json => {
                    for info in &listed {
                        out::json(&json_of(info, slug(info).as_deref()));
                    }
                    out::json(&serde_json::json!({
                        "type": "summary", "queue": dlq.name(), "total": total,
                        "listed": listed.len(),
                    }));
                }
                OutputFormat::Text => {
                    outln!("{}: {total} message(s)", dlq.name());
                    let mut table = Table::new(&[
                        "MESSAGE ID",
                        "TYPE",
                        "TENANT",
                        "SLUG",
                        "TRIES",
                        "FIRST FAILURE",
                        "REASON",
                    ])
                    .right(&[4]);
                    for info in &listed {
                        let slug = match (&slugs, &info.tenant_id) {
                            (Err(_), Some(_)) => "?".to_owned(),
                            _ => slug(info).unwrap_or_else(|| "-".to_owned()),
                        };
                        table.row(
                            Tone::Plain,
                            [
                                info.message_id.as_deref().unwrap_or("-").to_owned(),
                                info.event_type.as_deref().unwrap_or("-").to_owned(),
                                info.tenant_id.as_deref().unwrap_or("-").to_owned(),
                                slug,
                                info.deliveries.to_string(),
                                info.first_failure.map_or("-".to_owned(), |t| {
                                    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                                }),
                                info.reason.clone(),
                            ],
                        );
                    }
                    if !table.is_empty() {
                        table.print();
                    }
                    if listed.len() < total as usize {
                        outln!("(showing {} of {total}; --limit shows more)", listed.len());
                    }
                }
            }
            if let Err(error) = &slugs {
                eprintln!("warning: tenant slugs are not shown: {error:#}");
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
            let operator = super::operator::handle(operator)?;
            let platform = PlatformDb::connect(&config.database_url, false, 2).await?;
            let publisher = bus.publisher().clone();
            // Ctrl-C stops between two messages: nothing is lost or replayed twice.
            let stop = shared::shutdown::on_signal();
            let summary = dlq
                .replay(&selection, dry_run, &platform, &stop, |info| {
                    let (publisher, operator) = (publisher.clone(), operator.clone());
                    async move {
                        let event = publisher.event(dead_letters::replayed_event(queue, &info, operator));
                        if let Err(error) = publisher.publish(&event).await {
                            eprintln!("warning: replayed {:?} but could not publish its audit event: {error}", info.message_id);
                        }
                    }
                })
                .await?;
            let verb = if dry_run { "would replay" } else { "replayed" };
            for info in &summary.replayed {
                outln!(
                    "{verb} {} ({}, tenant {}) to {}/{}",
                    info.message_id.as_deref().unwrap_or("-"),
                    info.event_type.as_deref().unwrap_or("-"),
                    info.tenant_id.as_deref().unwrap_or("-"),
                    info.original_exchange.as_deref().unwrap_or("-"),
                    info.original_routing_key.as_deref().unwrap_or("-"),
                );
            }
            for info in &summary.unroutable {
                outln!(
                    "left {}: its original destination is unknown",
                    info.message_id.as_deref().unwrap_or("-")
                );
            }
            outln!(
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
                outln!("{} is empty", dlq.name());
            } else if yes || confirm(&dlq.name(), count)? {
                let purged = dlq.purge().await?;
                outln!("purged {purged} message(s) from {}", dlq.name());
            } else {
                outln!("nothing purged");
                bus.close().await;
                return Ok(ExitCode::FAILURE);
            }
            ExitCode::SUCCESS
        }
    };
    bus.close().await;
    Ok(code)
}

/// The slugs of the listed messages' tenants, in one query. A tenant without a row is
/// missing from the map; an unreachable platform database is an error the caller shows as a
/// warning (a dead-letter queue is still worth listing while the database is down).
async fn slugs_of(
    config: &Config,
    listed: &[DeadLetterInfo],
) -> anyhow::Result<HashMap<Uuid, String>> {
    let mut ids: Vec<Uuid> = listed
        .iter()
        .filter_map(|info| info.tenant_id.as_deref())
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let connect = PlatformDb::connect(&config.database_url, false, 1);
    let platform = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the platform database at {} did not answer within 10s",
                config.database_url.redacted()
            )
        })??;
    Ok(platform.slugs_of(&ids).await?)
}

fn json_of(info: &DeadLetterInfo, slug: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "type": "message",
        "message_id": info.message_id,
        "event_type": info.event_type,
        "tenant_id": info.tenant_id,
        "slug": slug,
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

fn confirm(queue: &str, count: u32) -> anyhow::Result<bool> {
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "refusing to purge {count} message(s) from {queue} without confirmation: pass --yes"
    );
    out::write(format_args!(
        "This deletes {count} message(s) from {queue} for good. Type the queue name to confirm: "
    ));
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == queue)
}
