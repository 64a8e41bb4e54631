//! A circuit breaker per http route against a real downstream on loopback:
//! it opens on a failing downstream and dead-letters nothing, lets one
//! probe through per cool-down, closes when the downstream recovers, and
//! then delivers in key order; each change is audited and shown.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use custodian::app::Running;
use reqwest::Method;
use serde_json::json;

use crate::support::downstream::{Behaviour, KeyedDownstream};
use crate::support::{wait_until, TestEnv};

const PATIENCE: Duration = Duration::from_secs(60);

fn breaker(env: &TestEnv, app: &Running) -> serde_json::Value {
    let (_, flow) = env.api(app, Method::GET, "/flow", None);
    flow["routes"][0]["breaker"].clone()
}

/// A downstream that fails every request for keys A and B until healed.
fn failing_downstream() -> KeyedDownstream {
    KeyedDownstream::start(Behaviour {
        keys: HashSet::from(["A".to_string(), "B".to_string()]),
        failing: true.into(),
        ..Behaviour::default()
    })
}

fn audited(env: &TestEnv, status: &str) -> i64 {
    env.db().count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE status = '{status}' AND chain_id IS NOT NULL"
    ))
}

#[test]
fn a_breaker_opens_on_a_failing_downstream_probes_and_closes_then_delivers_in_key_order() {
    let env = TestEnv::new(1);
    let down = failing_downstream();
    let app = Running::start(env.settings_with(&[
        (
            "routes",
            // The route's own breaker settings, in place of the section's
            // (5 failures, 30s).
            json!([{ "event_types": ["Notify"], "handler": "http", "url": down.url(),
                     "timeout": "2s", "rate_per_second": 1000, "burst": 100,
                     "breaker": { "failures": 3, "cool_down": "1s" } }]),
        ),
        ("retry.max_attempts", json!(1000)),
        ("retry.backoff_min", json!("10ms")),
        ("retry.backoff_max", json!("20ms")),
        ("pipeline.dependency_backoff_max", json!("100ms")),
    ]))
    .expect("custodian starts");
    let messages: Vec<(String, i64)> = (0..10)
        .map(|n| (if n % 2 == 0 { "A" } else { "B" }.to_string(), n))
        .collect();
    let payloads: Vec<String> = messages
        .iter()
        .map(|(_, n)| {
            json!({"eventId": uuid::Uuid::new_v4(), "type": "Notify",
                   "timestamp": "2025-01-11T12:00:00Z", "data": {"n": n}})
            .to_string()
        })
        .collect();
    let records: Vec<_> = messages
        .iter()
        .zip(&payloads)
        .map(|((key, _), p)| (Some(key.as_str()), p.as_bytes(), Some(0)))
        .collect();
    env.produce(&records);

    wait_until(PATIENCE, "the breaker open", || {
        breaker(&env, &app)["state"] == "open"
    });
    assert_eq!(
        breaker(&env, &app)["consecutive_failures"],
        3,
        "opened by three failures in a row"
    );
    let (_, status) = env.api(&app, Method::GET, "/status", None);
    assert_eq!(status["routes"][0]["breaker"]["state"], "open", "{status}");
    let at_open = down.seen().len();
    std::thread::sleep(Duration::from_millis(3500));
    let during = down.seen().len() - at_open;
    assert!(
        (1..=5).contains(&during),
        "open: one probe per cool-down, not retries ({during} requests in 3.5 s)"
    );
    assert!(
        env.dlq_entries().is_empty(),
        "nothing dead-lettered while open"
    );
    assert!(audited(&env, "BREAKER_HALF_OPEN") >= 1);
    assert!(env.metric_any(&app, "breaker_changes_total", "to=\"open\"") >= 2.0);

    down.heal();
    wait_until(PATIENCE, "every message delivered", || {
        env.db().audited("MESSAGE_PROCESSED") == 10
    });
    assert_eq!(breaker(&env, &app)["state"], "closed");
    assert!(
        audited(&env, "BREAKER_OPENED") >= 2,
        "opened, and again after a failed probe"
    );
    assert_eq!(audited(&env, "BREAKER_CLOSED"), 1);
    assert!(env.dlq_entries().is_empty());
    // Delivered in key order: each key's successes rise with n.
    let mut last: HashMap<String, i64> = HashMap::new();
    for seen in down.seen().into_iter().filter(|s| s.status == 200) {
        if let Some(before) = last.insert(seen.key.clone(), seen.n) {
            assert!(
                before < seen.n,
                "{} delivered {} after {before}",
                seen.key,
                seen.n
            );
        }
    }
    assert_eq!(last.len(), 2);
    let (_, opened) = env.api(&app, Method::GET, "/messages?status=BREAKER_OPENED", None);
    // Newest first: the first opening is the last, and says why.
    let entries = opened["entries"].as_array().cloned().unwrap_or_default();
    let first = entries.last().expect("BREAKER_OPENED entries");
    assert_eq!(
        first["detail"]["route"],
        down.url().trim_end_matches("/hook"),
        "{opened}"
    );
    assert_eq!(first["detail"]["why"], "3 consecutive failures", "{opened}");
    assert_eq!(first["detail"]["from"], "closed", "{opened}");
    env.assert_chains_hold(&app);
    app.stop().expect("graceful stop");
}

