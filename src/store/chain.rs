//! The chain encoding: which chain an audit entry belongs to, and
//! `entry_hash = SHA-256(tag ‖ fields ‖ previous entry_hash)`, in two
//! versions. Version 1 covers the personal fields (key, key bytes, headers,
//! unsigned steering headers, payload digest) as they are; version 2, for
//! every entry with a `blinding` or an `erased_digest`, covers instead their
//! blinded digest `SHA-256(personal tag ‖ blinding ‖ fields)`, where the
//! blinding is 16 random bytes of the entry's own: erasing an entry removes
//! its personal fields and its blinding and keeps only that digest
//! (`erased_digest`), so the chain still verifies and a guess at a
//! low-entropy key cannot be checked against it. The
//! README's "Audit chain" section is the specification a third party writes
//! a verifier from; this file is the one implementation of it, used by the
//! writer, the operator actions and `audit verify` alike.

use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The domain tag: the hash of an audit entry can never be mistaken for any
/// other SHA-256 custodian computes. The `v1` is the encoding version.
pub const TAG: &[u8] = b"custodian/audit-entry/v1\0";
/// The domain tag of encoding version 2.
pub const TAG_V2: &[u8] = b"custodian/audit-entry/v2\0";
/// The domain tag of a version 2 entry's blinded digest of its personal
/// fields.
pub const PERSONAL_TAG: &[u8] = b"custodian/audit-personal/v2\0";
/// Bytes of a blinding.
pub const BLINDING_LEN: usize = 16;

/// A new entry's blinding: random bytes from a CSPRNG.
pub fn blinding() -> [u8; BLINDING_LEN] {
    rand::random()
}

/// The "previous hash" of a chain's first entry (sequence 1).
pub const GENESIS: [u8; 32] = [0; 32];

/// The chain of operator actions (replay, discard).
pub const OPERATOR_CHAIN: &str = "operator";

/// The chain of a partition's pipeline entries. Kafka topic names cannot
/// hold '/', so the name is unambiguous.
pub fn partition_chain(topic: &str, partition: i32) -> String {
    format!("partition/{topic}/{partition}")
}

/// Every field an entry's hash covers, in encoding order. The payload
/// itself is not here, only its digest: a payload can be erased (for
/// privacy) without breaking the chain.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub chain: &'a str,
    pub seq: i64,
    pub message_id: Uuid,
    pub status: &'a str,
    pub topic: &'a str,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub message_key: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub attempt: i32,
    pub error: Option<&'a str>,
    pub consumer_group: &'a str,
    pub occurred_at: DateTime<Utc>,
    /// Who and why, for operator actions.
    pub detail: Option<&'a serde_json::Value>,
    pub received_at: Option<DateTime<Utc>>,
    pub received_detail: Option<&'a serde_json::Value>,
    pub key_bytes: Option<&'a [u8]>,
    pub headers: Option<&'a serde_json::Value>,
    pub kafka_timestamp: Option<DateTime<Utc>>,
    pub payload_sha256: Option<&'a [u8]>,
    /// Version 2: the entry's blinding (kept until it is erased).
    pub blinding: Option<&'a [u8]>,
    /// Version 2, erased: the blinded digest of the personal fields, kept
    /// in their place.
    pub erased_digest: Option<&'a [u8]>,
}

impl Fields<'_> {
    /// Encoding version 2 (blinded personal fields)?
    pub fn blinded(&self) -> bool {
        self.blinding.is_some() || self.erased_digest.is_some()
    }
}

/// Hashes entries; keeps its buffer between calls (verify hashes millions).
#[derive(Default)]
pub struct Hasher {
    buf: Vec<u8>,
}

impl Hasher {
    /// The entry's hash given the previous entry's.
    pub fn hash(&mut self, fields: &Fields<'_>, prev: &[u8; 32]) -> [u8; 32] {
        let tag = if fields.blinded() {
            let computed;
            let personal = match fields.erased_digest {
                Some(kept) => kept,
                None => {
                    computed = self.personal(fields);
                    &computed[..]
                }
            };
            self.buf.clear();
            encode_v2(fields, personal, &mut self.buf);
            TAG_V2
        } else {
            self.buf.clear();
            encode(fields, &mut self.buf);
            TAG
        };
        let mut digest = Sha256::new();
        digest.update(tag);
        digest.update(&self.buf);
        digest.update(prev);
        digest.finalize().into()
    }

