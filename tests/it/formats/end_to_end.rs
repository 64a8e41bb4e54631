//! Each format end to end: produced in the wire format, applied to the
//! projection exactly as its JSON form, audited, its dead letter and the
//! explorer's record keeping the original bytes.

use custodian::app::Running;
use custodian::config::PayloadFormat;
use custodian::formats::schema::Kind;
use reqwest::Method;

use super::{encoder, event, schema_text, settings, PATIENCE};
use crate::support::{wait_until, Table, TestEnv};

fn applied_like_json(format: PayloadFormat, kind: Kind) {
    let env = TestEnv::new(1);
    let encoder = encoder(&env, kind, &schema_text(kind));
    let app = Running::start(settings(&env, format, None)).expect("custodian starts");
    let id = uuid::Uuid::new_v4().to_string();
    let json = event(&id, "1234.56", "completed");
    let bytes = encoder.encode(json.as_bytes()).expect("encoded");
    assert_eq!(bytes[0], 0, "the wire format's magic byte");
    env.produce(&[(Some("u1"), bytes.as_slice(), Some(0))]);
    wait_until(PATIENCE, "applied", || {
        env.db().rows(Table::Transactions) == 1
    });
    assert_eq!(
        env.db().count(&format!(
            "SELECT count(*) AS n FROM transactions WHERE id = '{id}' AND amount = 1234.56 \
              AND status = 'completed' AND currency = 'USD' AND user_id = 'u1'"
        )),
        1,
        "the {kind:?} event is applied exactly as its JSON form"
    );
    let (status, page) = env.api(&app, Method::GET, "/messages?key=u1", None);
    assert_eq!(status, 200, "{page}");
    let message_id = page["entries"][0]["message_id"]
        .as_str()
        .expect("a lifecycle entry")
        .to_owned();
    let (status, life) = env.api(&app, Method::GET, &format!("/messages/{message_id}"), None);
    assert_eq!(status, 200, "{life}");
    let last = life["lifecycle"].as_array().and_then(|l| l.last()).cloned();
    assert_eq!(
        last.map(|e| e["status"].clone()),
        Some(serde_json::json!("MESSAGE_PROCESSED")),
        "{life}"
    );
    // The message view: the decoded JSON beside its schema; the record's
    // own bytes for the download.
    let (status, record) = env.api(
        &app,
        Method::GET,
        &format!("/messages/{message_id}/record"),
        None,
    );
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["schema"]["format"], kind.as_str(), "{record}");
    assert_eq!(record["schema"]["id"], encoder.schema_id(), "{record}");
    assert!(record["schema"]["subject"].is_string(), "{record}");
    assert_eq!(
        record["payload_json"]["transaction"]["id"],
        id.as_str(),
        "{record}"
    );
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(record["payload_base64"].as_str().expect("base64"))
        .expect("decodes");
    assert_eq!(raw, bytes, "the download is the record's own bytes");
    app.stop().expect("graceful stop");
}

#[test]
fn an_avro_transaction_is_applied_like_its_json_form() {
    applied_like_json(PayloadFormat::Avro, Kind::Avro);
}

#[test]
fn a_protobuf_transaction_is_applied_like_its_json_form() {
    applied_like_json(PayloadFormat::Protobuf, Kind::Protobuf);
}

#[test]
fn a_json_schema_transaction_is_applied_like_its_json_form() {
    applied_like_json(PayloadFormat::JsonSchema, Kind::JsonSchema);
}

/// Schema evolution: records written with version 1 (no `status`) are
/// read into version 2, whose `status` defaults to `pending`.
#[test]
fn avro_records_of_an_older_schema_are_read_into_the_reader_schema() {
    let env = TestEnv::new(1);
    let v2 = schema_text(Kind::Avro).replace(
        r#"{"name": "status", "type": ["null", "string"], "default": null}"#,
        r#"{"name": "status", "type": "string", "default": "pending"}"#,
    );
    assert_ne!(
        v2,
        schema_text(Kind::Avro),
        "the test edits the status field"
    );
    let v1 = schema_text(Kind::Avro).replace(
        r#"{"name": "status", "type": ["null", "string"], "default": null},"#,
        "",
    );
    assert_ne!(
        v1,
        schema_text(Kind::Avro),
        "the test drops the status field"
    );
    let old = encoder(&env, Kind::Avro, &v1);
    let app =
        Running::start(settings(&env, PayloadFormat::Avro, Some(v2))).expect("custodian starts");
    let id = uuid::Uuid::new_v4().to_string();
    let json = event(&id, "20.00", "ignored").replace(r#""status":"ignored","#, "");
    let bytes = old.encode(json.as_bytes()).expect("encoded with v1");
    env.produce(&[(Some("u1"), bytes.as_slice(), Some(0))]);
    wait_until(PATIENCE, "applied", || {
        let parked = env.dlq_entries();
        assert!(parked.is_empty(), "{parked:?}");
        env.db().rows(Table::Transactions) == 1
    });
    assert_eq!(
        env.db().count(&format!(
            "SELECT count(*) AS n FROM transactions WHERE id = '{id}' AND status = 'pending' AND amount = 20"
        )),
        1,
        "the reader schema's default filled the field v1 lacks"
    );
    app.stop().expect("graceful stop");
}

/// `POST /produce?format=avro` encodes a domain event with its subject's
/// latest schema; the pipeline decodes and applies it.
#[test]
fn post_produce_writes_the_wire_format_with_the_subjects_schema() {
    let env = TestEnv::new(1);
    let schema = r#"{"type":"record","name":"DomainEvent","fields":[
        {"name":"eventId","type":"string"},{"name":"type","type":"string"},
        {"name":"timestamp","type":"string"},
        {"name":"data","type":{"type":"record","name":"UserData","fields":[
            {"name":"userId","type":"string"},{"name":"name","type":"string"},
            {"name":"email","type":"string"}]}}]}"#;
    let registry = super::registry(&super::registry_url());
    let subject = format!("{}-value", env.topic);
    env.rt
        .block_on(custodian::formats::encode::Encoder::new(
            &registry,
            &subject,
            Kind::Avro,
            Some(schema),
        ))
        .expect("registered");
    let app = Running::start(settings(&env, PayloadFormat::Avro, None)).expect("custodian starts");
    let user = format!("u-{}", uuid::Uuid::new_v4().simple());
    let body = serde_json::json!({
        "eventId": uuid::Uuid::new_v4(),
        "type": "UserCreated",
        "timestamp": "2025-01-11T12:00:00Z",
        "data": {"userId": user, "name": "Ada", "email": "ada@example.com"},
    });
    let (status, answer) = env.api(
        &app,
        Method::POST,
        "/produce?format=avro",
        Some(body.clone()),
    );
    assert_eq!(status, 202, "{answer}");
    wait_until(PATIENCE, "the user applied", || {
        env.db().count(&format!(
            "SELECT count(*) AS n FROM users WHERE id = '{user}' AND name = 'Ada'"
        )) == 1
    });
    // A body that does not fit the schema is refused, naming why.
    let mut wrong = body.clone();
    wrong["data"]["email"] = serde_json::json!(7);
    let (status, answer) = env.api(&app, Method::POST, "/produce?format=avro", Some(wrong));
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = env.api(&app, Method::POST, "/produce?format=xml", Some(body));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("format")),
        "{answer}"
    );
    app.stop().expect("graceful stop");
}
