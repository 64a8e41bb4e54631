//! Bounded shutdown: the real `custodian` binary consuming from
//! `custodian dev-broker`, another process. SIGTERM must end custodian within
//! `runtime.drain_timeout` + `shutdown::MARGIN` when the broker, PostgreSQL or
//! Redis is gone, through its orderly path (status 0, not the watchdog's),
//! and never commit past an outcome that is not durable. With everything up
//! it exits 0 with every offset committed.

use std::time::Duration;

use crate::support::brokers::{creations, BrokerProcess, Records};
use crate::support::process::{Launch, Process};
use crate::support::{wait_until, Db, PrivatePostgres, PrivateRedis, TestEnv};

/// Short, so the tests are quick; the bound under test scales with it.
const DRAIN: Duration = Duration::from_secs(3);
const PARTITIONS: i32 = 3;

/// What the README promises: SIGTERM to exit.
fn bound() -> Duration {
    DRAIN + custodian::shutdown::MARGIN
}

/// `custodian run` on the test's settings, `broker` and the given
/// PostgreSQL and Redis, once it owns the partitions.
fn start(
    env: &TestEnv,
    broker: &BrokerProcess,
    database_url: &str,
    redis_url: &str,
    extra: &[(&str, &str)],
) -> Process {
    let mut custodian = Launch::run(env)
        .setting("kafka.brokers", &broker.bootstrap)
        .setting("postgres.url", database_url)
        .setting("redis.url", redis_url)
        .setting("runtime.drain_timeout", format!("{}s", DRAIN.as_secs()))
        .settings(extra)
        .spawn();
    custodian.wait_ready(env, Duration::from_secs(90));
    custodian
}

/// Publishes `records` and waits until each has a durable outcome (the
/// topic and database start empty); answers the records per partition.
fn feed_until_durable(
    env: &TestEnv,
    broker: &BrokerProcess,
    db: &Db<'_>,
    records: &Records,
) -> Vec<i64> {
    let ends = broker.produce(&env.rt, records);
    wait_until(Duration::from_secs(60), "every message durable", || {
        db.durable() == Some(records.len() as i64)
    });
    ends
}

/// Waits until custodian has read `n` messages from Kafka.
fn wait_consumed(env: &TestEnv, custodian: &Process, n: usize) {
    wait_until(Duration::from_secs(60), "messages read", || {
        env.metric(custodian, "messages_consumed_total") >= n as f64
    });
}

/// Every offset below each committed one has a durable outcome: nothing
/// was committed past what PostgreSQL or Redis actually kept.
fn assert_committed_are_durable(db: &Db<'_>, committed: &[i64]) {
    for (partition, offset) in (0..).zip(committed) {
        assert_eq!(
            db.durable_below(partition, *offset),
            Some(*offset),
            "partition {partition} committed {offset} past outcomes that are not durable"
        );
    }
}

/// Adds per-partition counts.
fn add(total: &mut [i64], more: &[i64]) {
    for (t, m) in total.iter_mut().zip(more) {
        *t += m;
    }
}

/// `n` undecodable records on `partition` (or spread over all).
fn poison(n: usize, partition: Option<i32>) -> Records {
    (0..n)
        .map(|i| {
            let partition = partition.unwrap_or(i as i32 % PARTITIONS);
            (None, b"not json {".to_vec(), Some(partition))
        })
        .collect()
}

#[test]
fn with_everything_up_sigterm_exits_promptly_with_every_offset_committed() {
    let env = TestEnv::new(PARTITIONS);
    let db = env.db();
    let broker = BrokerProcess::dev_broker(&env.topic, PARTITIONS);
    let mut custodian = start(&env, &broker, &env.database_url, &env.redis_url, &[]);
    let mut records = creations(60, PARTITIONS);
    records.extend(poison(6, None));
    let ends = feed_until_durable(&env, &broker, &db, &records);

    custodian.terminate_within_bound(bound());

    let committed = broker.committed(&env.group);
    assert_eq!(committed, ends, "every partition committed to its end");
    assert_committed_are_durable(&db, &committed);
}

#[test]
fn with_the_broker_killed_sigterm_still_exits_within_the_bound() {
    let env = TestEnv::new(PARTITIONS);
    let mut broker = BrokerProcess::dev_broker(&env.topic, PARTITIONS);
    // librdkafka's synchronous commit waits until the group session expires;
    // a session longer than the bound shows the exit does not wait for it.
    let mut custodian = start(
        &env,
        &broker,
        &env.database_url,
        &env.redis_url,
        &[("kafka.session_timeout", "30s")],
    );
    broker.produce(&env.rt, &creations(300, PARTITIONS));
    wait_until(Duration::from_secs(60), "processing under way", || {
        env.db().durable() > Some(0)
    });

    broker.kill();
    custodian.terminate_within_bound(bound());
}

#[test]
fn with_postgres_stopped_sigterm_exits_within_the_bound_committing_only_durable_outcomes() {
    let env = TestEnv::new(PARTITIONS);
    let postgres = PrivatePostgres::start();
    let db = Db::at(&env, &postgres.url());
    let broker = BrokerProcess::dev_broker(&env.topic, PARTITIONS);
    let mut custodian = start(&env, &broker, &postgres.url(), &env.redis_url, &[]);
    let mut ends = feed_until_durable(&env, &broker, &db, &creations(60, PARTITIONS));

    postgres.crash();
    // These are read but cannot become durable: in flight at SIGTERM.
    add(
        &mut ends,
        &broker.produce(&env.rt, &creations(30, PARTITIONS)),
    );
    wait_consumed(&env, &custodian, 90);
    custodian.terminate_within_bound(bound());

    postgres.restart();
    let committed = broker.committed(&env.group);
    assert_committed_are_durable(&db, &committed);
    assert!(
        committed
            .iter()
            .zip(&ends)
            .any(|(offset, end)| offset < end),
        "messages in flight at SIGTERM were left uncommitted, for redelivery: \
         {committed:?} of {ends:?}"
    );
}

#[test]
fn with_redis_stopped_and_poison_in_flight_sigterm_exits_within_the_bound() {
    let env = TestEnv::new(PARTITIONS);
    let db = env.db();
    let mut redis = PrivateRedis::start();
    let broker = BrokerProcess::dev_broker(&env.topic, PARTITIONS);
    let mut custodian = start(&env, &broker, &env.database_url, &redis.url(), &[]);
    let mut ends = feed_until_durable(&env, &broker, &db, &creations(60, PARTITIONS));

    redis.stop();
    // Poison goes to the dead-letter queue, which is down: in flight at
    // SIGTERM. The first lands where partition 0 ended.
    let first_poison = ends[0];
    add(&mut ends, &broker.produce(&env.rt, &poison(5, Some(0))));
    wait_consumed(&env, &custodian, 65);
    custodian.terminate_within_bound(bound());

    let committed = broker.committed(&env.group);
    assert_committed_are_durable(&db, &committed);
    assert!(
        committed[0] <= first_poison,
        "partition 0 committed {}, past the first unparked poison at {first_poison}",
        committed[0]
    );
    assert_eq!(
        committed[1..],
        ends[1..],
        "partitions 1 and 2 committed to their ends"
    );
}
