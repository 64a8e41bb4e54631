//! Managing the dead-letter queue: listing with filters and pages, bulk
//! replay by filter, discard with a reason, the same from the command line.

use std::time::Duration;

use crate::support::process::Launch;
use crate::support::{transaction_event, wait_until, Table, TestEnv};
use custodian::app::Running;
use reqwest::Method;

const PATIENCE: Duration = Duration::from_secs(60);
const AT: &str = "2024-01-01T12:00:00Z";

/// Three events the database refuses (a CHECK constraint the test adds), two
/// of an unknown type, one valid; waits until all six are settled.
fn park_five(env: &TestEnv) -> Vec<String> {
    env.limit_amounts();
    let big: Vec<String> = (0..3)
        .map(|i| {
            transaction_event(
                "transaction.created",
                &format!("{}-big-{i}", env.topic),
                5000.0,
                AT,
            )
        })
        .collect();
    let unknown: Vec<String> = (0..2)
        .map(|i| {
            transaction_event(
                "transaction.exploded",
                &format!("{}-x-{i}", env.topic),
                1.0,
                AT,
            )
        })
        .collect();
    let ok = transaction_event("transaction.created", &format!("{}-ok", env.topic), 1.0, AT);
    let mut records: Vec<(Option<&str>, &[u8], Option<i32>)> = Vec::new();
    for payload in big.iter().chain(&unknown).chain(std::iter::once(&ok)) {
        records.push((Some("u1"), payload.as_bytes(), Some(0)));
    }
    env.produce(&records);
    wait_until(PATIENCE, "five parked, one processed", || {
        let c = env.db().audit_counts();
        c.get("MESSAGE_DLQ") == Some(&5) && c.get("MESSAGE_PROCESSED") == Some(&1)
    });
    big
}

#[test]
fn a_filtered_bulk_replay_takes_only_matching_entries_and_discard_needs_a_reason() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    park_five(&env);
    let topic = env.topic.clone();

    // Listing: filtered, paged.
    let page = |query: &str| {
        let (status, body) = env.api(&app, Method::GET, &format!("/dlq?{query}"), None);
        assert_eq!(status, 200, "{body}");
        body
    };
    let refused = page(&format!("topic={topic}&error_kind=constraint_violation"));
    assert_eq!(refused["count"], 3, "{refused}");
    assert!(refused["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .all(|e| e["error_kind"] == "constraint_violation" && e["error_class"] == "permanent"));
    let first = page(&format!("topic={topic}&limit=2"));
    assert_eq!(first["count"], 2);
    assert_eq!(first["next_offset"], 2);
    let rest = page(&format!("topic={topic}&limit=2&offset=2"));
    assert_eq!(rest["count"], 2);
    let last = page(&format!("topic={topic}&limit=2&offset=4"));
    assert_eq!(last["count"], 1);
    assert!(last["next_offset"].is_null());
    let none = page(&format!("topic={topic}&from=2999-01-01T00:00:00Z"));
    assert_eq!(none["count"], 0);
    assert_eq!(env.metric(&app, "dlq_depth"), 5.0);

    // An entry another operator is working on answers 409.
    let busy = refused["entries"][0]["message_id"]
        .as_str()
        .expect("id")
        .to_string();
    let lock_key = format!("{}:#lock:{busy}", env.dlq_prefix);
    let client = env.redis();
    let mut conn = client.get_connection().expect("redis");
    let _: () = redis::cmd("SET")
        .arg(&lock_key)
        .arg("someone-else")
        .query(&mut conn)
        .expect("SET");
    let (status, body) = env.api(
        &app,
        Method::POST,
        &format!("/replay/{busy}"),
        Some(serde_json::json!({"reason": "x"})),
    );
    assert_eq!(status, 409, "{body}");
    let _: () = redis::cmd("DEL")
        .arg(&lock_key)
        .query(&mut conn)
        .expect("DEL");

    // The cause is fixed; replay exactly the refused ones.
    env.lift_amount_limit();
    let bulk = serde_json::json!({
        "topic": topic,
        "error_kind": "constraint_violation",
        "reason": "limit raised",
    });
    let (status, report) = env.api(&app, Method::POST, "/replay", Some(bulk.clone()));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["matched"], 3, "{report}");
    assert_eq!(report["replayed"], 3, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    wait_until(PATIENCE, "the replayed three processed", || {
        env.db().rows(Table::Transactions) == 4
    });
    let left = env.dlq_entries();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|e| e.error_kind == "unknown_event_type"));
    assert_eq!(env.db().audit_counts().get("MESSAGE_REPLAYED"), Some(&3));
    // Again: nothing matches any more, nothing is published.
    let (_, again) = env.api(&app, Method::POST, "/replay", Some(bulk));
    assert_eq!(again["matched"], 0, "{again}");
    assert_eq!(again["replayed"], 0, "{again}");

    // Discard needs a reason, is audited, and happens once.
    let victim = left[0].message_id;
    let path = format!("/dlq/{victim}");
    let (status, body) = env.api(&app, Method::DELETE, &path, Some(serde_json::json!({})));
    assert_eq!(status, 400, "{body}");
    let (status, body) = env.api(
        &app,
        Method::DELETE,
        &path,
        Some(serde_json::json!({"reason": "   "})),
    );
    assert_eq!(status, 400, "{body}");
    let reason = serde_json::json!({"reason": "test event, never valid"});
    let (status, body) = env.api(&app, Method::DELETE, &path, Some(reason.clone()));
    assert_eq!(status, 200, "{body}");
    let (status, _) = env.api(&app, Method::DELETE, &path, Some(reason));
    assert_eq!(status, 404);
    let lifecycle = env.db().lifecycle(&victim.to_string());
    assert_eq!(
        lifecycle.last().map(|(s, _)| s.as_str()),
        Some("MESSAGE_DISCARDED")
    );
    assert_eq!(env.dlq_entries().len(), 1);
    assert_eq!(env.metric(&app, "dlq_depth"), 1.0);
    app.stop().expect("graceful stop");
}

