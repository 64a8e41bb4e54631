//! The fault tier: custodian as a process of its own, against a broker that
//! is a process of its own (tansu, with SQLite storage; once `custodian
//! dev-broker`), killed and restarted, with PostgreSQL and Redis failing
//! under it. Every scenario asserts the same three promises: nothing lost,
//! no effect applied twice, offsets committed to the end (of what was
//! produced, counted here: tansu 0.6 answers watermarks below the end). Each
//! writes its line to `target/tmp/faults.jsonl`; `dev/faults` prints them.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::support::brokers::{creations, BrokerProcess, Records};
use crate::support::process::{Launch, Process};
use crate::support::{created_event, wait_until, PrivatePostgres, PrivateRedis, Table, TestEnv};
use rand::Rng;
use tally::{Report, Tally};

mod tally;

/// How long any one wait may take before the scenario fails.
const PATIENCE: Duration = Duration::from_secs(180);
/// `kafka.session_timeout` of the test settings (`TestEnv::overrides`).
const SESSION: Duration = Duration::from_secs(6);
/// `runtime.drain_timeout` in these scenarios; the shutdown bound scales with it.
const DRAIN: Duration = Duration::from_secs(3);

/// `n` synthetic seed-003 events (creations and updates, keyed by user).
fn synthetic(n: usize, seed: u64) -> Records {
    let mut generator = custodian::synth::Generator::new(seed, None, 20, 0.3);
    (0..n)
        .map(|_| {
            let e = generator.next_event();
            (Some(e.key), e.payload, None)
        })
        .collect()
}

/// Adds per-partition counts.
fn add(total: &mut [i64], more: &[i64]) {
    for (t, m) in total.iter_mut().zip(more) {
        *t += m;
    }
}

/// Settings every scenario's instances share.
fn overrides() -> Vec<(&'static str, String)> {
    vec![
        ("runtime.drain_timeout", format!("{}s", DRAIN.as_secs())),
        // Small batches keep many messages between read and durable outcome,
        // so a fault lands mid-stream.
        ("pipeline.partition_batch_size", "50".into()),
        ("pipeline.max_in_flight_per_partition", "400".into()),
    ]
}

/// `custodian run` against `broker` with the scenario's settings and
/// `extra` ones; not waited for.
fn spawn_custodian(env: &TestEnv, broker: &BrokerProcess, extra: &[(&str, String)]) -> Process {
    Launch::run(env)
        .setting("kafka.brokers", &broker.bootstrap)
        .settings(&overrides())
        .settings(extra)
        .spawn()
}

