//! Sealing a period of the audit trail: its partition stops taking
//! entries for good, and a signed seal states what it holds, per chain:
//! the first and last sequence number and hash, the entries, and the
//! latest signed checkpoint it extends. The seal goes to `audit_seals` and
//! to `audit.checkpoint_file`, as a signed note like a checkpoint's.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::checkpoint::{self, Signer, Verifier};
use super::partitions::{self, Partition};

use super::checkpoint::SEAL_PREFIX as NOTE_PREFIX;

/// One chain's run in a sealed partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainRange {
    pub chain: String,
    pub first_seq: i64,
    #[serde(serialize_with = "base64")]
    pub first_hash: [u8; 32],
    pub last_seq: i64,
    #[serde(serialize_with = "base64")]
    pub last_hash: [u8; 32],
    pub entries: i64,
    /// The latest signed checkpoint at or before `last_seq`: (seq, hash).
    #[serde(skip)]
    pub checkpoint: Option<(i64, [u8; 32])>,
}

fn base64<S: serde::Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&B64.encode(hash))
}

/// What a sealed partition holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seal {
    pub origin: String,
    pub partition: String,
    pub from: Option<DateTime<Utc>>,
    pub to: DateTime<Utc>,
    /// Every entry, chained or not.
    pub entries: i64,
    pub unchained: i64,
    pub chains: Vec<ChainRange>,
    pub sealed_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("reading or sealing the audit trail failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("sealing needs a signing key (audit.signing_key or audit.signing_key_file)")]
    NoKey,
    #[error("{partition} cannot be sealed: {reason}")]
    Broken { partition: String, reason: String },
    #[error("sealed {partition}, but appending its seal to {path} failed: {reason}")]
    File {
        partition: String,
        path: String,
        reason: String,
    },
    #[error("not a seal: {0}")]
    Malformed(String),
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Seal {
    /// The note the signature covers: no line holds a space (chain names
    /// and topics cannot), one line per chain.
    pub fn note(&self) -> String {
        let mut note = format!(
            "{}\n{NOTE_PREFIX}{}\nfrom={}\nto={}\nentries={}\nunchained={}\n",
            self.origin,
            self.partition,
            self.from.map_or_else(|| "-".to_owned(), time),
            time(self.to),
            self.entries,
            self.unchained
        );
        for c in &self.chains {
            let (cseq, chash) = match c.checkpoint {
                Some((seq, hash)) => (seq.to_string(), B64.encode(hash)),
                None => ("-".to_owned(), "-".to_owned()),
            };
            note.push_str(&format!(
                "{},{},{},{},{},{},{cseq},{chash}\n",
                c.chain,
                c.first_seq,
                B64.encode(c.first_hash),
                c.last_seq,
                B64.encode(c.last_hash),
                c.entries
            ));
        }
        note.push_str(&time(self.sealed_at));
        note.push('\n');
        note
    }

    /// Opens a signed seal line with `verifier`.
    pub fn open(line: &str, verifier: &Verifier) -> Result<Seal, SealError> {
        let lines = verifier
            .open_note(line)
            .map_err(|e| SealError::Malformed(e.to_string()))?;
        Seal::parse(&lines)
    }

    fn parse(lines: &[String]) -> Result<Seal, SealError> {
        let bad = |what: &str| SealError::Malformed(what.to_owned());
        let [origin, name, from, to, entries, unchained, rest @ ..] = lines else {
            return Err(bad("too few lines"));
        };
        let (chains, sealed_at) = match rest {
            [chains @ .., sealed_at] => (chains, sealed_at),
            [] => return Err(bad("no time")),
        };
        let stamp = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| bad("a time"))
        };
        let field = |line: &str, key: &str| {
            line.strip_prefix(key)
                .map(str::to_owned)
                .ok_or_else(|| bad(key))
        };
        let hash = |t: &str| -> Result<[u8; 32], SealError> {
            B64.decode(t)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| bad("a hash"))
        };
        let number = |t: &str| t.parse::<i64>().map_err(|_| bad("a number"));
        let from = field(from, "from=")?;
        let mut parsed = Vec::with_capacity(chains.len());
        for line in chains {
            let parts: Vec<&str> = line.split(',').collect();
            let [chain, first_seq, first_hash, last_seq, last_hash, entries, cseq, chash] =
                parts[..]
            else {
                return Err(bad("a chain line"));
            };
            parsed.push(ChainRange {
                chain: chain.to_owned(),
                first_seq: number(first_seq)?,
                first_hash: hash(first_hash)?,
                last_seq: number(last_seq)?,
                last_hash: hash(last_hash)?,
                entries: number(entries)?,
                checkpoint: if cseq == "-" {
                    None
                } else {
                    Some((number(cseq)?, hash(chash)?))
                },
            });
        }
        Ok(Seal {
            origin: origin.clone(),
            partition: name
                .strip_prefix(NOTE_PREFIX)
                .ok_or_else(|| bad("not a seal"))?
                .to_owned(),
            from: if from == "-" {
                None
            } else {
                Some(stamp(&from)?)
            },
            to: stamp(&field(to, "to=")?)?,
            entries: number(&field(entries, "entries=")?)?,
            unchained: number(&field(unchained, "unchained=")?)?,
            chains: parsed,
            sealed_at: stamp(sealed_at)?,
        })
    }

    /// The range of the chain named `chain`, if the partition holds any of it.
    pub fn chain(&self, chain: &str) -> Option<&ChainRange> {
        self.chains.iter().find(|c| c.chain == chain)
    }
}