/// `custodian dlq <args>`: success, stdout, stderr.
fn cli(env: &TestEnv, args: &[&str]) -> (bool, String, String) {
    let out = Launch::command(env, &[&["dlq"], args].concat()).output();
    (out.success, out.stdout, out.stderr)
}

#[test]
fn the_command_line_lists_shows_replays_and_discards() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    park_five(&env);
    let topic = env.topic.clone();

    let (ok, out, err) = cli(&env, &["list", "--topic", &topic, "--json"]);
    assert!(ok, "{err}");
    let listed: Vec<custodian::dlq::DlqEntry> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON entry per line"))
        .collect();
    assert_eq!(listed.len(), 5);
    let refused: Vec<_> = listed
        .iter()
        .filter(|e| e.error_kind == "constraint_violation")
        .collect();
    let unknown: Vec<_> = listed
        .iter()
        .filter(|e| e.error_kind == "unknown_event_type")
        .collect();

    let (ok, out, err) = cli(&env, &["show", &refused[0].message_id.to_string()]);
    assert!(ok, "{err}");
    let shown: custodian::dlq::DlqEntry = serde_json::from_str(&out).expect("JSON entry");
    assert_eq!(&shown, refused[0]);

    env.lift_amount_limit();
    let (ok, out, err) = cli(
        &env,
        &[
            "replay",
            &refused[0].message_id.to_string(),
            "--reason",
            "limit raised",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"replay_count\":1"), "{out}");
    let (ok, out, err) = cli(
        &env,
        &[
            "replay",
            "--all",
            "--topic",
            &topic,
            "--error-kind",
            "constraint_violation",
            "--reason",
            "limit raised",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"replayed\":2"), "{out}");
    let (ok, _, err) = cli(
        &env,
        &[
            "discard",
            &unknown[0].message_id.to_string(),
            "--reason",
            "junk",
        ],
    );
    assert!(ok, "{err}");
    // A replay of something no longer parked fails with a clear message.
    let (ok, _, err) = cli(
        &env,
        &[
            "replay",
            &refused[0].message_id.to_string(),
            "--reason",
            "again",
        ],
    );
    assert!(!ok);
    assert!(err.contains("not in the dead-letter queue"), "{err}");

    wait_until(PATIENCE, "the three replayed ones processed", || {
        env.db().rows(Table::Transactions) == 4
    });
    assert_eq!(env.dlq_entries().len(), 1);
    let counts = env.db().audit_counts();
    assert_eq!(counts.get("MESSAGE_REPLAYED"), Some(&3));
    assert_eq!(counts.get("MESSAGE_DISCARDED"), Some(&1));
    app.stop().expect("graceful stop");
}

#[test]
fn two_records_claiming_one_id_are_both_kept() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    // One producer event id, two different (unroutable) payloads.
    let id = uuid::Uuid::new_v4().to_string();
    let event = |n: u32| {
        serde_json::json!({"eventId": id, "type": "Exploded", "timestamp": AT, "data": {"n": n}})
            .to_string()
    };
    let (first, second) = (event(1), event(2));
    env.produce_with_headers(first.as_bytes(), &[]);
    env.produce_with_headers(second.as_bytes(), &[]);
    wait_until(PATIENCE, "both parked", || {
        env.db().audit_counts().get("MESSAGE_DLQ") == Some(&2)
    });
    // Neither record's bytes are lost; the id finds the first.
    let entries = env.dlq_entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].payload.as_deref(), Some(first.as_str()));
    assert_eq!(entries[1].payload.as_deref(), Some(second.as_str()));
    let path = format!("/dlq/{id}");
    let (_, shown) = env.api(&app, Method::GET, &path, None);
    assert_eq!(shown["offset"], 0, "{shown}");
    // Once the first is dealt with, the id finds the second.
    let reason = serde_json::json!({"reason": "handled"});
    let (status, body) = env.api(&app, Method::DELETE, &path, Some(reason.clone()));
    assert_eq!(status, 200, "{body}");
    let (status, shown) = env.api(&app, Method::GET, &path, None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["offset"], 1, "{shown}");
    let (status, _) = env.api(&app, Method::DELETE, &path, Some(reason.clone()));
    assert_eq!(status, 200);
    let (status, _) = env.api(&app, Method::DELETE, &path, Some(reason));
    assert_eq!(status, 404);
    assert!(env.dlq_entries().is_empty());
    app.stop().expect("graceful stop");
}

#[test]
fn entries_parked_before_the_time_indexes_existed_are_indexed_at_start() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    park_five(&env);
    app.stop().expect("graceful stop");
    // As an older version left them: entries and lists, no time indexes.
    let client = env.redis();
    let mut conn = client.get_connection().expect("redis");
    let indexes: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:#by-time*", env.dlq_prefix))
        .query(&mut conn)
        .expect("KEYS");
    assert!(!indexes.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&indexes)
        .query(&mut conn)
        .expect("DEL");
    let app = Running::start(env.settings()).expect("custodian starts again");
    wait_until(PATIENCE, "the five listed again", || {
        let (status, body) = env.api(
            &app,
            Method::GET,
            &format!("/dlq?topic={}", env.topic),
            None,
        );
        status == 200 && body["count"] == 5
    });
    let (_, refused) = env.api(
        &app,
        Method::GET,
        "/dlq?error_kind=constraint_violation",
        None,
    );
    assert_eq!(refused["count"], 3, "{refused}");
    app.stop().expect("graceful stop");
}
