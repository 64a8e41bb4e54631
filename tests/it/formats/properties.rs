//! Arbitrary bytes after a valid wire-format header never panic and
//! always end as a classified dead letter, for each format.

use chrono::{TimeZone, Utc};
use custodian::config::PayloadFormat;
use custodian::formats::schema::{Compiled, Kind, Schema};
use custodian::formats::{Formats, Schemas};
use custodian::kafka::envelope::Envelope;
use custodian::pipeline::{prepare, route_table::Routes, steering::HeaderKey, Reading};
use proptest::prelude::*;

use super::schema_text;

fn schema(kind: Kind) -> Schema {
    Schema {
        id: 7,
        kind,
        subject: None,
        version: None,
        compiled: Compiled::compile(kind, &schema_text(kind)).expect("compiles"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bytes_after_a_valid_header_never_panic_and_are_dead_lettered(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        which in 0usize..3,
    ) {
        let (format, kind, header): (PayloadFormat, Kind, &[u8]) = [
            (PayloadFormat::Avro, Kind::Avro, &[0u8, 0, 0, 0, 7][..]),
            (PayloadFormat::Protobuf, Kind::Protobuf, &[0u8, 0, 0, 0, 7, 0][..]),
            (PayloadFormat::JsonSchema, Kind::JsonSchema, &[0u8, 0, 0, 0, 7][..]),
        ][which];
        let formats = Formats::for_topics([("t", format)]);
        let schemas = Schemas::of([schema(kind)]);
        let settings = custodian::config::Settings::from_overrides(&[]).expect("defaults");
        let routes = Routes::new(&settings.routes);
        let reading = Reading { routes: &routes, formats: &formats, schemas: &schemas };
        let mut payload = header.to_vec();
        payload.extend_from_slice(&body);
        let envelope = Envelope {
            topic: std::sync::Arc::from("t"),
            partition: 0,
            offset: 0,
            key: None,
            payload: Some(payload),
            headers: Vec::new(),
            unreadable_headers: false,
            timestamp_ms: None,
            received_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        };
        let key = HeaderKey::new(b"property-test-key-0123456789abcdef");
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let item = prepare(envelope, &reading, &key, now);
        let failure = item.work.as_ref().err();
        prop_assert!(failure.is_some(), "random bytes make no valid event");
        let kind = failure.map(|f| f.kind).unwrap_or_default();
        prop_assert!(
            ["schema_mismatch", "schema_violation", "unknown_event_type", "undecodable"].contains(&kind),
            "{kind}"
        );
    }
}
