//! Key-ordered parallel delivery (`concurrency = N` on an http route): one
//! partition's messages with different keys go to the downstream at once,
//! one key's strictly in order, every message settled once. The time it
//! takes is a benchmark figure (`dev/bench`, its keyed phase), never
//! asserted here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::downstream::{Behaviour, KeyedDownstream};
use crate::support::{wait_until, TestEnv};
use custodian::app::Running;
use serde_json::json;

#[test]
fn different_keys_go_at_once_and_one_key_stays_in_order() {
    const MESSAGES: i64 = 1000;
    const KEYS: i64 = 200;
    const CONCURRENCY: usize = 32;
    let env = TestEnv::new(1);
    let latency = Duration::from_millis(100);
    let down = KeyedDownstream::start(Behaviour {
        latency,
        ..Behaviour::default()
    });
    let app = Running::start(env.settings_with(&[(
        "routes",
        json!([{ "event_types": ["Notify"], "handler": "http", "url": down.url(), "timeout": "5s",
                 "rate_per_second": 100000, "burst": 10000, "concurrency": CONCURRENCY }]),
    )]))
    .expect("custodian starts");
    let payloads: Vec<(String, String)> = (0..MESSAGES)
        .map(|n| {
            let payload = json!({"eventId": uuid::Uuid::new_v4(), "type": "Notify",
                                 "timestamp": "2025-01-11T12:00:00Z", "data": {"n": n}});
            (format!("key-{}", n % KEYS), payload.to_string())
        })
        .collect();
    let records: Vec<_> = payloads
        .iter()
        .map(|(k, p)| (Some(k.as_str()), p.as_bytes(), Some(0)))
        .collect();
    env.produce(&records);
    wait_until(Duration::from_secs(300), "every message processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&MESSAGES)
    });
    wait_until(Duration::from_secs(30), "committed to the end", || {
        env.committed() == vec![Some(MESSAGES)]
    });

    let seen = down.seen();
    assert_eq!(seen.len() as i64, MESSAGES, "each message sent once");
    let mut by_key: HashMap<&str, Vec<i64>> = HashMap::new();
    for s in &seen {
        assert_eq!(s.status, 200);
        by_key.entry(&s.key).or_default().push(s.n);
    }
    assert_eq!(by_key.len() as i64, KEYS);
    for (key, ns) in &by_key {
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(ns, &sorted, "{key}'s messages in order");
    }
    // One key's messages never overlap at the downstream.
    let mut per_key: HashMap<&str, Vec<(Instant, Instant)>> = HashMap::new();
    for s in &seen {
        per_key
            .entry(&s.key)
            .or_default()
            .push((s.started, s.ended));
    }
    for (key, spans) in &mut per_key {
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{key}: two deliveries at once");
        }
    }
    // Several keys did overlap (what concurrency is for).
    let mut spans: Vec<(Instant, Instant)> = seen.iter().map(|s| (s.started, s.ended)).collect();
    spans.sort();
    assert!(
        spans.windows(2).any(|w| w[1].0 < w[0].1),
        "no two deliveries ever overlapped"
    );
    app.stop().expect("graceful stop");
}
