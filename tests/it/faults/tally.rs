//! What a fault scenario is judged by: lost messages, effects applied twice,
//! dead letters, counted in the audit trail, the projections and the DLQ;
//! and one JSON line per scenario in `target/tmp/faults.jsonl`, which
//! `dev/faults` prints as a table.

use std::io::Write;
use std::time::Duration;

use crate::support::{Db, TestEnv};

/// Where one scenario's custodian keeps its outcomes.
pub struct Tally<'e> {
    env: &'e TestEnv,
    db: Db<'e>,
    redis_url: String,
}

impl<'e> Tally<'e> {
    /// The test's own database and Redis.
    pub fn new(env: &'e TestEnv) -> Tally<'e> {
        Tally::at(env, &env.database_url, &env.redis_url)
    }

    /// A private PostgreSQL or Redis in place of the shared ones.
    pub fn at(env: &'e TestEnv, database_url: &str, redis_url: &str) -> Tally<'e> {
        Tally {
            env,
            db: Db::at(env, database_url),
            redis_url: redis_url.to_owned(),
        }
    }

    /// Messages with a durable outcome (0 while PostgreSQL is down).
    pub fn durable(&self) -> i64 {
        self.db.durable().unwrap_or(0)
    }

    /// Offsets of `partition` below `offset` with a durable outcome.
    pub fn durable_below(&self, partition: i32, offset: i64) -> i64 {
        self.db
            .durable_below(partition, offset)
            .expect("PostgreSQL answers")
    }

    /// Effects applied twice: ids processed twice, plus offsets parked twice.
    pub fn duplicate_effects(&self) -> i64 {
        let entries = self.dlq_entries();
        let mut offsets: Vec<(i32, i64)> =
            entries.iter().map(|e| (e.partition, e.offset)).collect();
        offsets.sort_unstable();
        offsets.dedup();
        self.db.messages_twice("MESSAGE_PROCESSED") + (entries.len() - offsets.len()) as i64
    }

    /// The parked entries of the test's topic, oldest first.
    pub fn dlq_entries(&self) -> Vec<custodian::dlq::DlqEntry> {
        self.env.dlq_entries_at(&self.redis_url)
    }

    /// Asserts the three promises and records the scenario's line: every one
    /// of `produced` has a durable outcome, `applied` events were applied
    /// exactly once, `dead_lettered` were parked exactly once, and `committed`
    /// reached `ends` (the per-partition counts of what was produced).
    pub fn assert_and_record(&self, report: Report<'_>) {
        let produced: i64 = report.ends.iter().sum();
        let lost = produced - self.durable();
        let duplicates = self.duplicate_effects();
        let parked = self.dlq_entries().len() as i64;
        let line = serde_json::json!({
            "scenario": report.scenario,
            "broker": report.broker,
            "messages": produced,
            "lost": lost,
            "duplicate_effects": duplicates,
            "dead_lettered": parked,
            "recover_ms": report.recover.as_millis() as u64,
            "runtime_ms": report.runtime.as_millis() as u64,
        });
        record(&line);
        eprintln!("fault scenario: {line}");
        assert_eq!(lost, 0, "messages without a durable outcome");
        assert_eq!(
            self.db.versions(),
            report.applied,
            "every event applied exactly once"
        );
        if duplicates > 0 {
            eprintln!("processed twice: {}", self.db.processed_twice_rows());
        }
        assert_eq!(duplicates, 0, "effects applied twice");
        assert_eq!(parked, report.dead_lettered, "dead letters");
        assert_eq!(
            report.committed, report.ends,
            "offsets committed to the end"
        );
    }
}

/// One scenario's result, for `Tally::assert_and_record`.
pub struct Report<'a> {
    pub scenario: &'a str,
    pub broker: &'a str,
    /// Records produced per partition (tansu's watermarks are not trusted).
    pub ends: Vec<i64>,
    /// The group's committed offsets at the end.
    pub committed: Vec<i64>,
    /// Events expected applied (versions summed over the projections).
    pub applied: i64,
    /// Records expected parked.
    pub dead_lettered: i64,
    /// From the end of the last fault to every outcome durable and committed.
    pub recover: Duration,
    pub runtime: Duration,
}

/// Appends one line to `target/tmp/faults.jsonl`.
fn record(line: &serde_json::Value) {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("faults.jsonl");
    writeln!(file, "{line}").expect("write faults.jsonl");
}
