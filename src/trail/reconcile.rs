//! `audit reconcile`: did every message that entered Kafka end somewhere?
//! For each offset of a range it finds the audit trail's terminal outcome —
//! processed, dead-lettered (then perhaps discarded or replayed),
//! duplicate — and lists the offsets with none (gaps) and with two
//! (doubles). The broker says which offsets exist (low and high
//! watermarks) and the group's committed offset which must have an outcome:
//! everything below it. Offsets from the committed one up to the high
//! watermark may still be in flight and count as pending, not gaps.
//!
//! A delivery may have several rows (MESSAGE_FAILED… then MESSAGE_DLQ or
//! MESSAGE_PROCESSED): only the terminal ones count. An offset read again
//! after a crash (before its commit) gets a second terminal row,
//! MESSAGE_DUPLICATE, because the ledger (a processed message), the DLQ or
//! the retry schedule (a parked one, `store::redelivery`) recognises the
//! message: that is a redelivery, counted apart, not a double. Two
//! PROCESSED or DLQ rows for one offset are a double. A replay publishes a new copy at
//! a new offset, with its own outcome there.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::KafkaSettings;
use crate::store::audit::{DISCARDED, DLQ, DUPLICATE, PROCESSED, REPLAYED, RETRY_SCHEDULED};

/// The statuses the fold reads: terminal outcomes, operator actions, and
/// the retry schedule's "in retry".
const COUNTED: [&str; 6] = [
    PROCESSED,
    DLQ,
    DUPLICATE,
    DISCARDED,
    REPLAYED,
    RETRY_SCHEDULED,
];

/// Most gap ranges and double offsets listed per partition (all are counted).
const LISTED: usize = 100;
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
const BATCH: i32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("topic `{0}` is unknown to the broker")]
    UnknownTopic(String),
    #[error("custodian does not consume topic `{0}` (kafka.topics)")]
    NotConsumed(String),
    #[error("partition {1} of `{0}` is unknown to the broker")]
    UnknownPartition(String, i32),
    #[error("{0}")]
    BadRange(String),
    #[error("reading the audit trail failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Which offsets to check.
#[derive(Debug, Clone)]
pub enum Range {
    /// From the low watermark up to the committed offset.
    Committed,
    /// From `from` to `to`, both included.
    Offsets { from: i64, to: i64 },
    /// From the first offset at or after this time up to the committed one.
    Since(DateTime<Utc>),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub topic: String,
    /// All partitions when `None`.
    pub partition: Option<i32>,
    pub range: Range,
}

/// Offsets per outcome.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub processed: u64,
    pub dead_lettered: u64,
    pub duplicate: u64,
    /// Dead-lettered, then discarded by an operator.
    pub discarded: u64,
    /// Dead-lettered, then replayed (the copy has its own offset).
    pub replayed: u64,
    /// Waiting in the retry schedule of a deferred route: not lost, not
    /// finished.
    #[serde(default)]
    pub in_retry: u64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.processed += other.processed;
        self.dead_lettered += other.dead_lettered;
        self.duplicate += other.duplicate;
        self.discarded += other.discarded;
        self.replayed += other.replayed;
        self.in_retry += other.in_retry;
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartitionReport {
    pub partition: i32,
    pub low_watermark: i64,
    pub high_watermark: i64,
    /// The group's committed offset (`None`: nothing committed yet).
    pub committed: Option<i64>,
    /// The offsets checked: `from` included, `to` excluded.
    pub from: i64,
    pub to: i64,
    pub totals: Totals,
    /// Offsets below the committed one with no terminal outcome.
    pub gaps: u64,
    /// The first gap ranges, each `[first, last]`.
    pub gap_ranges: Vec<[i64; 2]>,
    /// Offsets with more than one terminal outcome (redeliveries aside).
    pub doubles: u64,
    pub double_offsets: Vec<i64>,
    /// Offsets read again after a crash and recognised as duplicates.
    pub redelivered: u64,
    /// Offsets at or past the committed one with no outcome yet.
    pub pending: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ReconcileReport)]
pub struct Report {
    /// No gaps and no doubles.
    pub holds: bool,
    pub topic: String,
    pub group: String,
    pub partitions: Vec<PartitionReport>,
    pub totals: Totals,
    pub gaps: u64,
    pub doubles: u64,
    pub pending: u64,
}

impl Report {
    pub fn holds(&self) -> bool {
        self.gaps == 0 && self.doubles == 0
    }
}

/// What the broker says about one partition.
struct Marks {
    partition: i32,
    low: i64,
    high: i64,
    committed: Option<i64>,
    since: Option<i64>,
}

