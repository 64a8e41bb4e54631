//! The operator's handle on the dead-letter queue ([`DeadLetters`]): its
//! errors, who-and-why requests, the lock an action holds on an entry and
//! the audit row every action writes. Looking is in `list.rs`, discarding in
//! `discard.rs`, replaying in `replay.rs`; the HTTP API and the
//! `custodian dlq` command call them all.

use std::borrow::Cow;
use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::producer::FutureProducer;
use uuid::Uuid;

use super::store::{self as queue, Stored};
use super::Keys;
use crate::config::DlqSettings;
use crate::identity::Actor;
use crate::pipeline::steering::HeaderKey;
use crate::store::audit::AuditEntry;
use crate::store::pool::RedisPool;
use crate::store::PgPool;

/// How long an operator action may hold its lock on an entry: a backstop,
/// longer than the steps it covers can take together (publish timeout,
/// pool waits, the audit statement's timeout). A crashed caller's lock
/// does not last that long: it names its owner, and once the owner's key
/// lapses ([`OWNER_TTL`]) the next operator takes it over.
const LOCK_TTL: Duration = Duration::from_secs(300);
/// How long an owner (one process's operator actions and replay jobs)
/// counts as alive after its last beat. A process stopped by SIGKILL
/// blocks an entry, or keeps a job "running", at most this long.
pub(super) const OWNER_TTL: Duration = Duration::from_secs(15);
/// How often an owner beats while it holds a lock or runs a job: well
/// inside [`OWNER_TTL`], so a slow Redis round trip does not lapse it.
pub(super) const BEAT_EVERY: Duration = Duration::from_secs(3);
/// Listings served at once; more wait up to `LISTING_WAIT`, then answer
/// "too many", so listings cannot crowd out the dead-letter pushes that
/// share Redis with them.
pub(super) const CONCURRENT_LISTINGS: usize = 4;

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

pub(super) fn redis_down(e: impl std::fmt::Display) -> DlqError {
    DlqError::Unavailable {
        dependency: "redis",
        error: e.to_string(),
    }
}

pub(super) fn postgres_down(e: impl std::fmt::Display) -> DlqError {
    DlqError::Unavailable {
        dependency: "postgres",
        error: e.to_string(),
    }
}

/// Who asks for an operator action (from their credential: see
/// `operators::Actor`), and why. Both end up in the audit trail (and, for
/// a replay, the name and reason in the record's headers).
#[derive(Debug, Clone)]
pub struct Request {
    pub actor: Actor,
    pub reason: String,
    /// Who approved it, when it went through four-eyes approval.
    pub approver: Option<Actor>,
}

impl Request {
    /// The validated (who, why). Every operator text ends up in the audit
    /// trail and in Kafka headers, so one that cannot be stored there is
    /// refused here, naming the field, before anything happens.
    pub fn validate(&self) -> Result<(&Actor, &str), DlqError> {
        let reason = operator_text("reason", &self.reason, 1000, true)?;
        Ok((&self.actor, reason))
    }

    /// The `detail` fields every operator entry of this request carries:
    /// who (`requested_by`, the name; `operator`, who, how and where), why,
    /// and who approved it if anyone did (`approved_by`).
    pub fn detail(&self) -> serde_json::Value {
        let mut detail = crate::operators::who(&self.actor, self.approver.as_ref());
        detail["reason"] = self.reason.trim().into();
        detail
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

/// The dead-letter queue's operations.
pub struct DeadLetters {
    pub(super) redis: RedisPool,
    pub(super) postgres: PgPool,
    pub(super) producer: FutureProducer,
    pub(super) keys: Keys,
    /// Signs the steering headers of replayed copies.
    pub(super) header_key: HeaderKey,
    pub(super) limiter: DefaultDirectRateLimiter,
    pub(super) max_batch: usize,
    pub(super) listings: tokio::sync::Semaphore,
    /// This process's owner id: in every lock it takes and every job it
    /// runs, so another process can tell when they are orphaned.
    pub(super) owner: String,
    /// The replay jobs this process runs, and their stop signal.
    pub(super) jobs: super::job_runs::Jobs,
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
            owner: Uuid::new_v4().to_string(),
            jobs: super::job_runs::Jobs::default(),
        }
    }

    /// Builds the time indexes for entries parked by an older version (a
    /// no-op once done).
    pub async fn ensure_indexed(&self) -> Result<(), DlqError> {
        let mut conn = self.redis.get().await.map_err(redis_down)?;
        queue::ensure_indexed(&mut *conn, &self.keys)
            .await
            .map_err(redis_down)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Says this process is alive for [`OWNER_TTL`] more. A failure is
    /// only logged: the owner lapses by itself if it goes on.
    pub(super) async fn beat(&self) {
        let beat = async {
            let mut conn = self.redis.get().await.map_err(redis_down)?;
            super::lock::beat(&mut *conn, &self.keys, &self.owner, OWNER_TTL)
                .await
                .map_err(redis_down)
        };
        if let Err(e) = beat.await {
            tracing::warn!(error = %e.public_message(), "cannot renew this process's operator heartbeat");
        }
    }

    /// Runs `action` on the entry under `id` while holding its lock, and
    /// beats the owner's key meanwhile.
    pub(super) async fn locked<T, F, Fut>(&self, id: Uuid, action: F) -> Result<T, DlqError>
    where
        F: FnOnce(Stored) -> Fut,
        Fut: Future<Output = Result<T, DlqError>>,
    {
        let holder = super::lock::lock_holder(&self.owner, &Uuid::new_v4().to_string());
        {
            let mut conn = self.redis.get().await.map_err(redis_down)?;
            let ttl = super::lock::LockTtl {
                lock: LOCK_TTL,
                owner: OWNER_TTL,
            };
            if !super::lock::lock(&mut *conn, &self.keys, id, &self.owner, &holder, ttl)
                .await
                .map_err(redis_down)?
            {
                return Err(DlqError::Busy(id));
            }
        }
        let result = async {
            let stored = {
                let mut conn = self.redis.get().await.map_err(redis_down)?;
                match queue::get(&mut *conn, &self.keys, id).await {
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
        };
        let result = self.beating(result).await;
        // If this fails, the next operator takes the lock over once this
        // process's owner key lapses (or it expires after LOCK_TTL).
        if let Ok(mut conn) = self.redis.get().await {
            if let Err(e) = super::lock::unlock(&mut *conn, &self.keys, id, &holder).await {
                tracing::warn!(message_id = %id, error = %e, "cannot release a DLQ lock; it expires by itself");
            }
        }
        result
    }

    /// Runs `work`, beating the owner's key every [`BEAT_EVERY`] until it
    /// ends.
    pub(super) async fn beating<T>(&self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        let mut beat =
            tokio::time::interval_at(tokio::time::Instant::now() + BEAT_EVERY, BEAT_EVERY);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = beat.tick() => self.beat().await,
            }
        }
    }

    pub(super) async fn audit(
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
        let event = AuditEntry {
            message_id: e.message_id,
            status,
            topic: &e.topic,
            kafka_partition: e.partition,
            kafka_offset: e.offset,
            message_key: key.map(Cow::Borrowed),
            event_type: e.event_type.as_deref(),
            attempt,
            error: None,
            consumer_group: &e.consumer_group,
            occurred_at: at,
            detail: Some(detail),
            receipt: None,
            blinding: crate::store::chain::blinding(),
        };
        let mut conn = self.postgres.get().await.map_err(postgres_down)?;
        crate::outcome::chained::write_operator_event(&mut conn, &event)
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
