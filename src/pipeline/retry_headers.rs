//! The headers of a retry record (`retry_topic`), and checking them: the
//! retry topic's counterpart of the steering headers, read by [`super::prepare`].
//!
//! custodian owns every `custodian-retry-*` name: on republishing, a
//! producer's headers of those names are dropped, never passed on, and on
//! reading they count only on a retry topic and only when
//! `custodian-retry-signature` (an HMAC under `kafka.header_key`, as for the
//! steering headers) covers them, the message id and the payload digest.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::kafka::envelope::{Envelope, Headers};
use crate::pipeline::steering::HeaderKey;

/// What a retry topic's name ends with.
pub const SUFFIX: &str = ".retry";
/// Attempts made so far (1 after the first failure).
pub const ATTEMPT_HEADER: &str = "custodian-retry-attempt";
/// When the next attempt is due (RFC 3339, UTC).
pub const DUE_HEADER: &str = "custodian-retry-due";
/// Where the message was first read: topic, partition, offset.
pub const TOPIC_HEADER: &str = "custodian-retry-topic";
pub const PARTITION_HEADER: &str = "custodian-retry-partition";
pub const OFFSET_HEADER: &str = "custodian-retry-offset";
/// The last attempt's error (not signed: it steers nothing).
pub const ERROR_HEADER: &str = "custodian-retry-error";
/// custodian's signature over the values above (but the error).
pub const SIGNATURE_HEADER: &str = "custodian-retry-signature";

/// Every name custodian owns on a retry record.
pub const RETRY_HEADERS: [&str; 7] = [
    ATTEMPT_HEADER,
    DUE_HEADER,
    TOPIC_HEADER,
    PARTITION_HEADER,
    OFFSET_HEADER,
    ERROR_HEADER,
    SIGNATURE_HEADER,
];

/// Domain tag of version 1 of the signed encoding.
const TAG: &[u8] = b"custodian-retry-v1";

/// Most bytes of the error header.
const ERROR_BYTES: usize = 1000;

/// Where a retry record came from and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Attempts made so far.
    pub attempt: u32,
    /// When the next attempt is due.
    pub due: DateTime<Utc>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

fn due_text(due: DateTime<Utc>) -> String {
    due.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Origin {
    /// The first retry of the record at `envelope`'s position.
    pub fn first(envelope: &Envelope, attempt: u32, due: DateTime<Utc>) -> Self {
        Origin {
            attempt,
            due,
            topic: envelope.topic.to_string(),
            partition: envelope.partition,
            offset: envelope.offset,
        }
    }

    /// The values the signature covers, as their header texts.
    fn texts(&self) -> [String; 5] {
        [
            self.attempt.to_string(),
            due_text(self.due),
            self.topic.clone(),
            self.partition.to_string(),
            self.offset.to_string(),
        ]
    }

    /// The retry headers for message `message_id` with payload digest
    /// `payload_sha256`, the last attempt having failed with `error`.
    pub fn headers(
        &self,
        key: &HeaderKey,
        message_id: Uuid,
        payload_sha256: &[u8; 32],
        error: &str,
    ) -> Vec<(&'static str, String)> {
        let texts = self.texts();
        let signature = key.sign_fields(TAG, &fields(&message_id, &texts, payload_sha256));
        let mut error = error.to_owned();
        if error.len() > ERROR_BYTES {
            let mut end = ERROR_BYTES;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
        }
        let [attempt, due, topic, partition, offset] = texts;
        vec![
            (ATTEMPT_HEADER, attempt),
            (DUE_HEADER, due),
            (TOPIC_HEADER, topic),
            (PARTITION_HEADER, partition),
            (OFFSET_HEADER, offset),
            (ERROR_HEADER, error),
            (SIGNATURE_HEADER, signature),
        ]
    }

    /// The origin a record on a retry topic carries, when custodian signed
    /// it for `message_id` (the record's signed steering id) and these
    /// payload bytes; `None` anywhere else, or when anything is missing,
    /// repeated, malformed or forged.
    pub fn read(
        envelope: &Envelope,
        key: &HeaderKey,
        message_id: Option<Uuid>,
        payload_sha256: &[u8; 32],
    ) -> Option<Origin> {
        if !envelope.topic.ends_with(SUFFIX) {
            return None;
        }
        let message_id = message_id?;
        let one = |name: &str| {
            let mut found = envelope.headers.iter().filter(|(n, _)| n == name);
            let value = found.next()?.1.as_deref()?;
            match found.next() {
                Some(_) => None,
                None => std::str::from_utf8(value).ok(),
            }
        };
        let texts = [
            one(ATTEMPT_HEADER)?,
            one(DUE_HEADER)?,
            one(TOPIC_HEADER)?,
            one(PARTITION_HEADER)?,
            one(OFFSET_HEADER)?,
        ];
        let signature = one(SIGNATURE_HEADER)?;
        let owned = texts.map(str::to_owned);
        if !key.verify_fields(
            TAG,
            &fields(&message_id, &owned, payload_sha256),
            signature.as_bytes(),
        ) {
            return None;
        }
        let [attempt, due, topic, partition, offset] = texts;
        Some(Origin {
            attempt: attempt.parse().ok()?,
            due: DateTime::parse_from_rfc3339(due).ok()?.with_timezone(&Utc),
            topic: topic.to_owned(),
            partition: partition.parse().ok()?,
            offset: offset.parse().ok()?,
        })
    }
}

fn fields<'a>(message_id: &'a Uuid, texts: &'a [String; 5], digest: &'a [u8; 32]) -> Vec<&'a [u8]> {
    let mut fields: Vec<&[u8]> = Vec::with_capacity(7);
    fields.push(message_id.as_bytes().as_slice());
    fields.extend(texts.iter().map(String::as_bytes));
    fields.push(digest);
    fields
}

