//! HTTP delivery to a real downstream on loopback (custodian's own mock
//! downstream): delivered once, transient failures retried, refusals parked,
//! an unreachable downstream pauses the partition, the rate limit holds.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{wait_until, Table, TestEnv};
use custodian::app::Running;
use custodian::downstream::{MockDownstream, Options};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

fn downstream(fail_first: u64) -> MockDownstream {
    MockDownstream::start(Options {
        bind: "127.0.0.1:0".parse().expect("address"),
        failure_rate: 0.0,
        latency: Duration::ZERO,
        fail_first,
    })
    .expect("mock downstream starts")
}

/// Settings that send `Notify` events to `url`.
fn routed(env: &TestEnv, url: &str, extra: &[(&'static str, serde_json::Value)]) -> Running {
    let mut overrides = vec![(
        "routes",
        json!([{ "event_types": ["Notify"], "handler": "http", "url": url, "timeout": "2s",
                 "rate_per_second": 1000, "burst": 100, "cache_ttl": "1m" },
               { "event_types": ["transaction.created"], "handler": "transactions" }]),
    )];
    overrides.extend_from_slice(extra);
    Running::start(env.settings_with(&overrides)).expect("custodian starts")
}

fn notify(id: &uuid::Uuid, n: usize) -> String {
    json!({"eventId": id, "type": "Notify", "timestamp": "2025-01-11T12:00:00Z", "data": {"n": n}})
        .to_string()
}

fn produce(env: &TestEnv, payloads: &[String]) {
    let records: Vec<_> = payloads
        .iter()
        .map(|p| (Some("k"), p.as_bytes(), Some(0)))
        .collect();
    env.produce(&records);
}

#[test]
fn messages_are_delivered_once_with_their_id() {
    let env = TestEnv::new(1);
    let mock = downstream(0);
    let app = routed(&env, &format!("http://{}/hook", mock.addr), &[]);
    let ids: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
    let payloads: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| notify(id, n))
        .collect();
    produce(&env, &payloads);
    wait_until(PATIENCE, "three processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&3)
    });
    let received = mock.received();
    assert_eq!(received.len(), 3);
    for (r, id) in received.iter().zip(&ids) {
        assert_eq!(r.message_id.as_deref(), Some(id.to_string().as_str()));
        assert_eq!(r.event_type.as_deref(), Some("Notify"));
        assert_eq!(r.path, "/hook");
        assert_eq!(r.status, 200);
    }
    assert_eq!(received[0].bytes, payloads[0].len(), "the payload as is");
    // The route keeps downstream answers: the message's record shows it.
    let (status, body) = env.api(
        &app,
        reqwest::Method::GET,
        &format!("/messages/{}", ids[0]),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["downstream_answer"]["status"], 200, "{body}");
    assert!(
        body["downstream_answer"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("200")),
        "{body}"
    );
    // The same event again is recognised and not sent again.
    produce(&env, &payloads[..1]);
    wait_until(PATIENCE, "the duplicate recorded", || {
        env.db().audit_counts().get("MESSAGE_DUPLICATE") == Some(&1)
    });
    assert_eq!(mock.received().len(), 3);
    app.stop().expect("graceful stop");
    assert_eq!(env.committed(), vec![Some(4)]);
}

