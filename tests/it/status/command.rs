//! `GET /status` and `custodian status` against a running instance with real
//! data: the offsets they show are the ones Kafka holds.

use std::time::Duration;

use crate::support::process::{Finished, Launch};
use crate::support::{transaction_event, wait_until, TestEnv, TEST_TOKEN};
use custodian::app::Running;
use reqwest::Method;

const PATIENCE: Duration = Duration::from_secs(60);

/// Seven records on partition 0 (one of them undecodable), three on 1.
fn produce_some(env: &TestEnv) {
    let events: Vec<String> = (0..9)
        .map(|i| {
            transaction_event(
                "transaction.created",
                &format!("{}-{i}", env.topic),
                10.0 + i as f64,
                "2024-01-01T12:00:00Z",
            )
        })
        .collect();
    let mut records: Vec<(Option<&str>, &[u8], Option<i32>)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (Some("u1"), e.as_bytes(), Some(if i < 6 { 0 } else { 1 })))
        .collect();
    records.push((Some("u1"), b"not json at all", Some(0)));
    env.produce(&records);
}

/// `custodian status --url <url>` with `token`.
fn custodian_status(env: &TestEnv, url: &str, token: &str) -> Finished {
    Launch::command(env, &["status", "--url", url])
        .env("CUSTODIAN_TOKEN", token)
        .output()
}

#[test]
fn status_shows_each_partitions_committed_offset_high_watermark_and_lag() {
    let env = TestEnv::new(2);
    let app = Running::start(env.settings()).expect("custodian starts");
    produce_some(&env);
    wait_until(PATIENCE, "all committed", || {
        env.committed() == [Some(7), Some(3)]
    });
    assert_eq!(env.high_watermarks(), [7, 3]);

    let (code, body) = env.api(app.http_addr, Method::GET, "/status", None);
    assert_eq!(code, 200, "{body}");
    for dependency in ["kafka", "postgres", "redis"] {
        assert_eq!(
            body["health"][dependency]["ok"], true,
            "{dependency}: {body}"
        );
    }
    assert_eq!(body["assigned_partitions"], 2);
    let partitions = body["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 2, "{body}");
    for (p, (end, row)) in [7, 3].iter().zip(partitions).enumerate() {
        assert_eq!(row["topic"], env.topic.as_str());
        assert_eq!(row["partition"], p);
        assert_eq!(row["committed_offset"], *end, "{row}");
        assert_eq!(row["durable_watermark"], *end, "{row}");
        assert_eq!(row["high_watermark"], *end, "{row}");
        assert_eq!(row["lag"], 0, "{row}");
        assert_eq!(row["in_flight"], 0, "{row}");
        assert_eq!(row["state"], "running", "{row}");
        assert_eq!(row["owner"], body["instance"]);
    }
    // Without the token: refused.
    let (code, _) = env.request(app.http_addr, Method::GET, "/status", None, None);
    assert_eq!(code, 401);

    // The command line shows the same figures as a table.
    let url = format!("http://{}", app.http_addr);
    let out = custodian_status(&env, &url, TEST_TOKEN);
    let text = &out.stdout;
    assert!(out.success, "{text}{}", out.stderr);
    assert!(
        text.contains("kafka: ok") && text.contains("postgres: ok") && text.contains("redis: ok"),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with(env.topic.as_str()))
        .map(|l| l.split_whitespace().collect())
        .collect();
    // TOPIC PARTITION STATE CURRENT-OFFSET DURABLE LOG-END-OFFSET LAG IN-FLIGHT
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(
        rows[0][1..8],
        ["0", "running", "7", "7", "7", "0", "0"],
        "{text}"
    );
    assert_eq!(
        rows[1][1..8],
        ["1", "running", "3", "3", "3", "0", "0"],
        "{text}"
    );

    // A wrong token, and an instance that is not there: said plainly.
    let out = custodian_status(&env, &url, "wrong-token-0123456789");
    assert!(!out.success);
    assert!(out.stderr.contains("refused the token"), "{}", out.stderr);
    app.stop().expect("graceful stop");
    let out = custodian_status(&env, &url, TEST_TOKEN);
    assert!(!out.success);
    let err = &out.stderr;
    assert!(err.contains("cannot reach custodian"), "{err}");
    assert!(!err.contains(TEST_TOKEN), "the token never shows: {err}");
}

#[test]
fn a_stuck_record_shows_as_in_flight_and_lag_until_it_settles() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let id = format!("{}-held", env.topic);
    let created = transaction_event("transaction.created", &id, 1.0, "2024-01-01T12:00:00Z");
    env.produce(&[(Some("u1"), created.as_bytes(), Some(0))]);
    wait_until(PATIENCE, "first committed", || env.committed() == [Some(1)]);

    // The projection row is locked: the update cannot be applied yet.
    let lock = env.lock_transaction_row(&id);
    let updated = transaction_event("transaction.updated", &id, 2.0, "2024-01-01T12:01:00Z");
    env.produce(&[(Some("u1"), updated.as_bytes(), Some(0))]);
    let row = |env: &TestEnv| {
        let (_, body) = env.api(app.http_addr, Method::GET, "/status", None);
        body["partitions"][0].clone()
    };
    wait_until(PATIENCE, "the update in flight", || {
        row(&env)["in_flight"] == 1
    });
    let stuck = row(&env);
    assert_eq!(stuck["committed_offset"], 1, "{stuck}");
    assert_eq!(stuck["durable_watermark"], 1, "{stuck}");
    assert_eq!(stuck["high_watermark"], 2, "{stuck}");
    assert_eq!(stuck["lag"], 1, "{stuck}");

    lock.release();
    wait_until(PATIENCE, "settled and committed", || {
        let r = row(&env);
        r["lag"] == 0 && r["in_flight"] == 0 && r["committed_offset"] == 2
    });
    assert_eq!(env.committed(), [Some(2)]);
    app.stop().expect("graceful stop");
}