    /// A version 2 entry's blinded digest of its personal fields: what an
    /// erasure keeps as `erased_digest`. (An entry without a blinding is
    /// digested with an empty one: only an erased entry lacks it, and its
    /// digest is the kept one.)
    pub fn personal(&mut self, f: &Fields<'_>) -> [u8; 32] {
        self.buf.clear();
        encode_personal(f, &mut self.buf);
        let mut digest = Sha256::new();
        digest.update(PERSONAL_TAG);
        digest.update(f.blinding.unwrap_or_default());
        digest.update(&self.buf);
        digest.finalize().into()
    }
}

/// The personal fields, in order, encoded as [`encode`] encodes fields.
fn encode_personal(f: &Fields<'_>, out: &mut Vec<u8>) {
    bytes(out, f.message_key.map(str::as_bytes));
    bytes(out, f.key_bytes);
    json(out, f.headers);
    json(out, f.received_detail);
    bytes(out, f.payload_sha256);
}

/// Version 2: the fields of version 1 less the personal ones, then the
/// 32-byte blinded digest of those.
pub fn encode_v2(f: &Fields<'_>, personal: &[u8], out: &mut Vec<u8>) {
    position(f, out);
    outcome(f, out);
    optional_time(out, f.received_at);
    optional_time(out, f.kafka_timestamp);
    bytes(out, Some(personal));
}

/// Fields 1–7: the chain, the sequence number and where the record was.
fn position(f: &Fields<'_>, out: &mut Vec<u8>) {
    bytes(out, Some(f.chain.as_bytes()));
    bytes(out, Some(&f.seq.to_be_bytes()));
    bytes(out, Some(f.message_id.as_bytes()));
    bytes(out, Some(f.status.as_bytes()));
    bytes(out, Some(f.topic.as_bytes()));
    bytes(out, Some(&f.kafka_partition.to_be_bytes()));
    bytes(out, Some(&f.kafka_offset.to_be_bytes()));
}

/// Fields 9–14: what happened, when, and who/why.
fn outcome(f: &Fields<'_>, out: &mut Vec<u8>) {
    bytes(out, f.event_type.map(str::as_bytes));
    bytes(out, Some(&f.attempt.to_be_bytes()));
    bytes(out, f.error.map(str::as_bytes));
    bytes(out, Some(f.consumer_group.as_bytes()));
    bytes(out, Some(&micros(f.occurred_at).to_be_bytes()));
    json(out, f.detail);
}

fn optional_time(out: &mut Vec<u8>, t: Option<DateTime<Utc>>) {
    bytes(
        out,
        t.map(micros).map(i64::to_be_bytes).as_ref().map(|b| &b[..]),
    );
}

/// The canonical encoding: every field, in order, as either `0x00` (NULL)
/// or `0x01`, a 4-byte big-endian length, and the bytes. Integers are
/// big-endian two's complement of their SQL width (INTEGER 4 bytes, BIGINT
/// 8), timestamps BIGINT microseconds since 1970-01-01 UTC, UUIDs their 16
/// bytes, text UTF-8, JSON its canonical text (see [`canonical_json`]).
pub fn encode(f: &Fields<'_>, out: &mut Vec<u8>) {
    position(f, out);
    bytes(out, f.message_key.map(str::as_bytes));
    outcome(f, out);
    optional_time(out, f.received_at);
    json(out, f.received_detail);
    bytes(out, f.key_bytes);
    json(out, f.headers);
    optional_time(out, f.kafka_timestamp);
    bytes(out, f.payload_sha256);
}