/// Seals every partition that ended at or before `before` (and before
/// now) and is not sealed yet, oldest first; returns the seals written.
pub async fn seal_ended(
    client: &mut Client,
    signer: Option<&Signer>,
    origin: &str,
    before: DateTime<Utc>,
    file: Option<&Path>,
) -> Result<Vec<Seal>, SealError> {
    let signer = signer.ok_or(SealError::NoKey)?;
    if let Some(path) = file {
        append_missing(client, path).await?;
    }
    let now = Utc::now();
    let mut seals = Vec::new();
    for p in partitions::list(client).await? {
        if p.sealed_at.is_some() || p.dropped_at.is_some() || p.to > before || p.to > now {
            continue;
        }
        if let Some(seal) = seal_one(client, signer, origin, &p).await? {
            let line = signer.sign_note(&seal.note());
            if let Some(path) = file {
                checkpoint::append(path, std::slice::from_ref(&line)).map_err(|e| {
                    SealError::File {
                        partition: p.name.clone(),
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    }
                })?;
            }
            tracing::info!(partition = %p.name, entries = seal.entries, chains = seal.chains.len(), "audit partition sealed");
            seals.push(seal);
        }
    }
    Ok(seals)
}

/// Appends to the checkpoint file every recorded seal it lacks: a seal is
/// committed before its line is appended, so a crash between the two left
/// it only in `audit_seals`.
async fn append_missing(client: &Client, path: &Path) -> Result<(), SealError> {
    let rows = client
        .query(
            "SELECT partition_name, line FROM audit_seals ORDER BY id",
            &[],
        )
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let failed = |partition: String, e: std::io::Error| SealError::File {
        partition,
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(failed(rows[0].get(0), e)),
    };
    let present: std::collections::HashSet<&str> = text.lines().collect();
    for r in &rows {
        let line: String = r.get(1);
        if !present.contains(line.as_str()) {
            tracing::warn!(partition = %r.get::<_, String>(0), "a recorded seal was missing from the checkpoint file: appended");
            checkpoint::append(path, std::slice::from_ref(&line))
                .map_err(|e| failed(r.get(0), e))?;
        }
    }
    Ok(())
}

