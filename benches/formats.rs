//! Decode cost per message for each payload format (issue 28): the same
//! transaction event as plain JSON and in the Confluent wire format as
//! Avro, Protobuf and JSON Schema, each through `pipeline::prepare` (wire
//! header, schema decode, the JSON the handler takes, its decoder), with
//! the schemas already gathered, as the enricher has them. No broker, no
//! registry: `cargo bench --bench formats`.

use std::time::Instant;

use chrono::Utc;
use custodian::config::{PayloadFormat, Settings};
use custodian::formats::schema::{Compiled, Kind, Schema};
use custodian::formats::{wire, Formats, Schemas};
use custodian::kafka::envelope::Envelope;
use custodian::pipeline::route_table::Routes;
use custodian::pipeline::steering::HeaderKey;
use custodian::pipeline::{prepare, Reading};

const MESSAGES: usize = 50_000;

fn event(i: usize) -> String {
    format!(
        r#"{{"event_type":"transaction.created","transaction":{{"id":"{:08x}-0000-4000-8000-000000000000","user_id":"u{}","transaction_type":"card","status":"completed","currency":"USD","amount":{}.{:02},"metadata":{{"merchant_name":"Cafe","card_last_four":"4242"}}}},"timestamp":"2024-01-01T12:00:00Z"}}"#,
        i,
        i % 50,
        i % 5000,
        i % 100
    )
}

fn schema(kind: Kind) -> Schema {
    let file = match kind {
        Kind::Avro => "transaction.avsc",
        Kind::Protobuf => "transaction.proto",
        Kind::JsonSchema => "transaction.schema.json",
    };
    let text =
        std::fs::read_to_string(format!("{}/dev/schemas/{file}", env!("CARGO_MANIFEST_DIR")))
            .expect("dev/schemas");
    Schema {
        id: 1,
        kind,
        subject: None,
        version: None,
        compiled: Compiled::compile(kind, &text).expect("compiles"),
    }
}

fn main() {
    let settings = Settings::from_overrides(&[]).expect("defaults");
    let routes = Routes::new(&settings.routes);
    let key = HeaderKey::new(b"bench-key-0123456789abcdef0123456789");
    let now = Utc::now();
    println!(
        "{:<12} {:>12} {:>14}",
        "format", "µs/message", "bytes/message"
    );
    for (name, format) in [
        ("json", None),
        ("avro", Some((PayloadFormat::Avro, Kind::Avro))),
        ("protobuf", Some((PayloadFormat::Protobuf, Kind::Protobuf))),
        (
            "json-schema",
            Some((PayloadFormat::JsonSchema, Kind::JsonSchema)),
        ),
    ] {
        let (formats, schemas, encoder) = match format {
            None => (Formats::json_only(), Schemas::default(), None),
            Some((f, kind)) => (
                Formats::for_topics([("bench", f)]),
                Schemas::of([schema(kind)]),
                Some(schema(kind)),
            ),
        };
        let payloads: Vec<Vec<u8>> = (0..MESSAGES)
            .map(|i| {
                let json = event(i);
                match &encoder {
                    None => json.into_bytes(),
                    Some(s) => {
                        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
                        let (body, indexes) = s.encode(&value).expect("encodes");
                        let mut out = wire::header(1, indexes.as_deref());
                        out.extend_from_slice(&body);
                        out
                    }
                }
            })
            .collect();
        let bytes: usize = payloads.iter().map(Vec::len).sum();
        let reading = Reading {
            routes: &routes,
            formats: &formats,
            schemas: &schemas,
        };
        let envelopes: Vec<Envelope> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| Envelope {
                topic: std::sync::Arc::from("bench"),
                partition: 0,
                offset: i as i64,
                key: None,
                payload: Some(p),
                headers: Vec::new(),
                unreadable_headers: false,
                timestamp_ms: None,
                received_at: now,
            })
            .collect();
        let started = Instant::now();
        let mut ok = 0;
        for envelope in envelopes {
            if prepare(envelope, &reading, &key, now).work.is_ok() {
                ok += 1;
            }
        }
        let elapsed = started.elapsed();
        assert_eq!(ok, MESSAGES, "{name}: every event decodes");
        println!(
            "{name:<12} {:>12.2} {:>14}",
            elapsed.as_secs_f64() * 1e6 / MESSAGES as f64,
            bytes / MESSAGES
        );
    }
}