#[test]
fn on_a_deferred_route_an_open_breaker_holds_its_keys_in_the_schedule_not_the_partition() {
    let env = TestEnv::new(1);
    let down = failing_downstream();
    let app = Running::start(env.settings_with(&[
        (
            "routes",
            json!([{ "event_types": ["Notify"], "handler": "http", "url": down.url(),
                     "timeout": "2s", "rate_per_second": 1000, "burst": 100,
                     "retry": "deferred" },
                   { "event_types": ["transaction.created"], "handler": "transactions" }]),
        ),
        ("retry.max_attempts", json!(1000)),
        ("retry.backoff_min", json!("50ms")),
        ("retry.backoff_max", json!("100ms")),
        ("breaker.failures", json!(2)),
        ("breaker.cool_down", json!("3s")),
    ]))
    .expect("custodian starts");
    let notify = |n: i64| {
        json!({"eventId": uuid::Uuid::new_v4(), "type": "Notify",
               "timestamp": "2025-01-11T12:00:00Z", "data": {"n": n}})
        .to_string()
    };
    let first: Vec<(String, String)> = (0..6)
        .map(|n| (if n % 2 == 0 { "A" } else { "B" }.to_string(), notify(n)))
        .collect();
    let records: Vec<_> = first
        .iter()
        .map(|(k, p)| (Some(k.as_str()), p.as_bytes(), Some(0)))
        .collect();
    env.produce(&records);
    wait_until(PATIENCE, "the breaker open", || {
        breaker(&env, &app)["state"] == "open"
    });
    // While it is open, a new key's message is not attempted: it waits in
    // the schedule (its key only), and the partition flows on behind it.
    let fresh = notify(100);
    let event = crate::support::transaction_event(
        "transaction.created",
        "tx-behind",
        1.0,
        "2024-01-01T12:00:00Z",
    );
    env.produce(&[
        (Some("D"), fresh.as_bytes(), Some(0)),
        (Some("C"), event.as_bytes(), Some(0)),
    ]);
    wait_until(PATIENCE, "the partition flows past the held key", || {
        env.db()
            .count("SELECT count(*) AS n FROM transactions WHERE id = 'tx-behind'")
            == 1
    });
    assert!(
        down.seen().iter().all(|s| s.key != "D"),
        "D's message was not attempted while the breaker was open"
    );
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_RETRY_SCHEDULED' \
              AND message_key = 'D' AND attempt = 1"
        ),
        1,
        "D's message scheduled untried"
    );
    assert!(env.dlq_entries().is_empty(), "nothing dead-lettered");
    down.heal();
    wait_until(PATIENCE, "every Notify delivered", || {
        env.db().audited("MESSAGE_PROCESSED") == 8
    });
    assert!(env.dlq_entries().is_empty());
    let mut last: HashMap<String, i64> = HashMap::new();
    for seen in down.seen().into_iter().filter(|s| s.status == 200) {
        if let Some(before) = last.insert(seen.key.clone(), seen.n) {
            assert!(
                before < seen.n,
                "{} delivered {} after {before}",
                seen.key,
                seen.n
            );
        }
    }
    app.stop().expect("graceful stop");
}