#[test]
fn a_500_is_retried_and_a_4xx_is_parked() {
    let env = TestEnv::new(1);
    let mock = downstream(2);
    let app = routed(
        &env,
        &format!("http://{}/hook", mock.addr),
        &[("retry.max_attempts", 5.into())],
    );
    let id = uuid::Uuid::new_v4();
    produce(&env, &[notify(&id, 1)]);
    wait_until(PATIENCE, "delivered on the third attempt", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&1)
    });
    assert_eq!(
        env.db().lifecycle(&id.to_string()),
        [
            ("MESSAGE_RECEIVED".to_string(), 1),
            ("MESSAGE_FAILED".to_string(), 1),
            ("MESSAGE_FAILED".to_string(), 2),
            ("MESSAGE_PROCESSED".to_string(), 3),
        ]
    );
    assert_eq!(
        mock.received().iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    // The deliveries API: delivered on the third attempt, answered 200.
    let delivery = only_delivery(&env, &app, "delivered");
    assert_eq!(delivery["message_id"], id.to_string(), "{delivery}");
    assert_eq!(delivery["attempts"], 3, "{delivery}");
    assert_eq!(delivery["last_answer"], "HTTP 200", "{delivery}");
    app.stop().expect("graceful stop");

    // A route whose downstream refuses: parked at once with status and body.
    let env = TestEnv::new(1);
    let app = routed(&env, &format!("http://{}/status/422", mock.addr), &[]);
    let id = uuid::Uuid::new_v4();
    produce(&env, &[notify(&id, 2)]);
    wait_until(PATIENCE, "parked", || {
        env.db().audit_counts().get("MESSAGE_DLQ") == Some(&1)
    });
    let entries = env.dlq_entries();
    assert_eq!(entries[0].error_kind, "downstream_rejected");
    assert_eq!(entries[0].attempts, 1);
    assert!(
        entries[0].error.contains("HTTP 422"),
        "{}",
        entries[0].error
    );
    // The deliveries API and the message's view: given up after one try.
    let delivery = only_delivery(&env, &app, "failed");
    assert_eq!(delivery["attempts"], 1, "{delivery}");
    let answer = delivery["last_answer"].as_str().unwrap_or_default();
    assert!(answer.contains("HTTP 422"), "{delivery}");
    let (status, view) = env.api(
        app.http_addr,
        reqwest::Method::GET,
        &format!("/messages/{id}"),
        None,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["delivery"]["status"], "failed", "{view}");
    assert!(view["retry_schedule"].is_null(), "{view}");
    app.stop().expect("graceful stop");
}

/// A finished delivery's record is kept for `deliveries.retention`, then
/// pruned; a newer one stays, and the audit trail keeps both.
#[test]
fn delivery_records_are_pruned_after_the_retention_and_the_audit_stays() {
    let env = TestEnv::new(1);
    let mock = downstream(0);
    let app = routed(
        &env,
        &format!("http://{}/hook", mock.addr),
        &[("deliveries.retention", "5s".into())],
    );
    let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    produce(&env, &[notify(&first, 1)]);
    wait_until(PATIENCE, "the first delivered and recorded", || {
        env.db().rows(Table::HttpDeliveries) == 1
    });
    let finished_ms = env.db().delivery_finished_ms();
    wait_until(PATIENCE, "the first's record pruned", || {
        env.db().rows(Table::HttpDeliveries) == 0
    });
    // Not before its retention: the prune that took it ran after then.
    assert!(
        chrono::Utc::now().timestamp_millis() >= finished_ms + 5_000,
        "pruned before its 5 s retention"
    );

    produce(&env, &[notify(&second, 2)]);
    wait_until(PATIENCE, "the second delivered and recorded", || {
        env.db().rows(Table::HttpDeliveries) == 1
    });
    let delivery = only_delivery(&env, &app, "delivered");
    assert_eq!(delivery["message_id"], second.to_string(), "{delivery}");
    for id in [first, second] {
        assert_eq!(
            env.db().lifecycle(&id.to_string()),
            [
                ("MESSAGE_RECEIVED".to_string(), 1),
                ("MESSAGE_PROCESSED".to_string(), 1),
            ],
            "the audit trail keeps {id}"
        );
    }
    app.stop().expect("graceful stop");
}

/// The one delivery `GET /deliveries` lists, which has `status`.
fn only_delivery(env: &TestEnv, app: &Running, status: &str) -> serde_json::Value {
    let (code, page) = env.api(app.http_addr, reqwest::Method::GET, "/deliveries", None);
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["count"], 1, "{page}");
    let delivery = page["deliveries"][0].clone();
    assert_eq!(delivery["status"], status, "{delivery}");
    delivery
}

