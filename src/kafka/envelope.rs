//! The owned copy of a Kafka record that travels through the actors.
//!
//! A `BorrowedMessage` points into librdkafka's memory and cannot cross to
//! another actor; `Envelope::from_borrowed` copies what custodian needs, once,
//! at the partition actor. The topic name is shared (`Arc<str>`) rather than
//! copied per message.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rdkafka::message::{BorrowedMessage, Message};

/// Header names and values, in record order.
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// One Kafka record, owned.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Header name and value, in record order.
    pub headers: Headers,
    /// A header name was not UTF-8: the record is dead-lettered as
    /// undecodable, its payload and header values intact (the name lossy).
    pub unreadable_headers: bool,
    /// Kafka's record timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// When this partition actor read the record.
    pub received_at: DateTime<Utc>,
}

impl Envelope {
    /// A record at `topic`/`partition`/`offset` holding `payload`, with no
    /// key, no headers and no Kafka timestamp, received now: what code
    /// that builds a record by hand (the retry worker's placeholders,
    /// tests) starts from, setting the rest with `..`.
    pub fn at(topic: &str, partition: i32, offset: i64, payload: Option<&[u8]>) -> Envelope {
        Envelope {
            topic: Arc::from(topic),
            partition,
            offset,
            key: None,
            payload: payload.map(<[u8]>::to_vec),
            headers: Vec::new(),
            unreadable_headers: false,
            timestamp_ms: None,
            received_at: Utc::now(),
        }
    }

    /// Copies a borrowed record. `topic` is the partition actor's shared name.
    pub fn from_borrowed(message: &BorrowedMessage<'_>, topic: &Arc<str>) -> Self {
        let (headers, unreadable_headers) = read_headers(message);
        Envelope {
            topic: Arc::clone(topic),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            unreadable_headers,
            timestamp_ms: message.timestamp().to_millis(),
            received_at: Utc::now(),
        }
    }

    /// Roughly the memory the record holds: key, payload and headers.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len) + headers
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The key as text (lossy where it is not UTF-8), for audit rows and
    /// logs; borrowed when it already is text.
    pub fn key_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.key.as_deref().map(String::from_utf8_lossy)
    }

    /// The record timestamp, when it is one PostgreSQL can store (years 1
    /// to 9999; producers can set any value).
    pub fn kafka_timestamp(&self) -> Option<DateTime<Utc>> {
        use chrono::Datelike;
        self.timestamp_ms
            .and_then(DateTime::from_timestamp_millis)
            .filter(|t| (1..=9999).contains(&t.year()))
    }
}

/// The record's headers, read through librdkafka's C API with names as
/// bytes: rdkafka's own iterator panics on a name that is not UTF-8, and any
/// producer can send one. Such a name is kept lossily (U+FFFD) and flagged,
/// and the record is dead-lettered as undecodable; values stay byte-exact.
///
/// (The C API hands names out NUL-terminated, so a name with a NUL byte in
/// it reads as its part before the NUL. That cannot forge anything: the
/// headers that steer custodian count only when signed.)
fn read_headers(message: &BorrowedMessage<'_>) -> (Headers, bool) {
    use rdkafka::bindings as rd;
    let mut native: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `message.ptr()` is the live message `message` borrows; the
    // headers it hands out belong to that message and are only read while
    // `message` is borrowed here.
    let err = unsafe { rd::rd_kafka_message_headers(message.ptr(), &mut native) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || native.is_null() {
        return (Vec::new(), false);
    }
    // SAFETY: `native` is valid (checked above) for the borrow of `message`.
    let count = unsafe { rd::rd_kafka_header_cnt(native) };
    let mut headers = Vec::with_capacity(count);
    let mut unreadable = false;
    for idx in 0..count {
        let mut name: *const std::os::raw::c_char = std::ptr::null();
        let mut value: *const std::os::raw::c_void = std::ptr::null();
        let mut size: usize = 0;
        // SAFETY: `idx` < count; librdkafka writes pointers into the
        // message's own header storage, valid while `message` is borrowed.
        let err =
            unsafe { rd::rd_kafka_header_get_all(native, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: librdkafka's header names are NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes();
        let name = match std::str::from_utf8(name) {
            Ok(name) => name.to_owned(),
            Err(_) => {
                unreadable = true;
                String::from_utf8_lossy(name).into_owned()
            }
        };
        let value = (!value.is_null()).then(|| {
            // SAFETY: librdkafka gives `size` bytes at `value`.
            unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec()
        });
        headers.push((name, value));
    }
    (headers, unreadable)
}

/// Headers as JSON: text values stay text, others are base64 and flagged.
pub fn headers_json(headers: &[(String, Option<Vec<u8>>)]) -> serde_json::Value {
    use base64::Engine;
    if headers.is_empty() {
        return serde_json::Value::Array(Vec::new());
    }
    headers
        .iter()
        .map(|(key, value)| match value.as_deref().map(std::str::from_utf8) {
            None => serde_json::json!({ "key": key, "value": null }),
            // jsonb cannot hold NUL: such values are written as base64 too.
            Some(Ok(text)) if !text.contains('\0') => {
                serde_json::json!({ "key": key, "value": text })
            }
            Some(_) => serde_json::json!({
                "key": key,
                "value": base64::engine::general_purpose::STANDARD.encode(value.as_deref().unwrap_or_default()),
                "encoding": "base64",
            }),
        })
        .collect()
}
