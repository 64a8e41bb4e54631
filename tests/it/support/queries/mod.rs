//! What tests read from PostgreSQL, by name, so a test reads as what it
//! checks: the audit trail here (statuses, a message's lifecycle, durable
//! outcomes, effects applied twice), and by area the projections, the
//! retry schedule and HTTP deliveries, the outbox, and the sessions
//! PostgreSQL sees. A [`Db`] is the test's own database (`env.db()`) or a
//! private server's (`Db::at`); each query opens a connection of its own,
//! so a test can ask while custodian writes.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::TestEnv;

mod delivery;
mod outbox;
mod projections;
mod sessions;

pub use outbox::OutboxRow;

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

/// Outcomes that end a message's time in custodian: processed, parked, or
/// recognised as a redelivery.
const DURABLE_STATUSES: &str = "('MESSAGE_PROCESSED', 'MESSAGE_DLQ', 'MESSAGE_DUPLICATE')";

/// A table tests count rows in.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Transactions,
    Users,
    Orders,
    AppliedMessages,
    AuditLog,
    AuditCheckpoints,
    MessageAudit,
    MessageAuditV1,
    MessagePayloads,
    RetrySchedule,
    HttpDeliveries,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Transactions => "transactions",
            Table::Users => "users",
            Table::Orders => "orders",
            Table::AppliedMessages => "applied_messages",
            Table::AuditLog => "audit_log",
            Table::AuditCheckpoints => "audit_checkpoints",
            Table::MessageAudit => "message_audit",
            Table::MessageAuditV1 => "message_audit_v1",
            Table::MessagePayloads => "message_payloads",
            Table::RetrySchedule => "retry_schedule",
            Table::HttpDeliveries => "http_deliveries",
        }
    }
}

/// A database tests read.
pub struct Db<'e> {
    pub(super) rt: &'e tokio::runtime::Runtime,
    url: String,
}

impl TestEnv {
    /// This test's own database.
    pub fn db(&self) -> Db<'_> {
        Db::at(self, &self.database_url)
    }
}