/// Waits until every produced record has a durable outcome and the group
/// committed each partition to `ends`.
fn wait_complete(tally: &Tally<'_>, broker: &BrokerProcess, group: &str, ends: &[i64]) {
    let total: i64 = ends.iter().sum();
    let started = Instant::now();
    loop {
        let (durable, committed) = (tally.durable(), broker.committed(group));
        if durable == total && committed == ends {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "after {PATIENCE:?}: {durable} of {total} durable; committed {committed:?} of {ends:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGTERM, and the exit is orderly and within the drain timeout and
/// `shutdown::MARGIN`.
fn terminate_within_bound(instance: &mut Process) {
    instance.terminate_within_bound(DRAIN + custodian::shutdown::MARGIN);
}

/// The scenarios kill and restart processes and wait on group rebalances:
/// they run one at a time, under `cargo test` as under nextest (where
/// `.config/nextest.toml` also puts them in a one-thread group).
fn serial() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn sigkill_ten_times_during_a_30000_message_run() {
    let _one_at_a_time = serial();
    const N: usize = 30_000;
    let started = Instant::now();
    let env = TestEnv::new(3);
    let broker = BrokerProcess::tansu(&env.topic, 3);
    let tally = Tally::new(&env);
    let ends = broker.produce(&env.rt, &synthetic(N, 41));

    // The kills are placed by progress, not by time, so they land
    // mid-stream however fast the machine settles the run: kill k once
    // k/12 of the run is durable, plus a random jitter of up to half a step
    // (in messages). The last is planned at most 21/24 of the way, which
    // leaves 3,750 messages for what one instance settles between the last
    // count and the kill (up to about 1,800 on the loaded 2-core machine).
    let step = N as i64 / 12;
    let seed: u64 = rand::rng().random();
    eprintln!("kill moments seeded with {seed}");
    let mut jitter = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let mut durable = 0;
    for kill in 1..=10 {
        let mut instance = spawn_custodian(&env, &broker, &[]);
        // Progress after every restart, whatever the plan says.
        let target = (kill * step + jitter.random_range(0..step / 2)).max(durable + 1);
        wait_until(
            PATIENCE,
            &format!("{target} durable before kill {kill}"),
            || tally.durable() >= target,
        );
        instance.kill();
        // tansu 0.6 difference: a member that joins while a killed member's
        // session is still open can be left with an empty assignment after
        // that session expires (observed: no progress for 180 s). Real Kafka
        // rebalances on the expiry; here the restart waits it out.
        std::thread::sleep(SESSION + Duration::from_secs(1));
        durable = tally.durable();
        eprintln!("kill {kill} (planned at {target}): {durable} of {N} durable");
        assert!(
            durable < N as i64,
            "kill {kill} came after the run finished: not mid-stream"
        );
    }
    let restarted = Instant::now();
    let mut instance = spawn_custodian(&env, &broker, &[]);
    wait_complete(&tally, &broker, &env.group, &ends);
    let recover = restarted.elapsed();
    terminate_within_bound(&mut instance);

    tally.assert_and_record(Report {
        scenario: "custodian SIGKILLed 10 times",
        broker: broker.kind.name(),
        committed: broker.committed(&env.group),
        ends,
        applied: N as i64,
        dead_lettered: 0,
        recover,
        runtime: started.elapsed(),
    });
}

#[test]
fn broker_killed_and_restarted_mid_stream() {
    let _one_at_a_time = serial();
    let started = Instant::now();
    let env = TestEnv::new(3);
    let mut broker = BrokerProcess::tansu(&env.topic, 3);
    let tally = Tally::new(&env);
    let mut instance = spawn_custodian(&env, &broker, &[]);
    instance.wait_ready(&env, PATIENCE);
    let mut ends = broker.produce(&env.rt, &synthetic(3000, 43));
    wait_until(PATIENCE, "processing under way", || tally.durable() >= 300);

    broker.kill();
    let killed = Instant::now();
    wait_until(PATIENCE, "/ready to name kafka", || {
        let (status, body) = instance.ready(&env);
        status == 503
            && body["failing"]
                .as_array()
                .is_some_and(|f| f.iter().any(|d| d == "kafka"))
    });
    eprintln!("/ready named kafka {:?} after the kill", killed.elapsed());
    // Down for a while longer: the outage must not turn into dead letters.
    std::thread::sleep(Duration::from_secs(5));
    assert!(instance.running(), "custodian outlives the broker");
    assert_eq!(
        tally.dlq_entries().len(),
        0,
        "nothing dead-lettered because the broker is down"
    );

    broker.restart();
    let restarted = Instant::now();
    // The topic, its records and the group's offsets survived the restart;
    // more arrive after it.
    add(&mut ends, &broker.produce(&env.rt, &synthetic(1000, 44)));
    wait_complete(&tally, &broker, &env.group, &ends);
    let recover = restarted.elapsed();
    terminate_within_bound(&mut instance);

    tally.assert_and_record(Report {
        scenario: "broker SIGKILLed and restarted",
        broker: broker.kind.name(),
        committed: broker.committed(&env.group),
        ends,
        applied: 4000,
        dead_lettered: 0,
        recover,
        runtime: started.elapsed(),
    });
}

#[test]
fn three_instances_joining_and_leaving_under_load() {
    let _one_at_a_time = serial();
    let started = Instant::now();
    let env = TestEnv::new(6);
    let broker = BrokerProcess::tansu(&env.topic, 6);
    let tally = Tally::new(&env);
    let spawn = || spawn_custodian(&env, &broker, &[]);
    let mut ends = vec![0; 6];
    let mut load = |seed| add(&mut ends, &broker.produce(&env.rt, &synthetic(1500, seed)));
    let step = || std::thread::sleep(Duration::from_secs(3));

    let mut a = spawn();
    a.wait_ready(&env, PATIENCE);
    load(51);
    let b = spawn();
    load(52);
    step();
    let mut c = spawn();
    load(53);
    step();
    // Leaves gracefully: drains, commits what it gives up.
    terminate_within_bound(&mut a);
    load(54);
    step();
    let mut a = spawn();
    // Leaves without a word: its partitions wait out its session.
    drop(b);
    load(55);
    step();
    terminate_within_bound(&mut c);
    load(56);
    let last_change = Instant::now();
    wait_complete(&tally, &broker, &env.group, &ends);
    let recover = last_change.elapsed();
    terminate_within_bound(&mut a);

    tally.assert_and_record(Report {
        scenario: "3 instances joining and leaving",
        broker: broker.kind.name(),
        committed: broker.committed(&env.group),
        ends,
        applied: 9000,
        dead_lettered: 0,
        recover,
        runtime: started.elapsed(),
    });
}

/// Sets Redis's memory limit: 1 byte with `noeviction` refuses every write
/// (OOM) while reads and PING still answer; 0 lifts the limit.
fn redis_maxmemory(redis: &PrivateRedis, bytes: u64) {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client.get_connection().expect("redis connection");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query(&mut conn)
        .expect("CONFIG SET maxmemory-policy");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(bytes)
        .query(&mut conn)
        .expect("CONFIG SET maxmemory");
}

const POISON: &[u8] = b"not json {\x00\xff";

#[test]
fn redis_refusing_writes_while_poison_arrives() {
    let _one_at_a_time = serial();
    let started = Instant::now();
    let env = TestEnv::new(3);
    // The broker here is the mock cluster as a process of its own.
    let broker = BrokerProcess::dev_broker(&env.topic, 3);
    let redis = PrivateRedis::start();
    let tally = Tally::at(&env, &env.database_url, &redis.url());
    let extra = [("redis.url", redis.url())];
    let mut instance = spawn_custodian(&env, &broker, &extra);
    instance.wait_ready(&env, PATIENCE);
    let mut ends = broker.produce(&env.rt, &creations(300, 3));
    wait_until(PATIENCE, "the first events durable", || {
        tally.durable() == 300
    });

    redis_maxmemory(&redis, 1);
    let first_poison = ends[0];
    // One poison at a time, each read before the next is produced: each is
    // a batch of its own, so the dead-letter actor, blocked on the first,
    // is handed more while it waits (all ten in one batch would hide that).
    // Partition 0 shares its enricher with partition 2.
    for k in 1..=10 {
        let poison: Records = vec![(None, POISON.to_vec(), Some(0))];
        add(&mut ends, &broker.produce(&env.rt, &poison));
        wait_until(PATIENCE, &format!("poison {k} of 10 read"), || {
            env.metric(instance.http(), "messages_consumed_total") >= (300 + k) as f64
        });
    }
    add(&mut ends, &broker.produce(&env.rt, &creations(300, 3)));
    // Partition 0 reads on past its poison, and its creations are applied;
    // the other partitions go on; partition 0 commits up to its first poison.
    // (The poison's entries commit before its push, so they count: audited
    // dead-lettered, not yet in Redis, their offsets held.)
    wait_until(PATIENCE, "every creation durable", || {
        tally.durable() == 610
    });
    wait_until(PATIENCE, "partitions 1 and 2 committed", || {
        broker.committed(&env.group)[1..] == ends[1..]
    });
    std::thread::sleep(Duration::from_secs(3));
    let committed = broker.committed(&env.group);
    assert!(
        committed[0] <= first_poison,
        "partition 0 committed {} past its first unparked poison at {first_poison}",
        committed[0]
    );
    assert!(tally.dlq_entries().is_empty(), "Redis refused every write");

    redis_maxmemory(&redis, 0);
    let lifted = Instant::now();
    wait_complete(&tally, &broker, &env.group, &ends);
    let recover = lifted.elapsed();
    terminate_within_bound(&mut instance);

    for entry in tally.dlq_entries() {
        assert_eq!(entry.partition, 0);
        assert_eq!(
            entry.payload_bytes().expect("payload decodes"),
            Some(POISON.to_vec()),
            "the poison's bytes are parked intact"
        );
    }
    tally.assert_and_record(Report {
        scenario: "Redis refusing writes (OOM) with poison",
        broker: broker.kind.name(),
        committed: broker.committed(&env.group),
        ends,
        applied: 600,
        dead_lettered: 10,
        recover,
        runtime: started.elapsed(),
    });
}

fn names_failing(body: &serde_json::Value, dependency: &str) -> bool {
    body["failing"]
        .as_array()
        .is_some_and(|f| f.iter().any(|d| d == dependency))
}

#[test]
fn postgres_stopped_while_one_at_a_time_retries_run() {
    let _one_at_a_time = serial();
    let started = Instant::now();
    let env = TestEnv::new(1);
    let broker = BrokerProcess::tansu(&env.topic, 1);
    let postgres = PrivatePostgres::start();
    let tally = Tally::at(&env, &postgres.url(), &env.redis_url);
    let extra = [
        ("postgres.url", postgres.url()),
        ("postgres.statement_timeout", "300ms".into()),
        ("retry.max_attempts", "1000".into()),
    ];
    let mut instance = spawn_custodian(&env, &broker, &extra);
    instance.wait_ready(&env, PATIENCE);
    let a = format!("{}-a", env.topic);
    let mut ends = broker.produce(&env.rt, &[(None, created_event(&a).into_bytes(), None)]);
    wait_until(PATIENCE, "the creation durable", || tally.durable() == 1);

    // Another session holds the row: the update times out, the batch is
    // refused, and custodian retries the update on its own, in place.
    let lock = env.lock_transaction_row_at(&postgres.url(), &a);
    let update =
        crate::support::transaction_event("transaction.updated", &a, 20.0, "2024-01-01T12:05:00Z");
    let mut records: Records = vec![(None, update.into_bytes(), None)];
    records.extend(creations(200, 1));
    add(&mut ends, &broker.produce(&env.rt, &records));
    wait_until(PATIENCE, "the update retried in place", || {
        env.metric(instance.http(), "retries_total") >= 2.0
    });

    postgres.crash();
    drop(lock);
    wait_until(PATIENCE, "/ready to name postgres", || {
        let (status, body) = instance.ready(&env);
        status == 503 && names_failing(&body, "postgres")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(instance.running(), "custodian outlives PostgreSQL");
    assert!(
        tally.dlq_entries().is_empty(),
        "the outage is not the message's fault: nothing dead-lettered"
    );

    postgres.restart();
    let restarted = Instant::now();
    wait_complete(&tally, &broker, &env.group, &ends);
    let recover = restarted.elapsed();
    terminate_within_bound(&mut instance);

    tally.assert_and_record(Report {
        scenario: "PostgreSQL stopped during retries",
        broker: broker.kind.name(),
        committed: broker.committed(&env.group),
        ends,
        applied: 202,
        dead_lettered: 0,
        recover,
        runtime: started.elapsed(),
    });
}

/// The dependency a bounded-shutdown scenario takes away.
#[derive(Clone, Copy)]
enum Gone {
    Broker,
    Postgres,
    Redis,
}

/// SIGTERM with `gone` down exits in the bound through the orderly path,
/// commits nothing undurable, and a new instance completes everything once
/// it is back.
fn bounded_shutdown_with(gone: Gone, scenario: &str) {
    let started = Instant::now();
    let env = TestEnv::new(3);
    let mut broker = BrokerProcess::tansu(&env.topic, 3);
    let postgres = PrivatePostgres::start();
    let mut redis = PrivateRedis::start();
    let tally = Tally::at(&env, &postgres.url(), &redis.url());
    let extra = [
        ("postgres.url", postgres.url()),
        ("redis.url", redis.url()),
        // librdkafka's synchronous commit waits for the group session; one
        // longer than the bound shows the exit does not wait for it.
        ("kafka.session_timeout", "30s".into()),
    ];
    let mut instance = spawn_custodian(&env, &broker, &extra);
    instance.wait_ready(&env, PATIENCE);
    let mut ends = broker.produce(&env.rt, &creations(300, 3));
    let mut poison = 0;
    match gone {
        Gone::Broker => {
            wait_until(PATIENCE, "processing under way", || tally.durable() > 0);
            broker.kill();
        }
        Gone::Postgres | Gone::Redis => {
            wait_until(PATIENCE, "the first events durable", || {
                tally.durable() == 300
            });
            let mut more = creations(60, 3);
            if let Gone::Postgres = gone {
                postgres.crash();
            } else {
                redis.stop();
                more.extend((0..5).map(|_| (None, POISON.to_vec(), Some(0))));
                poison = 5;
            }
            add(&mut ends, &broker.produce(&env.rt, &more));
            let total: i64 = ends.iter().sum();
            wait_until(PATIENCE, "the rest read", || {
                env.metric(instance.http(), "messages_consumed_total") >= total as f64
            });
        }
    }
    terminate_within_bound(&mut instance);

    match gone {
        Gone::Broker => {
            broker.forget_group_members();
            broker.restart()
        }
        Gone::Postgres => postgres.restart(),
        Gone::Redis => redis.restart(),
    }
    let back = Instant::now();
    // Nothing was committed past an outcome that is not durable.
    let committed = broker.committed(&env.group);
    for (partition, offset) in committed.iter().enumerate() {
        assert_eq!(
            tally.durable_below(partition as i32, *offset),
            *offset,
            "partition {partition} committed {offset} past outcomes that are not durable"
        );
    }

    let mut instance = spawn_custodian(&env, &broker, &extra);
    wait_complete(&tally, &broker, &env.group, &ends);
    let recover = back.elapsed();
    terminate_within_bound(&mut instance);
    let total: i64 = ends.iter().sum();
    tally.assert_and_record(Report {
        scenario,
        broker: broker.kind.name(),
        committed: broker.committed(&env.group),
        ends,
        applied: total - poison,
        dead_lettered: poison,
        recover,
        runtime: started.elapsed(),
    });
}

#[test]
fn bounded_shutdown_with_the_broker_gone() {
    let _one_at_a_time = serial();
    bounded_shutdown_with(Gone::Broker, "SIGTERM, broker gone");
}

#[test]
fn bounded_shutdown_with_postgres_gone() {
    let _one_at_a_time = serial();
    bounded_shutdown_with(Gone::Postgres, "SIGTERM, PostgreSQL gone");
}

#[test]
fn bounded_shutdown_with_redis_gone() {
    let _one_at_a_time = serial();
    bounded_shutdown_with(Gone::Redis, "SIGTERM, Redis gone");
}

/// An instance against `broker`, serving once it has an assignment, as a
/// group member whose id starts with `client_id` (librdkafka's range
/// assignor gives a lone partition to the member whose id sorts first). A
/// process of its own, so its metrics are its own.
fn member(env: &TestEnv, broker: &BrokerProcess, client_id: &str, max_attempts: u32) -> Process {
    let mut member = Launch::run(env)
        .setting("kafka.brokers", &broker.bootstrap)
        .config(&format!("[kafka.extra]\n\"client.id\" = \"{client_id}\"\n"))
        .setting("postgres.statement_timeout", "300ms")
        .setting("retry.max_attempts", max_attempts)
        .setting("runtime.drain_timeout", format!("{}s", DRAIN.as_secs()))
        .spawn();
    member.wait_ready(env, PATIENCE);
    member
}

#[test]
fn revocation_cancels_retries_in_flight_leaving_no_stale_dead_letter() {
    let _one_at_a_time = serial();
    let started = Instant::now();
    let env = TestEnv::new(1);
    let broker = BrokerProcess::tansu(&env.topic, 1);
    let tally = Tally::new(&env);
    // The old owner would give up after 40 attempts (~20 s): far longer
    // than the rebalance takes, even on a loaded machine (with 12, a slow
    // rebalance let the old owner dead-letter it first, legitimately, while
    // it still owned the partition). The new owner keeps trying until the
    // row is free.
    const OLD_ATTEMPTS: u32 = 40;
    let mut old = member(&env, &broker, "z-old", OLD_ATTEMPTS);
    let a = format!("{}-a", env.topic);
    let mut ends = broker.produce(&env.rt, &[(None, created_event(&a).into_bytes(), None)]);
    wait_until(PATIENCE, "the creation durable", || tally.durable() == 1);
    let lock = env.lock_transaction_row(&a);
    let update =
        crate::support::transaction_event("transaction.updated", &a, 20.0, "2024-01-01T12:05:00Z");
    add(
        &mut ends,
        &broker.produce(&env.rt, &[(None, update.into_bytes(), None)]),
    );
    wait_until(PATIENCE, "the old owner retrying", || {
        env.metric(&old, "retries_total") >= 1.0
    });
    let retrying = Instant::now();

    // A member that sorts first joins: the partition is revoked from the
    // old owner mid-retry (its drain times out) and goes to the new one.
    let mut new = member(&env, &broker, "a-new", 1000);
    wait_until(PATIENCE, "the new owner retrying", || {
        env.metric(&new, "retries_total") >= 1.0
    });
    // Past the old owner's last attempt (each is at most the statement
    // timeout plus the longest backoff), had it kept going.
    let old_budget = (Duration::from_millis(300) + Duration::from_millis(200)) * OLD_ATTEMPTS;
    std::thread::sleep((old_budget + Duration::from_secs(4)).saturating_sub(retrying.elapsed()));
    lock.release();
    let released = Instant::now();
    wait_complete(&tally, &broker, &env.group, &ends);
    let recover = released.elapsed();
    new.stop();
    old.stop();

    assert_eq!(
        env.db().version_of(&a),
        2,
        "the new owner applied the update"
    );
    assert_eq!(
        env.db()
            .rows_with_status(Table::MessageAudit, "MESSAGE_DLQ"),
        0,
        "no dead letter for a message its new owner processed"
    );
    tally.assert_and_record(Report {
        scenario: "partition revoked during retries",
        broker: broker.kind.name(),
        committed: broker.committed(&env.group),
        ends,
        applied: 2,
        dead_lettered: 0,
        recover,
        runtime: started.elapsed(),
    });
}
