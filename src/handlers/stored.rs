//! The stored path: the kinds whose effect is written in the same
//! PostgreSQL transaction as their ledger rows (transactions, domain,
//! audit).
//!
//! A batch is applied in one database transaction: first the message ids go
//! into the `applied_messages` ledger (`ON CONFLICT DO NOTHING RETURNING`),
//! and only the ids that were new are applied, each by its kind. The same
//! event delivered twice therefore changes nothing the second time. A
//! dead-lettered message never reaches the ledger, so it can be replayed.
//!
//! If the batch fails and PostgreSQL is unreachable, the processor waits
//! (capped backoff) with its mailbox blocked, so the partitions feeding it
//! pause; nothing is acknowledged meanwhile, so no offset moves. If
//! PostgreSQL answered, the events are applied one by one, in offset order,
//! each retried in place on a transient failure (`retry.*`), so only the
//! events the database keeps refusing are dead-lettered.

use std::collections::{HashMap, HashSet};

use diesel_async::AsyncConnection;
use tracing::Instrument;
use uuid::Uuid;

use super::{abandoned, audit, domain, message_span, transactions, Attempted, Context};
use crate::handler_kind::HandlerKind;
use crate::pipeline::transaction::TransactionChange;
use crate::pipeline::{Item, Task};
use crate::retry::{self, TryError};
use crate::store::projection::{self, Applied, LedgerRow};
use crate::store::{PgPool, StoreError};
use crate::telemetry::events::{Emit, ProjectionWritten};
use crate::wait::{until_back, Down, Patience};

/// A task and the SHA-256 of the payload it came from.
pub type Digested<'a> = (&'a Task, &'a [u8; 32]);

/// Applies a run of stored tasks: the batch in one transaction, or one by
/// one with retries when PostgreSQL refuses the batch.
pub(super) async fn apply(cx: &Context, run: &[(&Task, &Item)]) -> Vec<Attempted> {
    if run.is_empty() {
        return Vec::new();
    }
    let changes: Vec<Digested<'_>> = run
        .iter()
        .map(|(task, item)| (*task, &item.payload_sha256))
        .collect();
    let changes = &changes[..];
    let batch = until_back(
        cx.wait,
        Patience::UntilRevoked(&cx.revoked),
        async || match write(&cx.pool, changes).await {
            Ok(applied) => Ok(Some(applied)),
            Err(error) => match projection::classify(&cx.pool, &error).await {
                TryError::Unavailable { dependency, error } => Err(Down::new(dependency, error)),
                TryError::Failed(_) => Ok(None),
            },
        },
    )
    .await;
    match batch {
        Ok(Some(applied)) => {
            return applied.into_iter().map(|a| (Ok(a), Vec::new())).collect();
        }
        Ok(None) => {}
        Err(_) => return abandoned(run.len()),
    }
    // PostgreSQL answers but refused the batch: one event at a time, in
    // offset order, each with its own attempts.
    let mut results = Vec::with_capacity(changes.len());
    for (change, (_, item)) in changes.iter().zip(run) {
        let one = std::slice::from_ref(change);
        let topic = &*item.envelope.topic;
        let attempted = retry::run(&cx.retry, cx.wait, topic, &cx.revoked, || async {
            match write(&cx.pool, one).await {
                Ok(mut applied) => Ok(applied.pop().unwrap_or(Applied::New)),
                Err(error) => Err(projection::classify(&cx.pool, &error).await),
            }
        })
        .instrument(message_span(item))
        .await;
        results.push(attempted);
    }
    results
}

/// Applies `tasks` in one database transaction, returning for each (in
/// order) whether this delivery applied it.
pub async fn write(pool: &PgPool, tasks: &[Digested<'_>]) -> Result<Vec<Applied>, StoreError> {
    let started = std::time::Instant::now();
    let applied = write_in_transaction(pool, tasks).await;
    ProjectionWritten {
        elapsed: started.elapsed(),
    }
    .emit();
    applied
}

async fn write_in_transaction(
    pool: &PgPool,
    tasks: &[Digested<'_>],
) -> Result<Vec<Applied>, StoreError> {
    let changes: Vec<&Task> = tasks.iter().map(|(task, _)| *task).collect();
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = pool
        .get()
        .await
        .map_err(|e| StoreError::Pool(e.to_string()))?;
    let ledger: Vec<LedgerRow<'_>> = tasks
        .iter()
        .map(|(c, digest)| LedgerRow {
            message_id: c.message_id(),
            handler: c.kind().name(),
            payload_sha256: digest,
        })
        .collect();
    // A message delivered twice within one batch counts once.
    let mut ids_seen = HashSet::with_capacity(changes.len());
    let first: Vec<bool> = changes
        .iter()
        .map(|c| ids_seen.insert(c.message_id()))
        .collect();
    let first = &first;
    let changes = &changes;
    let (new_ids, repeated) = conn
        .transaction(async |conn| {
            let mut new_ids: HashSet<Uuid> = HashSet::with_capacity(ledger.len());
            new_ids.extend(projection::insert_ledger(conn, &ledger).await?);
            let fresh = changes
                .iter()
                .enumerate()
                .filter(|(i, c)| new_ids.contains(&c.message_id()) && first[*i])
                .map(|(_, c)| *c);
            let mut folded: Vec<&TransactionChange> = Vec::with_capacity(changes.len());
            for task in fresh {
                match task {
                    Task::Transaction(change) => folded.push(change),
                    Task::Domain(change) => domain::apply(conn, change).await?,
                    Task::Pass {
                        message_id,
                        handler,
                    } => match handler.kind {
                        HandlerKind::Audit => audit::apply(conn, *message_id).await?,
                        // Delivered already (see `http`): the ledger row is
                        // the whole record of it.
                        HandlerKind::Http => {}
                        // Their payloads decode to tasks of their own.
                        HandlerKind::Transactions | HandlerKind::Domain => {}
                    },
                }
            }
            transactions::apply(conn, &folded).await?;
            // What the repeats were applied with (this batch's first copies
            // included): rare, so only then a second statement.
            let repeats: Vec<Uuid> = changes
                .iter()
                .enumerate()
                .filter(|(i, c)| !(first[*i] && new_ids.contains(&c.message_id())))
                .map(|(_, c)| c.message_id())
                .collect();
            let repeated = if repeats.is_empty() {
                HashMap::new()
            } else {
                projection::applied_digests(conn, &repeats).await?
            };
            Ok::<_, diesel::result::Error>((new_ids, repeated))
        })
        .await?;
    Ok(tasks
        .iter()
        .zip(first)
        .map(|((c, digest), first)| {
            let id = c.message_id();
            if *first && new_ids.contains(&id) {
                Applied::New
            } else {
                projection::repeat(repeated.get(&id).and_then(Option::as_ref), digest)
            }
        })
        .collect())
}