/// Reads the watermarks, the committed offsets and (for `Since`) the
/// offsets by time; blocking librdkafka calls, run off the async threads.
async fn broker_marks(
    kafka: &KafkaSettings,
    request: &Request,
) -> Result<Vec<Marks>, ReconcileError> {
    let kafka = kafka.clone();
    let request = request.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = crate::kafka::client::consumer_config(&kafka)
            .create()
            .map_err(|e| ReconcileError::Kafka(e.to_string()))?;
        let metadata = consumer
            .fetch_metadata(Some(&request.topic), KAFKA_TIMEOUT)
            .map_err(|e| ReconcileError::Kafka(e.to_string()))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == request.topic && t.error().is_none())
            .ok_or_else(|| ReconcileError::UnknownTopic(request.topic.clone()))?;
        let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        if let Some(p) = request.partition {
            if !partitions.contains(&p) {
                return Err(ReconcileError::UnknownPartition(request.topic.clone(), p));
            }
            partitions = vec![p];
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(&request.topic, *p);
        }
        let committed = consumer
            .committed_offsets(tpl.clone(), KAFKA_TIMEOUT)
            .map_err(|e| ReconcileError::Kafka(e.to_string()))?;
        let by_time = match request.range {
            // Kafka's times start at the epoch: an earlier one is every
            // record (the low watermark, below), nothing to ask.
            Range::Since(t) if t.timestamp_millis() <= 0 => None,
            Range::Since(t) => {
                let mut times = TopicPartitionList::new();
                for p in &partitions {
                    times
                        .add_partition_offset(
                            &request.topic,
                            *p,
                            Offset::Offset(t.timestamp_millis()),
                        )
                        .map_err(|e| ReconcileError::Kafka(e.to_string()))?;
                }
                Some(
                    consumer
                        .offsets_for_times(times, KAFKA_TIMEOUT)
                        .map_err(|e| ReconcileError::Kafka(e.to_string()))?,
                )
            }
            _ => None,
        };
        partitions
            .into_iter()
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(&request.topic, p, KAFKA_TIMEOUT)
                    .map_err(|e| ReconcileError::Kafka(e.to_string()))?;
                let offset_of = |list: &TopicPartitionList| match list
                    .find_partition(&request.topic, p)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                };
                Ok(Marks {
                    partition: p,
                    low,
                    high,
                    committed: offset_of(&committed),
                    since: match &by_time {
                        // No offset at or after the time: nothing since.
                        Some(l) => Some(offset_of(l).unwrap_or(high)),
                        None if matches!(request.range, Range::Since(_)) => Some(low),
                        None => None,
                    },
                })
            })
            .collect()
    })
    .await
    .map_err(|e| ReconcileError::Kafka(format!("broker query task: {e}")))?
}

/// Reconciles the offsets `request` names against the audit trail.
pub async fn reconcile(
    client: &mut Client,
    kafka: &KafkaSettings,
    request: &Request,
) -> Result<Report, ReconcileError> {
    if !kafka.topics.contains(&request.topic) {
        return Err(ReconcileError::NotConsumed(request.topic.clone()));
    }
    if request.partition.is_some_and(|p| p < 0) {
        return Err(ReconcileError::BadRange(
            "partition must be at least 0".into(),
        ));
    }
    if let Range::Offsets { from, to } = request.range {
        if from < 0 || to < from {
            return Err(ReconcileError::BadRange(
                "--from-offset must be at least 0 and at most --to-offset".into(),
            ));
        }
    }
    let marks = broker_marks(kafka, request).await?;
    let mut report = Report {
        holds: false,
        topic: request.topic.clone(),
        group: kafka.group_id.clone(),
        partitions: Vec::with_capacity(marks.len()),
        totals: Totals::default(),
        gaps: 0,
        doubles: 0,
        pending: 0,
    };
    for m in marks {
        let must_end = m.committed.unwrap_or(m.low).max(m.low);
        let (from, to) = match request.range {
            Range::Committed => (m.low, must_end),
            Range::Since(_) => (m.since.unwrap_or(m.high), must_end),
            Range::Offsets { from, to } => (from, to.saturating_add(1)),
        };
        // Offsets at or past the high watermark do not exist yet.
        let to = to.min(m.high);
        let from = from.min(to);
        let partition = reconcile_partition(client, &request.topic, &m, from, to).await?;
        report.totals.add(&partition.totals);
        report.gaps += partition.gaps;
        report.doubles += partition.doubles;
        report.pending += partition.pending;
        report.partitions.push(partition);
    }
    report.holds = report.holds();
    Ok(report)
}

