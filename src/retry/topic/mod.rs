//! Retry topics (`retry = "deferred"`, `retry_backend = "kafka"`): publish a transiently failed record to `<topic>.retry` with signed headers, and hold each retry partition until its head record is due.
//!
//! - the retry headers (attempt, due time, original topic, partition and
//!   offset, error), signed like the steering headers so a producer cannot
//!   forge them, are [`crate::pipeline::retry_headers`]: the decoder reads
//!   them.
//! - [`publish`]: after a failed attempt, the record goes to `<topic>.retry`
//!   (same key, the producer's own headers kept); only once the broker has
//!   acknowledged it and its audit rows are durable does its offset count
//!   as settled.
//! - [`due`]: the partition actor's gate on a retry partition: records are
//!   handed on in order, each not before its due time; while the head is
//!   not due the partition is not read (other partitions flow).
//!
//! A retry record is delivered with its original topic's route and keeps
//! its message id, so the audit trail is one lifecycle; attempts run out
//! into the DLQ under the original coordinates, so a replay goes back to
//! the original topic. Unlike the PostgreSQL schedule, a key's later
//! messages are not held behind one waiting in the retry topic.

pub mod due;
pub mod publish;

use crate::pipeline::retry_headers::SUFFIX;

/// The retry topic of `topic`.
pub fn retry_topic(topic: &str) -> String {
    format!("{topic}{SUFFIX}")
}

/// The topics to subscribe to: `kafka.topics`, and the retry topic of each
/// one a `retry_backend = "kafka"` route serves.
pub fn subscription(settings: &crate::config::Settings) -> Vec<String> {
    let mut topics = settings.kafka.topics.clone();
    for topic in &settings.kafka.topics {
        let served = settings
            .routes
            .iter()
            .any(|r| r.retry_topic() && r.topic.as_deref().is_none_or(|t| t == topic));
        if served && !topic.ends_with(SUFFIX) {
            topics.push(retry_topic(topic));
        }
    }
    topics.dedup();
    topics
}
