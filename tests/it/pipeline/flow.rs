//! The core pipeline against real PostgreSQL, Redis and a Kafka protocol peer.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::{created_event, wait_until, Table, TestEnv};
use custodian::app::Running;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn n_events_become_processed_lifecycles_projection_rows_and_committed_offsets() {
    let env = TestEnv::new(3);
    let app = Running::start(env.settings()).expect("custodian starts");
    let events = env.produce_synthetic(600, 11, 0.2);

    wait_until(PATIENCE, "600 PROCESSED audit rows", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED").copied() == Some(600)
    });
    let counts = env.db().audit_counts();
    assert_eq!(counts.get("MESSAGE_RECEIVED"), Some(&600));
    assert_eq!(
        counts.len(),
        2,
        "only RECEIVED and PROCESSED rows: {counts:?}"
    );
    assert_eq!(env.db().rows(Table::MessagePayloads), 600);

    // One projection row per transaction; every event applied exactly once.
    let distinct_ids: HashSet<String> = events
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e.payload).expect("json");
            v["transaction"]["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(
        env.db().rows(Table::Transactions),
        distinct_ids.len() as i64
    );
    assert_eq!(env.db().versions(), 600);
    // Enrichment landed: card rows carry a merchant category, all rows have search text.
    assert!(env.db().count("SELECT count(*) AS n FROM transactions WHERE transaction_type = 'card' AND enrichment ? 'merchant_category' AND enriched") > 0);
    assert_eq!(
        env.db()
            .count("SELECT count(*) AS n FROM transactions WHERE searchable_content = ''"),
        0
    );

    // Operational endpoints.
    assert_eq!(env.get(&app, "/health").0, 200);
    let (status, body) = env.get(&app, "/ready");
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = env.get(&app, "/metrics");
    for series in [
        "messages_consumed_total",
        "messages_processed_total",
        "audit_batch_size",
        "audit_flush_seconds",
        "partition_in_flight_messages",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }
    assert!(metrics.contains(&format!(
        "messages_consumed_total{{topic=\"{}\"}}",
        env.topic
    )));

    app.stop().expect("graceful stop");
    // Everything read was durable, so the committed offset is the end of each partition.
    let committed: Vec<i64> = env
        .committed()
        .into_iter()
        .map(|c| c.unwrap_or(0))
        .collect();
    assert_eq!(committed, env.high_watermarks());
    assert_eq!(committed.iter().sum::<i64>(), 600);
}

#[test]
fn malformed_and_unknown_events_are_dead_lettered_and_the_partition_keeps_flowing() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    // Ids unique to this test: Redis (and so the DLQ's by-id hash) is shared.
    let topic = env.topic.clone();
    let valid = move |id: &str| created_event(&format!("{topic}-{id}"));
    let not_utf8: &[u8] = b"\xff\xfe\x00binary\x80";
    let unknown = valid("tx-u").replace("transaction.created", "transaction.exploded");
    let missing_field = valid("tx-m").replace(r#""user_id":"u1","#, "");
    let (v1, v2, v3) = (valid("tx-1"), valid("tx-2"), valid("tx-3"));
    env.produce(&[
        (Some("u1"), v1.as_bytes(), Some(0)),
        (Some("bad-key"), not_utf8, Some(0)),
        (None, unknown.as_bytes(), Some(0)),
        (Some("u1"), v2.as_bytes(), Some(0)),
        (None, missing_field.as_bytes(), Some(0)),
        (Some("u1"), v3.as_bytes(), Some(0)),
    ]);

    wait_until(PATIENCE, "3 processed and 3 dead-lettered", || {
        let c = env.db().audit_counts();
        c.get("MESSAGE_PROCESSED") == Some(&3) && c.get("MESSAGE_DLQ") == Some(&3)
    });
    let counts = env.db().audit_counts();
    assert_eq!(counts.get("MESSAGE_FAILED"), Some(&3));
    assert_eq!(counts.get("MESSAGE_RECEIVED"), Some(&6));

    let entries = env.dlq_entries();
    assert_eq!(entries.len(), 3, "LLEN dlq:<topic>");
    let by_offset = |o: i64| {
        entries
            .iter()
            .find(|e| e.offset == o)
            .expect("entry at offset")
    };
    let garbage = by_offset(1);
    assert_eq!(garbage.error_kind, "undecodable");
    assert_eq!(garbage.payload_encoding, "base64");
    assert_eq!(
        garbage.payload_bytes().expect("base64"),
        Some(not_utf8.to_vec()),
        "payload byte-exact"
    );
    assert_eq!(garbage.key.as_deref(), Some("bad-key"));
    assert_eq!(garbage.consumer_group, env.group);
    // Permanent: parked at once, after one attempt.
    assert_eq!(garbage.attempts, 1);
    assert_eq!(garbage.error_class, "permanent");
    assert_eq!(garbage.stage, "decode");
    assert!(garbage.kafka_timestamp.is_some());
    assert_eq!(garbage.first_failed_at, garbage.last_failed_at);
    // Every documented field is in the stored JSON, and it is found by id.
    let (status, by_id) = env.api(
        &app,
        reqwest::Method::GET,
        &format!("/dlq/{}", garbage.message_id),
        None,
    );
    assert_eq!(status, 200, "{by_id}");
    for field in [
        "message_id",
        "payload",
        "payload_encoding",
        "key",
        "headers",
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
        "consumer_group",
        "attempts",
        "error_kind",
        "error",
        "stage",
        "first_failed_at",
        "last_failed_at",
    ] {
        assert!(
            by_id.get(field).is_some_and(|v| !v.is_null()),
            "{field} missing: {by_id}"
        );
    }
    assert_eq!(by_id["offset"], 1);
    assert_eq!(by_offset(2).error_kind, "unknown_event_type");
    assert_eq!(by_offset(2).payload.as_deref(), Some(unknown.as_str()));
    assert_eq!(by_offset(4).error_kind, "schema_violation");
    assert!(
        by_offset(4).error.contains("user_id"),
        "{}",
        by_offset(4).error
    );

    // The lifecycle of a dead-lettered message, in order, via the API.
    let (status, body) = env.api(
        &app,
        reqwest::Method::GET,
        &format!("/messages/{}", garbage.message_id),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<&str> = body["lifecycle"]
        .as_array()
        .expect("lifecycle")
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        ["MESSAGE_RECEIVED", "MESSAGE_FAILED", "MESSAGE_DLQ"]
    );

    // The projection got the three good ones; the partition was not blocked.
    assert_eq!(env.db().rows(Table::Transactions), 3);
    app.stop().expect("graceful stop");
    assert_eq!(env.committed(), vec![Some(6)]);
}

