//! What operators do with dead letters: look, replay, discard. The HTTP API
//! and the `custodian dlq` command both call these.
//!
//! A replay republishes the original record (payload, key and headers, byte
//! for byte) to its source topic and partition, adding the message id header
//! (so the lifecycle continues under the same id) and replay headers (count,
//! who, why, when, from where); the steering ones are signed (see
//! `pipeline::steering`). Order of steps, so that nothing is published
//! without the audit row that authorises it, and a repeat is harmless:
//! 1. validate who and why (a 400 naming the field before anything happens);
//! 2. take a short lock on the entry (a concurrent replay or discard of the
//!    same message answers "busy");
//! 3. audit MESSAGE_REPLAYED (who, why, which replay, from where);
//! 4. publish, and wait for Kafka's acknowledgement (`acks=all`);
//! 5. remove the entry, only if it is still the one that was replayed.
//!
//! If step 4 fails, the REPLAYED row records an attempt whose copy never
//! arrives, and the entry stays. If step 5 fails the entry stays too; a
//! second replay publishes a second copy of the same bytes under the same
//! id, which the idempotency ledger turns into MESSAGE_DUPLICATE (or which,
//! failing again, replaces the entry rather than adding one).

use std::collections::HashSet;
use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::store::{self, Filter, Page, Stored};
use super::{
    DlqEntry, Keys, REPLAYED_AT_HEADER, REPLAYED_BY_HEADER, REPLAYED_FROM_HEADER,
    REPLAY_COUNT_HEADER, REPLAY_REASON_HEADER,
};
use crate::config::DlqSettings;
use crate::metrics::metrics;
use crate::pipeline::message_id::MESSAGE_ID_HEADER;
use crate::pipeline::steering::{self, HeaderKey, Signed, SIGNATURE_HEADER};
use crate::store::audit::{self, OperatorEvent, DISCARDED, REPLAYED};
use crate::store::pool::RedisPool;
use crate::store::PgPool;

/// How long an operator action may hold its lock on an entry (a crashed
/// caller's lock expires by itself).
/// Longer than the steps it covers can take together (publish timeout,
/// pool waits, the audit statement's timeout).
const LOCK_TTL: Duration = Duration::from_secs(300);
/// How long a publish may wait for Kafka's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Listings served at once; more wait up to [`LISTING_WAIT`], then answer
/// "too many", so listings cannot crowd out the dead-letter pushes that
/// share Redis with them.
const CONCURRENT_LISTINGS: usize = 4;
const LISTING_WAIT: Duration = Duration::from_secs(5);

/// Why an operation did not happen. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("message {0} is not in the dead-letter queue")]
    NotFound(Uuid),
    #[error("another replay or discard of message {0} is in progress")]
    Busy(Uuid),
    #[error("the entry of message {0} changed meanwhile (a newer failure of it was parked); the discard is audited, the newer entry stays")]
    Changed(Uuid),
    #[error("{dependency} is unavailable: {error}")]
    Unavailable {
        dependency: &'static str,
        error: String,
    },
    #[error("the entry of message {id} cannot be republished: {reason}")]
    Corrupt { id: Uuid, reason: String },
    #[error("Kafka did not acknowledge the republished record: {0}")]
    Publish(String),
    #[error("{0}")]
    Invalid(String),
    /// Part of the operation happened; the text says what.
    #[error("{0}")]
    Incomplete(String),
    /// PostgreSQL answered but refused the audit row: nothing was done.
    #[error("the audit row was refused; nothing was published or removed")]
    AuditRefused(String),
    #[error("too many dead-letter listings at once; try again shortly")]
    Overloaded,
}

impl DlqError {
    /// The text for an API answer: causes inside PostgreSQL or Redis are
    /// logged, not echoed.
    pub fn public_message(&self) -> String {
        match self {
            DlqError::Unavailable { dependency, error } => {
                tracing::warn!(dependency, error = %error, "dead-letter operation could not complete");
                format!("{dependency} is unavailable")
            }
            DlqError::AuditRefused(error) => {
                tracing::error!(error = %error, "the audit row of an operator action was refused");
                self.to_string()
            }
            other => other.to_string(),
        }
    }
}

