//! Retry topics (`retry = "deferred"`, `retry_backend = "kafka"`): a
//! failing key goes to `<topic>.retry` while every other key flows; the
//! committed offset moves past it; the retry records carry custodian's
//! signed headers (and the producer's own); attempts that run out
//! dead-letter the message under its original position. Real PostgreSQL
//! and Redis, librdkafka's mock cluster, a downstream on loopback.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::support::downstream::Isolation;
use crate::support::{wait_until, TestEnv};
use custodian::app::Running;
use custodian::kafka::envelope::{Envelope, Headers};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

/// Custodian with one http route to `url` whose retries go to the retry topic.
fn with_retry_topic(env: &TestEnv, url: &str, max_attempts: u32) -> Running {
    env.broker
        .create_topic(&retry_topic(env), 1)
        .expect("retry topic");
    let overrides = [
        (
            "routes",
            json!([{ "event_types": ["Notify"], "handler": "http", "url": url, "timeout": "2s",
                     "rate_per_second": 10000, "burst": 1000, "retry": "deferred",
                     "retry_backend": "kafka" }]),
        ),
        ("retry.max_attempts", max_attempts.into()),
        ("retry.backoff_min", "200ms".into()),
        ("retry.backoff_max", "500ms".into()),
        (
            "kafka.header_key",
            "a-test-header-key-0123456789abcdef".into(),
        ),
    ];
    Running::start(env.settings_with(&overrides)).expect("custodian starts")
}

fn retry_topic(env: &TestEnv) -> String {
    format!("{}.retry", env.topic)
}

/// Produces `(key, n)` in order to partition 0, each with a producer header
/// `trace-id` and a forged `custodian-retry-attempt`; answers ids by `n`.
fn produce(env: &TestEnv, messages: &[(&str, i64)]) -> HashMap<i64, uuid::Uuid> {
    let producer = env.producer();
    let mut ids = HashMap::new();
    env.rt.block_on(async {
        for (key, n) in messages {
            let id = uuid::Uuid::new_v4();
            let payload = json!({"eventId": id, "type": "Notify",
                                 "timestamp": "2025-01-11T12:00:00Z", "data": {"n": n}})
            .to_string();
            let trace = format!("trace-{n}");
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "trace-id",
                    value: Some(trace.as_bytes()),
                })
                .insert(Header {
                    key: "custodian-retry-attempt",
                    value: Some(b"99".as_slice()),
                });
            let record = FutureRecord::to(&env.topic)
                .partition(0)
                .key(*key)
                .payload(&payload)
                .headers(headers);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .expect("kafka acknowledged");
            ids.insert(*n, id);
        }
    });
    ids
}

/// Every record of the retry topic's partition 0: key, headers.
fn retry_records(env: &TestEnv) -> Vec<(Option<Vec<u8>>, Headers)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.broker.bootstrap_servers())
        .set("group.id", format!("{}-retry-reader", env.group))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let topic = retry_topic(env);
    let (_, high) = consumer
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .expect("partition offset");
    consumer.assign(&tpl).expect("assign");
    let name: std::sync::Arc<str> = std::sync::Arc::from(topic.as_str());
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (records.len() as i64) < high && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            // custodian's own copy of a record (header names as bytes).
            let record = Envelope::from_borrowed(&m, &name);
            records.push((record.key, record.headers));
        }
    }
    assert_eq!(records.len() as i64, high, "read the whole retry topic");
    records
}

/// The committed offset of the group on the retry topic's partition 0.
fn retry_committed(env: &TestEnv) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.broker.bootstrap_servers())
        .set("group.id", &env.group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&retry_topic(env), 0);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    match committed
        .find_partition(&retry_topic(env), 0)
        .map(|e| e.offset())
    {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

fn header<'a>(headers: &'a Headers, name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .filter_map(|(_, v)| v.as_deref().and_then(|v| std::str::from_utf8(v).ok()))
        .collect()
}

/// The attempt numbers of a lifecycle's MESSAGE_FAILED rows, in order.
fn failed_attempts(lifecycle: &[(String, i32)]) -> Vec<i32> {
    lifecycle
        .iter()
        .filter(|(s, _)| s == "MESSAGE_FAILED")
        .map(|(_, a)| *a)
        .collect()
}

/// While A fails, B..Z are delivered; the trade-off of this backend: A's
/// later messages are not held behind A's first, they are tried (and fail)
/// on their own.
fn while_a_fails_the_others_are_delivered_and_each_of_as_messages_tried(isolation: &Isolation) {
    let seen = isolation.down.seen();
    assert!(!seen.iter().any(|s| s.key == "A" && s.status == 200));
    let others_delivered: HashSet<String> = seen
        .iter()
        .filter(|s| s.status == 200)
        .map(|s| s.key.clone())
        .collect();
    assert_eq!(
        others_delivered.len(),
        isolation.others.len(),
        "B..Z all delivered"
    );
    let tried: HashSet<i64> = seen.iter().filter(|s| s.key == "A").map(|s| s.n).collect();
    assert_eq!(tried, HashSet::from([0, 1, 2]), "{seen:?}");
}

