//! Headers that steer custodian: the message id a record continues, and
//! where a replayed copy came from. Anyone who can produce to a topic can
//! set a header, so these are trusted only when custodian itself signed
//! them: an HMAC-SHA256, under `kafka.header_key`, over the steering values
//! and the payload's SHA-256 (so a signature cannot be moved to other
//! bytes). Unsigned or badly signed steering headers are ignored, and their
//! names go on the message's MESSAGE_RECEIVED audit row.

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::KafkaSettings;
use crate::kafka::envelope::Envelope;
use crate::pipeline::message_id::MESSAGE_ID_HEADER;
use crate::text::hex;

/// The original position of a replayed copy (`topic/partition/offset`).
pub const REPLAYED_FROM_HEADER: &str = "custodian-replayed-from";
/// How often the message had been replayed, counting this copy.
pub const REPLAY_COUNT_HEADER: &str = "custodian-replay-count";
/// custodian's signature over the steering headers and the payload digest.
pub const SIGNATURE_HEADER: &str = "custodian-signature";

/// The headers whose values change what custodian does with a record.
pub const STEERING_HEADERS: [&str; 4] = [
    MESSAGE_ID_HEADER,
    REPLAYED_FROM_HEADER,
    REPLAY_COUNT_HEADER,
    SIGNATURE_HEADER,
];

/// Domain tag of version 1 of the signed encoding.
const TAG: &[u8] = b"custodian-steering-v1";

/// The SHA-256 of a record's payload (of no bytes for a tombstone).
pub fn payload_digest(payload: Option<&[u8]>) -> [u8; 32] {
    Sha256::digest(payload.unwrap_or_default()).into()
}

/// The key that signs and checks steering headers. Its `Debug` is redacted.
#[derive(Clone)]
pub struct HeaderKey(Arc<[u8]>);

impl std::fmt::Debug for HeaderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderKey([redacted])")
    }
}

/// What the steering headers of a record say, once checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steering {
    /// The id the record continues (a replayed copy's original id).
    pub message_id: Option<Uuid>,
    /// Where a replayed copy came from.
    pub replayed_from: Option<String>,
    /// How often the message had been replayed, counting this copy.
    pub replay_count: u32,
    /// Steering headers that were present but not signed by custodian (or
    /// not validly): ignored, and named on the audit row.
    pub untrusted: Vec<String>,
}

/// The values a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub message_id: Uuid,
    pub replayed_from: &'a str,
    pub replay_count: u32,
    pub payload_sha256: &'a [u8; 32],
}

impl HeaderKey {
    pub fn new(key: &[u8]) -> Self {
        HeaderKey(Arc::from(key))
    }

    /// A random key for this process only (no `kafka.header_key`
    /// configured): copies it replays are trusted by this process alone.
    pub fn ephemeral() -> Self {
        HeaderKey::new(Uuid::new_v4().as_bytes())
    }

    /// The key that signs and checks steering headers (`kafka.header_key`),
    /// or a random one for this process, said at start.
    pub fn configured(settings: &KafkaSettings) -> Self {
        match &settings.header_key {
            Some(key) => HeaderKey::new(key.expose_secret().as_bytes()),
            None => {
                tracing::warn!(
                    "kafka.header_key is not set: replayed records are signed with a random key of this process, so another instance (or this one after a restart) treats a copy as a new message; set one shared key for every instance"
                );
                HeaderKey::ephemeral()
            }
        }
    }

    fn mac(&self, signed: &Signed<'_>) -> Hmac<Sha256> {
        self.mac_over(
            TAG,
            &[
                signed.message_id.as_bytes(),
                signed.replayed_from.as_bytes(),
                &signed.replay_count.to_be_bytes(),
                signed.payload_sha256,
            ],
        )
    }

    /// The HMAC of `fields`, each length-prefixed, after a domain `tag`
    /// (so one kind of signed header set cannot pass for another).
    fn mac_over(&self, tag: &[u8], fields: &[&[u8]]) -> Hmac<Sha256> {
        // A key of any length is valid for HMAC.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(tag);
        for field in fields {
            mac.update(&(field.len() as u32).to_be_bytes());
            mac.update(field);
        }
        mac
    }

