//! Bulk replays as jobs: `start` checks the request, writes the job to Redis
//! and runs the replay (the one `DeadLetters::replay_matching` does) in a
//! spawned task, so it outlives the HTTP request that started it. Progress
//! is written back to Redis as the replay goes, so any request, on any
//! instance sharing the Redis, can read it (`GET /replay/jobs/{id}`). Jobs
//! are kept for a week.
//!
//! The life of a job: `running`, then `done` or `failed`, or `interrupted`
//! when it stops before its end, and `running` again once resumed.
//! - A graceful stop (`stop_with`, from `app.rs`) lets each job finish the
//!   entry in flight, so its lock is released, then records the job
//!   `interrupted` with its counts.
//! - A job names its owner (the process running it, `DeadLetters::owner`),
//!   whose key in Redis is its heartbeat: every progress save renews it. A
//!   `running` job whose owner's key lapsed (the process died) is recorded
//!   `interrupted` by the first reader, its counts reconciled with the
//!   audit trail.
//! - `resume` runs an interrupted job on, under this process, skipping the
//!   messages its MESSAGE_REPLAYED rows name (`audited.rs`): each message is
//!   replayed at most once by one job, however often it is cut off.
//!
//! Every write of a job record is conditional on what it replaces (the
//! `SAVE` script): a runner writes only while the record says it runs it,
//! so a job declared orphaned is never brought back by its lost runner,
//! and two resumes of one job cannot both start.

mod audited;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::operator::{redis_down, OWNER_TTL};
use super::replay::{BulkReport, BulkRun, DeadLetters, DlqError, Request};
use super::store::{self, Filter};
use crate::operators::{Actor, Channel, Role};

/// How long a job's record is kept after its last update.
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often a running job's progress is written (and its owner's
/// heartbeat renewed).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Most per-entry errors a job keeps.
const MAX_ERRORS: usize = 20;
/// How long a job written by a version without owners may go without an
/// update before it counts as orphaned (such versions saved every 250 ms).
const OWNERLESS_PATIENCE: Duration = Duration::from_secs(60);
/// How long a stopping job may take to count its audit rows.
const RECONCILE_BOUND: Duration = Duration::from_secs(1);

pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";
pub const INTERRUPTED: &str = "interrupted";

/// A bulk replay job, as stored and as `GET /replay/jobs/{id}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ReplayJob)]
pub struct Job {
    pub id: Uuid,
    /// `running`, `done`, `failed` or `interrupted` (stopped before its
    /// end, by a graceful stop or because the process running it died;
    /// `POST /replay/jobs/{id}/resume` runs it on).
    pub state: String,
    /// The requester's name.
    pub requested_by: String,
    /// Who, how and where the job was asked for (absent on jobs of older
    /// versions).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub operator: Option<Actor>,
    /// Who approved it, when it went through four-eyes approval.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub approved_by: Option<Actor>,
    pub reason: String,
    pub topic: Option<String>,
    pub error_kind: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Entries the filter matched when the job started (at most `limit`).
    pub total: u64,
    /// The most entries the job replays (absent on jobs of older versions).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Entries taken so far.
    pub matched: usize,
    pub replayed: usize,
    /// Gone or busy by the time their turn came.
    pub skipped: usize,
    pub failed: usize,
    /// Of `failed`, those audited MESSAGE_REPLAYED whose copy Kafka did not
    /// acknowledge.
    #[serde(default)]
    pub unpublished: usize,
    /// The MESSAGE_REPLAYED rows of this job in the audit trail, counted
    /// when it last stopped (`replayed` + `unpublished` when all is well).
    #[serde(default)]
    pub audited: Option<u64>,
    /// The first few per-entry errors, and why the job failed if it did.
    pub errors: Vec<String>,
    /// Why the job is `interrupted`.
    #[serde(default)]
    pub interrupted: Option<String>,
    /// The process running the job, or that last ran it.
    #[serde(default)]
    pub owner: Option<String>,
    /// Who last resumed it (their name), and when.
    #[serde(default)]
    pub resumed_by: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub resumed_operator: Option<Actor>,
    #[serde(default)]
    pub resumed_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    /// Who asked for the job (a job of an older version names only a
    /// name).
    fn requester(&self) -> Actor {
        self.operator.clone().unwrap_or_else(|| Actor {
            name: self.requested_by.clone(),
            credential: None,
            role: Role::Operator,
            channel: Channel::Api,
            client: None,
            request_id: None,
        })
    }

