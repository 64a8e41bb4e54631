//! Deferred retries (`retry = "deferred"`): a failing key waits in the
//! PostgreSQL retry schedule while every other key flows; its later
//! messages wait behind it, in order; the committed offset moves past it;
//! attempts that run out dead-letter it and release what waited behind it.
//! Real PostgreSQL and Redis, librdkafka's mock cluster, a downstream on
//! loopback.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::downstream::{Behaviour, Isolation, KeyedDownstream, Seen};
use crate::support::process::{Launch, Process};
use crate::support::{wait_until, Table, TestEnv};
use custodian::app::Running;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

pub(super) fn notify(n: i64) -> (uuid::Uuid, String) {
    let id = uuid::Uuid::new_v4();
    let payload = json!({"eventId": id, "type": "Notify", "timestamp": "2025-01-11T12:00:00Z",
                         "data": {"n": n}})
    .to_string();
    (id, payload)
}

/// A deferred http route for `event_type` to `url`.
pub(super) fn route(event_type: &str, url: &str) -> serde_json::Value {
    json!({ "event_types": [event_type], "handler": "http", "url": url, "timeout": "2s",
            "rate_per_second": 10000, "burst": 1000, "retry": "deferred" })
}

/// Custodian with one deferred http route to `url`.
fn deferred(env: &TestEnv, url: &str, max_attempts: u32) -> Running {
    with_routes(env, json!([route("Notify", url)]), max_attempts)
}

/// Custodian with `routes`.
fn with_routes(env: &TestEnv, routes: serde_json::Value, max_attempts: u32) -> Running {
    let overrides = [
        ("routes", routes),
        ("retry.max_attempts", max_attempts.into()),
        ("retry.backoff_min", "100ms".into()),
        ("retry.backoff_max", "300ms".into()),
    ];
    Running::start(env.settings_with(&overrides)).expect("custodian starts")
}

/// Produces `(key, n)` in order to partition 0; answers the ids by `n`.
fn produce(env: &TestEnv, messages: &[(&str, i64)]) -> HashMap<i64, uuid::Uuid> {
    let made: Vec<(&str, i64, uuid::Uuid, String)> = messages
        .iter()
        .map(|(k, n)| {
            let (id, payload) = notify(*n);
            (*k, *n, id, payload)
        })
        .collect();
    let records: Vec<_> = made
        .iter()
        .map(|(k, _, _, p)| (Some(*k), p.as_bytes(), Some(0)))
        .collect();
    env.produce(&records);
    made.iter().map(|(_, n, id, _)| (*n, *id)).collect()
}

/// The `n`s answered 2xx, in the order the downstream answered them.
pub(super) fn delivered(seen: &[Seen]) -> Vec<i64> {
    seen.iter()
        .filter(|s| s.status == 200)
        .map(|s| s.n)
        .collect()
}

/// While A fails: every other key delivered, and of A only its first
/// message attempted; its later ones wait untried behind it.
fn while_a_fails_only_as_first_message_is_attempted(isolation: &Isolation) {
    let seen = isolation.down.seen();
    assert!(
        !seen.iter().any(|s| s.key == "A" && s.status == 200),
        "A is still failing"
    );
    assert_eq!(delivered(&seen).len(), isolation.others.len());
    assert!(
        seen.iter().filter(|s| s.key == "A").all(|s| s.n == 0),
        "only A's first message is attempted while it fails: {:?}",
        seen.iter()
            .filter(|s| s.key == "A")
            .map(|s| s.n)
            .collect::<Vec<_>>()
    );
}