/// Seals one partition in one transaction: the partition refuses inserts
/// (waiting for every writer still in it), its chains' runs are read and
/// checked to be whole, and the signed seal is recorded. `None`: another
/// instance sealed it first.
async fn seal_one(
    client: &mut Client,
    signer: &Signer,
    origin: &str,
    p: &Partition,
) -> Result<Option<Seal>, SealError> {
    let tx = client.transaction().await?;
    let sealed: bool = tx
        .query_one("SELECT custodian_audit_partition_seal($1)", &[&p.name])
        .await?
        .get(0);
    if !sealed {
        return Ok(None);
    }
    let (lo, hi) = (p.lower(), p.to);
    let totals = tx
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE chain_id IS NULL) FROM audit_log \
              WHERE recorded_at >= $1 AND recorded_at < $2",
            &[&lo, &hi],
        )
        .await?;
    let rows = tx
        .query(
            "SELECT c.name, s.first_seq, s.last_seq, s.entries, f.entry_hash, l.entry_hash, \
                    k.chain_seq, k.head_hash \
               FROM (SELECT chain_id, min(chain_seq) AS first_seq, max(chain_seq) AS last_seq, \
                            count(*) AS entries \
                       FROM audit_log WHERE recorded_at >= $1 AND recorded_at < $2 \
                        AND chain_id IS NOT NULL GROUP BY chain_id) s \
               JOIN audit_chains c USING (chain_id) \
               JOIN LATERAL (SELECT entry_hash FROM audit_log WHERE chain_id = s.chain_id \
                     AND chain_seq = s.first_seq AND recorded_at >= $1 AND recorded_at < $2 LIMIT 1) f ON true \
               JOIN LATERAL (SELECT entry_hash FROM audit_log WHERE chain_id = s.chain_id \
                     AND chain_seq = s.last_seq AND recorded_at >= $1 AND recorded_at < $2 LIMIT 1) l ON true \
               LEFT JOIN LATERAL (SELECT chain_seq, head_hash FROM audit_checkpoints \
                     WHERE chain_id = s.chain_id AND chain_seq <= s.last_seq \
                     ORDER BY chain_seq DESC LIMIT 1) k ON true \
              ORDER BY c.name",
            &[&lo, &hi],
        )
        .await?;
    let broken = |reason: String| SealError::Broken {
        partition: p.name.clone(),
        reason,
    };
    let hash = |h: &[u8]| -> Result<[u8; 32], SealError> {
        h.try_into()
            .map_err(|_| broken("an entry_hash is not 32 bytes".into()))
    };
    let mut chains = Vec::with_capacity(rows.len());
    for r in &rows {
        let chain: String = r.get(0);
        let (first_seq, last_seq, entries): (i64, i64, i64) = (r.get(1), r.get(2), r.get(3));
        // One contiguous run per chain: a chain is recorded in sequence
        // order (see the migration), so a hole here is a deleted entry.
        if entries != last_seq - first_seq + 1 {
            return Err(broken(format!(
                "chain {chain} has {entries} entries between seq {first_seq} and {last_seq}"
            )));
        }
        let checkpoint = match (r.get::<_, Option<i64>>(6), r.get::<_, Option<&[u8]>>(7)) {
            (Some(seq), Some(h)) => Some((seq, hash(h)?)),
            _ => None,
        };
        chains.push(ChainRange {
            chain,
            first_seq,
            first_hash: hash(r.get(4))?,
            last_seq,
            last_hash: hash(r.get(5))?,
            entries,
            checkpoint,
        });
    }
    let (all, unchained): (i64, i64) = (totals.get(0), totals.get(1));
    let chained: i64 = chains.iter().map(|c| c.entries).sum();
    if all != unchained + chained {
        return Err(broken(format!(
            "{} of its entries name a chain audit_chains does not hold",
            all - unchained - chained
        )));
    }
    let seal = Seal {
        origin: origin.to_owned(),
        partition: p.name.clone(),
        from: p.from,
        to: p.to,
        entries: totals.get(0),
        unchained: totals.get(1),
        chains,
        sealed_at: Utc::now(),
    };
    let line = signer.sign_note(&seal.note());
    tx.execute(
        "INSERT INTO audit_seals (partition_name, entries, line) VALUES ($1, $2, $3)",
        &[&p.name, &seal.entries, &line],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(seal))
}

/// The seal of `partition` as recorded, opened with `verifier`.
pub async fn recorded(
    client: &Client,
    partition: &str,
    verifier: &Verifier,
) -> Result<Option<(Seal, String)>, SealError> {
    let row = client
        .query_opt(
            "SELECT line FROM audit_seals WHERE partition_name = $1",
            &[&partition],
        )
        .await?;
    match row {
        None => Ok(None),
        Some(r) => {
            let line: String = r.get(0);
            Ok(Some((Seal::open(&line, verifier)?, line)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_note_reads_back_as_signed_and_refuses_an_edit() {
        let seed = secrecy::SecretBox::new(Box::new([7u8; 32]));
        let signer = Signer::new("custodian", &seed);
        let seal = Seal {
            origin: "custodian".into(),
            partition: "audit_log_20261101".into(),
            from: Some(Utc::now() - chrono::Duration::days(30)),
            to: Utc::now(),
            entries: 12,
            unchained: 1,
            chains: vec![ChainRange {
                chain: "partition/orders.v1/0".into(),
                first_seq: 5,
                first_hash: [1; 32],
                last_seq: 15,
                last_hash: [2; 32],
                entries: 11,
                checkpoint: Some((10, [3; 32])),
            }],
            sealed_at: Utc::now(),
        };
        let line = signer.sign_note(&seal.note());
        let back = Seal::open(&line, &signer.verifier()).expect("opens");
        assert_eq!(back.chains, seal.chains);
        assert_eq!(back.entries, 12);
        let edited = line.replace("entries=12", "entries=13");
        assert!(Seal::open(&edited, &signer.verifier()).is_err());
    }
}