    /// `base` (the counts before this run) plus what this run did.
    fn absorb(&mut self, base: &Job, report: &BulkReport) {
        self.matched = base.matched + report.matched;
        self.replayed = base.replayed + report.replayed;
        self.skipped = base.skipped + report.skipped;
        self.failed = base.failed + report.failed;
        self.unpublished = base.unpublished + report.unpublished;
        self.errors = base
            .errors
            .iter()
            .cloned()
            .chain(
                report
                    .errors
                    .iter()
                    .map(|e| format!("{}: {}", e.message_id, e.error)),
            )
            .take(MAX_ERRORS)
            .collect();
        self.updated_at = Utc::now();
    }

    /// Takes the audit trail's count of the job's MESSAGE_REPLAYED rows. A
    /// job cut off without a last save replayed more than it recorded: a
    /// row, less the copies Kafka refused, is a replay.
    fn reconcile(&mut self, rows: u64) {
        self.audited = Some(rows);
        let audited = usize::try_from(rows).unwrap_or(usize::MAX);
        self.replayed = self.replayed.max(audited.saturating_sub(self.unpublished));
        self.matched = self.matched.max(self.replayed + self.skipped + self.failed);
    }

    fn filter(&self) -> Filter {
        Filter {
            topic: self.topic.clone(),
            error_kind: self.error_kind.clone(),
            from: self.from,
            to: self.to,
        }
    }
}

/// A job cannot start or resume while custodian stops.
fn refuse_when_stopping(dlq: &DeadLetters) -> Result<(), DlqError> {
    if dlq.jobs.stopping() {
        return Err(DlqError::Unavailable {
            dependency: "replay jobs (custodian is stopping)",
            error: "a job cannot start while custodian stops".into(),
        });
    }
    Ok(())
}

/// Once `stop` is cancelled, stops this process's jobs: each finishes the
/// entry in flight and is recorded `interrupted`. The caller bounds the
/// wait; a job still not stopped by then is found orphaned once its owner's
/// heartbeat lapses.
pub fn stop_with(dlq: Arc<DeadLetters>, stop: CancellationToken) -> JoinHandle<()> {
    actix_rt::spawn(async move {
        stop.cancelled().await;
        dlq.jobs.stop_all().await;
    })
}

fn job_key(dlq: &DeadLetters, id: Uuid) -> String {
    format!("{}#job:{id}", dlq.keys().list_prefix())
}

/// KEYS[1] = the job, KEYS[2] = an owner key; ARGV[1] = the job's JSON,
/// ARGV[2] = its ttl (s), ARGV[3] = the write, ARGV[4] = the owner it
/// expects, ARGV[5] = the owner key's ttl (ms). Returns 1 if written.
/// - `start`: a new job; beats its owner.
/// - `run`: a runner's save, only while the job is `running` under it;
///   beats its owner.
/// - `orphan`: only while the job is `running` under the owner of KEYS[2]
///   and that owner's key has lapsed.
/// - `resume`: only while the job is `interrupted`; beats the new owner.
const SAVE: &str = r"
local current = redis.call('GET', KEYS[1])
local o = nil
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' then o = decoded end
end
local function owner()
  if o and type(o.owner) == 'string' then return o.owner end
  return ''
end
local mode = ARGV[3]
if mode == 'run' then
  if not o or o.state ~= 'running' or owner() ~= ARGV[4] then return 0 end
elseif mode == 'orphan' then
  if not o or o.state ~= 'running' or owner() ~= ARGV[4] then return 0 end
  if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
elseif mode == 'resume' then
  if not o or o.state ~= 'interrupted' then return 0 end
elseif mode ~= 'start' then
  return redis.error_reply('unknown job write')