/// The schedule holds A's three messages: reconciliation counts them in
/// retry, not lost; the deliveries API lists A's first retrying (its last
/// answer the 500) and the others waiting, and refuses bad parameters; the
/// message view and the schedule's gauge agree. Answers the route label.
fn the_schedule_holds_as_three_messages_and_shows_them(
    env: &TestEnv,
    app: &Running,
    ids: &HashMap<i64, uuid::Uuid>,
) -> String {
    assert_eq!(env.db().rows(Table::RetrySchedule), 3);
    env.assert_reconciled(app.http_addr, 3);
    let get = |path: &str| env.api(app.http_addr, reqwest::Method::GET, path, None);
    let (status, retrying) = get("/deliveries?status=retrying");
    assert_eq!(status, 200, "{retrying}");
    assert_eq!(retrying["count"], 1, "{retrying}");
    let head = &retrying["deliveries"][0];
    assert_eq!(head["message_id"], ids[&0].to_string());
    assert_eq!(head["key"], "A");
    assert!(head["attempts"].as_i64() >= Some(1), "{head}");
    assert!(
        head["last_answer"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{head}"
    );
    let route = head["route"].as_str().expect("route label").to_owned();
    let (_, waiting) = get(&format!("/deliveries?status=waiting&route={route}"));
    assert_eq!(waiting["count"], 2, "{waiting}");
    for bad in ["limit=0", "status=lost", "colour=red"] {
        let (status, body) = get(&format!("/deliveries?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    let (status, message) = get(&format!("/messages/{}", ids[&1]));
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["retry_schedule"]["status"], "waiting", "{message}");
    // The schedule's gauges (refreshed by the retry worker).
    wait_until(PATIENCE, "retry_schedule_depth 3", || {
        let (_, text) = env.get(app.http_addr, "/metrics");
        text.lines().any(|l| {
            l.starts_with(&format!("retry_schedule_depth{{route=\"{route}\"}}"))
                && l.ends_with(" 3")
        })
    });
    route
}

/// A replay of a scheduled message makes it due now (it stays behind its
/// key).
fn a_replay_of_a_scheduled_message_makes_it_due_now(env: &TestEnv, app: &Running, id: uuid::Uuid) {
    let (status, run) = env.api(
        app.http_addr,
        reqwest::Method::POST,
        &format!("/replay/{id}"),
        Some(json!({"reason": "downstream fixed"})),
    );
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["status"], "due_now");
}

/// A's failure clears: A's messages arrive in order, each once, after
/// every other key, and the schedule empties; the deliveries API lists
/// every message delivered. Answers A's first's delivery.
fn once_healed_as_messages_arrive_in_order_once_each(
    env: &TestEnv,
    app: &Running,
    isolation: &Isolation,
    route: &str,
) -> serde_json::Value {
    isolation.down.heal();
    wait_until(PATIENCE, "A processed", || {
        env.db().audited("MESSAGE_PROCESSED") == isolation.total
    });
    let seen = isolation.down.seen();
    let order = delivered(&seen);
    let a: Vec<i64> = order.iter().copied().filter(|n| *n < 100).collect();
    assert_eq!(a, [0, 1, 2], "A's messages in order, once each");
    assert_eq!(
        order.len() as i64,
        isolation.total,
        "every message delivered once"
    );
    let first_a = order.iter().position(|n| *n == 0).expect("A delivered");
    assert!(
        order[..first_a].len() == isolation.others.len(),
        "every other key was delivered before A's failure cleared"
    );
    assert_eq!(env.db().rows(Table::RetrySchedule), 0);
    let (_, done) = env.api(
        app.http_addr,
        reqwest::Method::GET,
        &format!("/deliveries?status=delivered&limit=1000&route={route}"),
        None,
    );
    assert_eq!(done["count"], isolation.total, "{done}");
    let a0 = done["deliveries"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|d| d["message_id"] == isolation.ids[&0].to_string())
        })
        .cloned()
        .expect("A's first listed");
    assert_eq!(a0["last_answer"], "HTTP 200", "{a0}");
    a0
}

/// The audit trail: A's first failed, was scheduled, failed in the
/// schedule, then processed on the attempt its delivery counts; A's second
/// waited untried; the hash chains verify with the new entries on them.
fn the_trail_shows_as_first_retried_and_its_second_waiting_untried(
    env: &TestEnv,
    app: &Running,
    ids: &HashMap<i64, uuid::Uuid>,
    a0: &serde_json::Value,
) {
    let first = env.db().lifecycle(&ids[&0].to_string());
    assert_eq!(first[0].0, "MESSAGE_RECEIVED");
    assert_eq!(first[1], ("MESSAGE_FAILED".to_string(), 1));
    assert_eq!(first[2], ("MESSAGE_RETRY_SCHEDULED".to_string(), 2));
    let last = first.last().expect("rows");
    assert_eq!(last.0, "MESSAGE_PROCESSED");
    let failed = first.iter().filter(|s| s.0 == "MESSAGE_FAILED").count() as i32;
    assert_eq!(last.1, failed + 1, "the attempt that succeeded");
    assert_eq!(a0["attempts"], last.1, "{a0}");
    assert_eq!(
        env.db().lifecycle(&ids[&1].to_string()),
        [
            ("MESSAGE_RECEIVED".to_string(), 1),
            ("MESSAGE_RETRY_SCHEDULED".to_string(), 1),
            ("MESSAGE_PROCESSED".to_string(), 1),
        ]
    );
    env.assert_chains_hold(app.http_addr);
}