async fn reconcile_partition(
    client: &mut Client,
    topic: &str,
    m: &Marks,
    from: i64,
    to: i64,
) -> Result<PartitionReport, ReconcileError> {
    let mut fold = Fold::new(m, from, to);
    let tx = client.transaction().await?;
    let statement = tx
        .prepare(
            "SELECT kafka_offset, status, coalesce(detail @> '{\"redelivery\": true}', false) \
             FROM message_audit \
             WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset >= $3 AND kafka_offset < $4 \
               AND status = ANY($5) \
             ORDER BY kafka_offset, occurred_at, id",
        )
        .await?;
    let statuses: Vec<&str> = COUNTED.to_vec();
    let portal = tx
        .bind(&statement, &[&topic, &m.partition, &from, &to, &statuses])
        .await?;
    loop {
        let rows = tx.query_portal(&portal, BATCH).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            fold.push(row.get(0), row.get::<_, &str>(1), row.get(2));
        }
    }
    drop(portal);
    tx.rollback().await?;
    Ok(fold.finish(to))
}

/// The running per-offset fold over rows ordered by offset.
struct Fold {
    report: PartitionReport,
    /// Offsets below this must have an outcome.
    must_below: i64,
    /// The next offset not yet accounted for.
    next: i64,
    offset: Option<i64>,
    statuses: Vec<&'static str>,
    /// Of the current offset's MESSAGE_DUPLICATE rows, those written for a
    /// record read again whose parking was already durable
    /// (`detail.redelivery`): never the offset's outcome.
    redeliveries: u64,
}

impl Fold {
    fn new(m: &Marks, from: i64, to: i64) -> Fold {
        Fold {
            report: PartitionReport {
                partition: m.partition,
                low_watermark: m.low,
                high_watermark: m.high,
                committed: m.committed,
                from,
                to,
                totals: Totals::default(),
                gaps: 0,
                gap_ranges: Vec::new(),
                doubles: 0,
                double_offsets: Vec::new(),
                redelivered: 0,
                pending: 0,
            },
            must_below: m.committed.unwrap_or(m.low),
            next: from,
            offset: None,
            statuses: Vec::new(),
            redeliveries: 0,
        }
    }

    fn push(&mut self, offset: i64, status: &str, redelivery: bool) {
        if self.offset != Some(offset) {
            self.close();
            self.missing(offset);
            self.offset = Some(offset);
        }
        if redelivery && status == DUPLICATE {
            self.redeliveries += 1;
        } else if let Some(s) = COUNTED.into_iter().find(|k| *k == status) {
            self.statuses.push(s);
        }
    }

    /// Offsets from `next` up to `until` (excluded) have no row at all.
    fn missing(&mut self, until: i64) {
        let (start, end) = (self.next, until);
        if end <= start {
            return;
        }
        let gap_end = end.min(self.must_below);
        if gap_end > start {
            self.gap(start, gap_end - 1);
        }
        self.report.pending += (end - start.max(self.must_below)).max(0) as u64;
        self.next = end;
    }

    fn gap(&mut self, first: i64, last: i64) {
        self.report.gaps += (last - first + 1) as u64;
        let ranges = &mut self.report.gap_ranges;
        if let Some(range) = ranges.last_mut().filter(|r| r[1] + 1 == first) {
            range[1] = last;
        } else if ranges.len() < LISTED {
            ranges.push([first, last]);
        }
    }

    /// Settles the current offset from its statuses.
    fn close(&mut self) {
        let Some(offset) = self.offset.take() else {
            return;
        };
        self.next = offset + 1;
        let statuses = std::mem::take(&mut self.statuses);
        let redeliveries = std::mem::take(&mut self.redeliveries);
        // The outcome is the delivery's PROCESSED or DLQ; a DUPLICATE
        // beside one is a redelivery: the offset was read again after a
        // crash and the ledger recognised it. A DUPLICATE flagged
        // `redelivery` (the DLQ or the retry schedule recognised it) is
        // never the outcome. Otherwise a DUPLICATE is the outcome (its id
        // was applied from another record, perhaps through a retry record
        // after a RETRY_SCHEDULED), and a RETRY_SCHEDULED alone is in retry.
        let outcomes: Vec<&str> = statuses
            .iter()
            .copied()
            .filter(|s| [PROCESSED, DLQ].contains(s))
            .collect();
        let duplicates = statuses.iter().filter(|s| **s == DUPLICATE).count() as u64;
        let scheduled = statuses.contains(&RETRY_SCHEDULED);
        self.report.redelivered += redeliveries;
        let t = &mut self.report.totals;
        let first = match outcomes.first() {
            Some(&first) => first,
            None if duplicates > 0 => {
                t.duplicate += 1;
                self.report.redelivered += duplicates - 1;
                return;
            }
            None if scheduled => {
                // Parked in the retry schedule: its outcome comes later.
                t.in_retry += 1;
                return;
            }
            None => {
                // Only operator rows (or a redelivery whose parking is
                // outside the range): no delivery ended here.
                if offset < self.must_below {
                    self.gap(offset, offset);
                } else {
                    self.report.pending += 1;
                }
                return;
            }
        };
        self.report.redelivered += duplicates;
        match first {
            PROCESSED => t.processed += 1,
            _ if statuses.contains(&DISCARDED) => t.discarded += 1,
            _ if statuses.contains(&REPLAYED) => t.replayed += 1,
            _ => t.dead_lettered += 1,
        }
        if outcomes.len() > 1 {
            self.report.doubles += 1;
            if self.report.double_offsets.len() < LISTED {
                self.report.double_offsets.push(offset);
            }
        }
    }