end
if mode ~= 'orphan' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[5]) end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
";

/// The kinds of job write (see [`SAVE`]).
#[derive(Debug, Clone, Copy)]
enum Write {
    Start,
    Run,
    Orphan,
    Resume,
}

/// Writes `job` if `write`'s condition holds; `false` if it did not.
async fn save(dlq: &DeadLetters, job: &Job, write: Write, owner: &str) -> Result<bool, DlqError> {
    let json = serde_json::to_string(job).map_err(|e| DlqError::Invalid(e.to_string()))?;
    let mode = match write {
        Write::Start => "start",
        Write::Run => "run",
        Write::Orphan => "orphan",
        Write::Resume => "resume",
    };
    let mut conn = dlq.redis.get().await.map_err(redis_down)?;
    let written: i64 = redis::Script::new(SAVE)
        .key(job_key(dlq, job.id))
        .key(super::lock::owner_key(dlq.keys(), owner))
        .arg(json)
        .arg(KEEP.as_secs())
        .arg(mode)
        .arg(owner)
        .arg(OWNER_TTL.as_millis() as u64)
        .invoke_async(&mut *conn)
        .await
        .map_err(redis_down)?;
    Ok(written == 1)
}

/// How many entries `filter` matches now (the preview before a replay).
pub async fn count(dlq: &DeadLetters, filter: &Filter) -> Result<u64, DlqError> {
    filter.validate().map_err(DlqError::Invalid)?;
    let mut conn = dlq.redis.get().await.map_err(redis_down)?;
    store::count(&mut *conn, dlq.keys(), filter)
        .await
        .map_err(redis_down)
}

/// The job as stored.
async fn read(dlq: &DeadLetters, id: Uuid) -> Result<Option<Job>, DlqError> {
    let mut conn = dlq.redis.get().await.map_err(redis_down)?;
    let json: Option<String> = redis::cmd("GET")
        .arg(job_key(dlq, id))
        .query_async(&mut *conn)
        .await
        .map_err(redis_down)?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| DlqError::Invalid(format!("job {id}: {e}"))))
        .transpose()
}

/// A job by id. A `running` job whose owner is gone is recorded
/// `interrupted` first, its counts reconciled with the audit trail.
pub async fn get(dlq: &DeadLetters, id: Uuid) -> Result<Option<Job>, DlqError> {
    let Some(job) = read(dlq, id).await? else {
        return Ok(None);
    };
    if job.state != RUNNING || !orphaned(dlq, &job).await? {
        return Ok(Some(job));
    }
    let mut interrupted = job.clone();
    // Best effort: without PostgreSQL the job is still reported
    // interrupted, with its last saved counts (a resume reconciles them).
    match tokio::time::timeout(RECONCILE_BOUND, audited::replayed(&dlq.postgres, id)).await {
        Ok(Ok(audited)) => interrupted.reconcile(audited.rows),
        Ok(Err(e)) => {
            tracing::warn!(job = %id, error = %e.public_message(), "cannot count an orphaned job's audit rows")
        }
        Err(_) => tracing::warn!(job = %id, "counting an orphaned job's audit rows timed out"),
    }
    interrupted.state = INTERRUPTED.into();
    interrupted.interrupted = Some(format!(
        "the process running it stopped without a word (no heartbeat for {} s); resume it to go on",
        OWNER_TTL.as_secs()
    ));
    let now = Utc::now();
    interrupted.updated_at = now;
    interrupted.finished_at = Some(now);
    let owner = job.owner.as_deref().unwrap_or_default();
    if save(dlq, &interrupted, Write::Orphan, owner).await? {
        tracing::warn!(job = %id, owner, replayed = interrupted.replayed, "replay job orphaned by its process; recorded interrupted");
        return Ok(Some(interrupted));
    }
    // Its owner beat meanwhile, or another reader was first.
    read(dlq, id).await
}

