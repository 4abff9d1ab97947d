//! The RabbitMQ topology of the contract (ARCHITECTURE §2.2), every name behind the
//! `TENANCY_NAMESPACE` prefix. Every connection checks it passively and declares what is
//! missing, which only a user with `configure` rights can: `tenantctl setup`, or a development
//! setup's single user. deploy/rabbitmq/definitions.json holds the same topology for an install
//! that imports it (a test keeps the two equal).

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind, Queue};

use super::BusError;
use super::connection::closing;

/// The exchanges of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// `tenancy.events` (topic): `tenant.registered` and every lifecycle event.
    Events,
    /// `tenancy.commands` (direct): `migrate.tenant`, `rollback.tenant`.
    Commands,
    /// `tenancy.dlx` (direct): dead letters, routed by the name of the queue they died in.
    DeadLetters,
}

impl Exchange {
    pub const ALL: [Exchange; 3] = [Exchange::Events, Exchange::Commands, Exchange::DeadLetters];

    pub fn base_name(self) -> &'static str {
        match self {
            Exchange::Events => "tenancy.events",
            Exchange::Commands => "tenancy.commands",
            Exchange::DeadLetters => "tenancy.dlx",
        }
    }

    fn kind(self) -> ExchangeKind {
        match self {
            Exchange::Events => ExchangeKind::Topic,
            Exchange::Commands | Exchange::DeadLetters => ExchangeKind::Direct,
        }
    }
}

/// The work queues of the contract; each has a dead-letter queue `<queue>.dlq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkQueue {
    /// `provisioner.tenant-registered` ← `tenancy.events` / `tenant.registered`
    TenantRegistered,
    /// `migrator.migrate-tenant` ← `tenancy.commands` / `migrate.tenant`
    MigrateTenant,
    /// `migrator.rollback-tenant` ← `tenancy.commands` / `rollback.tenant`: its own queue, so a
    /// rollback never waits behind a deploy's fan-out.
    RollbackTenant,
    /// `auditor.events` ← `tenancy.events` / `#`
    AuditorEvents,
}

impl WorkQueue {
    pub const ALL: [WorkQueue; 4] = [
        WorkQueue::TenantRegistered,
        WorkQueue::MigrateTenant,
        WorkQueue::RollbackTenant,
        WorkQueue::AuditorEvents,
    ];

    /// The queue's name before the namespace prefix; also the routing key of its dead letters.
    /// How a delivery's handling joins its publisher's trace.
    pub fn trace_join(self) -> TraceJoin {
        match self {
            // A deploy publishes one per tenant: see `propagation::link_from`.
            WorkQueue::MigrateTenant => TraceJoin::Link,
            _ => TraceJoin::Child,
        }
    }

    pub fn base_name(self) -> &'static str {
        match self {
            WorkQueue::TenantRegistered => "provisioner.tenant-registered",
            WorkQueue::MigrateTenant => "migrator.migrate-tenant",
            WorkQueue::RollbackTenant => "migrator.rollback-tenant",
            WorkQueue::AuditorEvents => "auditor.events",
        }
    }

    fn source(self) -> (Exchange, &'static str) {
        match self {
            WorkQueue::TenantRegistered => (Exchange::Events, "tenant.registered"),
            WorkQueue::MigrateTenant => (Exchange::Commands, "migrate.tenant"),
            WorkQueue::RollbackTenant => (Exchange::Commands, "rollback.tenant"),
            WorkQueue::AuditorEvents => (Exchange::Events, "#"),
        }
    }

    /// How many deliveries a message gets before the broker dead-letters it. Consumers retry a
    /// transient failure a few times in-process first (with backoff), so each delivery is itself
    /// several attempts; five deliveries ride out a broker or database restart.
    pub fn delivery_limit(self) -> u32 {
        5
    }

    /// Finds a queue by its base name, with or without `.dlq`, or by a short alias
    /// (`provisioner`, `migrator`, `rollback`, `auditor`).
    pub fn parse(name: &str) -> Option<WorkQueue> {
        let name = name.strip_suffix(".dlq").unwrap_or(name);
        WorkQueue::ALL
            .into_iter()
            .find(|q| q.base_name() == name)
            .or(match name {
                "provisioner" => Some(WorkQueue::TenantRegistered),
                "migrator" => Some(WorkQueue::MigrateTenant),
                "rollback" => Some(WorkQueue::RollbackTenant),
                "auditor" => Some(WorkQueue::AuditorEvents),
                _ => None,
            })
    }
}