#[test]
fn a_failing_key_waits_in_the_schedule_while_other_keys_flow_in_order() {
    let env = TestEnv::new(1);
    // A's first message, then B..Z with A's later ones among them; every
    // other key is delivered and the offset committed to the end while A
    // still fails.
    let (app, isolation) = crate::support::downstream::others_flow_while_a_fails(
        &env,
        |url| deferred(&env, url, 100),
        |messages| produce(&env, messages),
    );
    while_a_fails_only_as_first_message_is_attempted(&isolation);
    let route = the_schedule_holds_as_three_messages_and_shows_them(&env, &app, &isolation.ids);
    a_replay_of_a_scheduled_message_makes_it_due_now(&env, &app, isolation.ids[&0]);
    let a0 = once_healed_as_messages_arrive_in_order_once_each(&env, &app, &isolation, &route);
    the_trail_shows_as_first_retried_and_its_second_waiting_untried(
        &env,
        &app,
        &isolation.ids,
        &a0,
    );
    app.stop().expect("graceful stop");
}

#[test]
fn attempts_that_run_out_dead_letter_the_head_and_release_its_key() {
    let env = TestEnv::new(1);
    // Message 0 (key A) always fails; A's next message and B do not.
    let down = crate::support::downstream::always_failing(&[0]);
    let app = deferred(&env, &down.url(), 3);
    let ids = produce(&env, &[("A", 0), ("A", 1), ("B", 2)]);

    wait_until(PATIENCE, "A's first dead-lettered", || {
        env.db().audited("MESSAGE_DLQ") == 1
    });
    wait_until(PATIENCE, "the others processed", || {
        env.db().audited("MESSAGE_PROCESSED") == 2
    });
    assert_eq!(
        env.db().lifecycle(&ids[&0].to_string()),
        [
            ("MESSAGE_RECEIVED".to_string(), 1),
            ("MESSAGE_FAILED".to_string(), 1),
            ("MESSAGE_RETRY_SCHEDULED".to_string(), 2),
            ("MESSAGE_FAILED".to_string(), 2),
            ("MESSAGE_FAILED".to_string(), 3),
            ("MESSAGE_DLQ".to_string(), 3),
        ]
    );
    let entries = env.dlq_entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].message_id, ids[&0]);
    assert_eq!(entries[0].attempts, 3);
    assert_eq!(entries[0].error_kind, "downstream_unavailable");
    // A's second message was released after the dead letter, not before.
    let seen = down.seen();
    let last_try_of_first = seen
        .iter()
        .filter(|s| s.n == 0)
        .map(|s| s.ended)
        .max()
        .expect("tried");
    let second = seen
        .iter()
        .find(|s| s.n == 1)
        .expect("A's second delivered");
    assert!(second.started >= last_try_of_first);
    assert_eq!(seen.iter().filter(|s| s.n == 0).count(), 3);
    assert_eq!(env.db().rows(Table::RetrySchedule), 0);
    // The deliveries API: A's first given up after 3 attempts, the others
    // delivered.
    let get = |path: &str| env.api(app.http_addr, reqwest::Method::GET, path, None);
    let (status, failed) = get("/deliveries?status=failed");
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["count"], 1, "{failed}");
    assert_eq!(failed["deliveries"][0]["message_id"], ids[&0].to_string());
    assert_eq!(failed["deliveries"][0]["attempts"], 3, "{failed}");
    let (_, delivered) = get("/deliveries?status=delivered");
    assert_eq!(delivered["count"], 2, "{delivered}");
    app.stop().expect("graceful stop");
    assert_eq!(env.committed(), vec![Some(3)]);
}

