//! The JSON bodies the API answers, typed, so the OpenAPI document describes
//! exactly what the handlers send. Types owned elsewhere (dead-letter
//! entries, replay outcomes: `src/dlq`) are described here by mirrors; the
//! schemathesis suite (`tests/schemathesis.rs`) checks every answer against
//! its schema, so a mirror that drifts fails there.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::dlq::DlqEntry;
use crate::store::audit::AuditRow;
use crate::store::read::{Order, Payment, Transaction, User};

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// `GET /ready`, 200 or 503.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// Of `kafka`, `postgres`, `redis`.
    pub failing: Vec<&'static str>,
    pub kafka: KafkaReadiness,
    /// Why PostgreSQL did not answer, if it did not.
    pub postgres: Option<String>,
    /// Why Redis did not answer, if it did not.
    pub redis: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KafkaReadiness {
    /// Partitions assigned to this instance; null before the first assignment.
    pub assigned_partitions: Option<usize>,
}

/// `GET /messages/{message_id}`.
#[derive(Serialize, ToSchema)]
pub struct Lifecycle {
    pub message_id: Uuid,
    /// Audit rows, oldest first.
    pub lifecycle: Vec<AuditRow>,
    /// The downstream's kept answer (routes with `cache_ttl`), if any.
    pub downstream_answer: Option<serde_json::Value>,
}

/// `GET /dlq`.
#[derive(Serialize, ToSchema)]
pub struct DlqPage {
    pub offset: usize,
    pub limit: usize,
    pub count: usize,
    /// Where the next page starts; null on the last page.
    pub next_offset: Option<usize>,
    #[schema(value_type = Vec<DeadLetter>)]
    pub entries: Vec<DlqEntry>,
}

/// `DELETE /dlq/{message_id}`.
#[derive(Serialize, ToSchema)]
pub struct Discarded {
    pub discarded: Uuid,
    pub topic: String,
}

/// `POST /produce`: where Kafka put the event.
#[derive(Serialize, ToSchema)]
pub struct Produced {
    #[serde(rename = "eventId")]
    pub event_id: Uuid,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// `GET /users/{id}`.
#[derive(Serialize, ToSchema)]
pub struct UserWithOrders {
    pub user: User,
    /// The ten most recent.
    pub recent_orders: Vec<Order>,
}

/// `GET /orders/{id}`.
#[derive(Serialize, ToSchema)]
pub struct OrderWithPayment {
    pub order: Order,
    /// The payment's status, or `PENDING` without one.
    pub payment_status: String,
    pub payment: Option<Payment>,
}

/// `GET /transactions`.
#[derive(Serialize, ToSchema)]
pub struct TransactionPage {
    pub offset: i64,
    pub limit: i64,
    pub count: usize,
    pub transactions: Vec<Transaction>,
}

/// A parked message (mirror of `dlq::DlqEntry`).
#[derive(ToSchema)]
#[allow(dead_code)] // describes, never built
pub struct DeadLetter {
    message_id: Uuid,
    topic: String,
    partition: i32,
    offset: i64,
    /// `utf8` or `base64`: how `key` is written.
    key_encoding: Option<String>,
    key: Option<String>,
    /// `utf8` or `base64`: how `payload` is written.
    payload_encoding: String,
    payload: Option<String>,
    /// `[{"key", "value", "encoding"?}]`, in record order.
    headers: serde_json::Value,
    headers_unreadable: bool,
    kafka_timestamp: Option<DateTime<Utc>>,
    consumer_group: String,
    event_type: Option<String>,
    attempts: u32,
    /// `permanent` or `transient`.
    error_class: String,
    error_kind: String,
    error: String,
    /// `decode`, `enrich` or `process`.
    stage: String,
    first_failed_at: DateTime<Utc>,
    last_failed_at: DateTime<Utc>,
    replay_count: u32,
    /// `topic/partition/offset` of the copy this one was replayed from.
    replayed_from: Option<String>,
}

/// `POST /replay/{message_id}`: where the copy went (mirror of
/// `dlq::replay::Replayed`).
#[derive(ToSchema)]
#[allow(dead_code)] // describes, never built
pub struct ReplayedCopy {
    message_id: Uuid,
    topic: String,
    partition: i32,
    offset: i64,
    replay_count: u32,
    /// `false` if a newer failure of the message replaced the entry meanwhile.
    removed_from_dlq: bool,
}

/// `POST /replay`: what a bulk replay did (mirror of `dlq::replay::BulkReport`).
#[derive(ToSchema)]
#[allow(dead_code)] // describes, never built
pub struct BulkOutcome {
    matched: usize,
    replayed: usize,
    /// Gone or busy meanwhile.
    skipped: usize,
    failed: usize,
    errors: Vec<BulkFailure>,
}

#[derive(ToSchema)]
#[allow(dead_code)] // describes, never built
pub struct BulkFailure {
    message_id: Uuid,
    error: String,
}

/// The body of `POST /replay/{message_id}` and `DELETE /dlq/{message_id}`
/// (mirror of `dlq::replay::Request`, with its limits).
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // describes, never built
pub struct ActionRequest {
    /// Why; recorded in the audit trail. Not blank.
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    reason: String,
    /// Who (default `api`).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    requested_by: Option<String>,
}

/// The body of `POST /produce`: a seed-004 domain event envelope.
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)] // describes, never built
pub struct EventEnvelope {
    #[serde(rename = "eventId")]
    event_id: Uuid,
    /// `UserCreated`, `OrderPlaced`, `PaymentSettled` or `InventoryAdjusted`.
    #[serde(rename = "type")]
    kind: String,
    timestamp: DateTime<Utc>,
    /// The event's fields, as its type requires.
    data: serde_json::Map<String, serde_json::Value>,
}
