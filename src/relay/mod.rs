//! The transactional outbox relay: publishes the rows applications write to
//! the `outbox` table (in the same transaction as their business change) to
//! Kafka, marks them published, and audits each MESSAGE_PUBLISHED.
//!
//! - `session`: the relay's PostgreSQL session and the advisory lock that
//!   makes one instance the publisher (another takes over when it dies).
//! - [`outbox`]: the table's queries.
//! - `record`: headers (the signed message id) and send-error classes.
//! - `audit`: the MESSAGE_PUBLISHED entry.
//! - `encode`: `relay.encodings`, a topic's JSON rows published in the
//!   wire format with a registry subject's schema.
//! - `publisher`: the loop: lead, read a batch, publish per aggregate in
//!   order, mark, audit, wait.
//!
//! Delivery is at least once: a crash between Kafka's acknowledgement and
//! the mark republishes the batch under the same ids, which custodian's
//! consumer (or any consumer keyed on `custodian-message-id`) deduplicates.
//! Started by `custodian relay`, or inside `custodian run` with
//! `relay.enabled = true`.

pub(crate) mod audit;
pub(crate) mod encode;
pub mod outbox;
pub(crate) mod publisher;
pub(crate) mod record;
pub(crate) mod session;

pub use publisher::{run, Publisher};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot create the relay's Kafka producer (check kafka.* settings): {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error("cannot create the relay's schema registry client: {0}")]
    Registry(#[source] reqwest::Error),
}
