//! Bulk replays as jobs: `start` checks the request, writes the job to Redis
//! and runs the replay (the one `DeadLetters::replay_matching` does) in a
//! spawned task, so it outlives the HTTP request that started it. Progress
//! is written back to Redis as the replay goes, so any request, on any
//! instance sharing the Redis, can read it (`GET /replay/jobs/{id}`). Jobs
//! are kept for a week.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::replay::{BulkReport, DeadLetters, DlqError, Request};
use super::store::{self, Filter};
use crate::store::pool::RedisPool;

/// How long a job's record is kept after its last update.
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often a running job's progress is written.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Most per-entry errors a job keeps.
const MAX_ERRORS: usize = 20;

/// A bulk replay job, as stored and as `GET /replay/jobs/{id}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReplayJob)]
pub struct Job {
    pub id: Uuid,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub requested_by: String,
    pub reason: String,
    pub topic: Option<String>,
    pub error_kind: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Entries the filter matched when the job started (at most `limit`).
    pub total: u64,
    /// Entries taken so far.
    pub matched: usize,
    pub replayed: usize,
    /// Gone or busy by the time their turn came.
    pub skipped: usize,
    pub failed: usize,
    /// The first few per-entry errors, and why the job failed if it did.
    pub errors: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    fn absorb(&mut self, report: &BulkReport) {
        self.matched = report.matched;
        self.replayed = report.replayed;
        self.skipped = report.skipped;
        self.failed = report.failed;
        self.errors = report
            .errors
            .iter()
            .take(MAX_ERRORS)
            .map(|e| format!("{}: {}", e.message_id, e.error))
            .collect();
        self.updated_at = Utc::now();
    }
}

fn job_key(dlq: &DeadLetters, id: Uuid) -> String {
    format!("{}#job:{id}", dlq.keys().list_prefix())
}

fn redis_down(e: impl std::fmt::Display) -> DlqError {
    DlqError::Unavailable {
        dependency: "redis",
        error: e.to_string(),
    }
}

async fn save(redis: &RedisPool, key: &str, job: &Job) -> Result<(), DlqError> {
    let json = serde_json::to_string(job).map_err(|e| DlqError::Invalid(e.to_string()))?;
    let mut conn = redis.get().await.map_err(redis_down)?;
    redis::cmd("SET")
        .arg(key)
        .arg(json)
        .arg("EX")
        .arg(KEEP.as_secs())
        .query_async::<()>(&mut *conn)
        .await
        .map_err(redis_down)
}

/// How many entries `filter` matches now (the preview before a replay).
pub async fn count(redis: &RedisPool, dlq: &DeadLetters, filter: &Filter) -> Result<u64, DlqError> {
    filter.validate().map_err(DlqError::Invalid)?;
    let mut conn = redis.get().await.map_err(redis_down)?;
    store::count(&mut *conn, dlq.keys(), filter)
        .await
        .map_err(redis_down)
}

/// A job by id.
pub async fn get(redis: &RedisPool, dlq: &DeadLetters, id: Uuid) -> Result<Option<Job>, DlqError> {
    let mut conn = redis.get().await.map_err(redis_down)?;
    let json: Option<String> = redis::cmd("GET")
        .arg(job_key(dlq, id))
        .query_async(&mut *conn)
        .await
        .map_err(redis_down)?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| DlqError::Invalid(format!("job {id}: {e}"))))
        .transpose()
}

/// Checks the request, records the job and starts it; answers the job as
/// it starts. The replay runs on the current runtime, detached.
pub async fn start(
    redis: RedisPool,
    dlq: Arc<DeadLetters>,
    filter: Filter,
    all: bool,
    limit: usize,
    request: Request,
) -> Result<Job, DlqError> {
    dlq.check_bulk(&filter, all, limit, &request)?;
    let (by, reason) = request.validate()?;
    let total = count(&redis, &dlq, &filter).await?.min(limit as u64);
    let now = Utc::now();
    let job = Job {
        id: Uuid::new_v4(),
        state: "running".into(),
        requested_by: by.to_owned(),
        reason: reason.to_owned(),
        topic: filter.topic.clone(),
        error_kind: filter.error_kind.clone(),
        from: filter.from,
        to: filter.to,
        total,
        matched: 0,
        replayed: 0,
        skipped: 0,
        failed: 0,
        errors: Vec::new(),
        started_at: now,
        updated_at: now,
        finished_at: None,
    };
    let key = job_key(&dlq, job.id);
    save(&redis, &key, &job).await?;
    let started = job.clone();
    actix_rt::spawn(run(redis, dlq, key, job, filter, all, limit, request));
    Ok(started)
}

/// The job's body: the bulk replay, with its progress written every
/// `PROGRESS_EVERY` and once at the end.
#[allow(clippy::too_many_arguments)]
async fn run(
    redis: RedisPool,
    dlq: Arc<DeadLetters>,
    key: String,
    job: Job,
    filter: Filter,
    all: bool,
    limit: usize,
    request: Request,
) {
    let shared = Arc::new(Mutex::new(job));
    let progress = {
        let shared = Arc::clone(&shared);
        move |report: &BulkReport| {
            if let Ok(mut job) = shared.lock() {
                job.absorb(report);
            }
        }
    };
    let replay = dlq.replay_matching_observed(&filter, all, limit, &request, &progress);
    tokio::pin!(replay);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let result = loop {
        tokio::select! {
            result = &mut replay => break result,
            _ = tick.tick() => {
                let snapshot = shared.lock().map(|j| j.clone()).ok();
                if let Some(snapshot) = snapshot {
                    if let Err(e) = save(&redis, &key, &snapshot).await {
                        tracing::warn!(job = %snapshot.id, error = %e.public_message(), "replay job progress not saved");
                    }
                }
            }
        }
    };
    let finished = {
        let Ok(mut job) = shared.lock() else {
            return;
        };
        match &result {
            Ok(report) => {
                job.absorb(report);
                job.state = "done".into();
            }
            Err(e) => {
                job.state = "failed".into();
                job.errors.push(e.public_message());
            }
        }
        job.finished_at = Some(Utc::now());
        job.clone()
    };
    tracing::info!(job = %finished.id, state = %finished.state, replayed = finished.replayed, failed = finished.failed, "replay job finished");
    // The end must be recorded: a few tries, as Redis may be briefly away.
    for attempt in 0..5u64 {
        match save(&redis, &key, &finished).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(job = %finished.id, attempt, error = %e.public_message(), "replay job result not saved yet");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
        }
    }
}
