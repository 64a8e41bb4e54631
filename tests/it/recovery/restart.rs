//! Crash safety: SIGKILL custodian mid-stream, start it again, and check that
//! nothing is lost and nothing is applied twice.

use std::time::Duration;

use crate::support::process::{Launch, Process};
use crate::support::{wait_until, Table, TestEnv};

/// `custodian run` as a process with `extra` settings. Small batches keep
/// many messages between read and durable outcome for longer, so the kill
/// lands mid-stream.
fn spawn(env: &TestEnv, extra: &[(&str, &str)]) -> Process {
    Launch::run(env)
        .setting("pipeline.partition_batch_size", 50)
        .setting("pipeline.max_in_flight_per_partition", 400)
        .settings(extra)
        .quiet()
        .spawn()
}

/// SIGKILLs `custodian`; returns how many messages were processed by then.
fn kill_hard(env: &TestEnv, mut custodian: Process) -> i64 {
    custodian.kill();
    processed(env)
}

/// Waits until `n` offsets have a terminal outcome (processed or parked).
fn wait_for_outcomes(env: &TestEnv, n: i64) {
    wait_until(
        Duration::from_secs(120),
        "every record with a terminal outcome",
        || env.db().settled_offsets() == n,
    );
}

fn processed(env: &TestEnv) -> i64 {
    env.db().audited("MESSAGE_PROCESSED")
}

