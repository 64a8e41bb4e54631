//! One durable outcome per message (`crate::outcome`): the effect, the
//! ledger row and the audit entries commit in one transaction, then the
//! dead letters are pushed, then the offsets move.
//!
//! - Two instances, one record id on two partitions, and the first
//!   instance's flush held uncommitted by a lock: the second must wait and
//!   audit a duplicate, not a second MESSAGE_PROCESSED.
//! - A crash at each point of the outcome (before the commit, after the
//!   commit and before the dead-letter push, after the push and before the
//!   acknowledgement; `outcome::crash_point`): after a restart every effect
//!   is applied once, every poison record is parked once, and
//!   `audit reconcile` holds.

use std::time::Duration;

use crate::support::process::Launch;
use crate::support::{transaction_event, wait_until, Table, TestEnv};
use custodian::app::Running;
use custodian::pipeline::message_id::for_transaction_event;
use reqwest::Method;

const PATIENCE: Duration = Duration::from_secs(90);
const AT: &str = "2024-01-01T12:00:00Z";

#[test]
fn a_redelivery_while_the_first_flush_is_uncommitted_is_audited_a_duplicate() {
    let env = TestEnv::new(2);
    let first = Running::start(env.settings()).expect("first instance");
    let second = Running::start(env.settings()).expect("second instance");
    wait_until(PATIENCE, "each instance owns one partition", || {
        env.assigned_partitions(&first) == Some(1) && env.assigned_partitions(&second) == Some(1)
    });
    // Warm up both partitions (their chains, their connections).
    let warm = |n: u32| {
        let id = format!("{}-warm-{n}", env.topic);
        transaction_event("transaction.created", &id, 1.0, AT)
    };
    let (w0, w1) = (warm(0), warm(1));
    env.produce(&[
        (Some("w"), w0.as_bytes(), Some(0)),
        (Some("w"), w1.as_bytes(), Some(1)),
    ]);
    wait_until(PATIENCE, "the warm-up processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&2)
    });

    // Audit writes wait on the lock (reads go on): whichever instance
    // applies the record first holds its flush uncommitted.
    let lock = env.lock_table("audit_log");
    let tx = format!("{}-twice", env.topic);
    let event = transaction_event("transaction.created", &tx, 10.0, AT);
    env.produce(&[
        (Some("k"), event.as_bytes(), Some(0)),
        (Some("k"), event.as_bytes(), Some(1)),
    ]);
    // Long enough for both instances to read, apply and reach the lock.
    std::thread::sleep(Duration::from_secs(3));
    lock.release();

    let id = for_transaction_event(&tx, "transaction.created", AT).to_string();
    wait_until(PATIENCE, "both deliveries audited", || {
        env.db().entries(&id, "MESSAGE_PROCESSED") + env.db().entries(&id, "MESSAGE_DUPLICATE") >= 2
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        env.db().entries(&id, "MESSAGE_PROCESSED"),
        1,
        "processed once"
    );
    assert_eq!(
        env.db().entries(&id, "MESSAGE_DUPLICATE"),
        1,
        "the other a duplicate"
    );
    assert_eq!(env.db().version_of(&tx), 1, "applied once");
    first.stop().expect("graceful stop");
    second.stop().expect("graceful stop");
}

/// Produces `n` transaction events with a poison record after every tenth.
fn produce_with_poison(env: &TestEnv, n: usize) -> usize {
    let mut records: Vec<(Option<&str>, Vec<u8>, Option<i32>)> = Vec::new();
    let mut poison = 0;
    for i in 0..n {
        let id = format!("{}-{i}", env.topic);
        let event = transaction_event("transaction.created", &id, 1.0, AT);
        records.push((Some("k"), event.into_bytes(), Some(0)));
        if i % 10 == 0 {
            records.push((
                Some("k"),
                format!("not json {i} \u{0}").into_bytes(),
                Some(0),
            ));
            poison += 1;
        }
    }
    let borrowed: Vec<(Option<&str>, &[u8], Option<i32>)> = records
        .iter()
        .map(|(k, v, p)| (*k, v.as_slice(), *p))
        .collect();
    env.produce(&borrowed);
    poison
}

/// Runs `custodian run` with the crash point set until it aborts there.
fn crash_at(env: &TestEnv, point: &str) {
    let mut custodian = Launch::run(env)
        .env(custodian::outcome::crash_point::VARIABLE, point)
        .setting("pipeline.partition_batch_size", 50)
        .quiet()
        .spawn();
    let status = custodian
        .exit_within(PATIENCE)
        .unwrap_or_else(|| panic!("custodian never reached crash point {point}"));
    assert!(!status.success(), "custodian died at {point}: {status:?}");
}

fn crash_and_recover(point: &str) {
    let env = TestEnv::new(1);
    const N: usize = 300;
    let poison = produce_with_poison(&env, N);
    crash_at(&env, point);

    let app = Running::start(env.settings()).expect("custodian starts again");
    let total = (N + poison) as i64;
    wait_until(PATIENCE, "every offset with an outcome", || {
        env.db().settled_offsets() == total
    });
    wait_until(
        PATIENCE,
        "every dead letter in Redis, every offset committed",
        || env.dlq_entries().len() == poison && env.committed() == vec![Some(total)],
    );
    // Each effect once: one row per transaction, each at version 1.
    assert_eq!(env.db().rows(Table::Transactions), N as i64);
    assert_eq!(
        env.db().transactions_not_at_version_1(),
        0,
        "no event applied twice"
    );
    assert_eq!(env.db().rows(Table::AppliedMessages), N as i64);
    let path = format!("/audit/reconcile?topic={}", env.topic);
    wait_until(PATIENCE, "reconcile holds", || {
        let (status, report) = env.api(&app, Method::GET, &path, None);
        status == 200 && report["holds"] == true && report["pending"] == 0
    });
    let (_, report) = env.api(&app, Method::GET, &path, None);
    assert_eq!(report["doubles"], 0, "{report}");
    assert_eq!(report["gaps"], 0, "{report}");
    assert_eq!(report["totals"]["dead_lettered"], poison, "{report}");
    env.assert_chains_hold(&app);
    app.stop().expect("graceful stop");
}

#[test]
fn a_crash_before_the_commit_loses_nothing_and_applies_nothing_twice() {
    crash_and_recover("before_commit");
}

#[test]
fn a_crash_after_the_commit_before_the_dead_letter_push_parks_every_poison_once() {
    crash_and_recover("after_commit");
}

#[test]
fn a_crash_after_the_push_before_the_acknowledgement_holds_too() {
    crash_and_recover("after_push");
}
