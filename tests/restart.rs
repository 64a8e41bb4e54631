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
        // Small batches keep many messages between read and durable outcome
        // for longer, so the kill lands mid-stream.
        .env("CUSTODIAN_PIPELINE__PARTITION_BATCH_SIZE", "50")
        .env("CUSTODIAN_PIPELINE__MAX_IN_FLIGHT_PER_PARTITION", "400")
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
                >= 100
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
    env.assert_applied_once(N);
    env.assert_committed_to_end();
}
