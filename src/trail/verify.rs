//! `audit verify`: recomputes every chain from its first entry (or from a
//! trusted checkpoint), checks sequence numbers, payload digests and
//! checkpoints, and names the first break of each chain with its kind.
//!
//! It streams: each chain is read through a server-side portal in batches,
//! ordered by the unique (chain_id, chain_seq) index, and only the last
//! entry or two are kept, so memory stays flat however long the trail.
//!
//! How a break is told apart, at the first entry F whose hash does not
//! follow (P is the hash before it, e its expected sequence number):
//! - a sequence number skipped: *deleted*; one seen twice: *inserted*;
//! - F is valid one place earlier, over the hash before P: the entry
//!   before it was *inserted* (and the rest renumbered);
//! - the next entry follows F's stored hash: F was *edited*;
//! - the next entry is valid at e over P: F and it were *reordered* if F is
//!   valid right after it, else F was *inserted*;
//! - a later entry is valid at e over P: *reordered*;
//! - a payload that does not match its digest: *edited*;
//! - the chain ends before a checkpoint's sequence: *deleted*;
//!   a checkpoint's hash differs from the recomputed one: *checkpoint mismatch*;
//! - otherwise (F's fields give no hash found anywhere): *edited*.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Row};

use crate::trail::chain::{Fields, Hasher, GENESIS};
use crate::trail::checkpoint::{Checkpoint, Verifier};

/// Entries fetched per round trip.
const BATCH: i32 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading the audit trail failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no connection to read the audit trail with")]
    NoConnection,
}

/// What kind of break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    Edited,
    Deleted,
    Inserted,
    Reordered,
    CheckpointMismatch,
}

impl std::fmt::Display for BreakKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BreakKind::Edited => "edited",
            BreakKind::Deleted => "deleted",
            BreakKind::Inserted => "inserted",
            BreakKind::Reordered => "reordered",
            BreakKind::CheckpointMismatch => "checkpoint mismatch",
        })
    }
}

/// The first break of a chain.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Break {
    /// The sequence number where the chain stops holding.
    pub seq: i64,
    pub kind: BreakKind,
    pub detail: String,
}

/// One chain's result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChainReport {
    pub chain: String,
    /// Entries read (after a break too: they are counted, not trusted).
    pub entries: u64,
    /// Verification started after this sequence number (a trusted
    /// checkpoint's), 0 from the start.
    pub started_after: i64,
    /// The last sequence number read.
    pub last_seq: i64,
    /// Checkpoints whose sequence was reached and whose hash matched.
    pub checkpoints_matched: u64,
    #[serde(rename = "break")]
    pub breach: Option<Break>,
}

/// The whole result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = VerifyReport)]
pub struct Report {
    /// Every chain and checkpoint holds, and every chain was reached.
    pub holds: bool,
    /// False when the time budget ran out first (HTTP); the chains not
    /// reached are missing from `chains`.
    pub complete: bool,
    pub entries_checked: u64,
    pub seconds: f64,
    pub entries_per_second: f64,
    pub chains: Vec<ChainReport>,
    /// Rows of `audit_log` without a chain (written with audit.chain =
    /// false, or inserted by hand): not covered by any hash.
    pub unchained_entries: i64,
    /// Rows of the legacy `message_audit_v1` table, written before chaining
    /// existed: not covered by any hash.
    pub legacy_entries: i64,
    /// Checkpoints the verifier key refused (rows of `audit_checkpoints`,
    /// lines of the checkpoint file).
    pub refused_checkpoints: Vec<String>,
}

impl Report {
    /// Everything checked holds.
    pub fn holds(&self) -> bool {
        self.complete
            && self.refused_checkpoints.is_empty()
            && self.chains.iter().all(|c| c.breach.is_none())
    }
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
}

/// A checkpoint's claim about one sequence number.
#[derive(Debug, Clone)]
struct Anchor {
    hash: [u8; 32],
    source: &'static str,
}

const COLUMNS: &str = "chain_seq, entry_hash, message_id, status, topic, kafka_partition, \
    kafka_offset, message_key, event_type, attempt, error, consumer_group, occurred_at, detail, \
    received_at, received_detail, key_bytes, headers, kafka_timestamp, payload_sha256, payload";

/// Verifies every chain.
///
/// Chains are independent, so they are read concurrently, one connection
/// each from `clients` at a time: PostgreSQL's side of the read (index scan,
/// heap fetches, detoasting payloads) is most of the cost, and one
/// connection keeps one core busy at most.
pub async fn verify(clients: &mut [Client], options: &Options) -> Result<Report, VerifyError> {
    let (client, _) = clients.split_first_mut().ok_or(VerifyError::NoConnection)?;
    let started = Instant::now();
    let chains: Vec<(i32, String)> = client
        .query(
            "SELECT chain_id, name FROM audit_chains ORDER BY chain_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
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
    };
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
        });
    }
    let runs = clients
        .iter_mut()
        .zip(shares)
        .map(|(client, share)| verify_share(client, share, options.deadline));
    let mut done: Vec<(usize, ChainReport, bool)> = futures::future::try_join_all(runs)
        .await?
        .into_iter()
        .flatten()
        .collect();
    done.sort_by_key(|(order, _, _)| *order);
    report.complete = done.len() == chains.len() && done.iter().all(|(_, _, f)| *f);
    for (_, chain, _) in done {
        report.entries_checked += chain.entries;
        report.chains.push(chain);
    }
    if report.complete {
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
}

