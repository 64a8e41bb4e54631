//! Bounded shutdown: the real `custodian` binary consuming from
//! `custodian dev-broker`, another process. SIGTERM must end custodian within
//! `runtime.drain_timeout` + `shutdown::MARGIN` when the broker, PostgreSQL or
//! Redis is gone, through its orderly path (status 0, not the watchdog's),
//! and never commit past an outcome that is not durable. With everything up
//! it exits 0 with every offset committed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{created_event, wait_until, PrivatePostgres, PrivateRedis, TestEnv};
use diesel::sql_types::{BigInt, Integer};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Short, so the tests are quick; the bound under test scales with it.
const DRAIN: Duration = Duration::from_secs(3);
const PARTITIONS: i32 = 3;

/// What the README promises: SIGTERM to exit.
fn bound() -> Duration {
    DRAIN + custodian::shutdown::MARGIN
}

/// A child process, killed if the test ends before it does.
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// Waits for the exit, up to `limit` past `since`; the status and when.
    fn exit_within(&mut self, since: Instant, limit: Duration) -> Option<(ExitStatus, Duration)> {
        while since.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some((status, since.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then asserts the exit is clean and inside the bound.
    fn terminate_within_bound(&mut self) {
        self.signal("TERM");
        let sent = Instant::now();
        // Wait longer than the bound, so a failure says by how much it overran.
        match self.exit_within(sent, bound() + Duration::from_secs(30)) {
            Some((status, took)) => {
                eprintln!("{} exited {status} {took:?} after SIGTERM", self.name);
                assert!(
                    took <= bound(),
                    "{} took {took:?} to exit after SIGTERM; the bound is {:?}",
                    self.name,
                    bound()
                );
                assert!(
                    status.success(),
                    "{} exited {status:?}: not through the orderly path",
                    self.name
                );
            }
            None => panic!(
                "{} still running {:?} after SIGTERM",
                self.name,
                sent.elapsed()
            ),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `custodian dev-broker` as a process of its own, with the test's topic.
struct Broker {
    process: Process,
    bootstrap: String,
    bootstrap_file: PathBuf,
}

impl Broker {
    fn start(topic: &str) -> Broker {
        let bootstrap_file = std::env::temp_dir().join(format!(
            "custodian-broker-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .arg("dev-broker")
            .args(["--topics", topic, "--partitions", &PARTITIONS.to_string()])
            .arg("--bootstrap-file")
            .arg(&bootstrap_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn custodian dev-broker");
        let process = Process {
            name: "dev-broker",
            child,
        };
        let mut bootstrap = String::new();
        wait_until(Duration::from_secs(20), "the broker's address", || {
            bootstrap = std::fs::read_to_string(&bootstrap_file).unwrap_or_default();
            !bootstrap.is_empty()
        });
        Broker {
            process,
            bootstrap,
            bootstrap_file,
        }
    }

    /// Publishes `(payload, partition)` records; answers their offsets.
    fn produce(&self, env: &TestEnv, records: &[(Vec<u8>, i32)]) -> Vec<i64> {
        let producer: FutureProducer = custodian::kafka::client::producer_config(&self.bootstrap)
            .create()
            .expect("producer");
        env.rt.block_on(async {
            let sends = records.iter().map(|(payload, partition)| {
                producer.send(
                    FutureRecord::<(), [u8]>::to(&env.topic)
                        .payload(payload)
                        .partition(*partition),
                    Duration::from_secs(30),
                )
            });
            futures::future::join_all(sends)
                .await
                .into_iter()
                .map(|sent| sent.map_err(|(e, _)| e).expect("kafka acknowledged").offset)
                .collect()
        })
    }

    /// Per partition: the group's committed offset and the partition's end.
    fn committed_and_ends(&self, env: &TestEnv) -> Vec<(Option<i64>, i64)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &env.group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&env.topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        (0..PARTITIONS)
            .map(|p| {
                let offset = committed.find_partition(&env.topic, p).map(|e| e.offset());
                let end = consumer
                    .fetch_watermarks(&env.topic, p, Duration::from_secs(10))
                    .expect("watermarks")
                    .1;
                match offset {
                    Some(Offset::Offset(o)) => (Some(o), end),
                    _ => (None, end),
                }
            })
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.bootstrap_file);
    }
}

/// Where custodian keeps its audit trail, and its HTTP address.
struct Custodian {
    process: Process,
    http: SocketAddr,
    database_url: String,
}

impl Custodian {
    /// Starts `custodian run` on the test's settings, `broker` and the given
    /// PostgreSQL and Redis, and waits until it owns the partitions.
    fn start(
        env: &TestEnv,
        broker: &Broker,
        database_url: &str,
        redis_url: &str,
        extra: &[(&str, &str)],
    ) -> Custodian {
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let child = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .arg("run")
            .envs(env.env_vars())
            .env("CUSTODIAN_KAFKA__BROKERS", &broker.bootstrap)
            .env("CUSTODIAN_POSTGRES__URL", database_url)
            .env("CUSTODIAN_REDIS__URL", redis_url)
            .env("CUSTODIAN_HTTP__BIND", http.to_string())
            .env(
                "CUSTODIAN_RUNTIME__DRAIN_TIMEOUT",
                format!("{}s", DRAIN.as_secs()),
            )
            .env("CUSTODIAN_LOG__LEVEL", "warn")
            .env("CUSTODIAN_LOG__FORMAT", "plain")
            .envs(extra.iter().copied())
            // Its warnings show in a failing test's output (logs go to stdout).
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn custodian run");
        let mut custodian = Custodian {
            process: Process {
                name: "custodian",
                child,
            },
            http,
            database_url: database_url.to_owned(),
        };
        wait_until(Duration::from_secs(90), "custodian ready", || {
            assert!(
                custodian
                    .process
                    .child
                    .try_wait()
                    .expect("try_wait")
                    .is_none(),
                "custodian exited during start-up"
            );
            ready(env, custodian.http)
        });
        custodian
    }

    /// Messages with a durable outcome (processed, parked, duplicate).
    fn outcomes(&self, env: &TestEnv) -> i64 {
        durable_below(env, &self.database_url, None)
    }

    /// Publishes `records` and waits until each has a durable outcome (the
    /// topic and database start empty).
    fn feed_until_durable(&self, env: &TestEnv, broker: &Broker, records: &[(Vec<u8>, i32)]) {
        broker.produce(env, records);
        wait_until(Duration::from_secs(60), "every message durable", || {
            self.outcomes(env) == records.len() as i64
        });
    }

    /// Waits until custodian has read `n` messages from Kafka.
    fn wait_consumed(&self, env: &TestEnv, n: usize) {
        wait_until(Duration::from_secs(60), "messages read", || {
            env.metric(self.http, "messages_consumed_total") >= n as f64
        });
    }

    /// Every offset below each committed one has a durable outcome: nothing
    /// was committed past what PostgreSQL or Redis actually kept.
    fn assert_committed_are_durable(&self, env: &TestEnv, committed: &[(Option<i64>, i64)]) {
        for (partition, (offset, _)) in (0..).zip(committed) {
            let offset = offset.unwrap_or(0);
            assert_eq!(
                durable_below(env, &self.database_url, Some((partition, offset))),
                offset,
                "partition {partition} committed {offset} past outcomes that are not durable"
            );
        }
    }
}

fn ready(env: &TestEnv, http: SocketAddr) -> bool {
    env.rt
        .block_on(reqwest::get(format!("http://{http}/ready")))
        .is_ok_and(|r| r.status().is_success())
}

/// Distinct offsets with a durable outcome (all partitions, or those of
/// `partition` below `offset`); 0 while the database is unreachable.
fn durable_below(env: &TestEnv, database_url: &str, below: Option<(i32, i64)>) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let (partition, offset) = below.unwrap_or((-1, i64::MAX));
    env.rt.block_on(async {
        let Ok(mut conn) = AsyncPgConnection::establish(database_url).await else {
            return 0;
        };
        diesel::sql_query(
            "SELECT count(DISTINCT (kafka_partition, kafka_offset)) AS n FROM message_audit \
             WHERE status IN ('MESSAGE_PROCESSED', 'MESSAGE_DLQ', 'MESSAGE_DUPLICATE') \
             AND ($1 < 0 OR kafka_partition = $1) AND kafka_offset < $2",
        )
        .bind::<Integer, _>(partition)
        .bind::<BigInt, _>(offset)
        .get_result::<Count>(&mut conn)
        .await
        .map_or(0, |c| c.n)
    })
}

/// `n` valid events spread over the partitions.
fn valid_events(n: usize) -> Vec<(Vec<u8>, i32)> {
    (0..n)
        .map(|i| {
            let id = format!("tx-{}", uuid::Uuid::new_v4().simple());
            (created_event(&id).into_bytes(), i as i32 % PARTITIONS)
        })
        .collect()
}

#[test]
fn with_everything_up_sigterm_exits_promptly_with_every_offset_committed() {
    let env = TestEnv::new(PARTITIONS);
    let broker = Broker::start(&env.topic);
    let mut custodian = Custodian::start(&env, &broker, &env.database_url, &env.redis_url, &[]);
    let mut records = valid_events(60);
    records.extend((0..6).map(|i| (b"not json {".to_vec(), i % PARTITIONS)));
    custodian.feed_until_durable(&env, &broker, &records);

    custodian.process.terminate_within_bound();

    let committed = broker.committed_and_ends(&env);
    for (partition, (offset, end)) in committed.iter().enumerate() {
        assert_eq!(
            *offset,
            Some(*end),
            "partition {partition} committed to its end"
        );
    }
    custodian.assert_committed_are_durable(&env, &committed);
}

#[test]
fn with_the_broker_killed_sigterm_still_exits_within_the_bound() {
    let env = TestEnv::new(PARTITIONS);
    let mut broker = Broker::start(&env.topic);
    // librdkafka's synchronous commit waits until the group session expires;
    // a session longer than the bound shows the exit does not wait for it.
    let mut custodian = Custodian::start(
        &env,
        &broker,
        &env.database_url,
        &env.redis_url,
        &[("CUSTODIAN_KAFKA__SESSION_TIMEOUT", "30s")],
    );
    broker.produce(&env, &valid_events(300));
    wait_until(Duration::from_secs(60), "processing under way", || {
        custodian.outcomes(&env) > 0
    });

    broker.process.signal("KILL");
    assert!(
        broker
            .process
            .exit_within(Instant::now(), Duration::from_secs(10))
            .is_some(),
        "the broker is gone"
    );
    custodian.process.terminate_within_bound();
}

#[test]
fn with_postgres_stopped_sigterm_exits_within_the_bound_committing_only_durable_outcomes() {
    let env = TestEnv::new(PARTITIONS);
    let postgres = PrivatePostgres::start();
    let broker = Broker::start(&env.topic);
    let mut custodian = Custodian::start(&env, &broker, &postgres.url(), &env.redis_url, &[]);
    let first = valid_events(60);
    custodian.feed_until_durable(&env, &broker, &first);

    postgres.crash();
    // These are read but cannot become durable: in flight at SIGTERM.
    broker.produce(&env, &valid_events(30));
    custodian.wait_consumed(&env, first.len() + 30);
    custodian.process.terminate_within_bound();

    postgres.restart();
    let committed = broker.committed_and_ends(&env);
    custodian.assert_committed_are_durable(&env, &committed);
    assert!(
        committed.iter().any(|(offset, end)| offset < &Some(*end)),
        "messages in flight at SIGTERM were left uncommitted, for redelivery: {committed:?}"
    );
}

#[test]
fn with_redis_stopped_and_poison_in_flight_sigterm_exits_within_the_bound() {
    let env = TestEnv::new(PARTITIONS);
    let mut redis = PrivateRedis::start();
    let broker = Broker::start(&env.topic);
    let mut custodian = Custodian::start(&env, &broker, &env.database_url, &redis.url(), &[]);
    let good = valid_events(60);
    custodian.feed_until_durable(&env, &broker, &good);

    redis.stop();
    // Poison goes to the dead-letter queue, which is down: in flight at SIGTERM.
    let poison: Vec<(Vec<u8>, i32)> = (0..5).map(|_| (b"not json {".to_vec(), 0)).collect();
    let poison_offsets = broker.produce(&env, &poison);
    custodian.wait_consumed(&env, good.len() + poison.len());
    custodian.process.terminate_within_bound();

    let committed = broker.committed_and_ends(&env);
    custodian.assert_committed_are_durable(&env, &committed);
    let first_poison = poison_offsets.iter().min().copied();
    assert!(
        committed[0].0 <= first_poison,
        "partition 0 committed {:?}, past the first unparked poison at {first_poison:?}",
        committed[0].0
    );
    for (partition, (offset, end)) in committed.iter().enumerate().skip(1) {
        assert_eq!(
            *offset,
            Some(*end),
            "partition {partition} committed to its end"
        );
    }
}
