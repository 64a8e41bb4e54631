//! Scaling out: a second instance joins the consumer group mid-stream. The
//! first drains and commits what it gives up, the second resumes from there,
//! and every event is applied exactly once.

use std::time::Duration;

use crate::support::{wait_until, Table, TestEnv};
use custodian::app::Running;

#[test]
fn a_second_instance_takes_over_partitions_without_loss_or_double_application() {
    let env = TestEnv::new(4);
    const N: i64 = 4000;
    let first = Running::start(env.settings()).expect("first instance");
    env.produce_synthetic(N as usize / 2, 31, 0.2);
    wait_until(
        Duration::from_secs(60),
        "progress on the first instance",
        || env.db().audited("MESSAGE_PROCESSED") >= 200,
    );

    let second = Running::start(env.settings()).expect("second instance");
    env.produce_synthetic(N as usize / 2, 32, 0.2);
    wait_until(
        Duration::from_secs(90),
        "the second instance to own partitions",
        || env.assigned_partitions(&second).is_some_and(|n| n > 0),
    );
    wait_until(Duration::from_secs(120), "every event applied", || {
        env.db().rows(Table::AppliedMessages) == N
            && env
                .db()
                .messages_with_status(Table::MessageAudit, "MESSAGE_PROCESSED")
                == N
    });
    let (_, body) = env.get(first.http_addr, "/ready");
    let first_owns = serde_json::from_str::<serde_json::Value>(&body).expect("json")["kafka"]
        ["assigned_partitions"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        first_owns < 4,
        "the first instance gave partitions up ({first_owns} of 4 left)"
    );

    // The second instance leaves; the first takes every partition back and
    // commits up to the end. (librdkafka's mock cluster refuses commits
    // while a rebalance is in progress, where a real broker accepts those
    // made on revocation; a refused commit only means redelivery, which the
    // ledger turns into MESSAGE_DUPLICATE rows.)
    second.stop().expect("graceful stop");
    let end = env.high_watermarks();
    wait_until(
        Duration::from_secs(60),
        "the first instance to commit every partition",
        || env.committed_or_zero() == end,
    );
    first.stop().expect("graceful stop");
    env.assert_applied_once(N);
    env.assert_committed_to_end();
}
