//! `audit verify`: recomputes every chain from its first entry (or from a
//! trusted checkpoint), checks sequence numbers, payload digests and
//! checkpoints, and names the first break of each chain with its kind.
//!
//! It streams: each chain is read through a server-side portal in batches,
//! ordered by the unique (chain_id, chain_seq) index, and only the last
//! entry or two are kept, so memory stays flat however long the trail.
//!
//! How a break is told apart is in `chain_check.rs`; rows outside every
//! chain that custodian did not write are found by `strays.rs`; the report
//! types are in `report.rs`.

pub mod archived;
mod chain_check;
mod records;
mod report;
mod strays;

use chain_check::ChainCheck;
pub use report::{Break, BreakKind, ChainReport, Report, Stray, StrayKind};

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::trail::checkpoint::{Checkpoint, Verifier};
use crate::trail::entry::Entry;

/// Entries fetched per round trip.
const BATCH: i32 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading the audit trail failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no connection to read the audit trail with")]
    NoConnection,
}

/// What to check against.
#[derive(Debug, Default)]
pub struct Options {
    /// Checkpoints from a trusted file, already opened with the verifier key.
    pub trusted: Vec<Checkpoint>,
    /// Start each chain at its latest trusted checkpoint instead of at 1.
    pub from_checkpoints: bool,
    /// Checks the lines in `audit_checkpoints`; without it their hashes are
    /// still compared, unauthenticated.
    pub verifier: Option<Verifier>,
    /// Stop (with `complete: false`) past this instant.
    pub deadline: Option<Instant>,
    /// The archived periods, read before the live partitions.
    pub archive: Option<archived::Archive>,
}

/// A checkpoint's claim about one sequence number.
#[derive(Debug, Clone)]
pub(super) struct Anchor {
    pub(super) hash: [u8; 32],
    pub(super) source: &'static str,
}

