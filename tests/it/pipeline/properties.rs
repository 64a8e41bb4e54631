//! Bad input at volume: property-based tests over decoding, message ids,
//! envelopes and headers. Whatever a record holds (arbitrary bytes, invalid
//! UTF-8 anywhere, NUL bytes, huge or deeply nested JSON, extreme numbers
//! and timestamps), preparing it never panics; a record that cannot be
//! applied is a classified failure whose dead letter gives back its key,
//! payload and headers byte for byte; and its message id is stable.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use custodian::kafka::envelope::Envelope;
use custodian::pipeline::prepare;
use custodian::pipeline::route_table::Routes;
use custodian::pipeline::steering::HeaderKey;
use proptest::prelude::*;

fn routes() -> Routes {
    Routes::new(
        &custodian::config::Settings::from_overrides(&[])
            .expect("defaults")
            .routes,
    )
}

fn key() -> HeaderKey {
    HeaderKey::new(b"property-test-key-0123456789abcdef")
}

/// Strings with what breaks naive code: NUL, quotes, backslashes, control
/// characters, astral-plane characters, and lone surrogate escapes.
fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        Just("\0".to_owned()),
        Just("a\0b".to_owned()),
        Just("\"\\\u{1}\u{7f}".to_owned()),
        Just("\u{10FFFF}\u{FEFF}".to_owned()),
        Just("\\ud800".to_owned()),
        Just("x".repeat(100_000)),
    ]
}

/// JSON number texts at and past the edges of every numeric type.
fn extreme_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        Just("1e308".to_owned()),
        Just("1e309".to_owned()),
        Just("-1e-400".to_owned()),
        Just("-0".to_owned()),
        Just("123456789012345678901234567890.123456789".to_owned()),
        Just("99999999999999999999999999999999999999999999".to_owned()),
        Just("0.000000000000000000000000000001".to_owned()),
    ]
}

/// Timestamp texts: valid, out of range, malformed.
fn extreme_timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2024-01-01T12:00:00Z".to_owned()),
        Just("+275760-09-13T00:00:00Z".to_owned()),
        Just("-262143-01-01T00:00:00Z".to_owned()),
        Just("0000-00-00T00:00:00Z".to_owned()),
        Just("9999-12-31T23:59:60.999999999+23:59".to_owned()),
        Just("2024-02-30T25:61:61Z".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        nasty_text(),
    ]
}

/// A seed-003 or seed-004 shaped event with hostile values in every field.
fn hostile_event() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just("transaction.created"),
            Just("transaction.updated"),
            Just("transaction.deleted"),
            Just("UserCreated"),
            Just("OrderPlaced"),
            Just("PaymentSettled"),
            Just("Message"),
            Just("no.such.type"),
        ],
        nasty_text(),
        nasty_text(),
        extreme_number(),
        extreme_timestamp(),
    )
        .prop_map(|(kind, id, text, number, timestamp)| {
            let id = serde_json::to_string(&id).expect("string");
            let text = serde_json::to_string(&text).expect("string");
            let timestamp = serde_json::to_string(&timestamp).expect("string");
            format!(
                r#"{{"event_type":"{kind}","type":"{kind}","eventId":{id},"timestamp":{timestamp},"transaction":{{"id":{id},"user_id":{text},"transaction_type":{text},"status":{text},"currency":{text},"amount":{number},"metadata":{{"k":{text}}}}},"data":{{"userId":{id},"email":{text},"amount":{number},"quantity":{number}}}}}"#
            )
            .into_bytes()
        })
}

/// JSON nested `depth` deep, in arrays or objects, inside an event.
fn deeply_nested() -> impl Strategy<Value = Vec<u8>> {
    (1usize..20_000, any::<bool>()).prop_map(|(depth, arrays)| {
        let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
        let inner = if arrays { "1" } else { "null" };
        format!(
            r#"{{"event_type":"transaction.created","timestamp":"2024-01-01T12:00:00Z","transaction":{{"id":"t","metadata":{}{}{}}}}}"#,
            open.repeat(depth),
            inner,
            close.repeat(depth)
        )
        .into_bytes()
    })
}

/// Any payload: raw bytes, invalid UTF-8, hostile events, deep JSON, none.
fn payload() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(Some),
        hostile_event().prop_map(Some),
        deeply_nested().prop_map(Some),
        // Valid JSON made invalid UTF-8 by one byte.
        hostile_event().prop_map(|mut p| {
            let at = p.len() / 2;
            p.insert(at, 0xff);
            Some(p)
        }),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        nasty_text().prop_map(String::into_bytes),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, Option<Vec<u8>>)>> {
    let name = prop_oneof![
        ".{0,12}",
        Just("custodian-message-id".to_owned()),
        Just("custodian-signature".to_owned()),
        Just("custodian-replay-count".to_owned()),
        Just("\0".to_owned()),
    ];
    proptest::collection::vec((name, proptest::option::of(bytes())), 0..6)
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        (any::<i32>(), any::<i64>()),
        proptest::option::of(bytes()),
        payload(),
        headers(),
        any::<bool>(),
        prop_oneof![Just(None), any::<i64>().prop_map(Some)],
    )
        .prop_map(
            |((partition, offset), key, payload, headers, unreadable_headers, timestamp_ms)| {
                Envelope {
                    topic: Arc::from("properties"),
                    partition,
                    offset,
                    key,
                    payload,
                    headers,
                    unreadable_headers,
                    timestamp_ms,
                    received_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Never a panic; a failure is classified, and its dead letter keeps
    /// the record's bytes; the id does not depend on when it was read.
    #[test]
    fn any_record_prepares_to_work_or_a_classified_dead_letter(envelope in envelope()) {
        let routes = routes();
        let key = key();
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let formats = custodian::formats::Formats::json_only();
        let schemas = custodian::formats::Schemas::default();
        let reading = custodian::pipeline::Reading { routes: &routes, formats: &formats, schemas: &schemas };
        let item = prepare(envelope.clone(), &reading, &key, now);
        let again = prepare(envelope.clone(), &reading, &key, now);
        prop_assert_eq!(item.message_id, again.message_id, "a stable message id");

        let Some(entry) = crate::support::dead_letter::parked(item, now) else {
            // Work to apply: only decodable, routed events get here.
            prop_assert!(!envelope.unreadable_headers);
            prop_assert!(envelope.payload.is_some());
            return Ok(());
        };
        prop_assert!(!entry.error_kind.is_empty());
        prop_assert!(!entry.error.is_empty());
        prop_assert_eq!(entry.error_class.as_str(), "permanent", "bad input is not retried");
        prop_assert_eq!(entry.payload_bytes().expect("payload"), envelope.payload);
        prop_assert_eq!(entry.key_bytes().expect("key"), envelope.key);
        prop_assert_eq!(entry.header_bytes().expect("headers"), envelope.headers);
        prop_assert_eq!(entry.partition, envelope.partition);
        prop_assert_eq!(entry.offset, envelope.offset);
    }

    /// Message ids derived from text never panic and are stable.
    #[test]
    fn message_ids_are_total_and_stable(a in nasty_text(), b in nasty_text(), c in extreme_timestamp(), p in any::<i32>(), o in any::<i64>()) {
        use custodian::pipeline::message_id::*;
        prop_assert_eq!(from_event_id(&a), from_event_id(&a));
        prop_assert_eq!(for_transaction_event(&a, &b, &c), for_transaction_event(&a, &b, &c));
        prop_assert_eq!(for_position(&a, p, o), for_position(&a, p, o));
        if a != b {
            prop_assert_ne!(from_event_id(&a), from_event_id(&b));
        }
    }
}