fn redis_down(e: impl std::fmt::Display) -> DlqError {
    DlqError::Unavailable {
        dependency: "redis",
        error: e.to_string(),
    }
}

fn postgres_down(e: impl std::fmt::Display) -> DlqError {
    DlqError::Unavailable {
        dependency: "postgres",
        error: e.to_string(),
    }
}

/// Who asks for an operator action, and why. Both end up in the audit trail
/// (and, for a replay, in the record's headers).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Why; recorded in the audit trail. Not blank; no control characters
    /// but line breaks and tabs.
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    pub reason: String,
    /// Who (default `api`). No control characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub requested_by: Option<String>,
}

impl Request {
    /// The validated (who, why). Every operator text ends up in the audit
    /// trail and in Kafka headers, so one that cannot be stored there is
    /// refused here, naming the field, before anything happens.
    pub fn validate(&self) -> Result<(&str, &str), DlqError> {
        let reason = operator_text("reason", &self.reason, 1000, true)?;
        let by = match &self.requested_by {
            None => "api",
            Some(by) => operator_text("requested_by", by, 200, false)?,
        };
        Ok((by, reason))
    }
}

/// Trimmed `value`, if it is 1 to `max` characters with no control
/// characters (line breaks and tabs allowed where `multiline`).
pub fn operator_text<'a>(
    field: &str,
    value: &'a str,
    max: usize,
    multiline: bool,
) -> Result<&'a str, DlqError> {
    let text = value.trim();
    if text.is_empty() || text.chars().count() > max {
        return Err(DlqError::Invalid(format!(
            "{field}: required, 1 to {max} characters"
        )));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\t');
    if text.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(DlqError::Invalid(format!(
            "{field}: must not contain control characters (such as NUL){}",
            if multiline {
                " other than line breaks and tabs"
            } else {
                ""
            }
        )));
    }
    Ok(text)
}

/// Where a replayed copy went.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub message_id: Uuid,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub replay_count: u32,
    /// `false` if a newer failure of the message replaced the entry
    /// meanwhile (that newer entry stays parked).
    pub removed_from_dlq: bool,
}

/// What a bulk replay did.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct BulkReport {
    pub matched: usize,
    pub replayed: usize,
    /// Gone or busy by the time their turn came.
    pub skipped: usize,
    pub failed: usize,
    pub errors: Vec<BulkError>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkError {
    pub message_id: Uuid,
    pub error: String,
}

/// The dead-letter queue's operations.
pub struct DeadLetters {
    redis: RedisPool,
    postgres: PgPool,
    producer: FutureProducer,
    keys: Keys,
    /// Signs the steering headers of replayed copies.
    header_key: HeaderKey,
    limiter: DefaultDirectRateLimiter,
    max_batch: usize,
    listings: tokio::sync::Semaphore,
}

impl DeadLetters {
    pub fn new(
        redis: RedisPool,
        postgres: PgPool,
        producer: FutureProducer,
        header_key: HeaderKey,
        settings: &DlqSettings,
    ) -> Self {
        let rate = NonZeroU32::new(settings.replay_rate_per_second).unwrap_or(NonZeroU32::MIN);
        DeadLetters {
            redis,
            postgres,
            producer,
            keys: Keys::new(&settings.key_prefix),
            header_key,
            limiter: RateLimiter::direct(Quota::per_second(rate)),
            max_batch: settings.replay_max_batch,
            listings: tokio::sync::Semaphore::new(CONCURRENT_LISTINGS),
        }
    }

    /// Builds the time indexes for entries parked by an older version (a
    /// no-op once done).
    pub async fn ensure_indexed(&self) -> Result<(), DlqError> {
        let mut conn = self.redis.get().await.map_err(redis_down)?;
        store::ensure_indexed(&mut *conn, &self.keys)
            .await
            .map_err(redis_down)
    }