#[test]
fn an_unreachable_downstream_pauses_the_partition_until_it_returns() {
    let env = TestEnv::new(1);
    // A port nobody listens on (yet).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let app = routed(
        &env,
        &format!("http://{addr}/hook"),
        &[("retry.max_attempts", 2.into())],
    );
    let id = uuid::Uuid::new_v4();
    produce(&env, &[notify(&id, 1)]);
    std::thread::sleep(Duration::from_secs(3));
    let counts = env.db().audit_counts();
    assert_eq!(counts.get("MESSAGE_DLQ"), None, "not parked while down");
    assert_eq!(counts.get("MESSAGE_PROCESSED"), None);
    assert_eq!(
        env.committed_or_zero(),
        vec![0],
        "nothing committed past it"
    );

    let mock = MockDownstream::start(Options {
        bind: addr,
        failure_rate: 0.0,
        latency: Duration::ZERO,
        fail_first: 0,
    })
    .expect("downstream comes up");
    wait_until(PATIENCE, "delivered once it is back", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&1)
    });
    assert_eq!(mock.received().len(), 1);
    // Waiting for a downstream that is down is not an attempt.
    assert_eq!(
        env.db().lifecycle(&id.to_string()),
        [
            ("MESSAGE_RECEIVED".to_string(), 1),
            ("MESSAGE_PROCESSED".to_string(), 1)
        ]
    );
    app.stop().expect("graceful stop");
}

#[test]
fn the_route_rate_limit_holds() {
    let env = TestEnv::new(1);
    let mock = downstream(0);
    let app = Running::start(env.settings_with(&[(
        "routes",
        json!([{ "event_types": ["Notify"], "handler": "http",
                 "url": format!("http://{}/hook", mock.addr),
                 "rate_per_second": 20, "burst": 1 }]),
    )]))
    .expect("custodian starts");
    const N: usize = 30;
    let payloads: Vec<String> = (0..N).map(|n| notify(&uuid::Uuid::new_v4(), n)).collect();
    produce(&env, &payloads);
    wait_until(PATIENCE, "all delivered", || mock.received().len() == N);
    let received = mock.received();
    let span = (received[N - 1].at - received[0].at)
        .to_std()
        .expect("in order");
    // 30 requests at 20/s with a burst of 1: at least 29 intervals of 50 ms.
    assert!(
        span >= Duration::from_millis(1400),
        "{N} deliveries in {span:?}: faster than 20/s"
    );
    let rate = (N - 1) as f64 / span.as_secs_f64();
    assert!(rate <= 21.0, "measured {rate:.1}/s over a limit of 20/s");
    let (_, metrics) = env.get(&app, "/metrics");
    let waits = format!("rate_limit_waits_total{{route=\"http://{}\"}}", mock.addr);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(&waits) && !l.ends_with(" 0")),
        "the waits are counted: {waits}"
    );
    app.stop().expect("graceful stop");
}

#[test]
fn a_gateway_saying_the_backend_is_down_pauses_instead_of_parking() {
    let env = TestEnv::new(1);
    let mock = downstream(0);
    let app = routed(
        &env,
        &format!("http://{}/status/503", mock.addr),
        &[("retry.max_attempts", 1.into())],
    );
    produce(&env, &[notify(&uuid::Uuid::new_v4(), 1)]);
    wait_until(PATIENCE, "a few 503s", || mock.received().len() >= 3);
    let counts = env.db().audit_counts();
    assert_eq!(counts.get("MESSAGE_DLQ"), None, "not parked: {counts:?}");
    assert_eq!(counts.get("MESSAGE_FAILED"), None, "not an attempt");
    assert_eq!(env.committed_or_zero(), vec![0]);
    app.stop().expect("graceful stop");
}

#[test]
fn a_batch_mixing_deliveries_and_projections_settles_each_message_once() {
    let env = TestEnv::new(1);
    let mock = downstream(0);
    let app = routed(&env, &format!("http://{}/hook", mock.addr), &[]);
    let a = uuid::Uuid::new_v4();
    let c = uuid::Uuid::new_v4();
    let b = crate::support::created_event(&format!("{}-b", env.topic));
    produce(&env, &[notify(&a, 1), b.clone(), notify(&c, 3)]);
    wait_until(PATIENCE, "all three processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&3)
    });
    let received: Vec<Option<String>> = mock.received().into_iter().map(|r| r.message_id).collect();
    assert_eq!(received, [Some(a.to_string()), Some(c.to_string())]);
    assert_eq!(env.db().rows(Table::Transactions), 1);
    app.stop().expect("graceful stop");
    assert_eq!(env.committed(), vec![Some(3)]);
}
