//! The producer command into the pipeline: typed lines (seed 000) and
//! synthetic seed-003 events, each ending with a durable outcome.

use std::time::Duration;

use crate::support::process::Launch;
use crate::support::{wait_until, TestEnv};
use custodian::app::Running;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn typed_lines_become_audited_messages_whose_ids_are_printed() {
    let env = TestEnv::new(2);
    let app = Running::start(env.settings()).expect("custodian starts");
    let out = Launch::command(&env, &["produce"])
        .output_with_input(b"payment approved\n\nrefund issued\r\n");
    assert!(out.success, "{}", out.stderr);
    let stdout = &out.stdout;
    let ids: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().next().expect("an id per line"))
        .collect();
    assert_eq!(ids.len(), 2, "the empty line is skipped: {stdout}");
    for id in &ids {
        uuid::Uuid::parse_str(id).expect("a generated UUID");
    }
    wait_until(PATIENCE, "both processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&2)
    });
    for id in ids {
        assert_eq!(
            env.db().lifecycle(id),
            [
                ("MESSAGE_RECEIVED".to_string(), 1),
                ("MESSAGE_PROCESSED".to_string(), 1)
            ],
            "{id}"
        );
    }
    assert!(env.db().count(
        "SELECT count(*) AS n FROM message_payloads WHERE convert_from(payload, 'UTF8') LIKE '%refund issued%'"
    ) == 1);
    app.stop().expect("graceful stop");
}

#[test]
fn synthetic_events_are_keyed_by_user_and_all_processed() {
    let env = TestEnv::new(3);
    let app = Running::start(env.settings()).expect("custodian starts");
    let out = Launch::command(
        &env,
        &[
            "produce",
            "--synthetic",
            "--count",
            "60",
            "--user-id",
            "user-7",
            "--update-ratio",
            "0.2",
        ],
    )
    .output();
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("produced 60 events (0 failed)"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("60/60  100%"), "progress shown");
    // One user: one key, so one partition holds them all.
    let marks = env.high_watermarks();
    assert_eq!(marks.iter().sum::<i64>(), 60);
    assert_eq!(marks.iter().filter(|&&m| m > 0).count(), 1, "{marks:?}");
    wait_until(PATIENCE, "all processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&60)
    });
    assert_eq!(env.db().transaction_users(), 1);
    app.stop().expect("graceful stop");
}