/// Where a message of a given CloudEvents type is published.
pub fn route_of(event_type: &str) -> Exchange {
    match event_type {
        "migrate.tenant" | "rollback.tenant" => Exchange::Commands,
        _ => Exchange::Events,
    }
}

/// Upper bound of messages in a work queue: with `reject-publish`, a full queue refuses
/// publishes (the publisher sees a nack) instead of dropping the oldest message, which at-least
/// once dead-lettering requires.
const MAX_LENGTH: i64 = 1_000_000;

/// Delivery limit of a dead-letter queue: high enough never to be reached by operators
/// inspecting it (`tenantctl dlq list` takes and returns each message). It must be explicit:
/// RabbitMQ 4 defaults to 20, and `-1`, which means "unlimited" on 4.x, means "zero" on 3.10.
const DLQ_DELIVERY_LIMIT: i32 = 1_000_000;

/// How the span that handles a message relates to the span that published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceJoin {
    /// In the publisher's trace, as a child of its publish span.
    Child,
    /// A trace of its own, linked to the publish span (fan-outs: see
    /// [`propagation::link_from`](super::propagation::link_from)).
    Link,
}

/// One declarable piece of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Exchange(Exchange),
    /// A work queue and its binding to its source.
    Queue(WorkQueue),
    /// A dead-letter queue and its binding to the dead-letter exchange.
    DeadLetterQueue(WorkQueue),
}

impl Part {
    /// Everything, in an order that declares what a part refers to before it.
    fn all() -> Vec<Part> {
        Exchange::ALL
            .into_iter()
            .map(Part::Exchange)
            .chain(
                WorkQueue::ALL
                    .into_iter()
                    .flat_map(|queue| [Part::DeadLetterQueue(queue), Part::Queue(queue)]),
            )
            .collect()
    }
}

/// A passive declare: the queue's depth and consumers, without declaring it and without any
/// permission on it. A missing queue closes the channel with `NOT_FOUND`.
pub(crate) async fn inspect_queue(channel: &Channel, name: &str) -> Result<Queue, lapin::Error> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

async fn open_channel(connection: &Connection) -> Result<Channel, BusError> {
    connection
        .create_channel()
        .await
        .map_err(|e| BusError::Broker {
            context: "opening a channel".into(),
            source: e,
        })
}

fn channel_closed_with(error: &lapin::Error, wanted: lapin::protocol::AMQPSoftError) -> bool {
    use lapin::protocol::AMQPErrorKind;
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(kind) if *kind == wanted))
}

fn not_found(error: &lapin::Error) -> bool {
    channel_closed_with(error, lapin::protocol::AMQPSoftError::NOTFOUND)
}

fn access_refused(error: &lapin::Error) -> bool {
    channel_closed_with(error, lapin::protocol::AMQPSoftError::ACCESSREFUSED)
}

/// The contract's names under one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    namespace: String,
}

