//! Crash safety: SIGKILL custodian mid-stream, start it again, and check that
//! nothing is lost and nothing is applied twice.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{wait_until, TestEnv};

fn spawn(env: &TestEnv) -> Child {
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("run")
        .envs(env.env_vars())
        .env("CUSTODIAN_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn custodian")
}

#[test]
fn restart_after_a_hard_kill_resumes_from_the_committed_offset_without_duplicate_effects() {
    let env = TestEnv::new(3);
    const N: i64 = 4000;
    env.produce_synthetic(N as usize, 23, 0.3);

    let mut first = spawn(&env);
    wait_until(
        Duration::from_secs(90),
        "some progress before the kill",
        || {
            env.audit_counts()
                .get("MESSAGE_PROCESSED")
                .copied()
                .unwrap_or(0)
                >= 300
        },
    );
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let at_kill = env
        .audit_counts()
        .get("MESSAGE_PROCESSED")
        .copied()
        .unwrap_or(0);

    let mut second = spawn(&env);
    wait_until(
        Duration::from_secs(120),
        "every message processed once",
        || {
            env.count("SELECT count(*) AS n FROM applied_messages") == N
            && env.count("SELECT count(DISTINCT message_id) AS n FROM message_audit WHERE status IN ('MESSAGE_PROCESSED')") == N
        },
    );
    // Graceful stop of the second run commits everything.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(second.id().to_string())
        .status();
    let status = second.wait().expect("reaped");
    assert!(status.success(), "graceful exit: {status:?}");

    assert!(
        at_kill < N,
        "the kill happened mid-stream ({at_kill} of {N} processed)"
    );
    // No event applied twice: versions add up to exactly N.
    assert_eq!(
        env.count("SELECT coalesce(sum(version), 0)::bigint AS n FROM transactions"),
        N
    );
    // No message has two PROCESSED rows; redeliveries show as DUPLICATE.
    assert_eq!(
        env.count("SELECT count(*) AS n FROM (SELECT message_id FROM message_audit WHERE status = 'MESSAGE_PROCESSED' GROUP BY message_id HAVING count(*) > 1) d"),
        0
    );
    let committed: Vec<i64> = env
        .committed()
        .into_iter()
        .map(|c| c.unwrap_or(0))
        .collect();
    assert_eq!(committed, env.high_watermarks());
}
