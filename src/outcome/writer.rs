//! The outcome writer: one PostgreSQL transaction per flush, holding every
//! message's ledger row and stored effect, its http delivery record, its
//! retry schedule rows and its chained audit entries (binary `COPY`).
//!
//! The ledger decides what a stored message's outcome is, inside the
//! transaction: an id inserted now is processed; an id already there is a
//! duplicate (or, under another payload, an id conflict: dead-lettered).
//! Because the ledger row and the MESSAGE_PROCESSED entry commit together, a
//! second instance inserting the same id waits on the unique index until
//! the first commits, then sees the conflict: a redelivery is audited
//! MESSAGE_DUPLICATE, never processed twice. A dead letter whose MESSAGE_DLQ
//! entry already exists at its position (same id and payload digest) is a
//! redelivery too: audited MESSAGE_DUPLICATE, its push repeated (idempotent,
//! in case the crash came before it).
//!
//! When the database refuses an effect, the flush is written again with a
//! savepoint per effect, to find whose it was: that message and the rest of
//! its submission are left out (the processor retries it in place, in
//! order), everything else commits.
//!
//! Chaining (`audit.chain`, see `store::chain`): each entry gets the next
//! sequence number of its partition's chain and its hash, from the head
//! this writer caches. Another writer (an instance that owned the partition
//! before a rebalance) may have moved the head meanwhile: then moving the
//! heads in `audit_chain_heads` from the ones the flush was built on
//! matches nothing (`append::advance`), the transaction rolls back, and the
//! flush is rebuilt from heads read afresh.
//! A crash mid-flush rolls back whole: no gap, no fork, no effect without
//! its entries.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use super::append::{advance, copy, is_chain_collision, link, ChainHead};
use super::connection::Connection;
use super::effects;
use super::refusal::{classify, Refusal};
use super::Pending;
use super::WriteError;
use crate::config::PostgresSettings;
use crate::failure::{AttemptFailure, Failure};
use crate::handlers::registry::{self, Task};
use crate::pipeline::Outcome;
use crate::store::audit::{self, AuditEntry, DLQ, DUPLICATE, PROCESSED, RETRY_SCHEDULED};
use crate::store::chain::Hasher;
use crate::store::projection::{repeat, Applied, LedgerRow};
use crate::telemetry::dlq::RedeliveryRecognised;
use crate::telemetry::trail::ProjectionWritten;
use crate::telemetry::Emit;

/// Rebuilds of one flush after head collisions before giving up (each
/// collision means another writer appended meanwhile; this many in a row
/// means something is wrong, and the auditor's wait takes over).
const MAX_REBUILDS: usize = 8;

/// What a flush wrote of one submission.
#[derive(Debug, Default)]
pub struct Written {
    /// The message whose effect the database refused (its index, and why):
    /// it and everything after it in the submission were not written.
    pub refused: Option<(usize, Failure)>,
    /// Indexes of the dead letters to push to Redis now.
    pub push: Vec<usize>,
    /// Topics of the messages audited MESSAGE_DUPLICATE.
    pub duplicates: Vec<String>,
}

/// Why one attempt at a flush did not commit.
enum Failed {
    /// Another writer moved a chain's head: rebuild.
    Collision,
    /// The database refused an effect: find whose, with savepoints.
    Refused,
    Error(WriteError),
}

impl<E: Into<WriteError>> From<E> for Failed {
    fn from(e: E) -> Self {
        match e.into() {
            WriteError::Write(e) if is_chain_collision(&e) => Failed::Collision,
            other => Failed::Error(other),
        }
    }
}

/// The writer: its connection and the heads of the chains it appends to.
pub struct Writer {
    conn: Connection,
    group: String,
    /// Chain the entries (`audit.chain`).
    chain: bool,
    /// Heads of the chains this writer appended to or read, by chain name;
    /// replaced after each commit, dropped on any doubt.
    heads: HashMap<String, ChainHead>,
    hasher: Hasher,
}

impl Writer {
    pub fn new(settings: &PostgresSettings, group: String) -> Self {
        Writer {
            conn: Connection::new(settings),
            group,
            chain: true,
            heads: HashMap::new(),
            hasher: Hasher::default(),
        }
    }

    /// Chains entries (the default) or writes them unchained.
    pub fn chained(mut self, on: bool) -> Self {
        self.chain = on;
        self
    }