impl Topology {
    pub fn new(namespace: impl Into<String>) -> Self {
        Topology {
            namespace: namespace.into(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn prefixed(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.namespace)
        }
    }

    pub fn exchange(&self, exchange: Exchange) -> String {
        self.prefixed(exchange.base_name())
    }

    pub fn queue(&self, queue: WorkQueue) -> String {
        self.prefixed(queue.base_name())
    }

    pub fn dead_letter_queue(&self, queue: WorkQueue) -> String {
        self.prefixed(&format!("{}.dlq", queue.base_name()))
    }

    /// Makes sure every exchange and queue exists: checks each passively, which needs no
    /// permission, and declares only what is missing, which needs `configure` rights on it.
    /// So a process whose broker user may not configure anything (least privilege, with the
    /// topology declared by `tenantctl setup` or imported from deploy/rabbitmq/definitions.json)
    /// starts as long as the topology is there, and an existing queue is never redeclared:
    /// its arguments may differ from ours (queues of the definitions file carry their limits as
    /// policies) without a `PRECONDITION_FAILED`.
    ///
    /// # Errors
    /// [`BusError::TopologyMissing`] when something is missing and this user may not declare
    /// it; any other broker error.
    pub async fn ensure(&self, connection: &Connection) -> Result<(), BusError> {
        let missing = self.missing(connection).await?;
        if missing.is_empty() {
            return Ok(());
        }
        let channel = open_channel(connection).await?;
        let declared = self.declare_parts(&channel, &missing).await;
        closing(channel.close(200, "topology declared".into())).await;
        match declared {
            Err((name, error)) if access_refused(&error) => Err(BusError::TopologyMissing {
                name,
                missing: missing.iter().map(|part| self.part_name(*part)).collect(),
            }),
            Err((name, error)) => Err(BusError::topology(format!("declaring {name}"), error)),
            Ok(()) => {
                tracing::info!(
                    declared = %missing.iter().map(|part| self.part_name(*part)).collect::<Vec<_>>().join(", "),
                    "declared the missing RabbitMQ topology"
                );
                Ok(())
            }
        }
    }

    /// Declares every exchange, queue and binding (idempotent, as long as the queues were
    /// declared with the same arguments).
    ///
    /// # Errors
    /// A broker error, e.g. `PRECONDITION_FAILED` when a queue exists with other arguments.
    pub async fn declare(&self, channel: &Channel) -> Result<(), BusError> {
        self.declare_parts(channel, &Part::all())
            .await
            .map_err(|(name, error)| BusError::topology(format!("declaring {name}"), error))
    }

    /// The parts that do not exist, each checked with a passive declare (a miss closes the
    /// channel, so each check after a miss runs on a new one).
    async fn missing(&self, connection: &Connection) -> Result<Vec<Part>, BusError> {
        let mut missing = Vec::new();
        let mut channel = open_channel(connection).await?;
        for part in Part::all() {
            let name = self.part_name(part);
            let checked = match part {
                Part::Exchange(exchange) => channel
                    .exchange_declare(
                        name.as_str().into(),
                        exchange.kind(),
                        ExchangeDeclareOptions {
                            passive: true,
                            ..ExchangeDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map(drop),
                Part::Queue(_) | Part::DeadLetterQueue(_) => {
                    inspect_queue(&channel, &name).await.map(drop)
                }
            };
            match checked {
                Ok(()) => {}
                Err(error) if not_found(&error) => {
                    missing.push(part);
                    channel = open_channel(connection).await?;
                }
                Err(error) => return Err(BusError::topology(format!("checking {name}"), error)),
            }
        }
        closing(channel.close(200, "topology checked".into())).await;
        Ok(missing)
    }

    /// Declares `parts` (a queue with its binding) in order: exchanges come first in
    /// [`Part::all`], and a dead-letter queue before its work queue.
    async fn declare_parts(
        &self,
        channel: &Channel,
        parts: &[Part],
    ) -> Result<(), (String, lapin::Error)> {
        for &part in parts {
            let name = self.part_name(part);
            let failed = |error| (name.clone(), error);
            match part {
                Part::Exchange(exchange) => {
                    channel
                        .exchange_declare(
                            name.as_str().into(),
                            exchange.kind(),
                            ExchangeDeclareOptions {
                                durable: true,
                                ..ExchangeDeclareOptions::default()
                            },
                            FieldTable::default(),
                        )
                        .await
                        .map_err(failed)?;
                }
                Part::DeadLetterQueue(queue) => {
                    let mut dlq_args = FieldTable::default();
                    dlq_args.insert(
                        "x-queue-type".into(),
                        AMQPValue::LongString("quorum".into()),
                    );
                    dlq_args.insert(
                        "x-delivery-limit".into(),
                        AMQPValue::LongInt(DLQ_DELIVERY_LIMIT),
                    );
                    channel
                        .queue_declare(
                            name.as_str().into(),
                            QueueDeclareOptions::durable(),
                            dlq_args,
                        )
                        .await
                        .map_err(failed)?;
                    channel
                        .queue_bind(
                            name.as_str().into(),
                            self.exchange(Exchange::DeadLetters).as_str().into(),
                            queue.base_name().into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(failed)?;
                }
                Part::Queue(queue) => {
                    channel
                        .queue_declare(
                            name.as_str().into(),
                            QueueDeclareOptions::durable(),
                            self.work_queue_arguments(queue),
                        )
                        .await
                        .map_err(failed)?;
                    let (exchange, routing_key) = queue.source();
                    channel
                        .queue_bind(
                            name.as_str().into(),
                            self.exchange(exchange).as_str().into(),
                            routing_key.into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(failed)?;
                }
            }
        }
        Ok(())
    }

    fn part_name(&self, part: Part) -> String {
        match part {
            Part::Exchange(exchange) => self.exchange(exchange),
            Part::Queue(queue) => self.queue(queue),
            Part::DeadLetterQueue(queue) => self.dead_letter_queue(queue),
        }
    }

    /// The arguments a work queue is declared with, as the definitions file writes them.
    #[cfg(test)]
    fn work_queue_arguments_json(&self, queue: WorkQueue) -> serde_json::Value {
        let mut args = serde_json::Map::new();
        for (key, value) in self.work_queue_arguments(queue).inner() {
            let value = match value {
                AMQPValue::LongString(text) => serde_json::Value::from(text.to_string()),
                AMQPValue::LongInt(n) => serde_json::Value::from(*n),
                AMQPValue::LongLongInt(n) => serde_json::Value::from(*n),
                other => serde_json::Value::from(format!("{other:?}")),
            };
            args.insert(key.to_string(), value);
        }
        serde_json::Value::Object(args)
    }

    /// Quorum queue arguments: <https://www.rabbitmq.com/docs/quorum-queues>.
    fn work_queue_arguments(&self, queue: WorkQueue) -> FieldTable {
        let mut args = FieldTable::default();
        // Replicated, and required for at-least-once dead-lettering.
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        // Counted on `basic.reject` and on lost consumers (not on `basic.nack` from 4.3 on),
        // which is why consumers give failures back with reject.
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(i32::try_from(queue.delivery_limit()).unwrap_or(5)),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.exchange(Exchange::DeadLetters).as_str().into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.base_name().into()),
        );
        // A message is removed from the source queue only once the dead-letter queue confirmed it.
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        // at-least-once dead-lettering silently falls back to at-most-once with the default
        // `drop-head` overflow: reject new publishes instead.
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(MAX_LENGTH));
        args
    }

    /// Deletes every exchange and queue of this namespace (tests, and tearing a namespace down).
    ///
    /// # Errors
    /// A broker error other than "not found".
    pub async fn delete(&self, channel: &Channel) -> Result<(), BusError> {
        for queue in WorkQueue::ALL {
            for name in [self.queue(queue), self.dead_letter_queue(queue)] {
                channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|e| BusError::topology(format!("deleting queue {name}"), e))?;
            }
        }
        for exchange in Exchange::ALL {
            channel
                .exchange_delete(
                    self.exchange(exchange).as_str().into(),
                    ExchangeDeleteOptions::default(),
                )
                .await
                .map_err(|e| {
                    BusError::topology(format!("deleting exchange {}", self.exchange(exchange)), e)
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_namespace() {
        let plain = Topology::new("");
        assert_eq!(plain.queue(WorkQueue::AuditorEvents), "auditor.events");
        assert_eq!(plain.exchange(Exchange::Events), "tenancy.events");
        let ns = Topology::new("t1");
        assert_eq!(
            ns.queue(WorkQueue::MigrateTenant),
            "t1.migrator.migrate-tenant"
        );
        assert_eq!(
            ns.dead_letter_queue(WorkQueue::MigrateTenant),
            "t1.migrator.migrate-tenant.dlq"
        );
        assert_eq!(ns.exchange(Exchange::DeadLetters), "t1.tenancy.dlx");
    }

    #[test]
    fn queues_are_found_by_name_dlq_name_or_alias() {
        assert_eq!(
            WorkQueue::parse("auditor.events.dlq"),
            Some(WorkQueue::AuditorEvents)
        );
        assert_eq!(WorkQueue::parse("migrator"), Some(WorkQueue::MigrateTenant));
        assert_eq!(
            WorkQueue::parse("provisioner.tenant-registered"),
            Some(WorkQueue::TenantRegistered)
        );
        assert_eq!(WorkQueue::parse("nope"), None);
    }

    /// deploy/rabbitmq/definitions.json declares this topology (default namespace): the same
    /// exchanges, queues and bindings, and for each work queue, as queue arguments or through
    /// its policy, exactly the arguments the code declares it with.
    #[test]
    fn the_definitions_file_holds_this_topology() {
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../../../../deploy/rabbitmq/definitions.json"))
                .unwrap_or_else(|e| panic!("definitions.json: {e}"));
        let topology = Topology::new("");
        let names = |key: &str| -> Vec<String> {
            let mut names: Vec<String> = file[key]
                .as_array()
                .unwrap_or_else(|| panic!("no {key}"))
                .iter()
                .map(|item| item["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            names.sort();
            names
        };
        let mut exchanges: Vec<String> = Exchange::ALL
            .iter()
            .map(|e| topology.exchange(*e))
            .collect();
        exchanges.sort();
        assert_eq!(names("exchanges"), exchanges);
        let mut queues: Vec<String> = WorkQueue::ALL
            .iter()
            .flat_map(|q| [topology.queue(*q), topology.dead_letter_queue(*q)])
            .collect();
        queues.sort();
        assert_eq!(names("queues"), queues);

        let bound = |source: &str, queue: &str, key: &str| {
            file["bindings"].as_array().is_some_and(|bindings| {
                bindings.iter().any(|b| {
                    b["source"] == source && b["destination"] == queue && b["routing_key"] == key
                })
            })
        };
        let policy_of = |queue: &str| -> serde_json::Map<String, serde_json::Value> {
            let matching: Vec<&serde_json::Value> = file["policies"]
                .as_array()
                .unwrap_or_else(|| panic!("no policies"))
                .iter()
                .filter(|p| regex_lite_match(p["pattern"].as_str().unwrap_or_default(), queue))
                .collect();
            assert_eq!(matching.len(), 1, "one policy applies to {queue}");
            matching[0]["definition"]
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        for queue in WorkQueue::ALL {
            let (exchange, key) = queue.source();
            let name = topology.queue(queue);
            let dlq = topology.dead_letter_queue(queue);
            assert!(
                bound(&topology.exchange(exchange), &name, key),
                "{name} bound"
            );
            assert!(
                bound(
                    &topology.exchange(Exchange::DeadLetters),
                    &dlq,
                    queue.base_name()
                ),
                "{dlq} bound"
            );
            let declared = file["queues"]
                .as_array()
                .and_then(|qs| qs.iter().find(|q| q["name"] == name.as_str()))
                .unwrap_or_else(|| panic!("{name}"));
            let mut effective = declared["arguments"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (key, value) in policy_of(&name) {
                effective.insert(format!("x-{key}"), value);
            }
            assert_eq!(
                serde_json::Value::Object(effective),
                topology.work_queue_arguments_json(queue),
                "{name}"
            );
            assert_eq!(
                policy_of(&dlq).get("delivery-limit"),
                Some(&serde_json::Value::from(DLQ_DELIVERY_LIMIT))
            );
        }
    }

    /// The policies' patterns are `^…$` with `\.` and one `(a|b|c)` group at most: enough to
    /// match them here without a regex engine.
    fn regex_lite_match(pattern: &str, name: &str) -> bool {
        let body = pattern
            .strip_prefix('^')
            .and_then(|p| p.strip_suffix('$'))
            .unwrap_or_else(|| panic!("unanchored pattern {pattern}"));
        let expand = |body: &str| -> Vec<String> {
            match (body.find('('), body.find(')')) {
                (Some(open), Some(close)) => body[open + 1..close]
                    .split('|')
                    .map(|alt| format!("{}{alt}{}", &body[..open], &body[close + 1..]))
                    .collect(),
                _ => vec![body.to_owned()],
            }
        };
        expand(body).iter().any(|alt| {
            let literal = alt.replace("\\.", "\u{0}");
            match literal.split_once(".+") {
                Some((head, tail)) => {
                    let (head, tail) = (head.replace('\u{0}', "."), tail.replace('\u{0}', "."));
                    name.len() > head.len() + tail.len()
                        && name.starts_with(&head)
                        && name.ends_with(&tail)
                }
                None => literal.replace('\u{0}', ".") == name,
            }
        })
    }

    #[test]
    fn commands_and_events_are_routed_to_their_exchanges() {
        assert_eq!(route_of("migrate.tenant"), Exchange::Commands);
        assert_eq!(route_of("rollback.tenant"), Exchange::Commands);
        assert_eq!(route_of("tenant.registered"), Exchange::Events);
        assert_eq!(route_of("migration.completed"), Exchange::Events);
    }
}
