//! Two instances share the deferred schedule: each entry is attempted by
//! one of them at a time, every message is delivered once, and each key's
//! messages in order.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use custodian::app::Running;
use serde_json::json;

use super::deferred::{delivered, notify, route};
use crate::support::downstream::{Behaviour, KeyedDownstream, Seen};
use crate::support::{wait_until, Table, TestEnv};

/// True when two attempts at one message ran at the same time.
fn overlapping(seen: &[Seen]) -> Vec<String> {
    let mut by_message: HashMap<&str, Vec<&Seen>> = HashMap::new();
    for s in seen {
        by_message.entry(&s.message_id).or_default().push(s);
    }
    let mut overlaps = Vec::new();
    for (id, tries) in by_message {
        for (i, a) in tries.iter().enumerate() {
            for b in &tries[i + 1..] {
                if a.started < b.ended && b.started < a.ended {
                    overlaps.push(id.to_owned());
                }
            }
        }
    }
    overlaps
}

#[test]
fn two_instances_share_the_schedule_and_never_attempt_an_entry_twice_at_once() {
    let env = TestEnv::new(2);
    // Every message fails its first three tries; each try takes 150 ms.
    let down = KeyedDownstream::start(Behaviour {
        fail_attempts: 3,
        latency: Duration::from_millis(150),
        ..Behaviour::default()
    });
    // Every message's first tries fail: a circuit breaker would rightly
    // open on this downstream and hold every key (tests/it/flow/breaker.rs);
    // here the schedule's sharing is what is tested, so the route's own
    // breaker is off.
    let mut notify_route = route("Notify", &down.url());
    notify_route["breaker"] = json!({ "enabled": false });
    let no_breaker = |env: &TestEnv| {
        let overrides = [
            ("routes", json!([notify_route.clone()])),
            ("retry.max_attempts", 10.into()),
            ("retry.backoff_min", "100ms".into()),
            ("retry.backoff_max", "300ms".into()),
        ];
        Running::start(env.settings_with(&overrides)).expect("custodian starts")
    };
    let first = no_breaker(&env);
    let second = no_breaker(&env);
    let keys: Vec<String> = (0..40).map(|k| format!("k{k}")).collect();
    let mut records = Vec::new();
    let mut payloads = Vec::new();
    for round in 0..2 {
        for (k, key) in keys.iter().enumerate() {
            let n = (round * 100 + k) as i64;
            payloads.push((key.clone(), n, notify(n).1));
        }
    }
    for (key, _, payload) in &payloads {
        records.push((Some(key.as_str()), payload.as_bytes(), None));
    }
    env.produce(&records);
    let total = payloads.len() as i64;
    wait_until(Duration::from_secs(120), "all processed", || {
        env.db().audited("MESSAGE_PROCESSED") == total
    });
    let seen = down.seen();
    let refused = seen.iter().filter(|s| s.status == 500).count() as i64;
    assert_eq!(
        refused,
        3 * total,
        "every message failed its first three tries"
    );
    assert_eq!(
        overlapping(&seen),
        Vec::<String>::new(),
        "attempts overlapped"
    );
    let ok: Vec<i64> = delivered(&seen);
    let unique: HashSet<i64> = ok.iter().copied().collect();
    assert_eq!(ok.len(), unique.len(), "no message delivered twice");
    assert_eq!(unique.len() as i64, total);
    // Per key, round 0 before round 1.
    for (k, _) in keys.iter().enumerate() {
        let mine: Vec<i64> = ok
            .iter()
            .copied()
            .filter(|n| *n % 100 == k as i64)
            .collect();
        assert_eq!(mine, [k as i64, 100 + k as i64], "key {k} in order");
    }
    assert_eq!(env.db().rows(Table::RetrySchedule), 0);
    first.stop().expect("graceful stop");
    second.stop().expect("graceful stop");
}