/// Whether a `running` job's owner is gone.
async fn orphaned(dlq: &DeadLetters, job: &Job) -> Result<bool, DlqError> {
    let Some(owner) = &job.owner else {
        let silent = Utc::now().signed_duration_since(job.updated_at);
        return Ok(silent.to_std().is_ok_and(|s| s > OWNERLESS_PATIENCE));
    };
    let mut conn = dlq.redis.get().await.map_err(redis_down)?;
    let alive = super::lock::alive(&mut *conn, dlq.keys(), owner)
        .await
        .map_err(redis_down)?;
    Ok(!alive)
}

/// Checks the request, records the job and starts it; answers the job as
/// it starts. The replay runs on the current runtime, detached.
pub async fn start(
    dlq: Arc<DeadLetters>,
    filter: Filter,
    all: bool,
    limit: usize,
    request: Request,
) -> Result<Job, DlqError> {
    refuse_when_stopping(&dlq)?;
    dlq.check_bulk(&filter, all, limit, &request)?;
    let (by, reason) = request.validate()?;
    let total = count(&dlq, &filter).await?.min(limit as u64);
    let (operator, approved_by) = (Some(by.clone()), request.approver.clone());
    let now = Utc::now();
    let job = Job {
        id: Uuid::new_v4(),
        state: RUNNING.into(),
        requested_by: by.name.clone(),
        operator,
        approved_by,
        reason: reason.to_owned(),
        topic: filter.topic.clone(),
        error_kind: filter.error_kind.clone(),
        from: filter.from,
        to: filter.to,
        total,
        limit: Some(limit),
        matched: 0,
        replayed: 0,
        skipped: 0,
        failed: 0,
        unpublished: 0,
        audited: None,
        errors: Vec::new(),
        interrupted: None,
        owner: Some(dlq.owner.clone()),
        resumed_by: None,
        resumed_operator: None,
        resumed_at: None,
        started_at: now,
        updated_at: now,
        finished_at: None,
    };
    save(&dlq, &job, Write::Start, &dlq.owner).await?;
    let plan = Plan {
        filter,
        all,
        limit,
        budget: limit,
        request,
        skip: HashSet::new(),
    };
    let started = job.clone();
    dlq.jobs.spawn(run(Arc::clone(&dlq), job, plan));
    Ok(started)
}

/// What `resume` answers.
#[derive(Debug)]
pub enum Resumed {
    /// Running again, under this process.
    Started(Job),
    NoSuchJob,
    /// Only an interrupted job can be resumed; this is the job as it is.
    NotInterrupted(Job),
}

/// Runs an interrupted job on, skipping the messages it already replayed
/// (by its MESSAGE_REPLAYED rows), under the job's who and why; the rows of
/// the resumed part also name `resumed_by`.
pub async fn resume(
    dlq: Arc<DeadLetters>,
    id: Uuid,
    resumed_by: &Actor,
) -> Result<Resumed, DlqError> {
    refuse_when_stopping(&dlq)?;
    let Some(job) = get(&dlq, id).await? else {
        return Ok(Resumed::NoSuchJob);
    };
    if job.state != INTERRUPTED {
        return Ok(Resumed::NotInterrupted(job));
    }
    let done = audited::replayed(&dlq.postgres, id).await?;
    let limit = job
        .limit
        .unwrap_or(usize::try_from(job.total).unwrap_or(usize::MAX))
        .clamp(1, dlq.max_batch());
    let mut resumed = job.clone();
    resumed.reconcile(done.rows);
    let now = Utc::now();
    resumed.state = RUNNING.into();
    resumed.interrupted = None;
    resumed.owner = Some(dlq.owner.clone());
    resumed.resumed_by = Some(resumed_by.name.clone());
    resumed.resumed_operator = Some(resumed_by.clone());
    resumed.resumed_at = Some(now);
    resumed.updated_at = now;
    resumed.finished_at = None;
    if !save(&dlq, &resumed, Write::Resume, &dlq.owner).await? {
        // Resumed by someone else meanwhile.
        return Ok(match read(&dlq, id).await? {
            Some(job) => Resumed::NotInterrupted(job),
            None => Resumed::NoSuchJob,
        });
    }
    let filter = resumed.filter();
    let plan = Plan {
        all: filter.is_empty(),
        filter,
        limit,
        budget: limit.saturating_sub(done.ids.len()),
        request: Request {
            actor: job.requester(),
            reason: job.reason.clone(),
            approver: job.approved_by.clone(),
        },
        skip: done.ids,
    };
    tracing::info!(job = %id, resumed_by = %resumed_by.name, already = plan.skip.len(), "replay job resumed");
    let started = resumed.clone();
    dlq.jobs.spawn(run(Arc::clone(&dlq), resumed, plan));
    Ok(Resumed::Started(started))
}