impl<'e> Db<'e> {
    /// The database at `url` (a private PostgreSQL's, say).
    pub fn at(env: &'e TestEnv, url: &str) -> Db<'e> {
        Db {
            rt: &env.rt,
            url: url.to_owned(),
        }
    }

    pub(super) fn conn(&self) -> AsyncPgConnection {
        self.rt
            .block_on(AsyncPgConnection::establish(&self.url))
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }

    /// Runs a `SELECT … AS n` query (ad hoc: a named query reads better).
    pub fn count(&self, sql: &str) -> i64 {
        self.try_count(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `SELECT … AS n`, or why not (PostgreSQL down, the table not there).
    fn try_count(&self, sql: &str) -> Result<i64, String> {
        self.rt.block_on(async {
            let mut conn = AsyncPgConnection::establish(&self.url)
                .await
                .map_err(|e| e.to_string())?;
            diesel::sql_query(sql)
                .get_result::<Count>(&mut conn)
                .await
                .map(|c| c.n)
                .map_err(|e| e.to_string())
        })
    }

    /// `SELECT … AS n` with text parameters bound in order.
    pub(super) fn count_with(&self, sql: &str, binds: &[&str]) -> i64 {
        let mut query = diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>();
        for bind in binds {
            query = query.bind::<Text, _>(bind.to_string());
        }
        let mut conn = self.conn();
        self.rt
            .block_on(query.get_result::<Count>(&mut conn))
            .map(|c| c.n)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

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
        self.count_with(&sql, &[status])
    }

    /// The newest row's id in `table` (of `status`, where given).
    pub fn newest_id(&self, table: Table, status: Option<&str>) -> i64 {
        match status {
            Some(status) => self.count_with(
                &format!(
                    "SELECT max(id) AS n FROM {} WHERE status = $1",
                    table.name()
                ),
                &[status],
            ),
            None => self.count(&format!("SELECT max(id) AS n FROM {}", table.name())),
        }
    }

    /// Audit rows per status (none while custodian has not migrated yet).
    pub fn audit_counts(&self) -> HashMap<String, i64> {
        let Ok(mut conn) = self.rt.block_on(AsyncPgConnection::establish(&self.url)) else {
            return HashMap::new();
        };
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

    /// Audit rows with `status` (0 while custodian has not migrated yet).
    pub fn audited(&self, status: &str) -> i64 {
        self.audit_counts().get(status).copied().unwrap_or(0)
    }

    /// Distinct messages with an audit row of `status` in `table`.
    pub fn messages_with_status(&self, table: Table, status: &str) -> i64 {
        let sql = format!(
            "SELECT count(DISTINCT message_id) AS n FROM {} WHERE status = $1",
            table.name()
        );
        self.count_with(&sql, &[status])
    }

    /// Distinct messages audited at all.
    pub fn messages(&self) -> i64 {
        self.count("SELECT count(DISTINCT message_id) AS n FROM message_audit")
    }

    /// The statuses of message `id`'s audit rows, with their attempts, in order.
    pub fn lifecycle(&self, id: &str) -> Vec<(String, i32)> {
        #[derive(QueryableByName)]
        struct Step {
            #[diesel(sql_type = Text)]
            status: String,
            #[diesel(sql_type = Integer)]
            attempt: i32,
        }
        let id = Uuid::parse_str(id).expect("message id");
        let mut conn = self.conn();
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

    /// Message `id`'s audit rows of `status`.
    pub fn entries(&self, id: &str, status: &str) -> i64 {
        self.count_with(
            "SELECT count(*) AS n FROM message_audit \
             WHERE message_id::text = $1 AND status = $2",
            &[id, status],
        )
    }

    /// Message `id`'s audit rows anywhere but at `topic`/`partition`/`offset`.
    pub fn entries_elsewhere(&self, id: &str, topic: &str, partition: i32, offset: i64) -> i64 {
        self.count_with(
            "SELECT count(*) AS n FROM message_audit WHERE message_id::text = $1 \
             AND (topic <> $2 OR kafka_partition <> $3::int OR kafka_offset <> $4::int8)",
            &[id, topic, &partition.to_string(), &offset.to_string()],
        )
    }

    /// Offsets (partition and offset) with a processed or parked outcome.
    pub fn settled_offsets(&self) -> i64 {
        self.count(
            "SELECT count(DISTINCT (kafka_partition, kafka_offset)) AS n FROM message_audit \
             WHERE status IN ('MESSAGE_PROCESSED', 'MESSAGE_DLQ')",
        )
    }

    /// Offsets with a durable outcome (processed, parked, a redelivery);
    /// `None` while PostgreSQL (or the table) is not there.
    pub fn durable(&self) -> Option<i64> {
        self.try_count(&format!(
            "SELECT count(DISTINCT (kafka_partition, kafka_offset)) AS n \
             FROM message_audit WHERE status IN {DURABLE_STATUSES}"
        ))
        .ok()
    }

    /// Offsets of `partition` below `offset` with a durable outcome; `None`
    /// while PostgreSQL is not there.
    pub fn durable_below(&self, partition: i32, offset: i64) -> Option<i64> {
        let sql = format!(
            "SELECT count(DISTINCT kafka_offset) AS n FROM message_audit \
             WHERE status IN {DURABLE_STATUSES} AND kafka_partition = $1 AND kafka_offset < $2"
        );
        self.rt.block_on(async {
            let mut conn = AsyncPgConnection::establish(&self.url).await.ok()?;
            diesel::sql_query(sql)
                .bind::<Integer, _>(partition)
                .bind::<BigInt, _>(offset)
                .get_result::<Count>(&mut conn)
                .await
                .ok()
                .map(|c| c.n)
        })
    }

    /// Message ids with more than one row of `status`: processed twice, or
    /// scheduled for retry twice.
    pub fn messages_twice(&self, status: &str) -> i64 {
        self.count_with(
            "SELECT count(*) AS n FROM (SELECT message_id FROM message_audit \
             WHERE status = $1 GROUP BY message_id HAVING count(*) > 1) d",
            &[status],
        )
    }

    /// The audit rows of ids processed twice, as text (a failure's evidence).
    pub fn processed_twice_rows(&self) -> String {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            row: String,
        }
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(
                    "SELECT concat_ws(' ', message_id, kafka_partition, kafka_offset, status, \
                     occurred_at) AS row FROM message_audit WHERE message_id IN \
                     (SELECT message_id FROM message_audit WHERE status = 'MESSAGE_PROCESSED' \
                     GROUP BY message_id HAVING count(*) > 1) ORDER BY message_id, occurred_at \
                     LIMIT 40",
                )
                .load::<Row>(&mut conn),
            )
            .expect("audit rows")
            .into_iter()
            .map(|r| r.row)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The parked messages' ids and offsets (MESSAGE_DLQ rows).
    pub fn parked(&self) -> Vec<(Uuid, i64)> {
        #[derive(QueryableByName)]
        struct Parked {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            message_id: Uuid,
            #[diesel(sql_type = BigInt)]
            kafka_offset: i64,
        }
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(
                    "SELECT message_id, kafka_offset FROM message_audit \
                     WHERE status = 'MESSAGE_DLQ'",
                )
                .load::<Parked>(&mut conn),
            )
            .expect("parked rows")
            .into_iter()
            .map(|p| (p.message_id, p.kafka_offset))
            .collect()
    }

    /// The `detail` of every MESSAGE_RECEIVED row that has one, by offset.
    pub fn received_details(&self) -> Vec<serde_json::Value> {
        #[derive(QueryableByName)]
        struct Detail {
            #[diesel(sql_type = diesel::sql_types::Jsonb)]
            detail: serde_json::Value,
        }
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(
                    "SELECT detail FROM message_audit WHERE status = 'MESSAGE_RECEIVED' \
                     AND detail IS NOT NULL ORDER BY kafka_offset",
                )
                .load::<Detail>(&mut conn),
            )
            .expect("details")
            .into_iter()
            .map(|d| d.detail)
            .collect()
    }

    /// MESSAGE_REPLAYED rows of replay job `job`, per message.
    pub fn job_replays(&self, job: &str) -> HashMap<Uuid, i64> {
        #[derive(QueryableByName)]
        struct Replays {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            message_id: Uuid,
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(
                    "SELECT message_id, count(*) AS n FROM audit_log \
                     WHERE status = 'MESSAGE_REPLAYED' AND detail->>'job_id' = $1 \
                     GROUP BY message_id",
                )
                .bind::<Text, _>(job)
                .load::<Replays>(&mut conn),
            )
            .expect("the job's replays")
            .into_iter()
            .map(|r| (r.message_id, r.n))
            .collect()
    }

    /// The statuses `audit_log`'s CHECK constraint lets the trail hold.
    pub fn statuses_the_trail_holds(&self) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Definition {
            #[diesel(sql_type = Text)]
            def: String,
        }
        let mut conn = self.conn();
        let definition = self
            .rt
            .block_on(
                diesel::sql_query(
                    "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint \
                      WHERE conname = 'audit_log_status_check'",
                )
                .get_result::<Definition>(&mut conn),
            )
            .expect("audit_log's status constraint");
        // `CHECK ((status = ANY (ARRAY['MESSAGE_PROCESSED'::text, …])))`: the
        // quoted words.
        definition
            .def
            .split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    /// MESSAGE_DUPLICATE rows of messages that were once scheduled for retry.
    pub fn scheduled_then_redelivered(&self) -> i64 {
        self.count(
            "SELECT count(*) AS n FROM message_audit d WHERE d.status = 'MESSAGE_DUPLICATE' \
              AND EXISTS (SELECT 1 FROM message_audit s WHERE s.message_id = d.message_id \
                            AND s.status = 'MESSAGE_RETRY_SCHEDULED')",
        )
    }

    /// MESSAGE_REPLAYED entries requested by `who` for `reason`.
    pub fn replays_by(&self, who: &str, reason: &str) -> i64 {
        self.count_with(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_REPLAYED' \
             AND detail->>'requested_by' = $1 AND detail->>'reason' = $2",
            &[who, reason],
        )
    }

    /// Operator actions (replays, discards) recorded under `who`.
    pub fn actions_by(&self, who: &str) -> i64 {
        self.count_with(
            "SELECT count(*) AS n FROM audit_log WHERE detail->>'requested_by' = $1",
            &[who],
        )
    }
}

impl TestEnv {
    /// Every one of `n` events applied exactly once: versions add up to `n`
    /// and no message has two PROCESSED rows (redeliveries are DUPLICATE).
    pub fn assert_applied_once(&self, n: i64) {
        let db = self.db();
        assert_eq!(db.versions(), n);
        assert_eq!(db.messages_twice("MESSAGE_PROCESSED"), 0);
    }
}