/// `partition_in_flight_messages` per partition of this test's topic, from
/// custodian's `/metrics` at `addr`.
fn in_flight_by_partition(env: &TestEnv, addr: std::net::SocketAddr) -> Vec<(String, f64)> {
    let (_, text) = env.get(addr, "/metrics");
    text.lines()
        .filter(|l| l.starts_with("partition_in_flight_messages{"))
        .filter_map(|l| {
            let partition = l
                .split("partition=\"")
                .nth(1)?
                .split('"')
                .next()?
                .to_owned();
            Some((partition, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_hard_kill_during_a_merged_multi_partition_audit_batch_loses_nothing_and_applies_nothing_twice()
{
    let env = TestEnv::new(6);
    const N: i64 = 6000;
    const POISON: i64 = 30;
    env.produce_synthetic(N as usize, 29, 0.2);
    let poison: &[u8] = b"\xff\xfe not json";
    let records: Vec<_> = (0..POISON)
        .map(|i| (None, poison, Some((i % 6) as i32)))
        .collect();
    env.produce(&records);

    // One auditor that flushes once a second with no size limit: it merges
    // what every partition settled meanwhile into one COPY transaction, so
    // at almost any moment a multi-partition batch is buffered or being
    // written.
    let merged = [
        ("pipeline.auditors", "1"),
        ("pipeline.audit_batch_size", "100000"),
        ("pipeline.audit_flush_interval", "1s"),
    ];
    let first = spawn(&env, &merged);
    let addr = first.http();
    // Kill once a flush has landed (mid-stream) and at least two partitions
    // hold messages read but not yet durable.
    let mut pending = Vec::new();
    wait_until(
        Duration::from_secs(90),
        "a multi-partition batch in flight after the first flush",
        || {
            if std::net::TcpStream::connect(addr).is_err() {
                return false; // not serving yet
            }
            let processed = processed(&env);
            pending = in_flight_by_partition(&env, addr)
                .into_iter()
                .filter(|(_, n)| *n > 0.0)
                .collect();
            processed > 0 && processed < N && pending.len() >= 2
        },
    );
    let at_kill = kill_hard(&env, first);
    assert!(
        at_kill < N,
        "the kill happened mid-stream ({at_kill} of {N} processed; in flight: {pending:?})"
    );

    let mut second = spawn(&env, &[]);
    wait_for_outcomes(&env, N + POISON);
    second.stop();

    // Nothing lost: every offset of every partition ended processed or
    // dead-lettered; nothing applied twice; offsets committed to the end.
    let dead_lettered = env
        .db()
        .messages_with_status(Table::MessageAudit, "MESSAGE_DLQ");
    assert_eq!(
        dead_lettered, POISON,
        "the poison was dead-lettered once each"
    );
    env.assert_applied_once(N);
    assert_eq!(
        env.dlq_entries().len() as i64,
        dead_lettered,
        "one DLQ entry per dead-lettered message"
    );
    env.assert_committed_to_end();
}

#[test]
fn restart_after_a_hard_kill_resumes_from_the_committed_offset_without_duplicate_effects() {
    let env = TestEnv::new(3);
    const N: i64 = 4000;
    env.produce_synthetic(N as usize, 23, 0.3);

    let first = spawn(&env, &[]);
    wait_until(
        Duration::from_secs(90),
        "some progress before the kill",
        || env.db().audited("MESSAGE_PROCESSED") >= 100,
    );
    let at_kill = kill_hard(&env, first);

    let mut second = spawn(&env, &[]);
    wait_until(
        Duration::from_secs(120),
        "every message processed once",
        || {
            env.db().rows(Table::AppliedMessages) == N
                && env
                    .db()
                    .messages_with_status(Table::MessageAudit, "MESSAGE_PROCESSED")
                    == N
        },
    );
    // Graceful stop of the second run commits everything.
    second.stop();

    assert!(
        at_kill < N,
        "the kill happened mid-stream ({at_kill} of {N} processed)"
    );
    // No event applied twice: versions add up to exactly N.
    env.assert_applied_once(N);
    env.assert_committed_to_end();
}

/// `GET /audit/reconcile` of the env's topic.
fn reconcile(env: &TestEnv, addr: std::net::SocketAddr) -> serde_json::Value {
    let path = format!("/audit/reconcile?topic={}", env.topic);
    let (status, report) = env.api(addr, reqwest::Method::GET, &path, None);
    assert_eq!(status, 200, "{report}");
    report
}

#[test]
fn poison_parked_before_a_hard_kill_is_a_redelivery_after_the_restart_not_a_double() {
    let env = TestEnv::new(3);
    const GOOD: i64 = 2400;
    const POISON: i64 = 600;
    // 20% poison, interleaved with good events on every partition.
    let good = env.produce_synthetic(GOOD as usize, 31, 0.0);
    assert_eq!(good.len() as i64, GOOD);
    let poison: Vec<Vec<u8>> = (0..POISON)
        .map(|i| format!("not json {i}").into_bytes())
        .collect();
    let records: Vec<_> = poison
        .iter()
        .enumerate()
        .map(|(i, p)| (None, p.as_slice(), Some((i % 3) as i32)))
        .collect();
    env.produce(&records);

    // Commits a minute apart: whatever is parked before the kill is read
    // again after it.
    let first = spawn(&env, &[("kafka.commit_interval", "60s")]);
    wait_until(
        Duration::from_secs(90),
        "poison parked before the kill",
        || env.db().audited("MESSAGE_DLQ") >= 50,
    );
    kill_hard(&env, first);
    let parked_before = env
        .db()
        .messages_with_status(Table::MessageAudit, "MESSAGE_DLQ");
    assert!(
        parked_before < POISON,
        "the kill happened mid-stream ({parked_before} of {POISON} parked)"
    );

    let mut second = spawn(&env, &[]);
    wait_for_outcomes(&env, GOOD + POISON);
    wait_until(Duration::from_secs(60), "offsets committed", || {
        env.committed_or_zero() == env.high_watermarks()
    });

    // Each poison record has one MESSAGE_DLQ and one DLQ entry; those
    // parked before the kill were read again and audited as redeliveries.
    let report = reconcile(&env, second.http());
    assert_eq!(report["doubles"], 0, "{report}");
    assert_eq!(report["gaps"], 0, "{report}");
    assert_eq!(report["holds"], true, "{report}");
    assert_eq!(report["totals"]["dead_lettered"], POISON, "{report}");
    let redelivered: i64 = report["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["redelivered"].as_i64().unwrap_or(0))
        .sum();
    assert!(
        redelivered >= parked_before,
        "every record parked before the kill is a redelivery ({redelivered} < {parked_before}): {report}"
    );
    assert_eq!(
        env.db()
            .rows_with_status(Table::MessageAudit, "MESSAGE_DLQ"),
        POISON,
        "one MESSAGE_DLQ per poison record"
    );
    assert_eq!(env.dlq_entries().len() as i64, POISON, "one DLQ entry each");
    env.assert_applied_once(GOOD);
    second.stop();
}

/// A record like the one parked at `offset` of partition 0, with `payload`.
fn record_at(
    env: &TestEnv,
    id: uuid::Uuid,
    offset: i64,
    payload: &[u8],
) -> custodian::pipeline::Message {
    custodian::pipeline::Message {
        envelope: custodian::kafka::envelope::Envelope::at(&env.topic, 0, offset, Some(payload)),
        message_id: id,
        event_type: None,
        payload_sha256: custodian::pipeline::steering::payload_digest(Some(payload)),
        steering: Default::default(),
        retry: None,
        trace: Default::default(),
    }
}

#[test]
fn a_different_record_at_a_parked_position_is_not_taken_for_a_redelivery() {
    let env = TestEnv::new(1);
    let poison: &[u8] = b"not json at all";
    env.produce(&[(None, poison, Some(0))]);
    let app = custodian::app::Running::start(env.settings()).expect("custodian starts");
    wait_until(Duration::from_secs(60), "the poison parked", || {
        env.db().audited("MESSAGE_DLQ") == 1
    });
    app.stop().expect("graceful stop");
    let lifecycle = env.db().parked();
    let (id, offset) = lifecycle[0];
    // Built inside the runtime: the pool's reaper is a task of it.
    let settings = env.settings();
    let pool = env
        .rt
        .block_on(async { custodian::store::pool::postgres(&settings.postgres) });
    let recorded = |m: &custodian::pipeline::Message| {
        env.rt
            .block_on(custodian::store::redelivery::recorded(
                &pool,
                [m],
                &["MESSAGE_DLQ"],
            ))
            .expect("query")
            .len()
    };
    // The same record read again: a redelivery.
    assert_eq!(recorded(&record_at(&env, id, offset, poison)), 1);
    // Another record at that position under the same id (a topic created
    // again, whose ids derived from positions repeat): not a redelivery.
    assert_eq!(recorded(&record_at(&env, id, offset, b"other bytes")), 0);
}
