//! The JSON bodies the API answers, typed, so the OpenAPI document describes
//! exactly what the handlers send (the dead-letter types derive their
//! schemas where they are defined, in `src/dlq`). The schemathesis suite
//! (`tests/it/api/schemathesis.rs`) checks every answer against its schema.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

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
    /// Of `kafka`, `postgres`, `redis`, `schema_registry`,
    /// `audit_checkpoint_file`.
    pub failing: Vec<&'static str>,
    pub kafka: KafkaReadiness,
    /// Why PostgreSQL did not answer, if it did not.
    pub postgres: Option<String>,
    /// Why Redis did not answer, if it did not.
    pub redis: Option<String>,
    /// Why the schema registry does not answer (when one is configured).
    pub schema_registry: Option<String>,
    /// Why the checkpointer cannot append to `audit.checkpoint_file`, if it
    /// cannot (checkpoints still go to `audit_checkpoints`).
    pub audit_checkpoint_file: Option<String>,
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
    /// Its http delivery, open or finished (see `GET /deliveries`), if any.
    pub delivery: Option<crate::delivery::record::Delivery>,
    /// The same delivery while it is open in the retry schedule (deferred
    /// routes): retrying, or waiting behind its key.
    pub retry_schedule: Option<crate::delivery::record::Delivery>,
}

/// `GET /messages/{message_id}` for a message whose periods are archived
/// (dropped from PostgreSQL): where its entries are, and what they say.
#[derive(Serialize, ToSchema)]
pub struct ArchivedLifecycle {
    pub message_id: Uuid,
    /// Always true: the entries were read from the archive.
    pub archived: bool,
    /// The archive store (`s3://bucket/prefix`, `file:///…`).
    pub store_url: String,
    /// The archived periods (partitions) holding them.
    pub partitions: Vec<String>,
    /// The Parquet files holding them, within the store.
    pub files: Vec<String>,
    /// Its entries, oldest first (payloads stay in the archive).
    pub lifecycle: Vec<ArchivedEntry>,
}

/// One archived entry, as `GET /messages/{message_id}` shows it.
#[derive(Serialize, ToSchema)]
pub struct ArchivedEntry {
    pub status: String,
    pub topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub event_type: Option<String>,
    pub attempt: i32,
    pub error: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub chain: Option<String>,
    pub chain_seq: Option<i64>,
}

impl From<&crate::trail::entry::Entry> for ArchivedEntry {
    fn from(e: &crate::trail::entry::Entry) -> Self {
        ArchivedEntry {
            status: e.status.clone(),
            topic: e.topic.clone(),
            kafka_partition: e.kafka_partition,
            kafka_offset: e.kafka_offset,
            event_type: e.event_type.clone(),
            attempt: e.attempt,
            error: e.error.clone(),
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            chain: e.chain.clone(),
            chain_seq: e.chain_seq,
        }
    }
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

/// The body of `POST /produce`: a domain envelope.
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
