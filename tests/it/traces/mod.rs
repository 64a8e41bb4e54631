//! OpenTelemetry traces (issue 29) against an OTLP/HTTP receiver that
//! decodes what custodian sends: a record's trace continues through
//! custodian to the downstream, in the right parent order, and into the
//! audit trail; a dead letter is recorded at a sampling ratio of 0, and its
//! replay continues its trace; an outbox row's trace goes through the relay
//! to the consumer.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::downstream::{Behaviour, KeyedDownstream};
use crate::support::otlp::{Receiver, Span};
use crate::support::process::{Launch, Process};
use crate::support::{wait_until, TestEnv};

const PATIENCE: Duration = Duration::from_secs(60);

/// The producer's span: the record's `traceparent` names it.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

/// custodian as a process of its own (traces are set up at its start),
/// exporting to `receiver`, with Notify events routed to `downstream`.
fn traced(env: &TestEnv, receiver: &Receiver, downstream: &str, ratio: &str) -> Process {
    let mut app = Launch::run(env)
        .setting("telemetry.otlp_endpoint", receiver.url())
        .setting("telemetry.sample_ratio", ratio)
        .config(&format!(
            "[[routes]]\nevent_types = [\"Notify\"]\nhandler = \"http\"\nurl = \"{downstream}\"\n\n\
             [[routes]]\nevent_types = [\"transaction.created\"]\nhandler = \"transactions\"\n"
        ))
        .spawn();
    app.wait_ready(env, PATIENCE);
    app
}

fn notify(n: i64) -> String {
    json!({"eventId": uuid::Uuid::new_v4(), "type": "Notify",
           "timestamp": "2025-01-11T12:00:00Z", "data": {"n": n}})
    .to_string()
}

/// The spans called `name`, or `name <destination>` (`process tx-…`).
fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    let prefix = format!("{name} ");
    spans
        .iter()
        .filter(|s| s.name == name || s.name.starts_with(&prefix))
        .collect()
}

#[test]
fn a_records_trace_goes_through_custodian_to_the_downstream_and_into_the_audit_trail() {
    let env = TestEnv::new(1);
    let receiver = Receiver::start();
    let down = KeyedDownstream::start(Behaviour::default());
    let mut app = traced(&env, &receiver, &down.url(), "1.0");
    let payload = notify(1);
    let traceparent = format!("00-{TRACE}-{PRODUCER_SPAN}-01");
    env.produce_with_headers(
        payload.as_bytes(),
        &[("traceparent", traceparent.as_bytes())],
    );
    wait_until(PATIENCE, "delivered and its spans exported", || {
        let spans = receiver.trace(TRACE);
        down.seen().len() == 1
            && ["process", "decode", "POST", "apply", "audit write"]
                .iter()
                .all(|n| !named(&spans, n).is_empty())
    });
    let spans = receiver.trace(TRACE);
    let process = named(&spans, "process")[0];
    assert_eq!(
        process.parent_span_id, PRODUCER_SPAN,
        "continues the record's trace"
    );
    assert_eq!(process.kind, "SPAN_KIND_CONSUMER");
    assert_eq!(process.service, "custodian");
    for (key, value) in [
        ("messaging.system", "kafka"),
        ("messaging.destination.name", env.topic.as_str()),
        ("messaging.destination.partition.id", "0"),
        ("messaging.kafka.offset", "0"),
        ("messaging.operation.type", "process"),
    ] {
        assert_eq!(
            process.attributes.get(key).map(String::as_str),
            Some(value),
            "{process:?}"
        );
    }
    assert!(process
        .attributes
        .contains_key("messaging.consumer.group.name"));
    assert!(process.attributes.contains_key("messaging.message.id"));
    for child in ["decode", "POST", "apply", "audit write"] {
        let span = named(&spans, child)[0];
        assert_eq!(
            span.parent_span_id, process.span_id,
            "{child} is the record's child"
        );
    }
    let post = named(&spans, "POST")[0];
    assert_eq!(post.kind, "SPAN_KIND_CLIENT");
    assert_eq!(
        post.attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("200")
    );
    // The downstream got the client span's context.
    let sent = &down.seen()[0].traceparent;
    assert_eq!(sent, &format!("00-{TRACE}-{}-01", post.span_id), "{sent}");

    // Every audit entry names the trace; the explorer finds them by it.
    let (status, page) = env.api(
        &app,
        Method::GET,
        &format!("/messages?trace_id={TRACE}"),
        None,
    );
    assert_eq!(status, 200, "{page}");
    let entries = page["entries"].as_array().cloned().unwrap_or_default();
    assert!(!entries.is_empty(), "{page}");
    assert!(
        entries.iter().all(|e| e["detail"]["trace_id"] == TRACE),
        "{page}"
    );
    let (status, bad) = env.api(&app, Method::GET, "/messages?trace_id=xyz", None);
    assert_eq!(status, 400, "{bad}");
    app.stop();
}