    /// Makes every submission's outcome durable in one transaction (see
    /// the module comment). The outcomes in `submissions` are final when it
    /// returns `Ok`; on `Err` they are as they were, and nothing was
    /// written.
    pub async fn commit(
        &mut self,
        submissions: &mut [Vec<Pending>],
    ) -> Result<Vec<Written>, WriteError> {
        let before: Vec<Vec<(Outcome, usize)>> = submissions
            .iter()
            .map(|s| {
                s.iter()
                    .map(|p| (p.settled.outcome, p.settled.failures.len()))
                    .collect()
            })
            .collect();
        let restore = |submissions: &mut [Vec<Pending>]| {
            for (sub, was) in submissions.iter_mut().zip(&before) {
                for (p, (outcome, failures)) in sub.iter_mut().zip(was) {
                    p.settled.outcome = *outcome;
                    p.settled.failures.truncate(*failures);
                }
            }
        };
        let mut rebuilds = 0;
        let mut careful = false;
        loop {
            let result = self.attempt(submissions, careful).await;
            let failed = match result {
                Ok(written) => return Ok(written),
                Err(failed) => failed,
            };
            restore(submissions);
            match failed {
                Failed::Collision if rebuilds < MAX_REBUILDS => {
                    rebuilds += 1;
                    tracing::info!(
                        rebuilds,
                        "an audit chain's head moved (another writer appended); rebuilding the flush"
                    );
                    self.heads.clear();
                }
                Failed::Refused if !careful => careful = true,
                Failed::Collision => {
                    self.forget();
                    return Err(WriteError::Chain("its head kept moving".into()));
                }
                Failed::Refused => {
                    self.forget();
                    return Err(WriteError::Chain("a refusal no savepoint found".into()));
                }
                Failed::Error(e) => {
                    self.forget();
                    return Err(e);
                }
            }
        }
    }

    fn forget(&mut self) {
        self.heads.clear();
        self.conn.forget();
    }

    async fn attempt(
        &mut self,
        submissions: &mut [Vec<Pending>],
        careful: bool,
    ) -> Result<Vec<Written>, Failed> {
        let client: &mut Client = self.conn.client().await?;
        let tx = client.transaction().await?;
        let mut written: Vec<Written> = submissions.iter().map(|_| Written::default()).collect();
        let effects_started = std::time::Instant::now();
        // With traces on, each stored message's "apply" span, then its
        // "audit write" span, over this transaction's two parts.
        let applying: Vec<tracing::Span> = submissions
            .iter()
            .flatten()
            .filter(|p| p.effects.apply.is_some())
            .filter_map(|p| p.settled.trace.apply())
            .collect();
        if careful {
            apply_one_by_one(&tx, submissions, &mut written).await?;
        } else {
            apply_all(&tx, submissions).await?;
        }
        ProjectionWritten {
            elapsed: effects_started.elapsed(),
        }
        .emit();
        drop(applying);
        let writing: Vec<tracing::Span> = submissions
            .iter()
            .flatten()
            .filter_map(|p| p.settled.trace.audit_write(self.chain))
            .collect();
        let cut = |si: usize, written: &[Written], len: usize| {
            written[si].refused.as_ref().map_or(len, |(i, _)| *i)
        };
        // Duplicates: MESSAGE_PROCESSED if the earlier delivery's entry is
        // missing (written before outcomes shared a transaction), else
        // MESSAGE_DUPLICATE.
        let already: Vec<Uuid> = submissions
            .iter()
            .enumerate()
            .flat_map(|(si, s)| s[..cut(si, &written, s.len())].iter())
            .filter(|p| p.settled.outcome == Outcome::AlreadyApplied)
            .map(|p| p.settled.message_id)
            .collect();
        let mut processed = processed(&tx, &already).await?;
        // Dead letters already parked by an earlier delivery of the record.
        let dead: Vec<&crate::pipeline::Message> = submissions
            .iter()
            .enumerate()
            .flat_map(|(si, s)| s[..cut(si, &written, s.len())].iter())
            .filter(|p| p.settled.outcome == Outcome::DeadLettered)
            .map(|p| &p.settled.message)
            .collect();
        let parked = effects::recorded(&tx, dead, &[DLQ]).await?;
        for (si, sub) in submissions.iter_mut().enumerate() {
            let end = cut(si, &written, sub.len());
            for (i, p) in sub[..end].iter_mut().enumerate() {
                let s = &mut p.settled;
                if s.outcome != Outcome::DeadLettered {
                    continue;
                }
                if !p.effects.pushed {
                    written[si].push.push(i);
                }
                let position = crate::store::redelivery::position(&s.message);
                if parked.contains(&position) {
                    s.outcome = Outcome::Redelivered;
                    RedeliveryRecognised {
                        settled: s,
                        then: "its push repeated",
                    }
                    .emit();
                }
            }
        }
        for (si, sub) in submissions.iter().enumerate() {
            for p in &sub[..cut(si, &written, sub.len())] {
                if let Some(delivery) = &p.effects.delivery {
                    effects::write_delivery(&tx, delivery).await?;
                }
                if let Some(schedule) = &p.effects.schedule {
                    schedule.run(&tx).await?;
                }
            }
        }
        let mut entries: Vec<AuditEntry<'_>> = Vec::new();
        for (si, sub) in submissions.iter().enumerate() {
            for p in &sub[..cut(si, &written, sub.len())] {
                let first = entries.len();
                let mut own = audit::entries(
                    std::slice::from_ref(&p.settled),
                    &self.group,
                    &mut processed,
                );
                shape(&mut own, p);
                entries.extend(own);
                written[si].duplicates.extend(
                    entries[first..]
                        .iter()
                        .filter(|e| e.status == DUPLICATE)
                        .map(|e| e.topic.to_owned()),
                );
            }
        }
        if self.chain {
            let (links, moves) = link(&self.heads, &mut self.hasher, &tx, &entries).await?;
            if !advance(&tx, &moves).await? {
                return Err(Failed::Collision);
            }
            copy(&tx, &entries, Some(&links)).await?;
            super::crash_point::reached("before_commit");
            tx.commit().await?;
            self.heads
                .extend(moves.into_iter().map(|(name, m)| (name, m.head())));
        } else {
            copy(&tx, &entries, None).await?;
            super::crash_point::reached("before_commit");
            tx.commit().await?;
        }
        drop(writing);
        Ok(written)
    }
}