/// Verifies a connection's share of the chains, in order, until the
/// deadline; a chain cut short is reported with `false`.
async fn verify_share(
    client: &mut Client,
    share: Vec<Job<'_>>,
    deadline: Option<Instant>,
) -> Result<Vec<(usize, ChainReport, bool)>, VerifyError> {
    let mut done = Vec::with_capacity(share.len());
    for job in share {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let (chain, finished) = verify_chain(
            client,
            job.chain_id,
            job.name,
            job.start,
            job.anchors,
            deadline,
        )
        .await?;
        done.push((job.order, chain, finished));
        if !finished {
            break;
        }
    }
    Ok(done)
}

/// Reads one chain through a portal; false when the deadline cut it short.
async fn verify_chain(
    client: &mut Client,
    chain_id: i32,
    name: &str,
    start: Option<(i64, [u8; 32])>,
    anchors: BTreeMap<i64, Anchor>,
    deadline: Option<Instant>,
) -> Result<(ChainReport, bool), VerifyError> {
    let after = start.map_or(0, |(seq, _)| seq);
    let mut check = ChainCheck::new(name, start, anchors);
    let tx = client.transaction().await?;
    let statement = tx
        .prepare(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE chain_id = $1 AND chain_seq > $2 ORDER BY chain_seq"
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
            check.push(row);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            finished = false;
            break;
        }
    }
    drop(portal);
    tx.rollback().await?;
    Ok((check.finish(finished), finished))
}

/// A row's JSON columns, decoded once.
struct Decoded<'r> {
    row: &'r Row,
    seq: i64,
    stored: [u8; 32],
    detail: Option<serde_json::Value>,
    received_detail: Option<serde_json::Value>,
    headers: Option<serde_json::Value>,
}

impl<'r> Decoded<'r> {
    fn new(row: &'r Row) -> Decoded<'r> {
        Decoded {
            row,
            seq: row.get(0),
            // A stored hash of the wrong length matches nothing.
            stored: row
                .get::<_, Option<&[u8]>>(1)
                .and_then(|h| h.try_into().ok())
                .unwrap_or([0xff; 32]),
            detail: row.get(13),
            received_detail: row.get(15),
            headers: row.get(17),
        }
    }

    fn fields<'s>(&'s self, chain: &'s str, seq: i64) -> Fields<'s> {
        let r = self.row;
        Fields {
            chain,
            seq,
            message_id: r.get(2),
            status: r.get(3),
            topic: r.get(4),
            kafka_partition: r.get(5),
            kafka_offset: r.get(6),
            message_key: r.get(7),
            event_type: r.get(8),
            attempt: r.get(9),
            error: r.get(10),
            consumer_group: r.get(11),
            occurred_at: r.get(12),
            detail: self.detail.as_ref(),
            received_at: r.get(14),
            received_detail: self.received_detail.as_ref(),
            key_bytes: r.get(16),
            headers: self.headers.as_ref(),
            kafka_timestamp: r.get(18),
            payload_sha256: r.get(19),
        }
    }

    /// The payload, if kept, no longer matches the digest the hash covers.
    fn payload_replaced(&self) -> bool {
        match self.row.get::<_, Option<&[u8]>>(20) {
            None => false,
            Some(payload) => {
                let digest: [u8; 32] = Sha256::digest(payload).into();
                self.row.get::<_, Option<&[u8]>>(19) != Some(&digest[..])
            }
        }
    }
}

enum State {
    Holding,
    /// F (kept) does not follow; the next entry decides why.
    Pending(Row),
    /// Looking further on for the entry that belongs at `e`.
    Searching,
    Broken(Break),
}

/// One chain's running check.
struct ChainCheck<'a> {
    name: &'a str,
    hasher: Hasher,
    /// The next sequence number expected, and the hashes before it.
    expected: i64,
    prev: [u8; 32],
    prev_prev: Option<[u8; 32]>,
    anchors: BTreeMap<i64, Anchor>,
    state: State,
    report: ChainReport,
}