    /// A hex signature over `fields` under the domain `tag` (other
    /// custodian-owned header sets, such as the retry topic's).
    pub fn sign_fields(&self, tag: &[u8], fields: &[&[u8]]) -> String {
        hex(&self.mac_over(tag, fields).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is [`HeaderKey::sign_fields`] of `fields`.
    pub fn verify_fields(&self, tag: &[u8], fields: &[&[u8]], signature: &[u8]) -> bool {
        std::str::from_utf8(signature)
            .ok()
            .and_then(unhex)
            .is_some_and(|s| self.mac_over(tag, fields).verify_slice(&s).is_ok())
    }

    /// The `custodian-signature` value for `signed`.
    pub fn sign(&self, signed: &Signed<'_>) -> String {
        hex(&self.mac(signed).finalize().into_bytes())
    }

    /// Checks the steering headers of `envelope` against its payload digest.
    pub fn read(&self, envelope: &Envelope, payload_sha256: &[u8; 32]) -> Steering {
        let mut present: Vec<&str> = Vec::new();
        let mut values: [Option<&[u8]>; 4] = [None; 4];
        let mut repeated = false;
        for (name, value) in &envelope.headers {
            if let Some(i) = STEERING_HEADERS.iter().position(|s| s == name) {
                repeated |= present.contains(&STEERING_HEADERS[i]);
                present.push(STEERING_HEADERS[i]);
                values[i] = value.as_deref();
            }
        }
        if present.is_empty() {
            return Steering::default();
        }
        let untrusted = || Steering {
            untrusted: {
                let mut names: Vec<String> = present.iter().map(|s| (*s).to_owned()).collect();
                names.dedup();
                names
            },
            ..Steering::default()
        };
        let [id, from, count, signature] = values;
        let Some(message_id) = text(id).and_then(|s| Uuid::parse_str(s).ok()) else {
            return untrusted();
        };
        let replayed_from = text(from).unwrap_or_default();
        let replay_count = match text(count) {
            None => 0,
            Some(c) => match c.parse() {
                Ok(n) => n,
                Err(_) => return untrusted(),
            },
        };
        let Some(signature) = text(signature).and_then(unhex) else {
            return untrusted();
        };
        let signed = Signed {
            message_id,
            replayed_from,
            replay_count,
            payload_sha256,
        };
        if repeated || self.mac(&signed).verify_slice(&signature).is_err() {
            return untrusted();
        }
        Steering {
            message_id: Some(message_id),
            replayed_from: (!replayed_from.is_empty()).then(|| replayed_from.to_owned()),
            replay_count,
            untrusted: Vec::new(),
        }
    }
}

/// A record's headers when custodian publishes it: `theirs` in order, less
/// any steering header and any name in `ours` (an earlier copy's or a
/// writer's are replaced, never trusted), then `ours`.
pub fn compose_headers<'a>(
    theirs: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ours: &[(&str, &str)],
) -> rdkafka::message::OwnedHeaders {
    use rdkafka::message::{Header, OwnedHeaders};
    let mut headers = OwnedHeaders::new();
    for (name, value) in theirs {
        if STEERING_HEADERS.contains(&name) || ours.iter().any(|(o, _)| *o == name) {
            continue;
        }
        headers = headers.insert(Header { key: name, value });
    }
    for (name, value) in ours {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

fn text(value: Option<&[u8]>) -> Option<&str> {
    value.and_then(|v| std::str::from_utf8(v).ok())
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(payload: &[u8], headers: Vec<(&str, Vec<u8>)>) -> Envelope {
        Envelope {
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Some(v)))
                .collect(),
            ..Envelope::at("t", 0, 1, Some(payload))
        }
    }

    fn signed_headers(key: &HeaderKey, id: Uuid, payload: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        let digest = payload_digest(Some(payload));
        let signature = key.sign(&Signed {
            message_id: id,
            replayed_from: "t/0/7",
            replay_count: 2,
            payload_sha256: &digest,
        });
        vec![
            (MESSAGE_ID_HEADER, id.to_string().into_bytes()),
            (REPLAYED_FROM_HEADER, b"t/0/7".to_vec()),
            (REPLAY_COUNT_HEADER, b"2".to_vec()),
            (SIGNATURE_HEADER, signature.into_bytes()),
        ]
    }

    fn read(key: &HeaderKey, e: &Envelope) -> Steering {
        key.read(e, &payload_digest(e.payload.as_deref()))
    }

    #[test]
    fn custodian_signed_headers_are_trusted() {
        let key = HeaderKey::new(b"0123456789abcdef0123456789abcdef");
        let id = Uuid::new_v4();
        let e = envelope(b"payload", signed_headers(&key, id, b"payload"));
        let s = read(&key, &e);
        assert_eq!(s.message_id, Some(id));
        assert_eq!(s.replayed_from.as_deref(), Some("t/0/7"));
        assert_eq!(s.replay_count, 2);
        assert!(s.untrusted.is_empty());
    }

    #[test]
    fn forged_moved_or_foreign_signatures_are_ignored_and_named() {
        let key = HeaderKey::new(b"0123456789abcdef0123456789abcdef");
        let id = Uuid::new_v4();
        // No signature at all.
        let forged = envelope(
            b"payload",
            vec![
                (MESSAGE_ID_HEADER, id.to_string().into_bytes()),
                (REPLAYED_FROM_HEADER, b"t/0/7".to_vec()),
            ],
        );
        let s = read(&key, &forged);
        assert_eq!(s.message_id, None);
        assert_eq!(s.replayed_from, None);
        assert_eq!(s.untrusted, vec![MESSAGE_ID_HEADER, REPLAYED_FROM_HEADER]);
        // A valid signature moved onto other bytes.
        let moved = envelope(b"other bytes", signed_headers(&key, id, b"payload"));
        assert_eq!(read(&key, &moved).message_id, None);
        // Signed under another key.
        let other = HeaderKey::new(b"another key, another instance....");
        let foreign = envelope(b"payload", signed_headers(&other, id, b"payload"));
        assert_eq!(read(&key, &foreign).message_id, None);
        // A steering header repeated after a valid set.
        let mut twice = signed_headers(&key, id, b"payload");
        twice.push((MESSAGE_ID_HEADER, Uuid::new_v4().to_string().into_bytes()));
        assert_eq!(read(&key, &envelope(b"payload", twice)).message_id, None);
        // Garbage in every field never panics.
        let junk = envelope(
            b"payload",
            vec![
                (MESSAGE_ID_HEADER, vec![0xff, 0x00]),
                (REPLAY_COUNT_HEADER, b"-1".to_vec()),
                (SIGNATURE_HEADER, "zz\u{e9}".as_bytes().to_vec()),
            ],
        );
        assert_eq!(read(&key, &junk).message_id, None);
    }

    #[test]
    fn records_without_steering_headers_carry_nothing() {
        let key = HeaderKey::ephemeral();
        let e = envelope(b"x", vec![("trace-id", b"abc".to_vec())]);
        assert_eq!(read(&key, &e), Steering::default());
    }
}