/// Adjusts a message's entries to what its effects say.
fn shape(entries: &mut Vec<AuditEntry<'_>>, p: &Pending) {
    if let Some(detail) = &p.effects.detail {
        for e in entries.iter_mut().filter(|e| e.status == RETRY_SCHEDULED) {
            let trace_id = e.detail.as_ref().and_then(|d| d.get("trace_id")).cloned();
            let mut detail = detail.clone();
            if let (Some(trace_id), Some(fields)) = (trace_id, detail.as_object_mut()) {
                fields.insert("trace_id".into(), trace_id);
            }
            e.detail = Some(detail);
        }
    }
    if let Some(attempt) = p.effects.continues {
        // The schedule row says it is scheduled again; the first delivery's
        // entry has the receipt.
        entries.retain(|e| e.status != RETRY_SCHEDULED);
        for e in entries.iter_mut() {
            e.receipt = None;
            if e.status == PROCESSED {
                e.attempt = attempt;
            }
        }
    }
}

/// The stored tasks of a flush, with their message's payload digest.
fn tasks(submissions: &[Vec<Pending>]) -> Vec<(usize, usize, &Task, &[u8; 32])> {
    submissions
        .iter()
        .enumerate()
        .flat_map(|(si, s)| {
            s.iter().enumerate().filter_map(move |(i, p)| {
                p.effects
                    .apply
                    .as_ref()
                    .map(|t| (si, i, t, &p.settled.payload_sha256))
            })
        })
        .collect()
}

/// Every stored task of the flush at once (the common case).
async fn apply_all(tx: &Transaction<'_>, submissions: &mut [Vec<Pending>]) -> Result<(), Failed> {
    let applied = {
        let tasks = tasks(submissions);
        if tasks.is_empty() {
            return Ok(());
        }
        let digested: Vec<(&Task, &[u8; 32])> = tasks.iter().map(|(_, _, t, d)| (*t, *d)).collect();
        let applied = match apply_stored(tx, &digested).await {
            Ok(applied) => applied,
            Err(e) if e.as_db_error().is_some() && !is_chain_collision(&e) => {
                return Err(Failed::Refused)
            }
            Err(e) => return Err(e.into()),
        };
        tasks
            .iter()
            .map(|(si, i, _, _)| (*si, *i))
            .zip(applied)
            .collect::<Vec<_>>()
    };
    for ((si, i), applied) in applied {
        settle(&mut submissions[si][i], applied);
    }
    Ok(())
}