impl<'a> ChainCheck<'a> {
    fn new(
        name: &'a str,
        start: Option<(i64, [u8; 32])>,
        anchors: BTreeMap<i64, Anchor>,
    ) -> ChainCheck<'a> {
        let (after, prev) = start.unwrap_or((0, GENESIS));
        ChainCheck {
            name,
            hasher: Hasher::default(),
            expected: after + 1,
            prev,
            prev_prev: None,
            anchors,
            state: State::Holding,
            report: ChainReport {
                chain: name.to_owned(),
                entries: 0,
                started_after: after,
                last_seq: after,
                checkpoints_matched: 0,
                breach: None,
            },
        }
    }

    fn valid_at(&mut self, entry: &Decoded<'_>, seq: i64, prev: &[u8; 32]) -> bool {
        self.hasher.hash(&entry.fields(self.name, seq), prev) == entry.stored
    }

    fn push(&mut self, row: Row) {
        self.report.entries += 1;
        let entry = Decoded::new(&row);
        self.report.last_seq = entry.seq;
        let e = self.expected;
        let prev = self.prev;
        match std::mem::replace(&mut self.state, State::Holding) {
            State::Broken(b) => self.state = State::Broken(b),
            State::Searching => {
                self.state = if self.valid_at(&entry, e, &prev) {
                    State::Broken(Break {
                        seq: e,
                        kind: BreakKind::Reordered,
                        detail: format!(
                            "the entry that belongs at seq {e} is at seq {}",
                            entry.seq
                        ),
                    })
                } else {
                    State::Searching
                };
            }
            State::Pending(f_row) => {
                let f = Decoded::new(&f_row);
                self.state = if entry.seq == e + 1 && self.valid_at(&entry, e + 1, &f.stored) {
                    broken(
                        e,
                        BreakKind::Edited,
                        "its fields no longer give its stored hash",
                    )
                } else if self.valid_at(&entry, e, &prev) {
                    if self.valid_at(&f, e + 1, &entry.stored) {
                        broken(
                            e,
                            BreakKind::Reordered,
                            &format!("seq {e} and {} are swapped", e + 1),
                        )
                    } else {
                        broken(
                            e,
                            BreakKind::Inserted,
                            "this entry is not part of the chain: the ones after it were renumbered",
                        )
                    }
                } else {
                    State::Searching
                };
            }
            State::Holding => {
                self.state = match self.check_next(&entry) {
                    Some(state) => state,
                    None => {
                        drop(entry);
                        State::Pending(row)
                    }
                }
            }
        }
    }

    /// The usual case: the next entry in order. `None`: it does not follow,
    /// and the next entry decides why.
    fn check_next(&mut self, entry: &Decoded<'_>) -> Option<State> {
        let e = self.expected;
        if entry.seq < e {
            return Some(broken(
                entry.seq,
                BreakKind::Inserted,
                &format!("seq {} appears twice", entry.seq),
            ));
        }
        if entry.seq > e {
            let detail = if entry.seq == e + 1 {
                format!("entry {e} is missing")
            } else {
                format!("entries {e} to {} are missing", entry.seq - 1)
            };
            return Some(broken(e, BreakKind::Deleted, &detail));
        }
        if entry.payload_replaced() {
            return Some(broken(
                e,
                BreakKind::Edited,
                "its payload does not match its payload_sha256",
            ));
        }
        let prev = self.prev;
        if self.valid_at(entry, e, &prev) {
            if let Some(anchor) = self.anchors.get(&e) {
                if anchor.hash != entry.stored {
                    return Some(broken(
                        e,
                        BreakKind::CheckpointMismatch,
                        &format!(
                            "the chain holds, but {} signed another hash at this seq",
                            anchor.source
                        ),
                    ));
                }
                self.report.checkpoints_matched += 1;
            }
            self.prev_prev = Some(self.prev);
            self.prev = entry.stored;
            self.expected += 1;
            return Some(State::Holding);
        }
        if let Some(pp) = self.prev_prev {
            if self.valid_at(entry, e - 1, &pp) {
                return Some(broken(
                    e - 1,
                    BreakKind::Inserted,
                    "this entry is not part of the chain: the ones after it were renumbered",
                ));
            }
        }
        None
    }

    fn finish(mut self, finished: bool) -> ChainReport {
        let e = self.expected;
        let breach = match std::mem::replace(&mut self.state, State::Holding) {
            State::Broken(b) => Some(b),
            State::Pending(_) | State::Searching => Some(Break {
                seq: e,
                kind: BreakKind::Edited,
                detail: "its fields no longer give its stored hash".into(),
            }),
            State::Holding if finished => {
                self.anchors.range(e..).next_back().map(|(seq, a)| Break {
                    seq: e,
                    kind: BreakKind::Deleted,
                    detail: format!(
                        "the chain ends at seq {}, but {} covers it up to seq {seq}",
                        e - 1,
                        a.source
                    ),
                })
            }
            State::Holding => None,
        };
        self.report.breach = breach;
        self.report
    }
}

fn broken(seq: i64, kind: BreakKind, detail: &str) -> State {
    State::Broken(Break {
        seq,
        kind,
        detail: detail.to_owned(),
    })
}

/// How long a budget of `ms` milliseconds lasts from now (HTTP).
pub fn deadline_in(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}
