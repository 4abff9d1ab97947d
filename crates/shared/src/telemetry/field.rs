//! Field and attribute names, as constants so that a typo is a compile error. Use them with
//! tracing's constant-name syntax: `tracing::info!({ field::TENANT_ID } = %id, "…")`.
//! `docs/LOGGING.md` explains each one.

/// The tenant a log line or span is about (the tenant's id, never its name).
pub const TENANT_ID: &str = "tenant.id";
/// The tenant's slug (`^[a-z][a-z0-9_]{2,39}$`), when the id alone is not enough for a reader.
pub const TENANT_SLUG: &str = "tenant.slug";
/// The CloudEvent `id` of the message being handled.
pub const EVENT_ID: &str = "event.id";
/// The CloudEvent `type` of the message being handled, e.g. `tenant.registered`.
pub const EVENT_TYPE: &str = "event.type";
/// A migration version (the numeric file prefix).
pub const MIGRATION_VERSION: &str = "migration.version";
/// A fleet deployment's id.
pub const DEPLOY_ID: &str = "deploy.id";
/// Elapsed wall time in milliseconds (the unit is in the name, as for every measured field).
pub const DURATION_MS: &str = "duration_ms";

// The names below are OpenTelemetry's messaging semantic conventions (schema 1.42, status
// "development"): <https://opentelemetry.io/docs/specs/semconv/messaging/rabbitmq/>. They
// are spelled out here rather than taken from `opentelemetry-semantic-conventions`, whose
// messaging names sit behind its `semconv_experimental` feature.

/// Always `rabbitmq`.
pub const MESSAGING_SYSTEM: &str = "messaging.system";
/// Low-cardinality operation kind: `send` on publish, `process` on consume.
pub const MESSAGING_OPERATION_TYPE: &str = "messaging.operation.type";
/// The system-specific operation: `publish` (AMQP `basic.publish`) or `process`.
pub const MESSAGING_OPERATION_NAME: &str = "messaging.operation.name";
/// The exchange on publish (empty for the default exchange), the queue on consume.
pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";
/// The routing key a message was published with.
pub const MESSAGING_RABBITMQ_ROUTING_KEY: &str = "messaging.rabbitmq.destination.routing_key";
/// The AMQP `message-id` property of the message.
pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";
/// The queue a consumer reads (RabbitMQ's subscription).
pub const MESSAGING_SUBSCRIPTION_NAME: &str = "messaging.destination.subscription.name";
/// Why a span failed, in a few bounded words.
pub const ERROR_TYPE: &str = "error.type";
/// The CloudEvent `type` of the message.
pub const CLOUDEVENTS_EVENT_TYPE: &str = "cloudevents.event_type";
