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
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use serde::Serialize;
use uuid::Uuid;

use super::operator::redis_down;
pub use super::operator::{operator_text, DeadLetters, DlqError, Request};
use super::store::{self as queue, Filter, Stored};
use super::{
    REPLAYED_AT_HEADER, REPLAYED_BY_HEADER, REPLAYED_FROM_HEADER, REPLAY_COUNT_HEADER,
    REPLAY_REASON_HEADER,
};
use crate::identity::Actor;
use crate::pipeline::message_id::MESSAGE_ID_HEADER;
use crate::pipeline::steering::{self, Signed, SIGNATURE_HEADER};
use crate::store::audit::REPLAYED;
use crate::telemetry::dlq::DeadLetterActed;
use crate::telemetry::Emit;

/// How long a publish may wait for Kafka's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
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
    /// Of `failed`, those whose MESSAGE_REPLAYED row was written but whose
    /// copy Kafka did not acknowledge (a job reconciles its counts with the
    /// audit trail by them).
    #[serde(skip)]
    pub unpublished: usize,
    /// Whether the replay was stopped before its end (a job cut off by a
    /// graceful stop); the entry in flight was finished first.
    #[serde(skip)]
    pub stopped: bool,
}

/// How a bulk replay runs as a job (`dlq/jobs.rs`); a plain bulk replay is
/// [`BulkRun::plain`].
pub struct BulkRun<'a> {
    /// The job, recorded in each MESSAGE_REPLAYED row's detail (`job_id`),
    /// with who resumed it if someone did (`resumed_by`).
    pub job: Option<(Uuid, Option<&'a Actor>)>,
    /// Ids not replayed again (those a resumed job already replayed).
    pub skip: &'a HashSet<Uuid>,
    /// Most entries taken (besides `skip`).
    pub budget: usize,
    /// Checked before each entry: once cancelled, the replay ends there.
    pub stop: Option<&'a tokio_util::sync::CancellationToken>,
    /// Called after each entry.
    pub progress: &'a (dyn Fn(&BulkReport) + Send + Sync),
}

