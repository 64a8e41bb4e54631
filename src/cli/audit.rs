//! `custodian audit …`: verify, reconcile, partitions, seal, archive,
//! show, erase, holds, retention and keygen.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use custodian::config::Settings;
use custodian::operators::Role;

use super::Who;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute every audit chain; exit non-zero naming the first break of each.
    Verify {
        /// Trusted checkpoint file (default: audit.checkpoint_file).
        #[arg(long)]
        checkpoints: Option<std::path::PathBuf>,
        /// Start each chain at its latest checkpoint in that file.
        #[arg(long)]
        from_checkpoints: bool,
        /// The verifier key (`name+id+key`, as `audit keygen` prints it)
        /// instead of the one derived from audit.signing_key.
        #[arg(long)]
        verifier_key: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One terminal outcome per offset: gaps, doubles, totals.
    Reconcile {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: Option<i32>,
        #[arg(long, requires = "to_offset", conflicts_with = "since")]
        from_offset: Option<i64>,
        /// Included.
        #[arg(long, requires = "from_offset")]
        to_offset: Option<i64>,
        /// From the first offset at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        #[arg(long)]
        json: bool,
    },
    /// List the partitions of audit_log: period, sealed, archived, dropped.
    Partitions {
        #[arg(long)]
        json: bool,
    },
    /// Seal every partition whose period ended before DATE: it takes no
    /// more entries, and a signed seal states what it holds.
    Seal {
        /// A date (2026-12-01) or time (RFC 3339), UTC.
        #[arg(long, value_parser = parse_date)]
        before: DateTime<Utc>,
        #[arg(long)]
        json: bool,
    },
    /// Archive every sealed partition to audit.archive.url as Parquet with a
    /// signed manifest, verify the copy, then drop the partition.
    Archive {
        /// Archive and verify, but keep the partition in PostgreSQL.
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: bool,
    },
    /// A message's lifecycle from the live partitions and the archive
    /// (periods dropped from PostgreSQL, searched by bloom filter).
    Show {
        message_id: uuid::Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Ask to erase the key, headers and payload of every message with KEY
    /// (or of message ID), in the database and the archive: a pending
    /// request, run when a second person approves it (`custodian approvals
    /// approve`); the chain still verifies and reports the entries as
    /// erased. Refused under a legal hold.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["key", "id"])))]
    Erase {
        /// The message key, as text.
        #[arg(long)]
        key: Option<String>,
        /// One message.
        #[arg(long)]
        id: Option<uuid::Uuid>,
        #[command(flatten)]
        who: Who,
    },
    /// Place a legal hold on a key or a period: no erasure of what it
    /// covers, no deletion of an archived period it covers, until released.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["key", "from"])))]
    Hold {
        #[arg(long)]
        key: Option<String>,
        /// The period's start (a date or RFC 3339 time, UTC).
        #[arg(long, value_parser = parse_date, requires = "to")]
        from: Option<DateTime<Utc>>,
        /// The period's end (excluded).
        #[arg(long, value_parser = parse_date, requires = "from")]
        to: Option<DateTime<Utc>>,
        #[command(flatten)]
        who: Who,
    },
    /// Release a legal hold.
    Release {
        id: i64,
        #[command(flatten)]
        who: Who,
    },
    /// List the legal holds (`--all`: released ones too).
    Holds {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete from the archive every archived period past audit.retention,
    /// unless a legal hold covers it.
    Retain {
        #[arg(long)]
        json: bool,
    },
    /// Write a new signing key (base64 seed) to FILE and print its verifier key.
    Keygen {
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// A date (midnight UTC) or an RFC 3339 time.
fn parse_date(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("`{text}` is neither a date (2026-12-01) nor an RFC 3339 time"))
}

impl AuditCommand {
    /// The least role the command takes; none for `keygen`, which writes a
    /// local key file and reads nothing.
    pub fn least(&self) -> Option<Role> {
        Some(match self {
            AuditCommand::Verify { .. }
            | AuditCommand::Reconcile { .. }
            | AuditCommand::Partitions { .. }
            | AuditCommand::Show { .. }
            | AuditCommand::Holds { .. } => Role::Viewer,
            // Asks: every erasure waits for a second person's approval.
            AuditCommand::Erase { .. } => Role::Operator,
            AuditCommand::Hold { .. } | AuditCommand::Release { .. } => Role::Approver,
            AuditCommand::Seal { .. }
            | AuditCommand::Archive { .. }
            | AuditCommand::Retain { .. } => Role::Admin,
            AuditCommand::Keygen { .. } => return None,
        })
    }
}

pub async fn audit(
    settings: Settings,
    token_file: Option<std::path::PathBuf>,
    command: AuditCommand,
) -> anyhow::Result<()> {
    use custodian::trail::{checkpoint, reconcile, Access};
    let actor = match command.least() {
        Some(least) => Some(
            super::credential::actor(&settings, token_file.as_deref(), least, "audit", false)
                .await?,
        ),
        None => None,
    };
    let actor = actor.unwrap_or_else(|| custodian::operators::Actor::service("keygen"));
    let access = Access::from_settings(&settings)?;
    match command {
        AuditCommand::Verify {
            checkpoints,
            from_checkpoints,
            verifier_key,
            json,
        } => {
            let access = match verifier_key {
                Some(key) => access.with_verifier(checkpoint::Verifier::parse(&key)?),
                None => access,
            };
            let report = access
                .verify(checkpoints.as_deref(), from_checkpoints, None)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for c in &report.chains {
                    match &c.breach {
                        None => println!(
                            "ok      {}  entries={} last_seq={} checkpoints_matched={}",
                            c.chain, c.entries, c.last_seq, c.checkpoints_matched
                        ),
                        Some(b) => println!(
                            "BROKEN  {}  at seq {}: {} ({})",
                            c.chain, b.seq, b.kind, b.detail
                        ),
                    }
                }
                for r in &report.refused_checkpoints {
                    println!("REFUSED checkpoint {r}");
                }
                for stray in &report.strays {
                    println!("STRAY   {stray}");
                }
                println!(
                    "checked {} entries in {:.2}s ({:.0} entries/s); unchained entries: {}; legacy (pre-chain) entries: {}",
                    report.entries_checked,
                    report.seconds,
                    report.entries_per_second,
                    report.unchained_entries,
                    report.legacy_entries
                );
                if report.archived_periods > 0 {
                    println!(
                        "archive: {} period(s), {} entries read from it",
                        report.archived_periods, report.archived_entries
                    );
                }
                if report.erased_entries > 0 {
                    println!(
                        "erased: {} entries (personal fields and payload removed by audit erase; verified by the digest they keep)",
                        report.erased_entries
                    );
                }
                for p in &report.deleted_by_retention {
                    println!("deleted by audit.retention: {p} (chains carried across by its seal)");
                }
            }
            let problems = report.problems();
            anyhow::ensure!(
                problems.is_empty(),
                "audit trail broken: {}",
                problems.join("; ")
            );
        }
        AuditCommand::Reconcile {
            topic,
            partition,
            from_offset,
            to_offset,
            since,
            json,
        } => {
            let range = match (from_offset, to_offset, since) {
                (Some(from), Some(to), _) => reconcile::Range::Offsets { from, to },
                (_, _, Some(since)) => reconcile::Range::Since(since),
                _ => reconcile::Range::Committed,
            };
            let report = access
                .reconcile(&reconcile::Request {
                    topic,
                    partition,
                    range,
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for p in &report.partitions {
                    println!(
                        "partition {}  offsets {}..{} (low {}, committed {:?}, high {})  processed={} dead_lettered={} duplicate={} discarded={} replayed={} in_retry={}  gaps={} {:?}  doubles={} {:?}  redelivered={} pending={}",
                        p.partition, p.from, p.to, p.low_watermark, p.committed, p.high_watermark,
                        p.totals.processed, p.totals.dead_lettered, p.totals.duplicate,
                        p.totals.discarded, p.totals.replayed, p.totals.in_retry, p.gaps, p.gap_ranges,
                        p.doubles, p.double_offsets, p.redelivered, p.pending
                    );
                }
                println!(
                    "{}: gaps={} doubles={} pending={}",
                    report.topic, report.gaps, report.doubles, report.pending
                );
            }
            anyhow::ensure!(
                report.holds,
                "{} gap(s) and {} double(s) in {}",
                report.gaps,
                report.doubles,
                report.topic
            );
        }
        AuditCommand::Partitions { json } => {
            let list = access.partitions().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for p in &list {
                    let state = if p.dropped_at.is_some() {
                        "archived, dropped"
                    } else if p.archived_at.is_some() {
                        "sealed, archived"
                    } else if p.sealed_at.is_some() {
                        "sealed"
                    } else {
                        "open"
                    };
                    println!(
                        "{:<22} {} .. {}  {state}",
                        p.name,
                        p.from
                            .map_or_else(|| "(start)".to_owned(), |t| t.to_rfc3339()),
                        p.to.to_rfc3339()
                    );
                }
            }
        }
        AuditCommand::Seal { before, json } => {
            let seals = access.seal(before).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&seals)?);
            } else {
                for s in &seals {
                    println!(
                        "sealed {}  entries={} chains={} unchained={}",
                        s.partition,
                        s.entries,
                        s.chains.len(),
                        s.unchained
                    );
                }
                println!("{} partition(s) sealed", seals.len());
            }
        }
        AuditCommand::Archive { keep, json } => {
            let archived = access.archive(keep).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&archived)?);
            } else {
                for a in &archived {
                    println!(
                        "archived {}  files={} entries={} bytes={} in {:.2}s ({:.0} entries/s){}  manifest {}",
                        a.partition,
                        a.files,
                        a.entries,
                        a.bytes,
                        a.seconds,
                        a.entries as f64 / a.seconds.max(1e-9),
                        if a.dropped { ", dropped" } else { "" },
                        a.manifest
                    );
                }
                println!("{} partition(s) archived", archived.len());
            }
        }
        AuditCommand::Erase { key, id, who } => {
            anyhow::ensure!(key.is_some() || id.is_some(), "--key or --id");
            anyhow::ensure!(
                key.as_ref()
                    .is_none_or(|k| !k.is_empty() && !k.contains('\0')),
                "--key: not empty, no NUL"
            );
            let action = custodian::approvals::Action::Erase {
                key,
                message_id: id,
            };
            super::approvals::make(&settings, &action, 1, &who.reason, &actor).await?;
        }
        AuditCommand::Hold { key, from, to, who } => {
            let on = match (key, from, to) {
                (Some(k), _, _) => custodian::trail::holds::HoldOn::Key(k),
                (None, Some(f), Some(t)) => custodian::trail::holds::HoldOn::Period(f, t),
                _ => anyhow::bail!("--key, or --from and --to"),
            };
            let id = access.hold(&on, &actor, &who.reason).await?;
            println!("hold {id} placed");
        }
        AuditCommand::Release { id, who } => {
            access.release(id, &actor, &who.reason).await?;
            println!("hold {id} released");
        }
        AuditCommand::Holds { all, json } => {
            let holds = access.holds(!all).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&holds)?);
            } else {
                for h in &holds {
                    let on = match (&h.key, h.from, h.to) {
                        (Some(_), _, _) => "a key".to_owned(),
                        (None, Some(f), Some(t)) => format!("{f} to {t}"),
                        _ => "?".to_owned(),
                    };
                    println!(
                        "hold {}  on {on}  by {} at {}: {}{}",
                        h.id,
                        h.held_by,
                        h.held_at,
                        h.reason,
                        if h.released_at.is_some() {
                            "  (released)"
                        } else {
                            ""
                        }
                    );
                }
                println!("{} hold(s)", holds.len());
            }
        }
        AuditCommand::Retain { json } => {
            let done = access.retain(Utc::now(), &actor).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                for p in &done.deleted {
                    println!("deleted the archive of {p} (past audit.retention)");
                }
                for (p, h) in &done.held {
                    println!("kept {p}: legal hold {h}");
                }
                for (f, why) in &done.not_deleted {
                    println!("WARNING: the store kept {f}: {why}");
                }
                println!("{} period(s) deleted", done.deleted.len());
            }
        }
        AuditCommand::Show { message_id, json } => {
            let shown = access.show(message_id).await?;
            let line = |e: &custodian::trail::entry::Entry, from: &str| {
                format!(
                    "{}  {:<24} {}[{}]@{}  attempt {}{}  {from}",
                    e.occurred_at.to_rfc3339(),
                    e.status,
                    e.topic,
                    e.kafka_partition,
                    e.kafka_offset,
                    e.attempt,
                    e.error
                        .as_deref()
                        .map(|err| format!("  error: {err}"))
                        .unwrap_or_default()
                )
            };
            if json {
                let entry = |e: &custodian::trail::entry::Entry, source: &str| {
                    serde_json::json!({
                        "source": source, "status": e.status, "topic": e.topic,
                        "kafka_partition": e.kafka_partition, "kafka_offset": e.kafka_offset,
                        "attempt": e.attempt, "error": e.error, "occurred_at": e.occurred_at,
                        "recorded_at": e.recorded_at, "chain": e.chain, "chain_seq": e.chain_seq,
                    })
                };
                let mut all: Vec<serde_json::Value> = shown
                    .archived
                    .entries
                    .iter()
                    .map(|e| entry(e, "archive"))
                    .collect();
                all.extend(shown.live.iter().map(|e| entry(e, "postgres")));
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "message_id": message_id,
                        "entries": all,
                        "archive": shown.archived,
                        "store_url": shown.store_url,
                    }))?
                );
            } else {
                for e in &shown.archived.entries {
                    println!("{}", line(e, "archive"));
                }
                for e in &shown.live {
                    println!("{}", line(e, "postgres"));
                }
                if let Some(url) = &shown.store_url {
                    println!(
                        "archive {url}: {} of {} file(s) held it ({}), {} of {} row group(s) read",
                        shown.archived.files.len(),
                        shown.archived.files_total,
                        shown.archived.files.join(", "),
                        shown.archived.row_groups_read,
                        shown.archived.row_groups_total
                    );
                }
            }
            anyhow::ensure!(
                !(shown.live.is_empty() && shown.archived.entries.is_empty()),
                "no audit entry for message {message_id}"
            );
        }
        AuditCommand::Keygen { out } => {
            anyhow::ensure!(
                !out.exists(),
                "{} exists; not overwriting a key",
                out.display()
            );
            let seed = checkpoint::generate_seed();
            write_private(&out, &seed)?;
            let mut audit = settings.audit.clone();
            audit.signing_key = None;
            audit.signing_key_file = Some(out.clone());
            let seed = audit.signing_seed()?.context("the key just written")?;
            let verifier = checkpoint::Signer::new(&audit.origin, &seed).verifier();
            eprintln!("signing key written to {} (keep it secret)", out.display());
            println!("{}", verifier.encode());
        }
    }
    Ok(())
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}
