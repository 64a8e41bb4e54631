//! What a fault scenario is judged by: lost messages, effects applied twice,
//! dead letters, counted in the audit trail, the projections and the DLQ;
//! and one JSON line per scenario in `target/tmp/faults.jsonl`, which
//! `dev/faults` prints as a table.

use std::io::Write;
use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::TestEnv;

/// Where one scenario's custodian keeps its outcomes.
pub struct Tally<'e> {
    env: &'e TestEnv,
    database_url: String,
    redis_url: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Messages with a durable outcome: processed, parked or a redelivered
/// duplicate (one per partition and offset).
const DURABLE: &str = "SELECT count(DISTINCT (kafka_partition, kafka_offset)) AS n \
     FROM message_audit WHERE status IN ('MESSAGE_PROCESSED', 'MESSAGE_DLQ', 'MESSAGE_DUPLICATE')";

/// Message ids with more than one MESSAGE_PROCESSED row: applied twice.
const APPLIED_TWICE: &str = "SELECT count(*) AS n FROM (SELECT message_id FROM message_audit \
     WHERE status = 'MESSAGE_PROCESSED' GROUP BY message_id HAVING count(*) > 1) d";

impl<'e> Tally<'e> {
    /// The test's own database and Redis.
    pub fn new(env: &'e TestEnv) -> Tally<'e> {
        Tally::at(env, &env.database_url, &env.redis_url)
    }

    /// A private PostgreSQL or Redis in place of the shared ones.
    pub fn at(env: &'e TestEnv, database_url: &str, redis_url: &str) -> Tally<'e> {
        Tally {
            env,
            database_url: database_url.to_owned(),
            redis_url: redis_url.to_owned(),
        }
    }

    /// `SELECT … AS n`; `None` while PostgreSQL (or the table) is not there.
    fn try_count(&self, sql: &str) -> Option<i64> {
        self.env.rt.block_on(async {
            let mut conn = AsyncPgConnection::establish(&self.database_url)
                .await
                .ok()?;
            diesel::sql_query(sql)
                .get_result::<Count>(&mut conn)
                .await
                .ok()
                .map(|c| c.n)
        })
    }

    fn count(&self, sql: &str) -> i64 {
        self.try_count(sql)
            .unwrap_or_else(|| panic!("{sql}: PostgreSQL did not answer"))
    }

    /// Messages with a durable outcome (0 while PostgreSQL is down).
    pub fn durable(&self) -> i64 {
        self.try_count(DURABLE).unwrap_or(0)
    }

    /// Offsets of `partition` below `offset` with a durable outcome.
    pub fn durable_below(&self, partition: i32, offset: i64) -> i64 {
        self.env.rt.block_on(async {
            let mut conn = AsyncPgConnection::establish(&self.database_url)
                .await
                .expect("connect to PostgreSQL");
            diesel::sql_query(
                "SELECT count(DISTINCT kafka_offset) AS n FROM message_audit \
                 WHERE status IN ('MESSAGE_PROCESSED', 'MESSAGE_DLQ', 'MESSAGE_DUPLICATE') \
                 AND kafka_partition = $1 AND kafka_offset < $2",
            )
            .bind::<diesel::sql_types::Integer, _>(partition)
            .bind::<BigInt, _>(offset)
            .get_result::<Count>(&mut conn)
            .await
            .expect("durable offsets")
            .n
        })
    }

    /// Effects applied twice: ids processed twice, plus offsets parked twice.
    pub fn duplicate_effects(&self) -> i64 {
        let entries = self.dlq_entries();
        let mut offsets: Vec<(i32, i64)> =
            entries.iter().map(|e| (e.partition, e.offset)).collect();
        offsets.sort_unstable();
        offsets.dedup();
        self.count(APPLIED_TWICE) + (entries.len() - offsets.len()) as i64
    }

    /// The audit rows of ids processed twice, as text (a failure's evidence).
    fn processed_twice(&self) -> String {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            row: String,
        }
        self.env.rt.block_on(async {
            let mut conn = AsyncPgConnection::establish(&self.database_url)
                .await
                .expect("connect to PostgreSQL");
            diesel::sql_query(
                "SELECT concat_ws(' ', message_id, kafka_partition, kafka_offset, status, \
                 occurred_at) AS row FROM message_audit WHERE message_id IN \
                 (SELECT message_id FROM message_audit WHERE status = 'MESSAGE_PROCESSED' \
                 GROUP BY message_id HAVING count(*) > 1) ORDER BY message_id, occurred_at LIMIT 40",
            )
            .load::<Row>(&mut conn)
            .await
            .expect("audit rows")
            .into_iter()
            .map(|r| r.row)
            .collect::<Vec<_>>()
            .join("\n")
        })
    }

    /// The sum of the projections' versions: one per applied event.
    pub fn versions(&self) -> i64 {
        self.count("SELECT coalesce(sum(version), 0)::bigint AS n FROM transactions")
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
            self.versions(),
            report.applied,
            "every event applied exactly once"
        );
        if duplicates > 0 {
            eprintln!("processed twice: {}", self.processed_twice());
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