/// Each stored task under a savepoint, in order: the first refused task of
/// a submission cuts it there.
async fn apply_one_by_one(
    tx: &Transaction<'_>,
    submissions: &mut [Vec<Pending>],
    written: &mut [Written],
) -> Result<(), Failed> {
    for (si, sub) in submissions.iter_mut().enumerate() {
        for (i, p) in sub.iter_mut().enumerate() {
            let Some(task) = &p.effects.apply else {
                continue;
            };
            tx.batch_execute("SAVEPOINT effect").await?;
            let applied = apply_stored(tx, &[(task, &p.settled.payload_sha256)]).await;
            match applied {
                Ok(mut applied) => {
                    tx.batch_execute("RELEASE SAVEPOINT effect").await?;
                    settle(p, applied.pop().unwrap_or(Applied::New));
                }
                Err(e) => match classify(&e) {
                    Refusal::Down => return Err(e.into()),
                    Refusal::Message(failure) => {
                        tx.batch_execute("ROLLBACK TO SAVEPOINT effect").await?;
                        written[si].refused = Some((i, failure));
                        break;
                    }
                },
            }
        }
    }
    Ok(())
}

/// A stored message's outcome, from what the ledger said.
fn settle(p: &mut Pending, applied: Applied) {
    let s = &mut p.settled;
    match applied {
        Applied::New | Applied::Redelivered => {}
        Applied::Already => s.outcome = Outcome::AlreadyApplied,
        Applied::Conflict(digest) => {
            s.failures.push(AttemptFailure {
                attempt: s.failures.len() as u32 + 1,
                at: Utc::now(),
                failure: Failure::id_conflict(s.message_id, &digest, &s.payload_sha256),
            });
            s.outcome = Outcome::DeadLettered;
            s.at = Utc::now();
        }
    }
}

/// Applies `tasks`: ledger rows for all, effects for the ids that are new
/// (the first copy of an id repeated within the flush counts once); for
/// each, in order, whether this delivery applied it.
async fn apply_stored(
    tx: &Transaction<'_>,
    tasks: &[(&Task, &[u8; 32])],
) -> Result<Vec<Applied>, tokio_postgres::Error> {
    let ledger: Vec<LedgerRow<'_>> = tasks
        .iter()
        .map(|(t, digest)| LedgerRow {
            message_id: t.message_id(),
            handler: t.kind().name(),
            payload_sha256: digest,
        })
        .collect();
    let mut seen = HashSet::with_capacity(tasks.len());
    let first: Vec<bool> = tasks
        .iter()
        .map(|(t, _)| seen.insert(t.message_id()))
        .collect();
    let new_ids: HashSet<Uuid> = effects::insert_ledger(tx, &ledger)
        .await?
        .into_iter()
        .collect();
    let fresh = |i: usize, t: &Task| first[i] && new_ids.contains(&t.message_id());
    let new: Vec<&Task> = tasks
        .iter()
        .enumerate()
        .filter(|(i, (t, _))| fresh(*i, t))
        .map(|(_, (t, _))| *t)
        .collect();
    registry::write(tx, &new).await?;
    let repeats: Vec<Uuid> = tasks
        .iter()
        .enumerate()
        .filter(|(i, (t, _))| !fresh(*i, t))
        .map(|(_, (t, _))| t.message_id())
        .collect();
    let digests = effects::applied_digests(tx, &repeats).await?;
    Ok(tasks
        .iter()
        .enumerate()
        .map(|(i, (t, digest))| {
            if fresh(i, t) {
                Applied::New
            } else {
                let applied = digests.get(&t.message_id()).and_then(Option::as_ref);
                repeat(applied, digest)
            }
        })
        .collect())
}

/// Of `ids`, those that already have a MESSAGE_PROCESSED entry.
async fn processed(
    tx: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashSet<Uuid>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = tx
        .query(
            "SELECT DISTINCT message_id FROM message_audit \
             WHERE message_id = ANY($1) AND status = $2",
            &[&ids, &PROCESSED],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, Uuid>(0)).collect())
}
