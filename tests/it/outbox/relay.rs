//! The transactional outbox relay against real PostgreSQL and a real Kafka
//! protocol peer: rows an application inserts are published in order per
//! aggregate and consumed through the pipeline under their outbox ids; a
//! SIGKILL between Kafka's acknowledgement and the mark loses nothing and
//! its duplicates are recognised by id; two relays publish each row once;
//! a Kafka outage is waited out; a refused event holds back only its own
//! aggregate.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{transaction_event, wait_until, TestEnv};
use custodian::app::Running;
use custodian::config::Settings;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

/// One record as a consumer sees it.
#[derive(Debug, Clone)]
struct Seen {
    key: String,
    message_id: Option<Uuid>,
}

/// Every record of `topic` (up to the high watermarks at call time).
fn records(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Seen> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let total: i64 = ends.values().sum();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (seen.len() as i64) < total && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            if m.offset() >= ends[&m.partition()] {
                continue;
            }
            let message_id = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "custodian-message-id")
                    .and_then(|h| std::str::from_utf8(h.value?).ok())
                    .and_then(|s| Uuid::parse_str(s).ok())
            });
            seen.push(Seen {
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                message_id,
            });
        }
    }
    assert_eq!(seen.len() as i64, total, "read every record of {topic}");
    seen
}

fn migrate(env: &TestEnv) {
    custodian::store::migrate::run(&env.database_url.clone().into(), Duration::from_secs(30))
        .expect("migrations");
}

/// The INSERT the README shows an application writing (with its business
/// change, in one transaction). Answers the outbox id and event id.
fn insert(env: &TestEnv, aggregate_id: &str, event_type: &str, payload: &[u8]) -> (i64, Uuid) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        event_id: Uuid,
    }
    let mut conn = env.conn();
    let row: Row = env
        .rt
        .block_on(
            diesel::sql_query(
                "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, topic, payload) \
                 VALUES ('transaction', $1, $2, $3, $4) RETURNING id, event_id",
            )
            .bind::<Text, _>(aggregate_id)
            .bind::<Text, _>(event_type)
            .bind::<Text, _>(&env.topic)
            .bind::<diesel::sql_types::Bytea, _>(payload)
            .get_result(&mut conn),
        )
        .expect("insert into outbox");
    (row.id, row.event_id)
}

/// Inserts `per_aggregate` seed-003 events (one create, then updates) for
/// each of `aggregates` transactions, interleaved; answers their event ids.
fn insert_transactions(env: &TestEnv, aggregates: usize, per_aggregate: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for n in 0..per_aggregate {
        for a in 0..aggregates {
            let tx = format!("{}-tx{a}", env.topic);
            let event_type = if n == 0 {
                "transaction.created"
            } else {
                "transaction.updated"
            };
            let payload = transaction_event(
                event_type,
                &tx,
                (n + 1) as f64,
                &format!("2024-01-01T12:00:{n:02}Z"),
            );
            ids.push(insert(env, &tx, event_type, payload.as_bytes()).1);
        }
    }
    ids
}

#[derive(Debug, diesel::QueryableByName)]
struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    aggregate_id: String,
    #[diesel(sql_type = Nullable<Integer>)]
    kafka_partition: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    kafka_offset: Option<i64>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
}

fn outbox_rows(env: &TestEnv) -> Vec<OutboxRow> {
    let mut conn = env.conn();
    env.rt
        .block_on(
            diesel::sql_query(
                "SELECT id, aggregate_id, kafka_partition, kafka_offset, attempts, last_error \
                 FROM outbox ORDER BY id",
            )
            .load(&mut conn),
        )
        .expect("outbox rows")
}

