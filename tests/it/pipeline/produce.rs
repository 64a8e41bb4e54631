//! The producer command into the pipeline: typed lines (seed 000) and
//! synthetic seed-003 events, each ending with a durable outcome.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{wait_until, TestEnv};
use custodian::app::Running;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn typed_lines_become_audited_messages_whose_ids_are_printed() {
    let env = TestEnv::new(2);
    let app = Running::start(env.settings()).expect("custodian starts");
    let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["produce"])
        .envs(env.env_vars())
        .env("CUSTODIAN_LOG__LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn custodian produce");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"payment approved\n\nrefund issued\r\n")
        .expect("write lines");
    let out = child.wait_with_output().expect("produce finishes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().next().expect("an id per line"))
        .collect();
    assert_eq!(ids.len(), 2, "the empty line is skipped: {stdout}");
    for id in &ids {
        uuid::Uuid::parse_str(id).expect("a generated UUID");
    }
    wait_until(PATIENCE, "both processed", || {
        env.audit_counts().get("MESSAGE_PROCESSED") == Some(&2)
    });
    for id in ids {
        assert_eq!(
            env.lifecycle(id),
            [
                ("MESSAGE_RECEIVED".to_string(), 1),
                ("MESSAGE_PROCESSED".to_string(), 1)
            ],
            "{id}"
        );
    }
    assert!(env.count(
        "SELECT count(*) AS n FROM message_payloads WHERE convert_from(payload, 'UTF8') LIKE '%refund issued%'"
    ) == 1);
    app.stop().expect("graceful stop");
}

#[test]
fn synthetic_events_are_keyed_by_user_and_all_processed() {
    let env = TestEnv::new(3);
    let app = Running::start(env.settings()).expect("custodian starts");
    let out = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args([
            "produce",
            "--synthetic",
            "--count",
            "60",
            "--user-id",
            "user-7",
            "--update-ratio",
            "0.2",
        ])
        .envs(env.env_vars())
        .env("CUSTODIAN_LOG__LEVEL", "warn")
        .output()
        .expect("run custodian produce --synthetic");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("produced 60 events (0 failed)"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("60/60  100%"),
        "progress shown"
    );
    // One user: one key, so one partition holds them all.
    let marks = env.high_watermarks();
    assert_eq!(marks.iter().sum::<i64>(), 60);
    assert_eq!(marks.iter().filter(|&&m| m > 0).count(), 1, "{marks:?}");
    wait_until(PATIENCE, "all processed", || {
        env.audit_counts().get("MESSAGE_PROCESSED") == Some(&60)
    });
    assert_eq!(
        env.count("SELECT count(DISTINCT user_id) AS n FROM transactions"),
        1
    );
    app.stop().expect("graceful stop");
}
