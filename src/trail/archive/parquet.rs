//! Audit entries as Parquet: one row per entry, every column of
//! `audit_log` plus the chain's name (an archive file stands alone), JSON
//! as its canonical text. Snappy-compressed; a bloom filter on
//! `message_id` lets `audit show` skip a file that cannot hold an id.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, FixedSizeBinaryBuilder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use uuid::Uuid;

use crate::store::chain::{canonical_json, micros};
use crate::trail::entry::Entry;

/// Rows per row group: a file of a million entries has a few dozen.
const ROW_GROUP: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("not a custodian archive file: {0}")]
    Schema(String),
    #[error("cannot read the file: {0}")]
    Read(String),
    #[error("cannot write the file: {0}")]
    Write(String),
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The file schema; a file with any other is refused.
pub fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("message_id", DataType::FixedSizeBinary(16), false),
        Field::new("status", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("message_key", DataType::Utf8, true),
        Field::new("event_type", DataType::Utf8, true),
        Field::new("attempt", DataType::Int32, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("consumer_group", DataType::Utf8, false),
        Field::new("occurred_at", timestamp(), false),
        Field::new("recorded_at", timestamp(), false),
        Field::new("detail", DataType::Utf8, true),
        Field::new("received_at", timestamp(), true),
        Field::new("received_detail", DataType::Utf8, true),
        Field::new("key_bytes", DataType::Binary, true),
        Field::new("payload", DataType::Binary, true),
        Field::new("headers", DataType::Utf8, true),
        Field::new("kafka_timestamp", timestamp(), true),
        Field::new("payload_sha256", DataType::Binary, true),
        Field::new("chain", DataType::Utf8, true),
        Field::new("chain_seq", DataType::Int64, true),
        Field::new("entry_hash", DataType::Binary, true),
        Field::new("blinding", DataType::Binary, true),
        Field::new("erased_digest", DataType::Binary, true),
    ])
}

fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| {
        let mut text = String::new();
        canonical_json(v, &mut text);
        text
    })
}

/// The entries as one Parquet file.
pub fn encode(entries: &[Entry]) -> Result<Vec<u8>, ParquetError> {
    let write = |e: &dyn std::fmt::Display| ParquetError::Write(e.to_string());
    let n = entries.len();
    let mut id = Int64Builder::with_capacity(n);
    let mut message_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut status = StringBuilder::new();
    let mut topic = StringBuilder::new();
    let mut kafka_partition = Int32Builder::with_capacity(n);
    let mut kafka_offset = Int64Builder::with_capacity(n);
    let mut message_key = StringBuilder::new();
    let mut event_type = StringBuilder::new();
    let mut attempt = Int32Builder::with_capacity(n);
    let mut error = StringBuilder::new();
    let mut consumer_group = StringBuilder::new();
    let mut occurred_at = TimestampMicrosecondBuilder::with_capacity(n);
    let mut recorded_at = TimestampMicrosecondBuilder::with_capacity(n);
    let mut detail = StringBuilder::new();
    let mut received_at = TimestampMicrosecondBuilder::with_capacity(n);
    let mut received_detail = StringBuilder::new();
    let mut key_bytes = BinaryBuilder::new();
    let mut payload = BinaryBuilder::new();
    let mut headers = StringBuilder::new();
    let mut kafka_timestamp = TimestampMicrosecondBuilder::with_capacity(n);
    let mut payload_sha256 = BinaryBuilder::new();
    let mut chain = StringBuilder::new();
    let mut chain_seq = Int64Builder::with_capacity(n);
    let mut entry_hash = BinaryBuilder::new();
    let mut blinding = BinaryBuilder::new();
    let mut erased_digest = BinaryBuilder::new();
    for e in entries {
        id.append_value(e.id);
        message_id
            .append_value(e.message_id.as_bytes())
            .map_err(|e| write(&e))?;
        status.append_value(&e.status);
        topic.append_value(&e.topic);
        kafka_partition.append_value(e.kafka_partition);
        kafka_offset.append_value(e.kafka_offset);
        message_key.append_option(e.message_key.as_deref());
        event_type.append_option(e.event_type.as_deref());
        attempt.append_value(e.attempt);
        error.append_option(e.error.as_deref());
        consumer_group.append_value(&e.consumer_group);
        occurred_at.append_value(micros(e.occurred_at));
        recorded_at.append_value(micros(e.recorded_at));
        detail.append_option(json_text(&e.detail));
        received_at.append_option(e.received_at.map(micros));
        received_detail.append_option(json_text(&e.received_detail));
        key_bytes.append_option(e.key_bytes.as_deref());
        payload.append_option(e.payload.as_deref());
        headers.append_option(json_text(&e.headers));
        kafka_timestamp.append_option(e.kafka_timestamp.map(micros));
        payload_sha256.append_option(e.payload_sha256.as_deref());
        chain.append_option(e.chain.as_deref());
        chain_seq.append_option(e.chain_seq);
        entry_hash.append_option(e.entry_hash.as_deref());
        blinding.append_option(e.blinding.as_deref());
        erased_digest.append_option(e.erased_digest.as_deref());
    }
    let utc = |mut b: TimestampMicrosecondBuilder| -> ArrayRef {
        Arc::new(b.finish().with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(message_id.finish()),
        Arc::new(status.finish()),
        Arc::new(topic.finish()),
        Arc::new(kafka_partition.finish()),
        Arc::new(kafka_offset.finish()),
        Arc::new(message_key.finish()),
        Arc::new(event_type.finish()),
        Arc::new(attempt.finish()),
        Arc::new(error.finish()),
        Arc::new(consumer_group.finish()),
        utc(occurred_at),
        utc(recorded_at),
        Arc::new(detail.finish()),
        utc(received_at),
        Arc::new(received_detail.finish()),
        Arc::new(key_bytes.finish()),
        Arc::new(payload.finish()),
        Arc::new(headers.finish()),
        utc(kafka_timestamp),
        Arc::new(payload_sha256.finish()),
        Arc::new(chain.finish()),
        Arc::new(chain_seq.finish()),
        Arc::new(entry_hash.finish()),
        Arc::new(blinding.finish()),
        Arc::new(erased_digest.finish()),
    ];
    let schema = Arc::new(schema());
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| write(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_column_bloom_filter_enabled(ColumnPath::from("message_id"), true)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| write(&e))?;
    writer.write(&batch).map_err(|e| write(&e))?;
    writer.close().map_err(|e| write(&e))?;
    Ok(out)
}

/// Every entry of a file, in file order. Anything that is not a file
/// [`encode`] wrote is refused with why, never a panic.
pub fn decode(bytes: Bytes) -> Result<Vec<Entry>, ParquetError> {
    // A file is outside input: whatever the reader does with a malformed
    // one (it has panicked on some before), it is a refusal here.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_unguarded(bytes)))
        .unwrap_or_else(|_| {
            Err(ParquetError::Read(
                "the Parquet reader gave up on it".into(),
            ))
        })
}

fn decode_unguarded(bytes: Bytes) -> Result<Vec<Entry>, ParquetError> {
    let read = |e: &dyn std::fmt::Display| ParquetError::Read(e.to_string());
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| read(&e))?;
    let expected = schema();
    let found = builder.schema();
    if found.fields().len() != expected.fields().len()
        || found
            .fields()
            .iter()
            .zip(expected.fields())
            .any(|(a, b)| a.name() != b.name() || a.data_type() != b.data_type())
    {
        return Err(ParquetError::Schema("its columns differ".into()));
    }
    let reader = builder.build().map_err(|e| read(&e))?;
    let mut entries = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| read(&e))?;
        decode_batch(&batch, &mut entries)?;
    }
    Ok(entries)
}