/// What a run of a job replays.
struct Plan {
    filter: Filter,
    all: bool,
    /// The listing's bound (the job's limit).
    limit: usize,
    /// Most entries this run takes.
    budget: usize,
    request: Request,
    /// Messages the job already replayed.
    skip: HashSet<Uuid>,
}

/// The job's body: the bulk replay, with its progress written every
/// `PROGRESS_EVERY` and once at the end (`interrupted` if a graceful stop
/// cut it off). A runner that finds the job no longer its own (declared
/// orphaned while this process could not reach Redis) stops at the next
/// entry and writes nothing more.
async fn run(dlq: Arc<DeadLetters>, job: Job, plan: Plan) {
    // The counts before this run (a resumed job's earlier runs').
    let base = Arc::new(job.clone());
    let id = job.id;
    let resumed_by = job.resumed_operator.clone();
    let shared = Arc::new(Mutex::new(job));
    let progress = {
        let (shared, base) = (Arc::clone(&shared), Arc::clone(&base));
        move |report: &BulkReport| {
            if let Ok(mut job) = shared.lock() {
                job.absorb(&base, report);
            }
        }
    };
    let stop = dlq.jobs.child_token();
    let bulk = BulkRun {
        job: Some((id, resumed_by.as_ref())),
        skip: &plan.skip,
        budget: plan.budget,
        stop: Some(&stop),
        progress: &progress,
    };
    let replay = dlq.replay_matching_run(&plan.filter, plan.all, plan.limit, &plan.request, &bulk);
    tokio::pin!(replay);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let mut lost = false;
    let result = loop {
        tokio::select! {
            result = &mut replay => break result,
            _ = tick.tick(), if !lost => {
                let snapshot = shared.lock().map(|j| j.clone()).ok();
                if let Some(snapshot) = snapshot {
                    match save(&dlq, &snapshot, Write::Run, &dlq.owner).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job = %id, "replay job is no longer this process's (declared orphaned); stopping it");
                            lost = true;
                            stop.cancel();
                        }
                        Err(e) => tracing::warn!(job = %id, error = %e.public_message(), "replay job progress not saved"),
                    }
                }
            }
        }
    };
    if lost {
        return;
    }
    let rows = tokio::time::timeout(RECONCILE_BOUND, audited::replayed(&dlq.postgres, id)).await;
    let finished = {
        let Ok(mut job) = shared.lock() else {
            return;
        };
        match &result {
            Ok(report) => {
                job.absorb(&base, report);
                if report.stopped {
                    job.state = INTERRUPTED.into();
                    job.interrupted = Some(
                        "custodian was stopped; the entry in flight was finished. Resume it to go on"
                            .into(),
                    );
                } else {
                    job.state = DONE.into();
                }
            }
            Err(e) => {
                job.state = FAILED.into();
                job.errors.push(e.public_message());
            }
        }
        if let Ok(Ok(audited)) = rows {
            job.reconcile(audited.rows);
        }
        job.finished_at = Some(Utc::now());
        job.clone()
    };
    tracing::info!(job = %finished.id, state = %finished.state, replayed = finished.replayed, failed = finished.failed, "replay job finished");
    // The end must be recorded: a few tries, as Redis may be briefly away.
    for attempt in 0..5u64 {
        match save(&dlq, &finished, Write::Run, &dlq.owner).await {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(job = %finished.id, "replay job is no longer this process's; its end is not recorded here");
                return;
            }
            Err(e) => {
                tracing::warn!(job = %finished.id, attempt, error = %e.public_message(), "replay job result not saved yet");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
        }
    }
}