/// The retry records: same key, custodian's signed headers, the producer's
/// own header kept and its forged retry header replaced; later records of
/// A's first message count its attempts on.
fn a_retry_record_keeps_key_and_producer_header_under_signed_retry_headers(
    env: &TestEnv,
    first_of_a: &str,
) {
    let records = retry_records(env);
    let first = records
        .iter()
        .find(|(_, h)| header(h, "custodian-message-id") == [first_of_a])
        .expect("A's first message in the retry topic");
    assert_eq!(first.0.as_deref(), Some(b"A".as_slice()));
    let h = &first.1;
    assert_eq!(header(h, "custodian-retry-attempt"), ["1"]);
    assert_eq!(header(h, "custodian-retry-topic"), [env.topic.as_str()]);
    assert_eq!(header(h, "custodian-retry-partition"), ["0"]);
    assert_eq!(header(h, "custodian-retry-offset"), ["0"]);
    assert_eq!(header(h, "trace-id"), ["trace-0"]);
    let due = header(h, "custodian-retry-due");
    assert_eq!(due.len(), 1);
    assert!(
        chrono::DateTime::parse_from_rfc3339(due[0]).is_ok(),
        "{due:?}"
    );
    let error = header(h, "custodian-retry-error");
    assert!(error.len() == 1 && error[0].contains("500"), "{error:?}");
    assert_eq!(header(h, "custodian-retry-signature").len(), 1);
    assert_eq!(header(h, "custodian-signature").len(), 1);
    let attempts: Vec<u32> = records
        .iter()
        .filter(|(_, h)| header(h, "custodian-message-id") == [first_of_a])
        .filter_map(|(_, h)| header(h, "custodian-retry-attempt").first()?.parse().ok())
        .collect();
    assert!(
        attempts.len() >= 2,
        "A retried more than once: {attempts:?}"
    );
    assert_eq!(attempts, (1..=attempts.len() as u32).collect::<Vec<_>>());
}

/// Once A heals, each of A's messages is delivered once. This backend
/// keeps no order between them (whichever comes up first in the retry
/// topic goes first); what it does keep is the retry topic's order: every
/// retry of A was attempted in the order of its record in the retry
/// partition, none skipped, none repeated; and B..Z came before A.
fn once_healed_as_messages_arrive_once_each_in_retry_partition_order(
    env: &TestEnv,
    isolation: &Isolation,
) {
    isolation.down.heal();
    wait_until(PATIENCE, "A processed", || {
        env.db().audited("MESSAGE_PROCESSED") == isolation.total
    });
    let seen = isolation.down.seen();
    let mut delivered_a: Vec<i64> = seen
        .iter()
        .filter(|s| s.key == "A" && s.status == 200)
        .map(|s| s.n)
        .collect();
    delivered_a.sort_unstable();
    assert_eq!(delivered_a, [0, 1, 2], "each of A's messages once");
    let mut first_tries = HashSet::new();
    let retried: Vec<String> = seen
        .iter()
        .filter(|s| s.key == "A" && !first_tries.insert(s.message_id.clone()))
        .map(|s| s.message_id.clone())
        .collect();
    let in_retry_topic: Vec<String> = retry_records(env)
        .iter()
        .filter(|(key, _)| key.as_deref() == Some(b"A".as_slice()))
        .filter_map(|(_, h)| {
            header(h, "custodian-message-id")
                .first()
                .map(|s| s.to_string())
        })
        .collect();
    assert_eq!(retried, in_retry_topic, "retries in retry-partition order");
    let last_other = seen
        .iter()
        .rposition(|s| s.key != "A" && s.status == 200)
        .expect("others delivered");
    let first_a = seen
        .iter()
        .position(|s| s.key == "A" && s.status == 200)
        .expect("A delivered");
    assert!(
        last_other < first_a,
        "B..Z delivered before A's failure cleared"
    );
}

/// The retry partition's own offsets settle too.
fn the_retry_partition_is_committed_to_its_end(env: &TestEnv) {
    let high = retry_records(env).len() as i64;
    wait_until(PATIENCE, "retry topic committed to its end", || {
        retry_committed(env) == Some(high)
    });
}