pub(crate) fn decode_batch(batch: &RecordBatch, out: &mut Vec<Entry>) -> Result<(), ParquetError> {
    let bad = |name: &str| ParquetError::Schema(format!("column {name}"));
    if batch.num_columns() != schema().fields().len() {
        return Err(ParquetError::Schema(format!(
            "{} columns, not {}",
            batch.num_columns(),
            schema().fields().len()
        )));
    }
    let col = |i: usize| batch.column(i);
    let text = |i: usize, name: &str| col(i).as_string_opt::<i32>().ok_or_else(|| bad(name));
    let int64 = |i: usize, name: &str| {
        col(i)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad(name))
    };
    let int32 = |i: usize, name: &str| {
        col(i)
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| bad(name))
    };
    let time = |i: usize, name: &str| {
        col(i)
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| bad(name))
    };
    let binary = |i: usize, name: &str| col(i).as_binary_opt::<i32>().ok_or_else(|| bad(name));
    let (id, message_id) = (
        int64(0, "id")?,
        col(1)
            .as_fixed_size_binary_opt()
            .ok_or_else(|| bad("message_id"))?,
    );
    let (status, topic, kafka_partition, kafka_offset) = (
        text(2, "status")?,
        text(3, "topic")?,
        int32(4, "kafka_partition")?,
        int64(5, "kafka_offset")?,
    );
    let (message_key, event_type, attempt, error, consumer_group) = (
        text(6, "message_key")?,
        text(7, "event_type")?,
        int32(8, "attempt")?,
        text(9, "error")?,
        text(10, "consumer_group")?,
    );
    let (occurred_at, recorded_at, detail, received_at, received_detail) = (
        time(11, "occurred_at")?,
        time(12, "recorded_at")?,
        text(13, "detail")?,
        time(14, "received_at")?,
        text(15, "received_detail")?,
    );
    let (key_bytes, payload, headers, kafka_timestamp, payload_sha256) = (
        binary(16, "key_bytes")?,
        binary(17, "payload")?,
        text(18, "headers")?,
        time(19, "kafka_timestamp")?,
        binary(20, "payload_sha256")?,
    );
    let (chain, chain_seq, entry_hash, blinding, erased_digest) = (
        text(21, "chain")?,
        int64(22, "chain_seq")?,
        binary(23, "entry_hash")?,
        binary(24, "blinding")?,
        binary(25, "erased_digest")?,
    );
    use arrow_array::Array;
    let opt_text =
        |a: &arrow_array::StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
    let opt_json = |a: &arrow_array::StringArray, i: usize, name: &str| {
        if a.is_null(i) {
            return Ok(None);
        }
        serde_json::from_str(a.value(i))
            .map(Some)
            .map_err(|_| ParquetError::Schema(format!("{name} is not JSON")))
    };
    let opt_bytes =
        |a: &arrow_array::BinaryArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_vec());
    let stamp = |m: i64| {
        DateTime::<Utc>::from_timestamp_micros(m)
            .ok_or_else(|| ParquetError::Schema("a time out of range".into()))
    };
    let opt_stamp = |a: &arrow_array::TimestampMicrosecondArray, i: usize| {
        if a.is_null(i) {
            Ok(None)
        } else {
            stamp(a.value(i)).map(Some)
        }
    };
    for i in 0..batch.num_rows() {
        let uuid = Uuid::from_slice(message_id.value(i)).map_err(|_| bad("message_id"))?;
        out.push(Entry {
            id: id.value(i),
            message_id: uuid,
            status: status.value(i).to_owned(),
            topic: topic.value(i).to_owned(),
            kafka_partition: kafka_partition.value(i),
            kafka_offset: kafka_offset.value(i),
            message_key: opt_text(message_key, i),
            event_type: opt_text(event_type, i),
            attempt: attempt.value(i),
            error: opt_text(error, i),
            consumer_group: consumer_group.value(i).to_owned(),
            occurred_at: stamp(occurred_at.value(i))?,
            recorded_at: stamp(recorded_at.value(i))?,
            detail: opt_json(detail, i, "detail")?,
            received_at: opt_stamp(received_at, i)?,
            received_detail: opt_json(received_detail, i, "received_detail")?,
            key_bytes: opt_bytes(key_bytes, i),
            payload: opt_bytes(payload, i),
            headers: opt_json(headers, i, "headers")?,
            kafka_timestamp: opt_stamp(kafka_timestamp, i)?,
            payload_sha256: opt_bytes(payload_sha256, i),
            chain: opt_text(chain, i),
            chain_seq: (!chain_seq.is_null(i)).then(|| chain_seq.value(i)),
            entry_hash: opt_bytes(entry_hash, i),
            blinding: opt_bytes(blinding, i),
            erased_digest: opt_bytes(erased_digest, i),
        });
    }
    Ok(())
}

