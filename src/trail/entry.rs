//! One `audit_log` entry, owned: what `audit verify` checks, a seal reads
//! and an archive file holds (one Parquet row each).

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::store::chain::Fields;

/// The columns [`Entry::from_row`] reads, in its order.
pub const COLUMNS: &str = "id, message_id, status, topic, kafka_partition, kafka_offset, \
    message_key, event_type, attempt, error, consumer_group, occurred_at, recorded_at, detail, \
    received_at, received_detail, key_bytes, payload, headers, kafka_timestamp, payload_sha256, \
    chain_seq, entry_hash, blinding, erased_digest";

/// How many [`COLUMNS`] there are: a query may select more after them.
pub const COLUMN_COUNT: usize = 25;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub message_id: Uuid,
    pub status: String,
    pub topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub message_key: Option<String>,
    pub event_type: Option<String>,
    pub attempt: i32,
    pub error: Option<String>,
    pub consumer_group: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub detail: Option<serde_json::Value>,
    pub received_at: Option<DateTime<Utc>>,
    pub received_detail: Option<serde_json::Value>,
    pub key_bytes: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Option<serde_json::Value>,
    pub kafka_timestamp: Option<DateTime<Utc>>,
    pub payload_sha256: Option<Vec<u8>>,
    /// The chain's name (`None`: an unchained entry).
    pub chain: Option<String>,
    pub chain_seq: Option<i64>,
    pub entry_hash: Option<Vec<u8>>,
    /// Encoding version 2: the entry's blinding, until it is erased.
    pub blinding: Option<Vec<u8>>,
    /// Erased: the blinded digest of the personal fields it held.
    pub erased_digest: Option<Vec<u8>>,
}

impl Entry {
    /// A row selected with [`COLUMNS`], of the chain named `chain`.
    pub fn from_row(row: &Row, chain: Option<&str>) -> Result<Entry, tokio_postgres::Error> {
        Ok(Entry {
            id: row.try_get(0)?,
            message_id: row.try_get(1)?,
            status: row.try_get(2)?,
            topic: row.try_get(3)?,
            kafka_partition: row.try_get(4)?,
            kafka_offset: row.try_get(5)?,
            message_key: row.try_get(6)?,
            event_type: row.try_get(7)?,
            attempt: row.try_get(8)?,
            error: row.try_get(9)?,
            consumer_group: row.try_get(10)?,
            occurred_at: row.try_get(11)?,
            recorded_at: row.try_get(12)?,
            detail: row.try_get(13)?,
            received_at: row.try_get(14)?,
            received_detail: row.try_get(15)?,
            key_bytes: row.try_get(16)?,
            payload: row.try_get(17)?,
            headers: row.try_get(18)?,
            kafka_timestamp: row.try_get(19)?,
            payload_sha256: row.try_get(20)?,
            chain: chain.map(str::to_owned),
            chain_seq: row.try_get(21)?,
            entry_hash: row.try_get(22)?,
            blinding: row.try_get(23)?,
            erased_digest: row.try_get(24)?,
        })
    }

    /// The fields the chain hash covers, as at sequence number `seq` of
    /// the chain named `chain`.
    pub fn fields<'s>(&'s self, chain: &'s str, seq: i64) -> Fields<'s> {
        Fields {
            chain,
            seq,
            message_id: self.message_id,
            status: &self.status,
            topic: &self.topic,
            kafka_partition: self.kafka_partition,
            kafka_offset: self.kafka_offset,
            message_key: self.message_key.as_deref(),
            event_type: self.event_type.as_deref(),
            attempt: self.attempt,
            error: self.error.as_deref(),
            consumer_group: &self.consumer_group,
            occurred_at: self.occurred_at,
            detail: self.detail.as_ref(),
            received_at: self.received_at,
            received_detail: self.received_detail.as_ref(),
            key_bytes: self.key_bytes.as_deref(),
            headers: self.headers.as_ref(),
            kafka_timestamp: self.kafka_timestamp,
            payload_sha256: self.payload_sha256.as_deref(),
            blinding: self.blinding.as_deref(),
            erased_digest: self.erased_digest.as_deref(),
        }
    }

    /// The stored hash; one of the wrong length matches nothing.
    pub fn stored_hash(&self) -> [u8; 32] {
        self.entry_hash
            .as_deref()
            .and_then(|h| h.try_into().ok())
            .unwrap_or([0xff; 32])
    }

    pub fn seq(&self) -> i64 {
        self.chain_seq.unwrap_or(0)
    }

    /// An erased entry that holds any personal field, payload or blinding
    /// again: its hash covers only the kept digest, so the fields were put
    /// back (or forged) after the erasure.
    pub fn erased_but_filled(&self) -> bool {
        self.erased_digest.is_some()
            && (self.message_key.is_some()
                || self.key_bytes.is_some()
                || self.headers.is_some()
                || self.received_detail.is_some()
                || self.payload.is_some()
                || self.payload_sha256.is_some()
                || self.blinding.is_some())
    }

    /// The payload, if kept, no longer matches the digest the hash covers.
    pub fn payload_replaced(&self) -> bool {
        match &self.payload {
            None => false,
            Some(payload) => {
                let digest: [u8; 32] = Sha256::digest(payload).into();
                self.payload_sha256.as_deref() != Some(&digest[..])
            }
        }
    }
}