#[test]
fn at_ratio_zero_a_dead_letter_is_recorded_and_its_replay_continues_its_trace() {
    let env = TestEnv::new(1);
    let receiver = Receiver::start();
    let down = KeyedDownstream::start(Behaviour::default());
    let mut app = traced(&env, &receiver, &down.url(), "0");
    // Delivered, and not sampled: nothing of its trace is exported.
    env.produce(&[(Some("k"), notify(1).as_bytes(), Some(0))]);
    // No route takes it: a dead letter.
    let poison = json!({"eventId": uuid::Uuid::new_v4(), "type": "Unrouted",
                        "timestamp": "2025-01-11T12:00:00Z", "data": {}})
    .to_string();
    env.produce(&[(Some("k"), poison.as_bytes(), Some(0))]);
    wait_until(PATIENCE, "the dead letter's span exported", || {
        !named(&receiver.spans(), "dead letter").is_empty() && env.dlq_entries().len() == 1
    });
    let dead = named(&receiver.spans(), "dead letter")[0].clone();
    assert_eq!(
        dead.attributes.get("custodian.failure").map(String::as_str),
        Some("true")
    );
    assert!(
        named(&receiver.spans(), "process").is_empty(),
        "at ratio 0 only the failure is kept: {:?}",
        receiver.spans()
    );
    // The delivered one's downstream still got its context, marked not
    // sampled, and its audit entries name no trace that was not kept.
    wait_until(PATIENCE, "the first delivered", || down.seen().len() == 1);
    let sent = down.seen()[0].traceparent.clone();
    assert!(sent.starts_with("00-") && sent.ends_with("-00"), "{sent}");
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_PROCESSED' \
              AND detail ? 'trace_id'"
        ),
        0
    );
    let dlq_traced = format!(
        "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_DLQ' \
          AND detail->>'trace_id' = '{}'",
        dead.trace_id
    );
    assert_eq!(
        env.db().count(&dlq_traced),
        1,
        "the dead letter names its trace"
    );
    let entry = env.dlq_entries().remove(0);
    let kept = entry
        .traceparent
        .clone()
        .expect("the entry keeps its trace context");
    assert_eq!(kept, format!("00-{}-{}-01", dead.trace_id, dead.span_id));

    let (status, body) = env.api(
        &app,
        Method::POST,
        &format!("/replay/{}", entry.message_id),
        Some(json!({"reason": "follow the trace"})),
    );
    assert_eq!(status, 200, "{body}");
    wait_until(
        PATIENCE,
        "the replay and the record read again, in its trace",
        || {
            let spans = receiver.trace(&dead.trace_id);
            !named(&spans, "send").is_empty() && !named(&spans, "process").is_empty()
        },
    );
    let spans = receiver.trace(&dead.trace_id);
    let replay = named(&spans, "send")[0];
    assert_eq!(replay.name, format!("send {}", env.topic));
    assert_eq!(
        replay.parent_span_id, dead.span_id,
        "the replay continues the dead letter"
    );
    assert_eq!(replay.kind, "SPAN_KIND_PRODUCER");
    let again = named(&spans, "process")[0];
    assert_eq!(
        again.parent_span_id, replay.span_id,
        "the record read again is the replay's child"
    );
    let (_, life) = env.api(
        &app,
        Method::GET,
        &format!("/messages/{}", entry.message_id),
        None,
    );
    let replayed = life["lifecycle"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|e| e["status"] == "MESSAGE_REPLAYED")
                .cloned()
        })
        .expect("a MESSAGE_REPLAYED entry");
    assert_eq!(
        replayed["detail"]["trace_id"],
        dead.trace_id.as_str(),
        "{life}"
    );
    app.stop();
}

#[test]
fn an_outbox_rows_traceparent_goes_through_the_relay_into_the_consumers_trace() {
    let env = TestEnv::new(1);
    custodian::store::migrate::run(&env.database_url.clone().into(), Duration::from_secs(30))
        .expect("migrations");
    let receiver = Receiver::start();
    let event = crate::support::transaction_event(
        "transaction.created",
        "tx-traced",
        5.0,
        "2024-01-01T12:00:00Z",
    );
    let (row, event_id) = env.db().insert_outbox(
        "tx-traced",
        "transaction.created",
        &env.topic,
        event.as_bytes(),
    );
    // Written by a traced (sampled) transaction.
    let writer_span = "b7ad6b7169203331";
    let trace = "0af7651916cd43dd8448eb211c80319c";
    env.db()
        .set_outbox_traceparent(row, &format!("00-{trace}-{writer_span}-01"));
    let mut app = Launch::run(&env)
        .setting("telemetry.otlp_endpoint", receiver.url())
        .setting("relay.enabled", true)
        .setting("relay.interval", "100ms")
        .spawn();
    app.wait_ready(&env, PATIENCE);
    wait_until(PATIENCE, "published, consumed, and traced", || {
        let spans = receiver.trace(trace);
        !named(&spans, "send").is_empty() && !named(&spans, "process").is_empty()
    });
    let spans = receiver.trace(trace);
    let send = named(&spans, "send")[0];
    assert_eq!(
        send.parent_span_id, writer_span,
        "the relay continues the row's trace"
    );
    assert_eq!(send.kind, "SPAN_KIND_PRODUCER");
    assert_eq!(
        send.attributes.get("custodian.send").map(String::as_str),
        Some("outbox")
    );
    let process = named(&spans, "process")[0];
    assert_eq!(
        process.parent_span_id, send.span_id,
        "the consumer continues the relay's"
    );
    assert_eq!(
        process
            .attributes
            .get("messaging.message.id")
            .map(String::as_str),
        Some(event_id.to_string().as_str())
    );
    app.stop();
}
