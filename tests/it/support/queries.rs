//! What tests check: counts in PostgreSQL (typed helpers over raw SQL),
//! audit lifecycles, DLQ entries, and polling until something holds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::*;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Polls `check` until it returns true or `timeout` passes; panics with `what`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        if started.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl TestEnv {
    /// Runs a `SELECT count(*) AS n …` query.
    pub fn count(&self, sql: &str) -> i64 {
        let mut conn = self.conn();
        self.rt
            .block_on(diesel::sql_query(sql).get_result::<Count>(&mut conn))
            .map(|c| c.n)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Audit rows per status (0 when the table does not exist yet).
    pub fn audit_counts(&self) -> HashMap<String, i64> {
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(
                    "SELECT status, count(*) AS n FROM message_audit GROUP BY status",
                )
                .load::<StatusCount>(&mut conn),
            )
            .map(|rows| rows.into_iter().map(|r| (r.status, r.n)).collect())
            .unwrap_or_default()
    }

    /// `<prefix>:<topic>`: with the default prefix, `dlq:<topic>`.
    pub fn dlq_list_key(&self) -> String {
        custodian::dlq::Keys::new(&self.dlq_prefix).list(&self.topic)
    }

    pub fn dlq_entries(&self) -> Vec<custodian::dlq::DlqEntry> {
        self.dlq_entries_at(&self.redis_url)
    }

    /// The parked entries of the test's topic in the Redis at `redis_url`,
    /// oldest first.
    pub fn dlq_entries_at(&self, redis_url: &str) -> Vec<custodian::dlq::DlqEntry> {
        let client = redis::Client::open(redis_url).expect("redis url");
        self.rt.block_on(async {
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis connection");
            let raw: Vec<String> = redis::cmd("LRANGE")
                .arg(self.dlq_list_key())
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .expect("LRANGE");
            raw.iter()
                .map(|j| {
                    serde_json::from_str(j).expect("DLQ entry is JSON of the documented shape")
                })
                .collect()
        })
    }

    /// The statuses of a message's audit rows, in order.
    pub fn lifecycle(&self, id: &str) -> Vec<(String, i32)> {
        #[derive(QueryableByName)]
        struct Step {
            #[diesel(sql_type = Text)]
            status: String,
            #[diesel(sql_type = diesel::sql_types::Integer)]
            attempt: i32,
        }
        let mut conn = self.conn();
        let id = Uuid::parse_str(id).expect("message id");
        self.rt
            .block_on(
                diesel::sql_query(
                    "SELECT status, attempt FROM message_audit WHERE message_id = $1 \
                     ORDER BY occurred_at, id",
                )
                .bind::<diesel::sql_types::Uuid, _>(id)
                .load::<Step>(&mut conn),
            )
            .expect("lifecycle")
            .into_iter()
            .map(|s| (s.status, s.attempt))
            .collect()
    }

    /// Every one of `n` events applied exactly once: versions add up to `n`
    /// and no message has two PROCESSED rows (redeliveries are DUPLICATE).
    pub fn assert_applied_once(&self, n: i64) {
        assert_eq!(
            self.count("SELECT coalesce(sum(version), 0)::bigint AS n FROM transactions"),
            n
        );
        assert_eq!(
            self.count(
                "SELECT count(*) AS n FROM (SELECT message_id FROM message_audit \
                 WHERE status = 'MESSAGE_PROCESSED' GROUP BY message_id HAVING count(*) > 1) d"
            ),
            0
        );
    }

    /// Every partition committed up to its end.
    pub fn assert_committed_to_end(&self) {
        assert_eq!(self.committed_or_zero(), self.high_watermarks());
    }
}

/// A table tests count rows in.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Transactions,
    Users,
    Orders,
    AppliedMessages,
    AuditLog,
    MessageAudit,
    MessagePayloads,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Transactions => "transactions",
            Table::Users => "users",
            Table::Orders => "orders",
            Table::AppliedMessages => "applied_messages",
            Table::AuditLog => "audit_log",
            Table::MessageAudit => "message_audit",
            Table::MessagePayloads => "message_payloads",
        }
    }
}

impl TestEnv {
    /// Rows in `table`.
    pub fn rows(&self, table: Table) -> i64 {
        self.count(&format!("SELECT count(*) AS n FROM {}", table.name()))
    }

    /// Audit rows (`AuditLog` or `MessageAudit`) with `status`.
    pub fn rows_with_status(&self, table: Table, status: &str) -> i64 {
        let sql = format!(
            "SELECT count(*) AS n FROM {} WHERE status = $1",
            table.name()
        );
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(&sql)
                    .bind::<Text, _>(status)
                    .get_result::<Count>(&mut conn),
            )
            .map(|c| c.n)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// MESSAGE_REPLAYED entries requested by `who` for `reason`.
    pub fn replays_by(&self, who: &str, reason: &str) -> i64 {
        let sql = "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_REPLAYED' \
                   AND detail->>'requested_by' = $1 AND detail->>'reason' = $2";
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(sql)
                    .bind::<Text, _>(who)
                    .bind::<Text, _>(reason)
                    .get_result::<Count>(&mut conn),
            )
            .map(|c| c.n)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}