/// `headers` less custodian's retry headers.
pub fn without_retry_headers(headers: &Headers) -> Headers {
    headers
        .iter()
        .filter(|(name, _)| !RETRY_HEADERS.contains(&name.as_str()))
        .cloned()
        .collect()
}

/// The due time a record claims (unchecked: it only decides how long its
/// retry partition waits, see [`crate::retry::topic::due`]); `None` when absent.
pub fn claimed_due(envelope: &Envelope) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(envelope.header(DUE_HEADER)?).ok()?;
    Some(DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::steering::payload_digest;

    fn envelope(topic: &str, headers: Vec<(&str, String)>) -> Envelope {
        Envelope {
            key: Some(b"A".to_vec()),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Some(v.into_bytes())))
                .collect(),
            ..Envelope::at(topic, 0, 3, Some(b"payload"))
        }
    }

    #[test]
    fn signed_retry_headers_read_back_and_forgeries_do_not() {
        let key = HeaderKey::new(b"0123456789abcdef0123456789abcdef");
        let id = Uuid::new_v4();
        let digest = payload_digest(Some(b"payload"));
        let origin = Origin {
            attempt: 2,
            due: DateTime::from_timestamp_millis(1_800_000_000_123).expect("time"),
            topic: "orders".into(),
            partition: 4,
            offset: 99,
        };
        let headers = origin.headers(&key, id, &digest, "HTTP 500");
        let read = |topic: &str, h: Vec<(&str, String)>, id: Option<Uuid>| {
            Origin::read(&envelope(topic, h), &key, id, &digest)
        };
        assert_eq!(
            read("orders.retry", headers.clone(), Some(id)),
            Some(origin)
        );
        // Only on a retry topic, only for the signed id.
        assert_eq!(read("orders", headers.clone(), Some(id)), None);
        assert_eq!(read("orders.retry", headers.clone(), None), None);
        assert_eq!(
            read("orders.retry", headers.clone(), Some(Uuid::new_v4())),
            None
        );
        // A changed value, or one repeated, is not trusted.
        let mut changed = headers.clone();
        changed[0].1 = "1".into();
        assert_eq!(read("orders.retry", changed, Some(id)), None);
        let mut twice = headers.clone();
        twice.push((OFFSET_HEADER, "1".into()));
        assert_eq!(read("orders.retry", twice, Some(id)), None);
        // Another key's signature is not trusted.
        let other = HeaderKey::new(b"another key, another instance....");
        let foreign = Origin::read(
            &envelope("orders.retry", headers),
            &other,
            Some(id),
            &digest,
        );
        assert_eq!(foreign, None);
    }
}