/// A downstream that answers 500 for key A until healed, 200 otherwise.
fn failing_for_a() -> KeyedDownstream {
    KeyedDownstream::start(Behaviour {
        keys: HashSet::from(["A".to_string()]),
        failing: true.into(),
        ..Behaviour::default()
    })
}

/// `custodian run` as a process with one deferred route to `down` (from a
/// config file) and `extra` settings, once ready.
fn deferred_process(env: &TestEnv, down: &KeyedDownstream, extra: &[(&str, &str)]) -> Process {
    let routes = format!(
        "[[routes]]\nevent_types = [\"Notify\"]\nhandler = \"http\"\nurl = \"{}\"\n\
         timeout = \"1s\"\nrate_per_second = 10000\nburst = 1000\nretry = \"deferred\"\n",
        down.url()
    );
    let mut instance = Launch::run(env)
        .config(&routes)
        .setting("retry.max_attempts", 1000)
        .settings(extra)
        .spawn();
    instance.wait_ready(env, PATIENCE);
    instance
}

/// Produces A0, B1, A2, C3, waits until A's two are scheduled and the
/// others processed, and SIGKILLs the instance.
fn schedule_a_then_kill(env: &TestEnv, mut instance: Process) {
    produce(env, &[("A", 0), ("B", 1), ("A", 2), ("C", 3)]);
    wait_until(PATIENCE, "A's two messages scheduled", || {
        env.db().rows(Table::RetrySchedule) == 2 && env.db().audited("MESSAGE_PROCESSED") == 2
    });
    instance.kill();
}

/// Waits until all four messages ended and the schedule is empty.
fn wait_all_delivered(env: &TestEnv) {
    wait_until(PATIENCE, "every message processed", || {
        env.db().audited("MESSAGE_PROCESSED") + env.db().audited("MESSAGE_DUPLICATE") >= 4
            && env.db().rows(Table::RetrySchedule) == 0
    });
}

#[test]
fn entries_scheduled_before_a_sigkill_complete_once_after_the_restart() {
    let env = TestEnv::new(1);
    let down = failing_for_a();
    let first = deferred_process(&env, &down, &[]);
    schedule_a_then_kill(&env, first);
    down.heal();

    let mut instance = deferred_process(&env, &down, &[]);
    wait_all_delivered(&env);
    let seen = down.seen();
    let ok = delivered(&seen);
    let mut sorted = ok.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [0, 1, 2, 3],
        "each message delivered once, none lost"
    );
    let a: Vec<i64> = ok.iter().copied().filter(|n| *n % 2 == 0).collect();
    assert_eq!(a, [0, 2], "A's messages in order");
    instance.stop();
}

#[test]
fn a_scheduled_record_read_again_after_a_sigkill_is_a_redelivery_not_scheduled_twice() {
    let env = TestEnv::new(1);
    let down = failing_for_a();
    // Commits a minute apart: the kill comes before any, so every record
    // is read again after the restart.
    let slow_commits = [("kafka.commit_interval", "60s")];
    let first = deferred_process(&env, &down, &slow_commits);
    schedule_a_then_kill(&env, first);
    assert_eq!(
        env.committed(),
        vec![None],
        "nothing committed before the kill"
    );

    let mut instance = deferred_process(&env, &down, &[]);
    // Every record is read again: B and C the ledger recognises, A's two
    // (still failing, still in the schedule) the schedule's entries do.
    wait_until(PATIENCE, "every record read again", || {
        env.db().audited("MESSAGE_DUPLICATE") == 4
    });
    down.heal();
    wait_all_delivered(&env);
    // A's records were parked in the schedule before the kill: read again,
    // they are redeliveries, not parked (or scheduled) a second time.
    let twice = env.db().messages_twice("MESSAGE_RETRY_SCHEDULED");
    assert_eq!(twice, 0, "a message scheduled twice");
    let a_duplicates = env.db().scheduled_then_redelivered();
    assert_eq!(a_duplicates, 2, "A's two records audited as redeliveries");
    let ok = delivered(&down.seen());
    let mut sorted = ok.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3], "each delivered once, none lost");
    let path = format!("/audit/reconcile?topic={}", env.topic);
    let (status, report) = env.api(&instance, reqwest::Method::GET, &path, None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["holds"], true, "{report}");
    assert_eq!(report["doubles"], 0, "{report}");
    assert_eq!(report["totals"]["processed"], 4, "{report}");
    instance.stop();
}

