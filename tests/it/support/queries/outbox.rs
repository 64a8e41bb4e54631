//! The transactional outbox: the rows an application inserts (the INSERT
//! the README shows) and what the relay made of them.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::Db;

/// One outbox row, as the relay left it.
#[derive(Debug, QueryableByName)]
pub struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub aggregate_id: String,
    #[diesel(sql_type = Nullable<Integer>)]
    pub kafka_partition: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub kafka_offset: Option<i64>,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
}

impl Db<'_> {
    /// The INSERT the README shows an application writing (with its
    /// business change, in one transaction): an event of the transaction
    /// `aggregate_id` for `topic`. Answers the outbox id and event id.
    pub fn insert_outbox(
        &self,
        aggregate_id: &str,
        event_type: &str,
        topic: &str,
        payload: &[u8],
    ) -> (i64, Uuid) {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            event_id: Uuid,
        }
        let mut conn = self.conn();
        let row: Row = self
            .rt
            .block_on(
                diesel::sql_query(
                    "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, topic, payload) \
                     VALUES ('transaction', $1, $2, $3, $4) RETURNING id, event_id",
                )
                .bind::<Text, _>(aggregate_id)
                .bind::<Text, _>(event_type)
                .bind::<Text, _>(topic)
                .bind::<diesel::sql_types::Bytea, _>(payload)
                .get_result(&mut conn),
            )
            .expect("insert into outbox");
        (row.id, row.event_id)
    }

    /// Every outbox row, in id order.
    pub fn outbox_rows(&self) -> Vec<OutboxRow> {
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(
                    "SELECT id, aggregate_id, kafka_partition, kafka_offset, attempts, last_error \
                     FROM outbox ORDER BY id",
                )
                .load(&mut conn),
            )
            .expect("outbox rows")
    }

    /// Outbox rows not yet published.
    pub fn unpublished(&self) -> i64 {
        self.count("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
    }

    /// Unpublished rows that count attempts or keep an error: held against
    /// the event, as an outage must not be.
    pub fn unpublished_held_against(&self) -> i64 {
        self.count(
            "SELECT count(*) AS n FROM outbox \
             WHERE published_at IS NULL AND (attempts > 0 OR last_error IS NOT NULL)",
        )
    }

    /// MESSAGE_PUBLISHED rows that name where their outbox row's event
    /// landed (topic, partition, offset).
    pub fn published_where_they_landed(&self) -> i64 {
        self.count(
            "SELECT count(*) AS n FROM audit_log a JOIN outbox o ON o.event_id = a.message_id \
             WHERE a.status = 'MESSAGE_PUBLISHED' AND a.kafka_partition = o.kafka_partition \
               AND a.kafka_offset = o.kafka_offset AND a.topic = o.topic",
        )
    }

    /// MESSAGE_PUBLISHED rows at sequence numbers `from..=to` of the relay's
    /// hash chain.
    pub fn relay_chain_entries(&self, from: i64, to: i64) -> i64 {
        self.count_with(
            "SELECT count(*) AS n FROM audit_log a JOIN audit_chains c USING (chain_id) \
             WHERE a.status = 'MESSAGE_PUBLISHED' AND c.name = 'relay' \
               AND a.chain_seq BETWEEN $1::int8 AND $2::int8",
            &[&from.to_string(), &to.to_string()],
        )
    }

    /// Outbox row `id` says the transaction that wrote it was traced.
    pub fn set_outbox_traceparent(&self, id: i64, traceparent: &str) {
        let mut conn = self.conn();
        let set = self
            .rt
            .block_on(
                diesel::sql_query("UPDATE outbox SET traceparent = $2 WHERE id = $1")
                    .bind::<BigInt, _>(id)
                    .bind::<Text, _>(traceparent)
                    .execute(&mut conn),
            )
            .expect("update the outbox row");
        assert_eq!(set, 1, "outbox row {id}");
    }

    /// An operator's fix of outbox row `id`: its payload becomes `payload`.
    pub fn set_outbox_payload(&self, id: i64, payload: &[u8]) {
        let mut conn = self.conn();
        let fixed = self
            .rt
            .block_on(
                diesel::sql_query("UPDATE outbox SET payload = $2 WHERE id = $1")
                    .bind::<BigInt, _>(id)
                    .bind::<diesel::sql_types::Bytea, _>(payload)
                    .execute(&mut conn),
            )
            .expect("update the outbox row");
        assert_eq!(fixed, 1, "outbox row {id}");
    }
}
