//! Each failure kind dead-lettered with its bytes intact, under its own
//! error kind, while the partition flows on; and a replay of an Avro
//! record republishes its bytes unchanged.

use custodian::app::Running;
use custodian::config::PayloadFormat;
use custodian::formats::schema::Kind;
use reqwest::Method;

use super::{encoder, event, schema_text, settings, PATIENCE};
use crate::support::{wait_until, Table, TestEnv};

#[test]
fn wire_format_unknown_schema_and_mismatch_are_dead_lettered_with_their_bytes() {
    let env = TestEnv::new(1);
    let avro = encoder(&env, Kind::Avro, &schema_text(Kind::Avro));
    // A JSON Schema registered too: an id of the wrong type for this topic.
    let json_schema = encoder(&env, Kind::JsonSchema, &schema_text(Kind::JsonSchema));
    let app = Running::start(settings(&env, PayloadFormat::Avro, None)).expect("custodian starts");

    let good = avro
        .encode(event(&uuid::Uuid::new_v4().to_string(), "5.00", "completed").as_bytes())
        .expect("encoded");
    let plain_json = event("plain", "1.00", "completed").into_bytes();
    let mut unknown = vec![0, 0x7f, 0xff, 0xff, 0xf0];
    unknown.extend_from_slice(&good[5..]);
    let mut mismatch = good[..5].to_vec();
    mismatch.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x01, 0x02]);
    let wrong_type = json_schema
        .encode(event("wrong", "1.00", "completed").as_bytes())
        .expect("encoded");
    // Decodes, but no route takes its event type: shown decoded when listed.
    let unrouted = avro
        .encode(
            event("unrouted", "2.00", "completed")
                .replace("transaction.created", "transaction.bogus")
                .as_bytes(),
        )
        .expect("encoded");
    let poison: [(&str, &[u8]); 5] = [
        ("wire_format", &plain_json),
        ("unknown_schema", &unknown),
        ("schema_mismatch", &mismatch),
        ("unknown_schema", &wrong_type),
        ("unknown_event_type", &unrouted),
    ];
    let mut records: Vec<(Option<&str>, &[u8], Option<i32>)> = poison
        .iter()
        .map(|(_, b)| (Some("k"), *b, Some(0)))
        .collect();
    records.push((Some("k"), &good, Some(0)));
    env.produce(&records);

    wait_until(PATIENCE, "five parked, one applied", || {
        env.dlq_entries().len() == 5 && env.db().rows(Table::Transactions) == 1
    });
    let parked = env.dlq_entries();
    for (kind, bytes) in poison {
        let entry = parked
            .iter()
            .find(|e| e.payload_bytes().ok().flatten().as_deref() == Some(bytes))
            .unwrap_or_else(|| panic!("a {kind} record parked with its bytes intact"));
        assert_eq!(entry.error_kind, kind, "{entry:?}");
    }

    // The listing and the entry show a record that decodes as the JSON it
    // decodes to, beside its schema; one that does not, as bytes only.
    let (status, page) = env.api(&app, Method::GET, "/dlq?limit=10", None);
    assert_eq!(status, 200, "{page}");
    let listed = page["entries"].as_array().expect("entries");
    assert_eq!(listed.len(), 5, "{page}");
    for shown in listed {
        let decodes = shown["error_kind"] == "unknown_event_type";
        assert_eq!(shown["schema"].is_object(), decodes, "{shown}");
        assert_eq!(shown["payload_json"].is_object(), decodes, "{shown}");
        if decodes {
            assert_eq!(
                shown["payload_encoding"], "base64",
                "the bytes as they are: {shown}"
            );
        }
    }
    let id = listed
        .iter()
        .find(|e| e["error_kind"] == "unknown_event_type")
        .and_then(|e| e["message_id"].as_str())
        .expect("the unrouted entry")
        .to_owned();
    let (status, shown) = env.api(&app, Method::GET, &format!("/dlq/{id}"), None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        shown["payload_json"]["event_type"], "transaction.bogus",
        "{shown}"
    );
    assert_eq!(
        shown["payload_json"]["transaction"]["id"], "unrouted",
        "{shown}"
    );
    assert_eq!(shown["schema"]["format"], "avro", "{shown}");
    assert_eq!(shown["schema"]["id"], avro.schema_id(), "{shown}");

    // A replayed Avro record carries its bytes unchanged: it fails again
    // identically, and its new entry holds the same bytes.
    let mismatched = parked
        .iter()
        .find(|e| e.error_kind == "schema_mismatch")
        .expect("the mismatch");
    let (status, body) = env.api(
        &app,
        Method::POST,
        &format!("/replay/{}", mismatched.message_id),
        Some(serde_json::json!({"reason": "check the bytes"})),
    );
    assert_eq!(status, 200, "{body}");
    wait_until(PATIENCE, "parked again after the replay", || {
        env.dlq_entries()
            .iter()
            .any(|e| e.message_id == mismatched.message_id && e.replay_count == 1)
    });
    let again = env
        .dlq_entries()
        .into_iter()
        .find(|e| e.message_id == mismatched.message_id)
        .expect("parked again");
    assert_eq!(
        again.payload_bytes().ok().flatten().as_deref(),
        Some(mismatch.as_slice()),
        "the replay republished the original bytes"
    );
    app.stop().expect("graceful stop");
}