/// Verifies every chain.
///
/// Chains are independent, so they are read concurrently, one connection
/// each from `clients` at a time: PostgreSQL's side of the read (index scan,
/// heap fetches, detoasting payloads) is most of the cost, and one
/// connection keeps one core busy at most.
pub async fn verify(clients: &mut [Client], options: &Options) -> Result<Report, VerifyError> {
    let (client, _) = clients.split_first_mut().ok_or(VerifyError::NoConnection)?;
    let started = Instant::now();
    let chains: Vec<(i32, String)> = pairs(
        client,
        "SELECT chain_id, name FROM audit_chains ORDER BY chain_id",
    )
    .await?;
    let mut anchors: HashMap<String, BTreeMap<i64, Anchor>> = HashMap::new();
    for c in &options.trusted {
        anchors.entry(c.chain.clone()).or_default().insert(
            c.seq,
            Anchor {
                hash: c.hash,
                source: "the checkpoint file",
            },
        );
    }
    let mut refused = Vec::new();
    let stored = client
        .query(
            "SELECT c.name, k.chain_seq, k.head_hash, k.line FROM audit_checkpoints k \
             JOIN audit_chains c USING (chain_id) ORDER BY k.id",
            &[],
        )
        .await?;
    for r in &stored {
        let (chain, seq, hash, line): (String, i64, &[u8], String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let opened = options.verifier.as_ref().map(|v| v.open(&line));
        match opened {
            Some(Err(e)) => refused.push(format!("{chain}@{seq}: {e}")),
            Some(Ok(c)) if c.chain != chain || c.seq != seq || c.hash[..] != *hash => refused.push(
                format!("{chain}@{seq}: the row does not match its signed line"),
            ),
            _ => {
                if let Ok(hash) = <[u8; 32]>::try_from(hash) {
                    // A trusted claim about the same sequence wins.
                    anchors
                        .entry(chain)
                        .or_default()
                        .entry(seq)
                        .or_insert(Anchor {
                            hash,
                            source: "audit_checkpoints",
                        });
                }
            }
        }
    }

    let (strays, stray_entries) = strays::find(client).await?;
    let facts = records::Facts::read(client).await?;
    let mut report = Report {
        holds: false,
        complete: true,
        entries_checked: 0,
        seconds: 0.0,
        entries_per_second: 0.0,
        chains: Vec::new(),
        unchained_entries: count(
            client,
            "SELECT count(*) FROM audit_log WHERE chain_id IS NULL",
        )
        .await?,
        legacy_entries: count(client, "SELECT count(*) FROM message_audit_v1").await?,
        refused_checkpoints: refused,
        strays,
        stray_entries,
        checkpoint_file_error: None,
        archived_periods: options.archive.as_ref().map_or(0, |a| {
            a.periods.iter().filter(|p| p.deleted.is_none()).count()
        }),
        erased_entries: 0,
        unrecorded: Vec::new(),
        deleted_by_retention: options
            .archive
            .as_ref()
            .map(archived::Archive::deleted)
            .unwrap_or_default(),
        archived_entries: options.archive.as_ref().map_or(0, |a| a.entries),
        archive_problems: options
            .archive
            .as_ref()
            .map(|a| a.problems.clone())
            .unwrap_or_default(),
    };
    if let Some(archive) = &options.archive {
        for name in archive.chains() {
            if !chains.iter().any(|(_, known)| *known == name) {
                report.archive_problems.push(format!(
                    "the archive holds chain {name}, which audit_chains does not"
                ));
            }
        }
    }
    // Each chain with what it starts from, dealt round-robin to the
    // connections; each connection works through its share in order.
    let mut shares: Vec<Vec<Job>> = (0..clients.len()).map(|_| Vec::new()).collect();
    for (i, (chain_id, name)) in chains.iter().enumerate() {
        let start = if options.from_checkpoints {
            options
                .trusted
                .iter()
                .filter(|c| &c.chain == name)
                .max_by_key(|c| c.seq)
                .map(|c| (c.seq, c.hash))
        } else {
            None
        };
        shares[i % clients.len()].push(Job {
            order: i,
            chain_id: *chain_id,
            name,
            start,
            anchors: anchors.remove(name).unwrap_or_default(),
            segments: options
                .archive
                .as_ref()
                .map(|a| a.segments_of(name))
                .unwrap_or_default(),
        });
    }
    let runs = clients
        .iter_mut()
        .zip(shares)
        .map(|(client, share)| verify_share(client, share, options.deadline));
    let mut done: Vec<Done> = futures::future::try_join_all(runs)
        .await?
        .into_iter()
        .flatten()
        .collect();
    done.sort_by_key(|d| d.order);
    report.complete = done.len() == chains.len() && done.iter().all(|d| d.finished);
    let mut records = records::Records::default();
    for d in done {
        records.merge(d.records);
        report.entries_checked += d.chain.entries;
        report.archived_entries += d.archived;
        report.erased_entries += d.erased;
        report.archive_problems.extend(d.archive_problems);
        report.chains.push(d.chain);
    }
    if report.complete {
        if !options.from_checkpoints {
            let client = clients.first().ok_or(VerifyError::NoConnection)?;
            let horizon = options
                .archive
                .as_ref()
                .and_then(archived::Archive::deleted_until);
            report.unrecorded = records.unrecorded(client, &facts, horizon).await?;
        }
        // Checkpoints of chains the database no longer has at all.
        for (name, anchors) in anchors {
            if let Some((seq, anchor)) = anchors.iter().next_back() {
                report.chains.push(ChainReport {
                    chain: name,
                    entries: 0,
                    started_after: 0,
                    last_seq: 0,
                    checkpoints_matched: 0,
                    breach: Some(Break {
                        seq: 1,
                        kind: BreakKind::Deleted,
                        detail: format!(
                            "the chain is gone; {} covers it up to seq {seq}",
                            anchor.source
                        ),
                    }),
                });
            }
        }
    }
    let elapsed = started.elapsed();
    report.seconds = elapsed.as_secs_f64();
    report.entries_per_second = report.entries_checked as f64 / elapsed.as_secs_f64().max(1e-9);
    report.holds = report.holds();
    Ok(report)
}

/// The two columns of every row `sql` answers.
async fn pairs<A, B>(client: &Client, sql: &str) -> Result<Vec<(A, B)>, tokio_postgres::Error>
where
    A: for<'a> tokio_postgres::types::FromSql<'a>,
    B: for<'a> tokio_postgres::types::FromSql<'a>,
{
    let rows = client.query(sql, &[]).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

async fn count(client: &Client, sql: &str) -> Result<i64, tokio_postgres::Error> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// One chain to verify.
struct Job<'a> {
    /// Its place in the report.
    order: usize,
    chain_id: i32,
    name: &'a str,
    start: Option<(i64, [u8; 32])>,
    anchors: BTreeMap<i64, Anchor>,
    /// Its archived files, oldest first, with their store.
    segments: Vec<archived::Segment>,
}

/// One chain verified.
struct Done {
    order: usize,
    chain: ChainReport,
    /// False when the deadline cut it short.
    finished: bool,
    archived: u64,
    erased: u64,
    records: records::Records,
    archive_problems: Vec<String>,
}

/// Verifies a connection's share of the chains, in order, until the
/// deadline.
async fn verify_share(
    client: &mut Client,
    share: Vec<Job<'_>>,
    deadline: Option<Instant>,
) -> Result<Vec<Done>, VerifyError> {
    let mut done = Vec::with_capacity(share.len());
    for job in share {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let chain = verify_chain(client, job, deadline).await?;
        let finished = chain.finished;
        done.push(chain);
        if !finished {
            break;
        }
    }
    Ok(done)
}

/// Reads one chain: its archived files, then the live partitions through
/// a portal.
async fn verify_chain(
    client: &mut Client,
    job: Job<'_>,
    deadline: Option<Instant>,
) -> Result<Done, VerifyError> {
    let Job {
        order,
        chain_id,
        name,
        start,
        anchors,
        segments,
    } = job;
    let after = start.map_or(0, |(seq, _)| seq);
    let mut check = ChainCheck::new(name, start, anchors);
    let mut archived = 0;
    let mut erased = 0;
    let mut records = records::Records::default();
    let mut archive_problems = Vec::new();
    for segment in segments {
        match segment {
            archived::Segment::Deleted {
                partition,
                first_seq,
                last_seq,
                last_hash,
            } if last_seq > after => check.skip_deleted(first_seq, last_seq, last_hash, &partition),
            archived::Segment::Deleted { .. } => {}
            archived::Segment::File(target, file) if file.last_seq.is_none_or(|l| l > after) => {
                let (entries, problems) = crate::trail::archive::read_file(&target, &file).await;
                archive_problems.extend(problems);
                for entry in entries.into_iter().flatten().filter(|e| e.seq() > after) {
                    archived += 1;
                    erased += u64::from(entry.erased_digest.is_some());
                    records.see(&entry);
                    check.push(entry);
                }
            }
            archived::Segment::File(..) => {}
        }
    }
    let tx = client.transaction().await?;
    let statement = tx
        .prepare(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE chain_id = $1 AND chain_seq > $2 ORDER BY chain_seq",
            COLUMNS = crate::trail::entry::COLUMNS
        ))
        .await?;
    let portal = tx.bind(&statement, &[&chain_id, &after]).await?;
    let mut finished = true;
    loop {
        let rows = tx.query_portal(&portal, BATCH).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let entry = Entry::from_row(&row, Some(name))?;
            erased += u64::from(entry.erased_digest.is_some());
            records.see(&entry);
            check.push(entry);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            finished = false;
            break;
        }
    }
    drop(portal);
    tx.rollback().await?;
    Ok(Done {
        order,
        chain: check.finish(finished),
        finished,
        archived,
        erased,
        records,
        archive_problems,
    })
}

/// How long a budget of `ms` milliseconds lasts from now (HTTP).
pub fn deadline_in(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}
