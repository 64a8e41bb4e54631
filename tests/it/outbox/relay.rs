//! The transactional outbox relay against real PostgreSQL and a real Kafka
//! protocol peer: rows an application inserts are published in order per
//! aggregate and consumed through the pipeline under their outbox ids; a
//! SIGKILL between Kafka's acknowledgement and the mark loses nothing and
//! its duplicates are recognised by id; two relays publish each row once;
//! a Kafka outage is waited out; a refused event holds back only its own
//! aggregate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::process::{Launch, Process};
use crate::support::{transaction_event, wait_until, OutboxRow, Table, TestEnv};
use custodian::app::Running;
use custodian::config::Settings;
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
            ids.push(
                env.db()
                    .insert_outbox(&tx, event_type, &env.topic, payload.as_bytes())
                    .1,
            );
        }
    }
    ids
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

/// `custodian relay` as a process of its own, with `extra` settings.
fn relay(env: &TestEnv, extra: &[(&str, &str)]) -> Process {
    Launch::command(env, &["relay"])
        .setting("relay.interval", "100ms")
        .settings(extra)
        .quiet()
        .spawn()
}

#[test]
fn events_are_published_in_order_per_aggregate_and_consumed_through_the_pipeline() {
    let env = TestEnv::new(3);
    migrate(&env);
    let ids = insert_transactions(&env, 5, 4);
    // The relay inside `run`, in small batches so ordering spans rounds;
    // a process of its own, so `outbox_pending` is its relay's alone.
    let mut app = Launch::run(&env)
        .setting("relay.enabled", true)
        .setting("relay.interval", "50ms")
        .setting("relay.batch_size", 7)
        .spawn();
    app.wait_ready(&env, Duration::from_secs(60));
    wait_until(Duration::from_secs(60), "every event applied", || {
        env.db().unpublished() == 0 && env.db().rows(Table::AppliedMessages) == 20
    });

    assert_published_in_order(&env.db().outbox_rows());
    // Applied in order: each transaction at version 4 with the last amount.
    assert_eq!(env.db().transactions_at(4, 4), 5);
    // One id from the outbox to the outcome.
    for id in &ids {
        let steps: Vec<String> = env
            .db()
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
        env.db().published_where_they_landed(),
        20,
        "each MESSAGE_PUBLISHED row says where its event landed"
    );
    // They are entries 1..20 of the relay's hash chain, and the trail verifies.
    assert_eq!(env.db().relay_chain_entries(1, 20), 20);
    let body = env.assert_chains_hold(&app);
    assert_eq!(body["unchained_entries"], 0, "{body}");
    assert_eq!(env.metric(&app, "outbox_published_total"), 20.0);
    let (_, text) = env.get(&app, "/metrics");
    assert!(text.lines().any(|l| l == "outbox_pending 0"), "{text}");
    app.stop();
}

#[test]
fn sigkill_between_publish_and_mark_loses_nothing_and_duplicates_are_recognised_by_id() {
    let env = TestEnv::new(3);
    migrate(&env);
    let ids = insert_transactions(&env, 3, 20);
    // Hold every outbox row the way a long transaction would: the relay
    // reads and publishes them, then waits to mark them.
    let lock = env.lock_outbox_rows();
    let mut first = relay(&env, &[("relay.batch_size", "1000")]);
    let waiting = format!("custodian-relay {}", first.pid());
    wait_until(
        Duration::from_secs(60),
        "the batch in Kafka and the relay waiting to mark it",
        || {
            env.high_watermarks().iter().sum::<i64>() == 60
                && env.db().sessions_waiting_on_a_lock(&waiting) == 1
        },
    );
    first.kill();
    lock.release();
    // The crash landed mid-batch: everything published, nothing marked.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.db().unpublished(), 60);
    assert_eq!(env.db().rows(Table::AuditLog), 0);

    let _second = relay(&env, &[]);
    wait_until(Duration::from_secs(60), "every row marked", || {
        env.db().unpublished() == 0
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
        env.db().audit_counts().get("MESSAGE_DUPLICATE") == Some(&60)
    });
    env.assert_applied_once(60);
    // Published once (the killed relay's audit rows never committed), then
    // both copies received: one processed, one a duplicate.
    let mut steps: Vec<String> = env
        .db()
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
    let mut a = relay(&env, &[]);
    let mut b = relay(&env, &[]);
    let names = [
        format!("custodian-relay {}", a.pid()),
        format!("custodian-relay {}", b.pid()),
    ];
    wait_until(Duration::from_secs(30), "one relay leads", || {
        env.db().advisory_lock_holders().len() == 1
    });
    let mut ids = insert_transactions(&env, 10, 10);
    wait_until(Duration::from_secs(60), "the first rows published", || {
        env.db().unpublished() == 0
    });
    let holders = env.db().advisory_lock_holders();
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
        || env.db().unpublished() == 0,
    );
    assert_eq!(
        env.db().advisory_lock_holders(),
        vec![names[1 - leader].clone()]
    );

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
        env.db()
            .rows_with_status(Table::AuditLog, "MESSAGE_PUBLISHED"),
        200
    );
    assert_published_in_order(&env.db().outbox_rows());
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
    let _relay = relay(
        &env,
        &[
            ("kafka.brokers", bootstrap.as_str()),
            ("relay.publish_timeout", "2s"),
        ],
    );
    insert_transactions(&env, 2, 2);
    wait_until(
        Duration::from_secs(60),
        "published while Kafka is up",
        || env.db().unpublished() == 0,
    );

    cluster.broker_down(1).expect("broker down");
    let ids = insert_transactions(&env, 3, 3);
    // Several publish timeouts pass: nothing is published, and the outage
    // is not held against the events.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(env.db().unpublished(), 9);
    assert_eq!(env.db().unpublished_held_against(), 0);

    cluster.broker_up(1).expect("broker up");
    wait_until(
        Duration::from_secs(90),
        "published once Kafka is back",
        || env.db().unpublished() == 0,
    );
    let seen = records(&bootstrap, &env.topic, 2);
    for id in &ids {
        assert!(
            seen.iter().any(|r| r.message_id == Some(*id)),
            "{id} reached Kafka"
        );
    }
    assert!(seen.iter().all(|r| r.key.starts_with(&env.topic)));
    assert_published_in_order(&env.db().outbox_rows());
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
    let (blocked, _) =
        env.db()
            .insert_outbox("stuck", "transaction.created", &env.topic, &too_large);
    let (behind, _) = env
        .db()
        .insert_outbox("stuck", "transaction.updated", &env.topic, b"{}");
    env.db()
        .insert_outbox("free", "transaction.created", &env.topic, b"{}");
    env.db()
        .insert_outbox("free", "transaction.updated", &env.topic, b"{}");
    wait_until(
        Duration::from_secs(30),
        "the other aggregate published and the refusal retried",
        || {
            let rows = env.db().outbox_rows();
            rows.iter()
                .filter(|r| r.aggregate_id == "free")
                .all(|r| r.kafka_offset.is_some())
                && rows.iter().any(|r| r.id == blocked && r.attempts >= 2)
        },
    );
    let rows = env.db().outbox_rows();
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
    env.db().set_outbox_payload(blocked, b"{}");
    wait_until(Duration::from_secs(30), "the aggregate resumed", || {
        env.db().unpublished() == 0
    });
    assert_published_in_order(&env.db().outbox_rows());
    let _ = stop.send(true);
    env.rt.block_on(task).expect("relay task ends");
}