#[test]
fn a_scheduled_entry_goes_to_its_own_downstream_after_the_routes_are_reordered() {
    let env = TestEnv::new(1);
    let down = failing_for_a();
    let app = deferred(&env, &down.url(), 1000);
    let ids = produce(&env, &[("A", 0), ("B", 1)]);
    wait_until(PATIENCE, "A scheduled, B processed", || {
        env.db().rows(Table::RetrySchedule) == 1 && env.db().audited("MESSAGE_PROCESSED") == 1
    });
    app.stop().expect("graceful stop");

    // A new http route (another downstream) now comes first: A's entry
    // was stored as the first http route's. A's next message still waits
    // behind it.
    let other = KeyedDownstream::start(Behaviour::default());
    let routes = json!([route("Other", &other.url()), route("Notify", &down.url())]);
    let app = with_routes(&env, routes, 1000);
    produce(&env, &[("A", 2)]);
    wait_until(PATIENCE, "A's next message waiting behind it", || {
        env.db().rows(Table::RetrySchedule) == 2
    });
    down.heal();
    wait_until(PATIENCE, "A's messages processed", || {
        env.db().audited("MESSAGE_PROCESSED") == 3
    });
    assert!(
        other.seen().is_empty(),
        "nothing went to the other downstream"
    );
    let a: Vec<i64> = delivered(&down.seen())
        .into_iter()
        .filter(|n| *n != 1)
        .collect();
    assert_eq!(
        a,
        [0, 2],
        "A's messages once each, in order, to their own downstream"
    );
    assert_eq!(
        down.seen().iter().filter(|s| s.n == 2).count(),
        1,
        "A's next message waited untried behind A's first"
    );
    let (_, view) = env.api(
        app.http_addr,
        reqwest::Method::GET,
        &format!("/messages/{}", ids[&0]),
        None,
    );
    assert_eq!(view["delivery"]["status"], "delivered", "{view}");
    app.stop().expect("graceful stop");
}

/// A graceful stop while the worker's attempt hangs hands the entry's
/// lease back: the entry is due at once for the next worker, not when the
/// lease (2 × the route's 10 s timeout + 5 s) would have expired, and the
/// dropped attempt is not counted.
#[test]
fn a_graceful_stop_mid_attempt_hands_the_lease_back() {
    let env = TestEnv::new(1);
    let down = failing_for_a();
    let mut slow = route("Notify", &down.url());
    slow["timeout"] = "10s".into();
    let app = with_routes(&env, json!([slow.clone()]), 1000);
    produce(&env, &[("A", 0)]);
    wait_until(PATIENCE, "A's message scheduled", || {
        env.db().rows(Table::RetrySchedule) == 1
    });
    down.behaviour.hang.store(true, Ordering::SeqCst);
    down.heal();
    wait_until(
        PATIENCE,
        "the worker's attempt held by the downstream",
        || down.behaviour.hung.load(Ordering::SeqCst) >= 1,
    );
    assert_eq!(
        env.db().leased_entries(),
        1,
        "the attempt in flight holds the lease"
    );
    let lease_ends_ms = env.db().lease_end_ms();
    let attempts_before = env.db().scheduled_attempts();

    app.stop().expect("graceful stop");
    assert_eq!(
        env.db().due_unleased_entries(),
        1,
        "the lease handed back and the entry due"
    );
    assert_eq!(
        env.db().scheduled_attempts(),
        attempts_before,
        "the dropped attempt is not counted"
    );

    down.behaviour.hang.store(false, Ordering::SeqCst);
    let app = with_routes(&env, json!([slow]), 1000);
    wait_until(PATIENCE, "A's message delivered by the next worker", || {
        env.db().audited("MESSAGE_PROCESSED") == 1 && env.db().rows(Table::RetrySchedule) == 0
    });
    assert!(
        chrono::Utc::now().timestamp_millis() < lease_ends_ms,
        "delivered before the old lease would have expired, so it was handed back"
    );
    app.stop().expect("graceful stop");
}
