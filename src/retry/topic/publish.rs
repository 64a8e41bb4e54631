//! Republishing deferred messages to their retry topic. The offset rule:
//! a message's offset is acknowledged only after the broker acknowledged
//! its retry record AND the outcome writer made its audit rows
//! (MESSAGE_FAILED with the attempt, MESSAGE_RETRY_SCHEDULED) durable. A crash between the two sends the
//! record again (the retry topic is at least once; the ledger keeps the
//! downstream from being sent a delivered message twice).

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

use crate::outcome::Pending;
use crate::pipeline::message_id::MESSAGE_ID_HEADER;
use crate::pipeline::retry_headers::{without_retry_headers, Origin};
use crate::pipeline::steering::{
    compose_headers, HeaderKey, Signed, REPLAYED_FROM_HEADER, REPLAY_COUNT_HEADER, SIGNATURE_HEADER,
};
use crate::pipeline::Settled;
use crate::retry::deferred::gate::Ticket;
use crate::stages::Handoff;
use crate::wait::{until_back, DependencyWait, Down, Patience};

/// How long one publish may wait for the broker before it is tried again.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// The processors' producer for retry records.
#[derive(Clone)]
pub struct Republisher {
    producer: FutureProducer,
    key: HeaderKey,
}

/// A failure to publish a retry record (the broker did not acknowledge).
#[derive(Debug, thiserror::Error)]
#[error("retry topic {topic}: {error}")]
pub struct PublishError {
    topic: String,
    error: rdkafka::error::KafkaError,
}

impl Republisher {
    pub fn new(producer: FutureProducer, key: HeaderKey) -> Self {
        Republisher { producer, key }
    }

    /// Publishes each of `parked` to its retry topic and answers them,
    /// each with the detail of its MESSAGE_RETRY_SCHEDULED entry, for the
    /// outcome writer. Waits out the broker; `None` when a revocation came
    /// first (the next owner reads them again).
    pub async fn republish(
        &self,
        parked: Vec<(Pending, Ticket)>,
        handoff: &Handoff,
        wait: DependencyWait,
    ) -> Option<Vec<Pending>> {
        let mut published = Vec::with_capacity(parked.len());
        for (mut p, t) in parked {
            if handoff.revoked.is_cancelled() {
                return None;
            }
            let sent = until_back(wait, Patience::UntilRevoked(&handoff.revoked), async || {
                self.publish(&p.settled, &t)
                    .await
                    .map_err(|e| Down::new("kafka", e))
            })
            .await;
            sent.ok()?;
            p.effects.detail = Some(serde_json::json!({
                "route": t.label,
                "next_attempt_at": t.next_attempt_at,
                "attempt": t.attempts,
                "retry_backend": "kafka",
            }));
            published.push(p);
        }
        Some(published)
    }

    /// One retry record, acknowledged by the broker.
    async fn publish(&self, s: &Settled, t: &Ticket) -> Result<(), PublishError> {
        let origin = match &s.retry {
            Some(o) => Origin {
                attempt: t.attempts,
                due: t.next_attempt_at,
                ..o.clone()
            },
            None => Origin::first(&s.envelope, t.attempts, t.next_attempt_at),
        };
        let topic = super::retry_topic(&origin.topic);
        let error = s
            .last_failure()
            .map(|f| f.failure.to_string())
            .unwrap_or_default();
        let ours = self.ours(s, &origin, &error);
        let ours: Vec<(&str, &str)> = ours.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let theirs = without_retry_headers(&s.envelope.headers);
        let theirs = theirs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_deref()));
        let headers = compose_headers(theirs, &ours);
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
        if let Some(key) = s.envelope.key.as_deref() {
            record = record.key(key);
        }
        if let Some(payload) = s.envelope.payload.as_deref() {
            record = record.payload(payload);
        }
        self.producer
            .send(record, PUBLISH_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(error, _)| PublishError { topic, error })
    }

    /// custodian's headers on the retry record: the signed steering set
    /// (so the record keeps its message id and replay history) and the
    /// signed retry set.
    fn ours(&self, s: &Settled, origin: &Origin, error: &str) -> Vec<(&'static str, String)> {
        let id: Uuid = s.message_id;
        let replayed_from = s.steering.replayed_from.as_deref().unwrap_or("");
        let signature = self.key.sign(&Signed {
            message_id: id,
            replayed_from,
            replay_count: s.steering.replay_count,
            payload_sha256: &s.payload_sha256,
        });
        let mut ours = vec![(MESSAGE_ID_HEADER, id.to_string())];
        if !replayed_from.is_empty() {
            ours.push((REPLAYED_FROM_HEADER, replayed_from.to_owned()));
        }
        if s.steering.replay_count > 0 {
            ours.push((REPLAY_COUNT_HEADER, s.steering.replay_count.to_string()));
        }
        ours.push((SIGNATURE_HEADER, signature));
        ours.extend(origin.headers(&self.key, id, &s.payload_sha256, error));
        ours
    }
}
