//! Transient failures: retried in place with backoff, in partition order,
//! each attempt audited; dead-lettered when attempts run out; replayable.
//!
//! The transient failure is real: another session holds a lock on the
//! projection row, so custodian's statement runs into its
//! `postgres.statement_timeout`.

use std::time::Duration;

use crate::support::{transaction_event, wait_until, TestEnv};
use custodian::app::Running;
use custodian::pipeline::message_id::for_transaction_event;
use reqwest::Method;

const PATIENCE: Duration = Duration::from_secs(60);
const CREATED_AT: &str = "2024-01-01T12:00:00Z";
const UPDATED_AT: &str = "2024-01-01T12:05:00Z";

fn statuses(lifecycle: &[(String, i32)]) -> Vec<&str> {
    lifecycle.iter().map(|(s, _)| s.as_str()).collect()
}

/// Starts custodian, creates transaction `<topic>-a`, locks its row, then
/// publishes an update of it and, behind that, the creation of
/// `<topic>-<next>`. Returns the app, the lock and the two transaction ids.
fn update_a_locked_row<'e>(
    env: &'e TestEnv,
    statement_timeout: &str,
    max_attempts: u32,
    next: &str,
) -> (Running, crate::support::RowLock<'e>, String, String) {
    let app = Running::start(env.settings_with(&[
        ("postgres.statement_timeout", statement_timeout.into()),
        ("retry.max_attempts", max_attempts.into()),
    ]))
    .expect("custodian starts");
    let (a, b) = (format!("{}-a", env.topic), format!("{}-{next}", env.topic));
    let created = transaction_event("transaction.created", &a, 10.0, CREATED_AT);
    env.produce(&[(Some("u1"), created.as_bytes(), Some(0))]);
    wait_until(PATIENCE, "the create processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&1)
    });
    let lock = env.lock_transaction_row(&a);
    let update = transaction_event("transaction.updated", &a, 20.0, UPDATED_AT);
    let after = transaction_event("transaction.created", &b, 30.0, CREATED_AT);
    env.produce(&[
        (Some("u1"), update.as_bytes(), Some(0)),
        (Some("u1"), after.as_bytes(), Some(0)),
    ]);
    (app, lock, a, b)
}

#[test]
fn a_transient_failure_is_retried_in_place_until_it_clears() {
    let env = TestEnv::new(1);
    let (app, lock, a, b) = update_a_locked_row(&env, "300ms", 50, "b");
    wait_until(PATIENCE, "the update retried twice", || {
        env.metric(&app, "retries_total") >= 2.0
    });
    // Order is kept: the event behind the retried one waits for it.
    assert!(!env.db().has_transaction(&b), "{b} waits behind the retry");
    assert_eq!(
        env.committed_or_zero(),
        vec![1],
        "nothing committed past it"
    );
    lock.release();

    wait_until(PATIENCE, "all three processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&3)
    });
    let id = for_transaction_event(&a, "transaction.updated", UPDATED_AT);
    let lifecycle = env.db().lifecycle(&id.to_string());
    let steps = statuses(&lifecycle);
    assert_eq!(steps.first(), Some(&"MESSAGE_RECEIVED"), "{lifecycle:?}");
    assert_eq!(steps.last(), Some(&"MESSAGE_PROCESSED"), "{lifecycle:?}");
    let failed: Vec<i32> = lifecycle
        .iter()
        .filter(|(s, _)| s == "MESSAGE_FAILED")
        .map(|(_, attempt)| *attempt)
        .collect();
    assert!(failed.len() >= 2, "{lifecycle:?}");
    assert_eq!(failed, (1..=failed.len() as i32).collect::<Vec<_>>());
    assert_eq!(
        lifecycle.last().map(|(_, attempt)| *attempt),
        Some(failed.len() as i32 + 1),
        "PROCESSED carries the attempt that succeeded"
    );
    let (_, body) = env.api(&app, Method::GET, &format!("/messages/{id}"), None);
    let first_failure = &body["lifecycle"][1];
    assert_eq!(first_failure["status"], "MESSAGE_FAILED");
    assert!(
        first_failure["error"]
            .as_str()
            .is_some_and(|e| e.contains("database_timeout") && e.contains("statement timeout")),
        "{first_failure}"
    );
    assert_eq!(env.db().version_of(&a), 2);
    assert!(env.dlq_entries().is_empty());
    app.stop().expect("graceful stop");
    assert_eq!(env.committed(), vec![Some(3)]);
}