#[test]
fn a_redelivered_event_is_audited_as_duplicate_and_changes_nothing() {
    let env = TestEnv::new(1);
    let event = r#"{"event_type":"transaction.created","transaction":{"id":"tx-d","user_id":"u1","transaction_type":"p2p","status":"completed","currency":"USD","amount":3,"metadata":{"counterparty_name":"Ana"}},"timestamp":"2024-01-01T12:00:00Z"}"#;
    // Two copies before start land in one batch; a third arrives later.
    env.produce(&[
        (Some("u1"), event.as_bytes(), None),
        (Some("u1"), event.as_bytes(), None),
    ]);
    let app = Running::start(env.settings()).expect("custodian starts");
    wait_until(PATIENCE, "a PROCESSED and a DUPLICATE row", || {
        let c = env.db().audit_counts();
        c.get("MESSAGE_PROCESSED") == Some(&1) && c.get("MESSAGE_DUPLICATE") == Some(&1)
    });
    env.send(&[crate::support::Record::new(event.as_bytes()).key("u1")]);
    wait_until(PATIENCE, "a second DUPLICATE row", || {
        let c = env.db().audit_counts();
        c.get("MESSAGE_PROCESSED") == Some(&1) && c.get("MESSAGE_DUPLICATE") == Some(&2)
    });
    assert_eq!(env.db().version_of("tx-d"), 1);
    assert_eq!(env.db().messages(), 1);
    app.stop().expect("graceful stop");
}

#[test]
fn audit_rows_cannot_be_updated_deleted_or_truncated() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    env.send(&[crate::support::Record::new(&b"not json"[..])]);
    wait_until(PATIENCE, "an audited message", || {
        env.db().audit_counts().get("MESSAGE_DLQ") == Some(&1)
    });
    app.stop().expect("graceful stop");

    use diesel_async::RunQueryDsl;
    let mut conn = env.conn();
    for sql in [
        "UPDATE audit_log SET status = 'MESSAGE_PROCESSED'",
        "UPDATE audit_log SET payload = NULL",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        // The views that show it row by row refuse changes in the same words.
        "UPDATE message_audit SET status = 'MESSAGE_PROCESSED'",
        "DELETE FROM message_audit",
        "UPDATE message_payloads SET payload = NULL",
        "DELETE FROM message_payloads",
    ] {
        let err = env
            .rt
            .block_on(diesel::sql_query(sql).execute(&mut conn))
            .expect_err("the database must refuse it");
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(env.db().rows(Table::MessageAudit), 3);
    assert_eq!(
        env.db()
            .count("SELECT count(*) AS n FROM message_payloads WHERE payload = 'not json'"),
        1
    );
}

#[test]
fn hostile_headers_and_timestamps_do_not_stall_the_partition() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;

    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let (a, b, c) = (
        created_event(&format!("{}-a", env.topic)),
        created_event(&format!("{}-b", env.topic)),
        created_event(&format!("{}-c", env.topic)),
    );
    let producer = env.producer();
    env.rt.block_on(async {
        // A binary header value with NUL bytes (jsonb cannot hold NUL).
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some(&[0u8, 0, 0, 1][..]),
        });
        let with_nul = FutureRecord::<str, str>::to(&env.topic)
            .payload(&a)
            .headers(headers);
        // A timestamp in the year ~11,000 (beyond PostgreSQL's range).
        let far_future = FutureRecord::<str, str>::to(&env.topic)
            .payload(&b)
            .timestamp(300_000_000_000_000);
        let plain = FutureRecord::<str, str>::to(&env.topic).payload(&c);
        for record in [with_nul, far_future, plain] {
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .expect("acknowledged");
        }
    });
    wait_until(PATIENCE, "all three processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&3)
    });
    assert_eq!(
        env.db().count("SELECT count(*) AS n FROM message_payloads WHERE headers -> 0 ->> 'encoding' = 'base64'"),
        1,
        "the NUL header value is kept, base64"
    );
    app.stop().expect("graceful stop");
    assert_eq!(env.committed(), vec![Some(3)]);
}
