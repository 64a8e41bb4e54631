//! An http route on a schema topic forwards the record's JSON by default,
//! or its own wire-format bytes with `forward = "original"`.

use custodian::app::Running;
use custodian::config::PayloadFormat;
use custodian::formats::schema::Kind;
use serde_json::json;

use super::{encoder, settings, PATIENCE};
use crate::support::downstream::{Behaviour, KeyedDownstream};
use crate::support::{wait_until, TestEnv};

const NOTIFY: &str = r#"{"type":"record","name":"Notify","fields":[
    {"name":"eventId","type":"string"},{"name":"type","type":"string"},
    {"name":"timestamp","type":"string"},
    {"name":"data","type":{"type":"record","name":"N","fields":[{"name":"n","type":"long"}]}}]}"#;

#[test]
fn an_http_route_forwards_the_decoded_json_or_with_original_the_bytes() {
    let env = TestEnv::new(1);
    let avro = encoder(&env, Kind::Avro, NOTIFY);
    let downstream = KeyedDownstream::start(Behaviour::default());
    let mut settings = settings(&env, PayloadFormat::Avro, None);
    let routes = json!([
        { "event_types": ["Notify"], "handler": "http", "url": downstream.url() },
        { "event_types": ["NotifyRaw"], "handler": "http", "url": downstream.url(), "forward": "original" },
    ]);
    settings.routes = serde_json::from_value(routes).expect("routes");
    let app = Running::start(settings).expect("custodian starts");
    let event = |kind: &str, n: i64| {
        json!({"eventId": uuid::Uuid::new_v4(), "type": kind, "timestamp": "2025-01-11T12:00:00Z", "data": {"n": n}})
            .to_string()
    };
    let decoded = avro.encode(event("Notify", 1).as_bytes()).expect("encoded");
    let original = avro
        .encode(event("NotifyRaw", 2).as_bytes())
        .expect("encoded");
    env.produce(&[
        (Some("a"), decoded.as_slice(), Some(0)),
        (Some("b"), original.as_slice(), Some(0)),
    ]);
    wait_until(PATIENCE, "both delivered", || downstream.seen().len() == 2);
    let seen = downstream.seen();
    let json_one = seen.iter().find(|s| s.key == "a").expect("the decoded one");
    assert_eq!(json_one.content_type, "application/json");
    assert_eq!(json_one.n, 1, "the downstream read the JSON");
    let raw = seen
        .iter()
        .find(|s| s.key == "b")
        .expect("the original one");
    assert_eq!(raw.content_type, "avro/binary");
    assert_eq!(raw.body, original, "the record's own bytes");
    app.stop().expect("graceful stop");
}