impl BulkRun<'_> {
    /// Up to `limit` entries, not part of a job.
    pub fn plain(limit: usize) -> BulkRun<'static> {
        static NONE: std::sync::OnceLock<HashSet<Uuid>> = std::sync::OnceLock::new();
        BulkRun {
            job: None,
            skip: NONE.get_or_init(HashSet::new),
            budget: limit,
            stop: None,
            progress: &|_| {},
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkError {
    pub message_id: Uuid,
    pub error: String,
}

impl DeadLetters {
    /// Republishes one dead letter (see the module documentation).
    pub async fn replay(&self, id: Uuid, request: &Request) -> Result<Replayed, DlqError> {
        self.replay_if(id, None, request, None).await
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
        job: Option<(Uuid, Option<&Actor>)>,
    ) -> Result<Replayed, DlqError> {
        request.validate()?;
        let result = self
            .locked(id, |stored| async move {
                if listed.is_some_and(|(filter, score)| {
                    !filter.matches(&stored.entry) || queue::entry_score(&stored.entry) != score
                }) {
                    return Err(DlqError::NotFound(id));
                }
                self.republish(stored, request, job).await
            })
            .await;
        let result_label = match &result {
            Ok(_) => "replayed",
            Err(DlqError::NotFound(_) | DlqError::Busy(_)) => "skipped",
            Err(_) => "failed",
        };
        let topic = result.as_ref().map_or("unknown", |r| r.topic.as_str());
        DeadLetterActed {
            topic,
            result: result_label,
        }
        .emit();
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
        self.replay_matching_run(filter, all, limit, request, &BulkRun::plain(limit))
            .await
    }

    /// [`Self::replay_matching`] as `run` says: a replay job records its id
    /// in the audit rows, skips what it already replayed, stops when told
    /// and keeps its progress (see `dlq/jobs.rs`). `limit` bounds the
    /// listing, `run.budget` the entries taken from it.
    pub async fn replay_matching_run(
        &self,
        filter: &Filter,
        all: bool,
        limit: usize,
        request: &Request,
        run: &BulkRun<'_>,
    ) -> Result<BulkReport, DlqError> {
        self.check_bulk(filter, all, limit, request)?;
        // Ids only: entries are read one at a time, under their lock. A
        // resumed job lists past the ids it already replayed.
        let listed = {
            let _slot = self.listing_slot().await?;
            let mut conn = self.redis.get().await.map_err(redis_down)?;
            queue::matching(
                &mut *conn,
                &self.keys,
                filter,
                0,
                limit.saturating_add(run.skip.len()),
            )
            .await
            .map_err(redis_down)?
        };
        let mut seen = HashSet::with_capacity(listed.len());
        let mut report = BulkReport::default();
        for (id, score) in listed {
            let Ok(id) = Uuid::parse_str(&id) else {
                continue;
            };
            // An id is replayed at most once per request (and per job).
            if run.skip.contains(&id) || !seen.insert(id) {
                continue;
            }
            if report.matched >= run.budget {
                break;
            }
            if !self.wait_turn(run.stop).await {
                report.stopped = true;
                break;
            }
            report.matched += 1;
            match self
                .replay_if(id, Some((filter, score)), request, run.job)
                .await
            {
                Ok(_) => report.replayed += 1,
                Err(DlqError::NotFound(_) | DlqError::Busy(_)) => report.skipped += 1,
                Err(e) => {
                    report.failed += 1;
                    if matches!(e, DlqError::Publish(_)) {
                        report.unpublished += 1;
                    }
                    report.errors.push(BulkError {
                        message_id: id,
                        error: e.public_message(),
                    });
                }
            }
            (run.progress)(&report);
        }
        Ok(report)
    }

    /// Waits for the rate limiter; `false` if `stop` came first (or had
    /// come already).
    async fn wait_turn(&self, stop: Option<&tokio_util::sync::CancellationToken>) -> bool {
        let Some(stop) = stop else {
            self.limiter.until_ready().await;
            return true;
        };
        if stop.is_cancelled() {
            return false;
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => false,
            _ = self.limiter.until_ready() => true,
        }
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

    async fn republish(
        &self,
        stored: Stored,
        request: &Request,
        job: Option<(Uuid, Option<&Actor>)>,
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
        let (by, reason) = request.validate()?;
        let mut detail = request.detail();
        detail["replay_count"] = count.into();
        detail["replayed_from"] = from.clone().into();
        detail["error_kind"] = e.error_kind.clone().into();
        detail["payload_sha256"] = crate::text::hex(&digest).into();
        // A job's rows name it: they are what the job reconciles its counts
        // with, and what a resumed job skips (see `dlq/jobs.rs`).
        if let Some((job, resumed_by)) = job {
            detail["job_id"] = job.to_string().into();
            if let Some(resumed_by) = resumed_by {
                detail["resumed_by"] = resumed_by.to_json();
            }
        }
        // With traces on, the replay continues the dead letter's trace.
        let span = crate::otel::record::send("replay", e.traceparent.as_deref(), &e.topic);
        if let Some(trace_id) = span.as_ref().and_then(crate::otel::context::trace_id_of) {
            detail["trace_id"] = trace_id.into();
        }
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
        let traceparent = span
            .as_ref()
            .and_then(crate::otel::context::traceparent_of)
            .unwrap_or_default();
        let mut ours = vec![
            (MESSAGE_ID_HEADER, id.as_str()),
            (REPLAY_COUNT_HEADER, count_text.as_str()),
            (REPLAYED_FROM_HEADER, from.as_str()),
            (SIGNATURE_HEADER, signature.as_str()),
            (REPLAYED_BY_HEADER, by.name.as_str()),
            (REPLAY_REASON_HEADER, reason),
            (REPLAYED_AT_HEADER, at.as_str()),
        ];
        if !traceparent.is_empty() {
            ours.push((
                crate::otel::context::REPLAY_TRACEPARENT,
                traceparent.as_str(),
            ));
        }
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
        let removed = queue::remove(&mut *conn, &self.keys, &stored)
            .await
            .map_err(redis_down)?;
        tracing::info!(
            message_id = %e.message_id,
            topic = %e.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            replay_count = count,
            requested_by = %by.name,
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
}