    fn finish(mut self, to: i64) -> PartitionReport {
        self.close();
        self.missing(to);
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(from: i64, must_below: i64) -> Fold {
        let marks = Marks {
            partition: 0,
            low: 0,
            high: 100,
            committed: Some(must_below),
            since: None,
        };
        Fold::new(&marks, from, 0)
    }

    #[test]
    fn gaps_doubles_redeliveries_and_pending_are_told_apart() {
        let mut f = fold(0, 8);
        f.push(0, PROCESSED, false);
        f.push(1, PROCESSED, false);
        f.push(1, DUPLICATE, false); // read again after a crash
        f.push(4, DLQ, false); // 2 and 3 missing
        f.push(4, DISCARDED, false);
        f.push(5, PROCESSED, false);
        f.push(5, PROCESSED, false); // a real double
        f.push(6, DLQ, false);
        f.push(6, REPLAYED, false);
        let r = f.finish(10); // 7 missing (gap), 8 and 9 pending
        assert_eq!(r.gaps, 3);
        assert_eq!(r.gap_ranges, vec![[2, 3], [7, 7]]);
        assert_eq!(r.doubles, 1);
        assert_eq!(r.double_offsets, vec![5]);
        assert_eq!(r.redelivered, 1);
        assert_eq!(r.pending, 2);
        assert_eq!(r.totals.processed, 3);
        assert_eq!(r.totals.discarded, 1);
        assert_eq!(r.totals.replayed, 1);
    }

    #[test]
    fn a_parked_record_read_again_is_a_redelivery_not_a_double() {
        let mut f = fold(0, 6);
        f.push(0, DLQ, false); // parked, then read again after a crash
        f.push(0, DUPLICATE, true);
        f.push(1, RETRY_SCHEDULED, false); // scheduled, read again, still waiting
        f.push(1, DUPLICATE, true);
        f.push(2, RETRY_SCHEDULED, false); // scheduled, read again, then delivered
        f.push(2, DUPLICATE, true);
        f.push(2, PROCESSED, false);
        f.push(3, DUPLICATE, false); // applied from another record, then read again
        f.push(3, DUPLICATE, false);
        f.push(4, DLQ, false); // parked twice: a real double
        f.push(4, DLQ, false);
        // A retry record whose id was applied from a resend: the schedule's
        // DUPLICATE is the outcome, not a message still in retry.
        f.push(5, RETRY_SCHEDULED, false);
        f.push(5, DUPLICATE, false);
        let r = f.finish(6);
        assert_eq!(r.gaps, 0);
        assert_eq!(r.doubles, 1);
        assert_eq!(r.double_offsets, vec![4]);
        assert_eq!(r.redelivered, 4);
        assert_eq!(r.totals.dead_lettered, 2);
        assert_eq!(r.totals.in_retry, 1);
        assert_eq!(r.totals.processed, 1);
        assert_eq!(r.totals.duplicate, 2);
    }

    #[test]
    fn a_message_in_the_retry_schedule_is_in_retry_not_a_gap() {
        let mut f = fold(0, 3);
        f.push(0, RETRY_SCHEDULED, false); // parked, still waiting
        f.push(1, RETRY_SCHEDULED, false); // parked, then delivered by the worker
        f.push(1, PROCESSED, false);
        f.push(2, RETRY_SCHEDULED, false); // parked, then dead-lettered
        f.push(2, DLQ, false);
        let r = f.finish(3);
        assert_eq!(r.gaps, 0);
        assert_eq!(r.doubles, 0);
        assert_eq!(r.totals.in_retry, 1);
        assert_eq!(r.totals.processed, 1);
        assert_eq!(r.totals.dead_lettered, 1);
    }
}