#[test]
fn attempts_run_out_the_message_is_parked_and_a_replay_completes_it_once() {
    let env = TestEnv::new(1);
    let (app, lock, a, _) = update_a_locked_row(&env, "200ms", 3, "c");
    let update = transaction_event("transaction.updated", &a, 20.0, UPDATED_AT);
    wait_until(
        PATIENCE,
        "the update parked, the next event processed",
        || {
            let counts = env.db().audit_counts();
            counts.get("MESSAGE_DLQ") == Some(&1) && counts.get("MESSAGE_PROCESSED") == Some(&2)
        },
    );
    let id = for_transaction_event(&a, "transaction.updated", UPDATED_AT);
    let steps = env.db().lifecycle(&id.to_string());
    assert_eq!(
        steps,
        [
            ("MESSAGE_RECEIVED".to_string(), 1),
            ("MESSAGE_FAILED".to_string(), 1),
            ("MESSAGE_FAILED".to_string(), 2),
            ("MESSAGE_FAILED".to_string(), 3),
            ("MESSAGE_DLQ".to_string(), 3),
        ]
    );
    let entries = env.dlq_entries();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.message_id, id);
    assert_eq!(entry.attempts, 3);
    assert_eq!(entry.error_class, "transient");
    assert_eq!(entry.error_kind, "database_timeout");
    assert_eq!(entry.stage, "process");
    assert!(entry.first_failed_at < entry.last_failed_at);
    assert_eq!(entry.payload.as_deref(), Some(update.as_str()));
    wait_until(PATIENCE, "committed to the end", || {
        env.committed() == vec![Some(3)]
    });
    lock.release();

    // Replay it: published again, audited, removed from the DLQ, and this
    // time applied.
    let request = serde_json::json!({"reason": "row lock released"});
    let (status, replayed) = env.api(
        &app,
        Method::POST,
        &format!("/replay/{id}"),
        Some(request.clone()),
    );
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replay_count"], 1);
    assert_eq!(replayed["removed_from_dlq"], true);
    assert_eq!(replayed["offset"], 3, "appended to the source partition");
    // The copy is the original record plus the replay headers.
    let (key, payload, headers) = env.record_at(0, 3);
    assert_eq!(key.as_deref(), Some(&b"u1"[..]));
    assert_eq!(payload.as_deref(), Some(update.as_bytes()));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("custodian-message-id"), Some(id.to_string()));
    assert_eq!(header("custodian-replay-count").as_deref(), Some("1"));
    assert_eq!(
        header("custodian-replayed-by").as_deref(),
        Some("shared-token")
    );
    assert_eq!(
        header("custodian-replay-reason").as_deref(),
        Some("row lock released")
    );
    assert_eq!(
        header("custodian-replayed-from"),
        Some(format!("{}/0/1", env.topic))
    );
    wait_until(PATIENCE, "the replayed copy processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&3)
    });
    assert_eq!(env.db().version_of(&a), 2);
    let steps = env.db().lifecycle(&id.to_string());
    assert_eq!(
        statuses(&steps)[4..],
        [
            "MESSAGE_DLQ",
            "MESSAGE_REPLAYED",
            "MESSAGE_RECEIVED",
            "MESSAGE_PROCESSED"
        ]
    );
    let (_, body) = env.api(&app, Method::GET, &format!("/messages/{id}"), None);
    let replay_row = &body["lifecycle"][5];
    assert_eq!(replay_row["detail"]["requested_by"], "shared-token");
    assert_eq!(replay_row["detail"]["reason"], "row lock released");
    assert!(env.dlq_entries().is_empty());
    let (status, _) = env.api(&app, Method::GET, &format!("/dlq/{id}"), None);
    assert_eq!(status, 404);

    // A second replay changes nothing.
    let (status, again) = env.api(&app, Method::POST, &format!("/replay/{id}"), Some(request));
    assert_eq!(status, 404, "{again}");
    assert_eq!(again["error"], "not_found");
    assert_eq!(env.metric(&app, "replays_total"), 1.0);
    app.stop().expect("graceful stop");
    assert_eq!(env.committed(), vec![Some(4)]);
    assert_eq!(env.db().audit_counts().get("MESSAGE_REPLAYED"), Some(&1));
}
