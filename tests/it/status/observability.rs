//! What operators see: the metric series after traffic, and a JSON log line
//! per message outcome carrying the fields they search by.

use std::time::Duration;

use crate::support::process::Launch;
use crate::support::{created_event, wait_until, TestEnv};
use reqwest::Method;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn metrics_expose_every_series_after_traffic() {
    let env = TestEnv::new(2);
    // A process of its own: the series are the process's, and only this
    // test's traffic may make them appear.
    let mut app = Launch::run(&env)
        .config("[kafka.extra]\n\"statistics.interval.ms\" = \"500\"\n")
        .spawn();
    app.wait_ready(&env, PATIENCE);
    let valid = created_event(&format!("{}-1", env.topic));
    env.produce(&[
        (Some("u1"), valid.as_bytes(), Some(0)),
        (Some("u1"), valid.as_bytes(), Some(0)),
        (Some("u1"), b"not json", Some(1)),
    ]);
    let (status, _) = env.api(
        &app,
        Method::POST,
        "/produce",
        Some(serde_json::json!({
            "eventId": uuid::Uuid::new_v4(), "type": "UserCreated",
            "timestamp": "2025-01-11T12:00:00Z",
            "data": {"userId": "u9", "name": "N", "email": "n@x.io"}})),
    );
    assert_eq!(status, 202);
    wait_until(PATIENCE, "all settled", || {
        let c = env.db().audit_counts();
        c.get("MESSAGE_PROCESSED") == Some(&2)
            && c.get("MESSAGE_DUPLICATE") == Some(&1)
            && c.get("MESSAGE_DLQ") == Some(&1)
    });
    let series = [
        "messages_consumed_total{",
        "messages_processed_total{",
        "messages_failed_total{",
        "duplicates_total{",
        "dlq_count_total{",
        "dlq_depth{",
        "events_produced_total{",
        "db_latency_seconds_bucket{operation=\"projection\"",
        "db_latency_seconds_bucket{operation=\"audit\"",
        "http_requests_total{method=\"POST\",route=\"/produce\",status=\"202\"}",
        "http_latency_seconds_bucket{method=\"POST\",route=\"/produce\"",
        "consumer_lag_messages{",
        "partition_in_flight_messages{",
        "partition_stored_offset{",
        "audit_batch_size_bucket",
        "audit_flush_seconds_bucket",
        "end_to_end_latency_seconds_bucket",
        "pipeline_latency_seconds_bucket",
        "messages_audited_total",
    ];
    wait_until(PATIENCE, "every series present", || {
        let (_, text) = env.get(&app, "/metrics");
        series.iter().all(|s| text.contains(s))
    });
    // Every durable outcome has its time in the pipeline observed.
    let (_, text) = env.get(&app, "/metrics");
    let unlabelled = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    let audited = unlabelled("messages_audited_total");
    assert!(audited >= 4.0, "{audited}");
    assert_eq!(unlabelled("pipeline_latency_seconds_count"), audited);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !line.contains("message_id") && !line.contains("eventId"),
            "no per-message labels: {line}"
        );
    }
    app.stop();
}

#[test]
fn each_message_outcome_is_one_json_log_line_with_its_fields() {
    let env = TestEnv::new(1);
    let mut custodian = Launch::run(&env)
        .setting("log.format", "json")
        .setting("log.level", "warn,custodian=debug")
        .capture()
        .spawn();
    let tx = format!("{}-1", env.topic);
    let valid = created_event(&tx);
    env.produce(&[
        (Some("user-42"), valid.as_bytes(), Some(0)),
        (Some("user-43"), b"{\"broken\": ", Some(0)),
    ]);
    wait_until(PATIENCE, "both settled", || {
        let c = env.db().audit_counts();
        c.get("MESSAGE_PROCESSED") == Some(&1) && c.get("MESSAGE_DLQ") == Some(&1)
    });
    custodian.stop();
    let lines: Vec<serde_json::Value> = custodian
        .finish()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |message: &str, key: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message && l["key"] == key)
            .unwrap_or_else(|| panic!("no `{message}` line for {key}"))
            .clone()
    };
    let processed = find("message outcome durable", "user-42");
    assert_eq!(processed["outcome"], "processed");
    assert_eq!(processed["type"], "transaction.created");
    assert_eq!(processed["topic"], env.topic);
    assert_eq!(processed["partition"], 0);
    assert_eq!(processed["offset"], 0);
    assert!(processed["latency_ms"].as_i64().is_some(), "{processed}");
    uuid::Uuid::parse_str(processed["eventId"].as_str().expect("eventId")).expect("a UUID");
    let parked = find("message dead-lettered", "user-43");
    assert_eq!(parked["level"], "WARN");
    assert_eq!(parked["offset"], 1);
    assert_eq!(parked["error_kind"], "undecodable");
    assert!(parked["eventId"].is_string(), "{parked}");
}