fn unpublished(env: &TestEnv) -> i64 {
    env.count("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
}

/// Per aggregate, in id order: one partition, offsets strictly rising.
fn assert_published_in_order(rows: &[OutboxRow]) {
    let mut last: HashMap<&str, (i32, i64)> = HashMap::new();
    for r in rows {
        let at = (
            r.kafka_partition.expect("published"),
            r.kafka_offset.expect("published"),
        );
        if let Some((partition, offset)) = last.insert(&r.aggregate_id, at) {
            assert_eq!(partition, at.0, "{} stays on one partition", r.aggregate_id);
            assert!(
                offset < at.1,
                "{} row {} overtook an earlier event",
                r.aggregate_id,
                r.id
            );
        }
    }
}

/// `custodian relay` as a process of its own.
struct RelayProcess(Child);

impl RelayProcess {
    fn start(env: &TestEnv, extra: &[(&str, &str)]) -> RelayProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .arg("relay")
            .envs(env.env_vars())
            .env("CUSTODIAN_LOG__LEVEL", "warn")
            .env("CUSTODIAN_RELAY__INTERVAL", "100ms")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn custodian relay");
        RelayProcess(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The application names of the sessions holding the publisher lock.
fn lock_holders(env: &TestEnv) -> Vec<String> {
    let mut conn = env.conn();
    env.rt
        .block_on(
            diesel::sql_query(
                "SELECT a.application_name AS name FROM pg_locks l \
                 JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .load::<Name>(&mut conn),
        )
        .expect("pg_locks")
        .into_iter()
        .map(|n| n.name)
        .collect()
}

#[test]
fn events_are_published_in_order_per_aggregate_and_consumed_through_the_pipeline() {
    let env = TestEnv::new(3);
    migrate(&env);
    let ids = insert_transactions(&env, 5, 4);
    // The relay inside `run`, in small batches so ordering spans rounds.
    let app = Running::start(env.settings_with(&[
        ("relay.enabled", true.into()),
        ("relay.interval", "50ms".into()),
        ("relay.batch_size", 7.into()),
    ]))
    .expect("custodian starts");
    wait_until(Duration::from_secs(60), "every event applied", || {
        unpublished(&env) == 0 && env.rows(crate::support::Table::AppliedMessages) == 20
    });

    assert_published_in_order(&outbox_rows(&env));
    // Applied in order: each transaction at version 4 with the last amount.
    assert_eq!(
        env.count("SELECT count(*) AS n FROM transactions WHERE version = 4 AND amount = 4"),
        5
    );
    // One id from the outbox to the outcome.
    for id in &ids {
        let steps: Vec<String> = env
            .lifecycle(&id.to_string())
            .into_iter()
            .map(|(status, _)| status)
            .collect();
        assert_eq!(
            steps,
            ["MESSAGE_PUBLISHED", "MESSAGE_RECEIVED", "MESSAGE_PROCESSED"],
            "{id}"
        );
    }
    assert_eq!(
        env.count(
            "SELECT count(*) AS n FROM audit_log a JOIN outbox o ON o.event_id = a.message_id \
             WHERE a.status = 'MESSAGE_PUBLISHED' AND a.kafka_partition = o.kafka_partition \
               AND a.kafka_offset = o.kafka_offset AND a.topic = o.topic"
        ),
        20,
        "each MESSAGE_PUBLISHED row says where its event landed"
    );
    // They are entries 1..20 of the relay's hash chain, and the trail verifies.
    assert_eq!(
        env.count(
            "SELECT count(*) AS n FROM audit_log a JOIN audit_chains c USING (chain_id) \
             WHERE a.status = 'MESSAGE_PUBLISHED' AND c.name = 'relay' AND a.chain_seq BETWEEN 1 AND 20"
        ),
        20
    );
    let body = env.assert_chains_hold(&app);
    assert_eq!(body["unchained_entries"], 0, "{body}");
    assert_eq!(env.metric(&app, "outbox_published_total"), 20.0);
    let (_, text) = env.get(&app, "/metrics");
    assert!(text.lines().any(|l| l == "outbox_pending 0"), "{text}");
    app.stop().expect("clean stop");
}

#[test]
fn sigkill_between_publish_and_mark_loses_nothing_and_duplicates_are_recognised_by_id() {
    let env = TestEnv::new(3);
    migrate(&env);
    let ids = insert_transactions(&env, 3, 20);
    // Hold every outbox row the way a long transaction would: the relay
    // reads and publishes them, then waits to mark them.
    let lock = env.lock_outbox_rows();
    let mut first = RelayProcess::start(&env, &[("CUSTODIAN_RELAY__BATCH_SIZE", "1000")]);
    let waiting = format!("custodian-relay {}", first.pid());
    wait_until(
        Duration::from_secs(60),
        "the batch in Kafka and the relay waiting to mark it",
        || {
            env.high_watermarks().iter().sum::<i64>() == 60
                && env.count(&format!(
                    "SELECT count(*) AS n FROM pg_stat_activity \
                     WHERE application_name = '{waiting}' AND wait_event_type = 'Lock'"
                )) == 1
        },
    );
    first.kill();
    lock.release();
    // The crash landed mid-batch: everything published, nothing marked.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(unpublished(&env), 60);
    assert_eq!(env.rows(crate::support::Table::AuditLog), 0);

    let _second = RelayProcess::start(&env, &[]);
    wait_until(Duration::from_secs(60), "every row marked", || {
        unpublished(&env) == 0
    });
    let seen = records(&env.broker.bootstrap_servers(), &env.topic, env.partitions);
    let mut copies: HashMap<Uuid, usize> = HashMap::new();
    for record in &seen {
        *copies
            .entry(record.message_id.expect("every record carries its id"))
            .or_default() += 1;
    }
    assert_eq!(copies.len(), 60, "nothing lost");
    assert!(
        ids.iter().all(|id| copies.get(id) == Some(&2)),
        "each event published twice: {copies:?}"
    );

    // The pipeline applies each once and audits the copy as a duplicate.
    let app = Running::start(env.settings()).expect("custodian starts");
    wait_until(Duration::from_secs(60), "both copies settled", || {
        env.audit_counts().get("MESSAGE_DUPLICATE") == Some(&60)
    });
    env.assert_applied_once(60);
    // Published once (the killed relay's audit rows never committed), then
    // both copies received: one processed, one a duplicate.
    let mut steps: Vec<String> = env
        .lifecycle(&ids[0].to_string())
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert_eq!(steps.remove(0), "MESSAGE_PUBLISHED");
    steps.sort();
    assert_eq!(
        steps,
        [
            "MESSAGE_DUPLICATE",
            "MESSAGE_PROCESSED",
            "MESSAGE_RECEIVED",
            "MESSAGE_RECEIVED"
        ]
    );
    app.stop().expect("clean stop");
}

#[test]
fn two_relays_publish_each_row_once_and_the_standby_takes_over() {
    let env = TestEnv::new(3);
    migrate(&env);
    let mut a = RelayProcess::start(&env, &[]);
    let mut b = RelayProcess::start(&env, &[]);
    let names = [
        format!("custodian-relay {}", a.pid()),
        format!("custodian-relay {}", b.pid()),
    ];
    wait_until(Duration::from_secs(30), "one relay leads", || {
        lock_holders(&env).len() == 1
    });
    let mut ids = insert_transactions(&env, 10, 10);
    wait_until(Duration::from_secs(60), "the first rows published", || {
        unpublished(&env) == 0
    });
    let holders = lock_holders(&env);
    assert_eq!(holders.len(), 1, "one publisher: {holders:?}");
    let leader = names
        .iter()
        .position(|n| *n == holders[0])
        .expect("the leader is one of the two relays");
    // The leader dies (idle: nothing of its is unmarked); the standby leads.
    if leader == 0 {
        a.kill()
    } else {
        b.kill()
    }
    ids.extend(insert_transactions(&env, 10, 10));
    wait_until(
        Duration::from_secs(60),
        "the standby publishes the rest",
        || unpublished(&env) == 0,
    );
    assert_eq!(lock_holders(&env), vec![names[1 - leader].clone()]);

    let seen = records(&env.broker.bootstrap_servers(), &env.topic, env.partitions);
    let mut copies: HashMap<Uuid, usize> = HashMap::new();
    for record in &seen {
        *copies
            .entry(record.message_id.expect("id header"))
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 200, "each row published once");
    assert!(ids.iter().all(|id| copies.get(id) == Some(&1)));
    assert_eq!(
        env.rows_with_status(crate::support::Table::AuditLog, "MESSAGE_PUBLISHED"),
        200
    );
    assert_published_in_order(&outbox_rows(&env));
}

#[test]
fn with_kafka_down_the_relay_waits_and_publishes_once_it_is_back() {
    let env = TestEnv::new(1);
    migrate(&env);
    // A broker of this test's own, to take down and bring back.
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(&env.topic, 2, 1)
        .expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    let _relay = RelayProcess::start(
        &env,
        &[
            ("CUSTODIAN_KAFKA__BROKERS", bootstrap.as_str()),
            ("CUSTODIAN_RELAY__PUBLISH_TIMEOUT", "2s"),
        ],
    );
    insert_transactions(&env, 2, 2);
    wait_until(
        Duration::from_secs(60),
        "published while Kafka is up",
        || unpublished(&env) == 0,
    );

    cluster.broker_down(1).expect("broker down");
    let ids = insert_transactions(&env, 3, 3);
    // Several publish timeouts pass: nothing is published, and the outage
    // is not held against the events.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(unpublished(&env), 9);
    assert_eq!(
        env.count(
            "SELECT count(*) AS n FROM outbox \
             WHERE published_at IS NULL AND (attempts > 0 OR last_error IS NOT NULL)"
        ),
        0
    );

    cluster.broker_up(1).expect("broker up");
    wait_until(
        Duration::from_secs(90),
        "published once Kafka is back",
        || unpublished(&env) == 0,
    );
    let seen = records(&bootstrap, &env.topic, 2);
    for id in &ids {
        assert!(
            seen.iter().any(|r| r.message_id == Some(*id)),
            "{id} reached Kafka"
        );
    }
    assert!(seen.iter().all(|r| r.key.starts_with(&env.topic)));
    assert_published_in_order(&outbox_rows(&env));
}

#[test]
fn an_event_kafka_refuses_holds_back_only_its_own_aggregate() {
    let env = TestEnv::new(2);
    migrate(&env);
    let settings: Settings = env.settings_with(&[
        ("relay.interval", "50ms".into()),
        ("relay.retry_backoff_min", "100ms".into()),
        ("relay.retry_backoff_max", "200ms".into()),
    ]);
    let publisher = custodian::relay::Publisher::new(settings).expect("publisher");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = env.rt.spawn(publisher.run(stopped));

    // Over the producer's message.max.bytes (1 MB): refused every time.
    let too_large = vec![b'x'; 2_000_000];
    let (blocked, _) = insert(&env, "stuck", "transaction.created", &too_large);
    let (behind, _) = insert(&env, "stuck", "transaction.updated", b"{}");
    insert(&env, "free", "transaction.created", b"{}");
    insert(&env, "free", "transaction.updated", b"{}");
    wait_until(
        Duration::from_secs(30),
        "the other aggregate published and the refusal retried",
        || {
            let rows = outbox_rows(&env);
            rows.iter()
                .filter(|r| r.aggregate_id == "free")
                .all(|r| r.kafka_offset.is_some())
                && rows.iter().any(|r| r.id == blocked && r.attempts >= 2)
        },
    );
    let rows = outbox_rows(&env);
    let row = |id: i64| rows.iter().find(|r| r.id == id).expect("row");
    assert!(
        row(blocked)
            .last_error
            .as_deref()
            .is_some_and(|e| e.to_lowercase().contains("size")),
        "{:?}",
        row(blocked).last_error
    );
    assert_eq!(
        row(behind).kafka_offset,
        None,
        "the later event waits behind it"
    );
    assert_eq!(row(behind).attempts, 0);

    // An operator fixes the event; the aggregate resumes, in order.
    TestEnv::execute(
        &env,
        &format!("UPDATE outbox SET payload = '{{}}'::bytea WHERE id = {blocked}"),
    );
    wait_until(Duration::from_secs(30), "the aggregate resumed", || {
        unpublished(&env) == 0
    });
    assert_published_in_order(&outbox_rows(&env));
    let _ = stop.send(true);
    env.rt.block_on(task).expect("relay task ends");
}