fn bytes(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            // Fields are far below 4 GiB: PostgreSQL caps a value at 1 GiB.
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

fn json(out: &mut Vec<u8>, value: Option<&serde_json::Value>) {
    match value {
        None => out.push(0),
        Some(v) => {
            let mut text = String::new();
            canonical_json(v, &mut text);
            bytes(out, Some(text.as_bytes()));
        }
    }
}

/// Microseconds since the Unix epoch, as PostgreSQL stores a timestamptz:
/// its driver truncates toward zero from 2000-01-01, so this does too, and a
/// value hashed before the write equals the one read back.
pub fn micros(t: DateTime<Utc>) -> i64 {
    const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
    let base = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
    match base.and_then(|b| t.signed_duration_since(b).num_microseconds()) {
        Some(m) => m + PG_EPOCH_UNIX_MICROS,
        // Out of PostgreSQL's range anyway (it would refuse the row).
        None => t.timestamp_micros(),
    }
}

/// JSON as `jsonb` gives it back, made canonical: no whitespace, object
/// keys sorted by their UTF-8 bytes (jsonb keeps the last of duplicate
/// keys, as serde_json does), strings escaped as serde_json escapes them,
/// numbers as serde_json prints them. The sort is done here, so the result
/// does not depend on serde_json's `preserve_order` feature.
pub fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(key, out);
                out.push(':');
                if let Some(v) = map.get(key) {
                    canonical_json(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::String(s) => string(s, out),
        // Null, booleans, numbers: serde_json's compact text.
        other => out.push_str(&other.to_string()),
    }
}

fn string(s: &str, out: &mut String) {
    // Serialising a str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(detail: Option<&'a serde_json::Value>) -> Fields<'a> {
        Fields {
            chain: "partition/orders/0",
            seq: 1,
            message_id: Uuid::nil(),
            status: "MESSAGE_PROCESSED",
            topic: "orders",
            kafka_partition: 0,
            kafka_offset: 7,
            message_key: None,
            event_type: Some("transaction.created"),
            attempt: 1,
            error: None,
            consumer_group: "custodian",
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap(),
            detail,
            received_at: None,
            received_detail: None,
            key_bytes: None,
            headers: None,
            kafka_timestamp: None,
            payload_sha256: Some(&[7; 32]),
            blinding: None,
            erased_digest: None,
        }
    }

    #[test]
    fn json_key_order_and_spacing_do_not_change_the_hash() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, "x"], "x": null}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#).unwrap();
        let mut h = Hasher::default();
        assert_eq!(
            h.hash(&sample(Some(&a)), &GENESIS),
            h.hash(&sample(Some(&b)), &GENESIS)
        );
        let mut text = String::new();
        canonical_json(&a, &mut text);
        assert_eq!(text, r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#);
    }

    #[test]
    fn every_field_and_the_previous_hash_count() {
        let mut h = Hasher::default();
        let base = h.hash(&sample(None), &GENESIS);
        assert_ne!(base, h.hash(&sample(None), &[1; 32]));
        let mut f = sample(None);
        f.seq = 2;
        assert_ne!(base, h.hash(&f, &GENESIS));
        let mut f = sample(None);
        f.message_key = Some("");
        // NULL and empty differ.
        assert_ne!(base, h.hash(&f, &GENESIS));
        let mut f = sample(None);
        f.chain = "partition/orders/1";
        assert_ne!(base, h.hash(&f, &GENESIS));
    }

    #[test]
    fn an_erased_v2_entry_hashes_as_before_and_the_blinding_counts() {
        let mut h = Hasher::default();
        let blinding = [3u8; BLINDING_LEN];
        let mut f = sample(None);
        f.message_key = Some("alice@example.com");
        f.blinding = Some(&blinding);
        let whole = h.hash(&f, &GENESIS);
        // Not version 1's hash of the same fields.
        let mut plain = f;
        plain.blinding = None;
        assert_ne!(whole, h.hash(&plain, &GENESIS));
        // Another blinding, another hash: a guess needs the blinding.
        let other = [4u8; BLINDING_LEN];
        let mut reblinded = f;
        reblinded.blinding = Some(&other);
        assert_ne!(whole, h.hash(&reblinded, &GENESIS));
        // Erased: personal fields and blinding gone, their digest kept.
        let kept = h.personal(&f);
        let mut erased = f;
        erased.message_key = None;
        erased.payload_sha256 = None;
        erased.blinding = None;
        erased.erased_digest = Some(&kept);
        assert_eq!(whole, h.hash(&erased, &GENESIS));
        // A wrong kept digest breaks it.
        let mut forged = erased;
        forged.erased_digest = Some(&[0; 32]);
        assert_ne!(whole, h.hash(&forged, &GENESIS));
        // Non-personal fields are still covered.
        let mut moved = erased;
        moved.kafka_offset += 1;
        assert_ne!(whole, h.hash(&moved, &GENESIS));
    }

    #[test]
    fn the_encoding_is_length_prefixed_with_null_markers() {
        let mut out = Vec::new();
        encode(&sample(None), &mut out);
        assert_eq!(&out[..5], &[1, 0, 0, 0, 18]);
        assert_eq!(&out[5..23], b"partition/orders/0");
        assert_eq!(&out[23..36], &[1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn micros_agree_with_postgres_truncation() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(micros(t), 1_700_000_000_123_456);
        let early = Utc.timestamp_opt(0, 0).unwrap();
        assert_eq!(micros(early), 0);
    }
}