/// The audit trail: each attempt failed with its number, each retry was
/// scheduled, the last attempt processed it; every entry is under the
/// original position, reconcile finds it finished with no gaps, the chains
/// hold, and the deliveries API lists it there with the attempt that
/// succeeded.
fn as_first_message_is_audited_and_listed_under_its_original_position(
    env: &TestEnv,
    app: &Running,
    first_of_a: &str,
) {
    let lifecycle = env.db().lifecycle(first_of_a);
    let failed = failed_attempts(&lifecycle);
    assert_eq!(failed, (1..=failed.len() as i32).collect::<Vec<_>>());
    let scheduled = lifecycle
        .iter()
        .filter(|(s, _)| s == "MESSAGE_RETRY_SCHEDULED")
        .count();
    assert_eq!(scheduled, failed.len(), "{lifecycle:?}");
    assert_eq!(
        lifecycle.last(),
        Some(&("MESSAGE_PROCESSED".to_string(), failed.len() as i32 + 1))
    );
    let elsewhere = env.db().entries_elsewhere(first_of_a, &env.topic, 0, 0);
    assert_eq!(elsewhere, 0);
    env.assert_reconciled(app.http_addr, 0);
    env.assert_chains_hold(app.http_addr);
    let (status, delivery) = env.api(
        app.http_addr,
        reqwest::Method::GET,
        &format!("/messages/{first_of_a}"),
        None,
    );
    assert_eq!(status, 200, "{delivery}");
    let delivery = &delivery["delivery"];
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(delivery["topic"], env.topic.as_str(), "{delivery}");
    assert_eq!(delivery["offset"], 0, "{delivery}");
    assert_eq!(delivery["attempts"], failed.len() + 1, "{delivery}");
}

#[test]
fn a_failing_key_waits_in_the_retry_topic_while_other_keys_flow() {
    let env = TestEnv::new(1);
    let started = Instant::now();
    // A's first message, then B..Z with A's later ones among them; every
    // other key is delivered and the original partition committed to its
    // end while A still fails.
    let (app, isolation) = crate::support::downstream::others_flow_while_a_fails(
        &env,
        |url| with_retry_topic(&env, url, 100),
        |messages| produce(&env, messages),
    );
    let first_of_a = isolation.ids[&0].to_string();
    while_a_fails_the_others_are_delivered_and_each_of_as_messages_tried(&isolation);
    a_retry_record_keeps_key_and_producer_header_under_signed_retry_headers(&env, &first_of_a);
    // A's failure clears after about 5 s.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(started.elapsed()));
    once_healed_as_messages_arrive_once_each_in_retry_partition_order(&env, &isolation);
    the_retry_partition_is_committed_to_its_end(&env);
    as_first_message_is_audited_and_listed_under_its_original_position(&env, &app, &first_of_a);
    app.stop().expect("graceful stop");
}

#[test]
fn attempts_that_run_out_dead_letter_under_the_original_position() {
    let env = TestEnv::new(1);
    // Message 0 (key A) always fails; B does not.
    let down = crate::support::downstream::always_failing(&[0]);
    let app = with_retry_topic(&env, &down.url(), 3);
    let ids = produce(&env, &[("A", 0), ("B", 1)]);

    wait_until(PATIENCE, "A dead-lettered", || env.dlq_entries().len() == 1);
    let entry = &env.dlq_entries()[0];
    assert_eq!(entry.message_id, ids[&0]);
    assert_eq!(
        (entry.topic.as_str(), entry.partition, entry.offset),
        (env.topic.as_str(), 0, 0),
        "the DLQ entry names the original position, so replay goes back there"
    );
    assert_eq!(entry.attempts, 3);
    assert_eq!(entry.error_class, "transient");
    assert_eq!(entry.key.as_deref(), Some("A"));

    wait_until(PATIENCE, "A's audit ends MESSAGE_DLQ", || {
        env.db()
            .lifecycle(&ids[&0].to_string())
            .last()
            .is_some_and(|(s, _)| s == "MESSAGE_DLQ")
    });
    let lifecycle = env.db().lifecycle(&ids[&0].to_string());
    assert_eq!(failed_attempts(&lifecycle), [1, 2, 3], "{lifecycle:?}");
    let scheduled = lifecycle
        .iter()
        .filter(|(s, _)| s == "MESSAGE_RETRY_SCHEDULED")
        .count();
    assert_eq!(scheduled, 2, "two retries scheduled: {lifecycle:?}");
    // Two retry records, attempts 1 and 2; B never went there.
    let records = retry_records(&env);
    let attempts: Vec<Vec<&str>> = records
        .iter()
        .map(|(_, h)| header(h, "custodian-retry-attempt"))
        .collect();
    assert_eq!(attempts, [vec!["1"], vec!["2"]]);
    assert_eq!(
        env.db()
            .lifecycle(&ids[&1].to_string())
            .last()
            .map(|s| s.0.as_str()),
        Some("MESSAGE_PROCESSED")
    );
    wait_until(PATIENCE, "both partitions committed to their ends", || {
        env.committed() == vec![Some(2)] && retry_committed(&env) == Some(2)
    });
    // Three requests for A, one at a time, each retry not before its due
    // time (the backoff is at least 200 ms): the retry partition waited.
    let a: Vec<_> = down.seen().into_iter().filter(|s| s.n == 0).collect();
    assert_eq!(a.len(), 3);
    for pair in a.windows(2) {
        let gap = pair[1].started.saturating_duration_since(pair[0].ended);
        assert!(gap >= Duration::from_millis(180), "retried after {gap:?}");
    }
    app.stop().expect("graceful stop");
}