    /// A listing slot, or [`DlqError::Overloaded`] after a short wait.
    async fn listing_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, DlqError> {
        match tokio::time::timeout(LISTING_WAIT, self.listings.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(DlqError::Overloaded),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    pub async fn get(&self, id: Uuid) -> Result<DlqEntry, DlqError> {
        let mut conn = self.redis.get().await.map_err(redis_down)?;
        match store::get(&mut *conn, &self.keys, id).await {
            Ok(Some(stored)) => Ok(stored.entry),
            Ok(None) => Err(DlqError::NotFound(id)),
            Err(e) if e.kind() == redis::ErrorKind::Parse => Err(DlqError::Corrupt {
                id,
                reason: e.to_string(),
            }),
            Err(e) => Err(redis_down(e)),
        }
    }

    pub async fn list(
        &self,
        filter: &Filter,
        offset: usize,
        limit: usize,
    ) -> Result<Page, DlqError> {
        filter.validate().map_err(DlqError::Invalid)?;
        let _slot = self.listing_slot().await?;
        let mut conn = self.redis.get().await.map_err(redis_down)?;
        store::list(&mut *conn, &self.keys, filter, offset, limit)
            .await
            .map_err(redis_down)
    }

    /// Entries per topic, also set on the `dlq_depth` gauge.
    pub async fn depths(&self) -> Result<Vec<(String, u64)>, DlqError> {
        let mut conn = self.redis.get().await.map_err(redis_down)?;
        let depths = store::depths(&mut *conn, &self.keys)
            .await
            .map_err(redis_down)?;
        for (topic, depth) in &depths {
            metrics()
                .dlq_depth
                .with_label_values(&[topic])
                .set(i64::try_from(*depth).unwrap_or(i64::MAX));
        }
        Ok(depths)
    }

    /// Republishes one dead letter (see the module documentation).
    pub async fn replay(&self, id: Uuid, request: &Request) -> Result<Replayed, DlqError> {
        self.replay_if(id, None, request).await
    }

    /// Replays `id` if its entry (as read under the lock) is the one a bulk
    /// replay listed: it still matches the filter and has the listed last
    /// failure. An entry replayed meanwhile by someone else is gone, or is
    /// its copy's newer failure: either way it is not replayed again here.
    async fn replay_if(
        &self,
        id: Uuid,
        listed: Option<(&Filter, i64)>,
        request: &Request,
    ) -> Result<Replayed, DlqError> {
        let (by, reason) = request.validate()?;
        let result = self
            .locked(id, |stored| async move {
                if listed.is_some_and(|(filter, score)| {
                    !filter.matches(&stored.entry) || store::entry_score(&stored.entry) != score
                }) {
                    return Err(DlqError::NotFound(id));
                }
                self.republish(stored, by, reason).await
            })
            .await;
        let result_label = match &result {
            Ok(_) => "replayed",
            Err(DlqError::NotFound(_) | DlqError::Busy(_)) => "skipped",
            Err(_) => "failed",
        };
        let topic = result.as_ref().map_or("unknown", |r| r.topic.as_str());
        metrics()
            .replays
            .with_label_values(&[topic, result_label])
            .inc();
        result
    }

    /// Replays up to `limit` entries matching `filter`, at most
    /// `dlq.replay_rate_per_second`. An empty filter is refused unless `all`
    /// says the caller means every topic.
    pub async fn replay_matching(
        &self,
        filter: &Filter,
        all: bool,
        limit: usize,
        request: &Request,
    ) -> Result<BulkReport, DlqError> {
        self.replay_matching_observed(filter, all, limit, request, &|_| {})
            .await
    }

    /// [`Self::replay_matching`], calling `progress` after each entry (a
    /// replay job keeps its progress with it; see `dlq/jobs.rs`).
    pub async fn replay_matching_observed(
        &self,
        filter: &Filter,
        all: bool,
        limit: usize,
        request: &Request,
        progress: &(dyn Fn(&BulkReport) + Send + Sync),
    ) -> Result<BulkReport, DlqError> {
        self.check_bulk(filter, all, limit, request)?;
        // Ids only: entries are read one at a time, under their lock.
        let listed = {
            let _slot = self.listing_slot().await?;
            let mut conn = self.redis.get().await.map_err(redis_down)?;
            store::matching(&mut *conn, &self.keys, filter, 0, limit)
                .await
                .map_err(redis_down)?
        };
        let mut seen = HashSet::with_capacity(listed.len());
        let mut report = BulkReport::default();
        for (id, score) in listed {
            let Ok(id) = Uuid::parse_str(&id) else {
                continue;
            };
            // An id is replayed at most once per request.
            if !seen.insert(id) {
                continue;
            }
            report.matched += 1;
            self.limiter.until_ready().await;
            match self.replay_if(id, Some((filter, score)), request).await {
                Ok(_) => report.replayed += 1,
                Err(DlqError::NotFound(_) | DlqError::Busy(_)) => report.skipped += 1,
                Err(e) => {
                    report.failed += 1;
                    report.errors.push(BulkError {
                        message_id: id,
                        error: e.public_message(),
                    });
                }
            }
            progress(&report);
        }
        Ok(report)
    }

    /// Whether a bulk replay of `filter` may start (refused before anything
    /// happens, naming what is wrong).
    pub fn check_bulk(
        &self,
        filter: &Filter,
        all: bool,
        limit: usize,
        request: &Request,
    ) -> Result<(), DlqError> {
        request.validate()?;
        filter.validate().map_err(DlqError::Invalid)?;
        if filter.is_empty() && !all {
            return Err(DlqError::Invalid(
                "give a filter (topic, error_kind, from, to), or all: true to replay every topic"
                    .into(),
            ));
        }
        if limit == 0 || limit > self.max_batch {
            return Err(DlqError::Invalid(format!(
                "limit: 1 to {} (dlq.replay_max_batch)",
                self.max_batch
            )));
        }
        Ok(())
    }

    /// Removes a dead letter for good, audited MESSAGE_DISCARDED with who and
    /// why (and the failure it had).
    pub async fn discard(&self, id: Uuid, request: &Request) -> Result<DlqEntry, DlqError> {
        let (by, reason) = request.validate()?;
        let result = self
            .locked(id, |stored| async move {
                let e = &stored.entry;
                let detail = serde_json::json!({
                    "requested_by": by,
                    "reason": reason,
                    "error_kind": e.error_kind,
                    "error": e.error,
                    "attempts": e.attempts,
                });
                self.audit(
                    &stored,
                    DISCARDED,
                    e.attempts as i32,
                    chrono::Utc::now(),
                    detail,
                )
                .await?;
                let mut conn = self.redis.get().await.map_err(redis_down)?;
                if !store::remove(&mut *conn, &self.keys, &stored)
                    .await
                    .map_err(redis_down)?
                {
                    return Err(DlqError::Changed(id));
                }
                Ok(stored.entry)
            })
            .await;
        if let Ok(entry) = &result {
            metrics()
                .replays
                .with_label_values(&[&entry.topic, "discarded"])
                .inc();
        }
        result
    }

    /// Runs `action` on the entry under `id` while holding its lock.
    async fn locked<T, F, Fut>(&self, id: Uuid, action: F) -> Result<T, DlqError>
    where
        F: FnOnce(Stored) -> Fut,
        Fut: Future<Output = Result<T, DlqError>>,
    {
        let holder = Uuid::new_v4().to_string();
        {
            let mut conn = self.redis.get().await.map_err(redis_down)?;
            if !store::lock(&mut *conn, &self.keys, id, &holder, LOCK_TTL)
                .await
                .map_err(redis_down)?
            {
                return Err(DlqError::Busy(id));
            }
        }
        let result = async {
            let stored = {
                let mut conn = self.redis.get().await.map_err(redis_down)?;
                match store::get(&mut *conn, &self.keys, id).await {
                    Ok(Some(stored)) => stored,
                    Ok(None) => return Err(DlqError::NotFound(id)),
                    Err(e) if e.kind() == redis::ErrorKind::Parse => {
                        return Err(DlqError::Corrupt {
                            id,
                            reason: e.to_string(),
                        })
                    }
                    Err(e) => return Err(redis_down(e)),
                }
            };
            action(stored).await
        }
        .await;
        // If this fails the lock expires by itself after LOCK_TTL.
        if let Ok(mut conn) = self.redis.get().await {
            if let Err(e) = store::unlock(&mut *conn, &self.keys, id, &holder).await {
                tracing::warn!(message_id = %id, error = %e, "cannot release a DLQ lock; it expires by itself");
            }
        }
        result
    }

    async fn republish(
        &self,
        stored: Stored,
        by: &str,
        reason: &str,
    ) -> Result<Replayed, DlqError> {
        let e = &stored.entry;
        let corrupt = |reason: String| DlqError::Corrupt {
            id: e.message_id,
            reason,
        };
        let payload = e.payload_bytes().map_err(|x| corrupt(x.to_string()))?;
        let key = e.key_bytes().map_err(|x| corrupt(x.to_string()))?;
        let original = e.header_bytes().map_err(corrupt)?;
        let count = e.replay_count.saturating_add(1);
        let started = chrono::Utc::now();
        let from = e.position();
        let digest = steering::payload_digest(payload.as_deref());

        // The audit row that authorises the publish comes first.
        let detail = serde_json::json!({
            "requested_by": by,
            "reason": reason,
            "replay_count": count,
            "replayed_from": from,
            "error_kind": e.error_kind,
            "payload_sha256": steering::hex(&digest),
        });
        self.audit(&stored, REPLAYED, count as i32, started, detail)
            .await?;

        let id = e.message_id.to_string();
        let count_text = count.to_string();
        let at = started.to_rfc3339();
        let signature = self.header_key.sign(&Signed {
            message_id: e.message_id,
            replayed_from: &from,
            replay_count: count,
            payload_sha256: &digest,
        });
        let ours = [
            (MESSAGE_ID_HEADER, id.as_str()),
            (REPLAY_COUNT_HEADER, count_text.as_str()),
            (REPLAYED_FROM_HEADER, from.as_str()),
            (SIGNATURE_HEADER, signature.as_str()),
            (REPLAYED_BY_HEADER, by),
            (REPLAY_REASON_HEADER, reason),
            (REPLAYED_AT_HEADER, at.as_str()),
        ];
        // An earlier copy's steering and replay headers are replaced.
        let headers = steering::compose_headers(
            original
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_deref())),
            &ours,
        );
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&e.topic)
            .partition(e.partition)
            .headers(headers);
        if let Some(payload) = payload.as_deref() {
            record = record.payload(payload);
        }
        if let Some(key) = key.as_deref() {
            record = record.key(key);
        }
        let delivery = self
            .producer
            .send(record, PUBLISH_TIMEOUT)
            .await
            .map_err(|(error, _)| {
                DlqError::Publish(format!(
                    "{error}; the MESSAGE_REPLAYED row records the attempt, the entry stays, and replaying again is safe"
                ))
            })?;
        let mut conn = self.redis.get().await.map_err(redis_down)?;
        let removed = store::remove(&mut *conn, &self.keys, &stored)
            .await
            .map_err(redis_down)?;
        tracing::info!(
            message_id = %e.message_id,
            topic = %e.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            replay_count = count,
            requested_by = by,
            "dead letter replayed"
        );
        Ok(Replayed {
            message_id: e.message_id,
            topic: e.topic.clone(),
            partition: delivery.partition,
            offset: delivery.offset,
            replay_count: count,
            removed_from_dlq: removed,
        })
    }

    async fn audit(
        &self,
        stored: &Stored,
        status: &'static str,
        attempt: i32,
        at: chrono::DateTime<chrono::Utc>,
        detail: serde_json::Value,
    ) -> Result<(), DlqError> {
        let e = &stored.entry;
        let key = match e.key_encoding.as_deref() {
            Some("base64") => None,
            _ => e.key.as_deref(),
        };
        let event = OperatorEvent {
            message_id: e.message_id,
            status,
            topic: &e.topic,
            kafka_partition: e.partition,
            kafka_offset: e.offset,
            message_key: key,
            event_type: e.event_type.as_deref(),
            attempt,
            consumer_group: &e.consumer_group,
            occurred_at: at,
            detail,
        };
        let mut conn = self.postgres.get().await.map_err(postgres_down)?;
        audit::write_operator_event(&mut conn, &event)
            .await
            .map_err(|e| {
                use diesel::result::{DatabaseErrorKind as K, Error as E};
                match e {
                    E::DatabaseError(K::UnableToSendCommand | K::ClosedConnection, _)
                    | E::BrokenTransactionManager => postgres_down(e),
                    refused => DlqError::AuditRefused(refused.to_string()),
                }
            })
    }
}