/// Whether a file may hold `id`: false only when its bloom filters say it
/// cannot (no filter, or any doubt: true).
pub fn may_hold(bytes: &Bytes, id: Uuid) -> bool {
    use parquet::file::properties::ReaderProperties;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::serialized_reader::ReadOptionsBuilder;
    let options = ReadOptionsBuilder::new()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let Ok(reader) = SerializedFileReader::new_with_options(bytes.clone(), options) else {
        return true;
    };
    let column = schema().index_of("message_id").unwrap_or(1);
    (0..reader.num_row_groups()).any(|g| {
        reader
            .get_row_group(g)
            .ok()
            .and_then(|rg| {
                rg.get_column_bloom_filter(column)
                    .map(|f| f.check(&id.as_bytes()[..]))
            })
            .unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64) -> Entry {
        Entry {
            id: seq,
            message_id: Uuid::new_v4(),
            status: "MESSAGE_PROCESSED".into(),
            topic: "orders".into(),
            kafka_partition: 0,
            kafka_offset: seq,
            message_key: Some("k".into()),
            event_type: None,
            attempt: 1,
            error: None,
            consumer_group: "g".into(),
            occurred_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_223_456).unwrap(),
            detail: Some(serde_json::json!({"b": 1, "a": [true]})),
            received_at: None,
            received_detail: None,
            key_bytes: Some(b"k".to_vec()),
            payload: Some(b"{}".to_vec()),
            headers: None,
            kafka_timestamp: None,
            payload_sha256: Some(vec![9; 32]),
            chain: Some("partition/orders/0".into()),
            chain_seq: Some(seq),
            entry_hash: Some(vec![seq as u8; 32]),
            blinding: Some(vec![seq as u8; 16]),
            erased_digest: None,
        }
    }

    #[test]
    fn entries_survive_a_round_trip_and_garbage_is_refused() {
        let entries: Vec<Entry> = (1..=3).map(entry).collect();
        let bytes = Bytes::from(encode(&entries).expect("encodes"));
        assert_eq!(decode(bytes.clone()).expect("decodes"), entries);
        assert!(may_hold(&bytes, entries[1].message_id));
        assert!(decode(Bytes::from_static(b"PAR1 not really")).is_err());
        let mut cut = bytes.to_vec();
        cut.truncate(cut.len() / 2);
        assert!(decode(Bytes::from(cut)).is_err());
    }
}
