//! Test harness: real PostgreSQL and Redis (from `dev/services.sh`, found
//! through TEST_POSTGRES_ADMIN_URL and TEST_REDIS_URL), and a real Kafka
//! protocol peer (librdkafka's mock cluster, in this process). Each test gets
//! its own database, topic and consumer group.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use custodian::config::Settings;
use custodian::kafka::dev_broker::DevBroker;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

/// The API token every test's custodian is configured with.
pub const TEST_TOKEN: &str = "test-token-0123456789abcdef";
/// The key every test's custodian signs steering headers with.
pub const TEST_HEADER_KEY: &str = "test-header-key-0123456789abcdef0123";

pub struct TestEnv {
    pub rt: tokio::runtime::Runtime,
    pub broker: DevBroker,
    pub topic: String,
    pub group: String,
    pub partitions: i32,
    pub database: String,
    admin_url: String,
    pub database_url: String,
    pub redis_url: String,
    /// This test's DLQ key prefix: Redis is shared between tests.
    pub dlq_prefix: String,
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through dev/test (it starts PostgreSQL and Redis)")
    })
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl TestEnv {
    pub fn new(partitions: i32) -> TestEnv {
        // Warnings and errors show in a failing test's output; RUST_LOG widens.
        custodian::telemetry::init(&custodian::config::LogSettings {
            level: "warn".into(),
            format: "plain".into(),
        });
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        let admin_url = required_env("TEST_POSTGRES_ADMIN_URL");
        let redis_url = required_env("TEST_REDIS_URL");
        let id = Uuid::new_v4().simple().to_string();
        let database = format!("custodian_test_{}", &id[..16]);
        rt.block_on(async {
            let mut admin = AsyncPgConnection::establish(&admin_url)
                .await
                .expect("connect to the test PostgreSQL server");
            // The name is generated here from hex digits only.
            diesel::sql_query(format!("CREATE DATABASE {database}"))
                .execute(&mut admin)
                .await
                .expect("create test database");
        });
        let database_url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{database}"),
            None => panic!("TEST_POSTGRES_ADMIN_URL has no database part"),
        };
        let topic = format!("tx-{}", &id[..12]);
        let broker =
            DevBroker::start(1, std::slice::from_ref(&topic), partitions).expect("mock cluster");
        TestEnv {
            rt,
            broker,
            group: format!("group-{}", &id[..12]),
            topic,
            partitions,
            database,
            admin_url,
            database_url,
            redis_url,
            dlq_prefix: format!("dlq-{}", &id[..12]),
        }
    }

    /// Settings for this test's custodian: tight intervals, port 0.
    pub fn settings(&self) -> Settings {
        Settings::from_overrides(&self.overrides()).expect("test settings are valid")
    }

    /// This test's settings with some keys changed.
    pub fn settings_with(&self, extra: &[(&'static str, serde_json::Value)]) -> Settings {
        let mut all = self.overrides();
        all.extend(extra.iter().cloned());
        Settings::from_overrides(&all).expect("test settings are valid")
    }

    pub fn overrides(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("kafka.brokers", self.broker.bootstrap_servers().into()),
            ("kafka.group_id", self.group.clone().into()),
            ("kafka.topics", serde_json::json!([self.topic])),
            ("kafka.commit_interval", "200ms".into()),
            ("kafka.session_timeout", "6s".into()),
            ("postgres.url", self.database_url.clone().into()),
            ("postgres.pool_size", 4.into()),
            ("redis.url", self.redis_url.clone().into()),
            ("http.bind", "127.0.0.1:0".into()),
            ("pipeline.audit_flush_interval", "10ms".into()),
            ("pipeline.dependency_backoff_max", "500ms".into()),
            ("runtime.drain_timeout", "10s".into()),
            ("http.api_token", TEST_TOKEN.into()),
            ("kafka.header_key", TEST_HEADER_KEY.into()),
            ("dlq.key_prefix", self.dlq_prefix.clone().into()),
            ("retry.backoff_min", "50ms".into()),
            ("retry.backoff_max", "200ms".into()),
        ]
    }

    /// The same settings as `CUSTODIAN_*` environment variables, for a child process.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        self.overrides()
            .into_iter()
            .map(|(key, value)| {
                let name = format!("CUSTODIAN_{}", key.replace('.', "__").to_uppercase());
                let value = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (name, value)
            })
            .collect()
    }

    pub fn producer(&self) -> FutureProducer {
        custodian::kafka::client::producer_config(&self.broker.bootstrap_servers())
            .create()
            .expect("producer")
    }

    /// Publishes records (key, payload, partition) and waits for the acks.
    pub fn produce(&self, records: &[(Option<&str>, &[u8], Option<i32>)]) {
        let producer = self.producer();
        self.rt.block_on(async {
            for (key, payload, partition) in records {
                let mut record: FutureRecord<'_, str, [u8]> =
                    FutureRecord::to(&self.topic).payload(payload);
                if let Some(k) = key {
                    record = record.key(k);
                }
                if let Some(p) = partition {
                    record = record.partition(*p);
                }
                producer
                    .send(record, Duration::from_secs(10))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("kafka acknowledged");
            }
        });
    }

    /// Publishes one record with headers to partition 0.
    pub fn produce_with_headers(&self, payload: &[u8], headers: &[(&str, &[u8])]) {
        use rdkafka::message::{Header, OwnedHeaders};
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        let producer = self.producer();
        self.rt
            .block_on(
                producer.send(
                    FutureRecord::<(), [u8]>::to(&self.topic)
                        .partition(0)
                        .payload(payload)
                        .headers(owned),
                    Duration::from_secs(10),
                ),
            )
            .map_err(|(e, _)| e)
            .expect("kafka acknowledged");
    }

    /// The record at `partition`/`offset`: key, payload and headers.
    pub fn record_at(
        &self,
        partition: i32,
        offset: i64,
    ) -> (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        custodian::kafka::envelope::Headers,
    ) {
        use rdkafka::message::{Headers, Message};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .set("group.id", format!("{}-reader", self.group))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
            .expect("partition offset");
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) if m.offset() == offset => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default();
                    return (
                        m.key().map(<[u8]>::to_vec),
                        m.payload().map(<[u8]>::to_vec),
                        headers,
                    );
                }
                _ => {}
            }
        }
        panic!("no record at {}/{partition}@{offset}", self.topic);
    }

    /// Publishes `count` synthetic seed-003 events; returns them.
    pub fn produce_synthetic(
        &self,
        count: usize,
        seed: u64,
        update_ratio: f64,
    ) -> Vec<custodian::synth::SyntheticEvent> {
        let mut generator = custodian::synth::Generator::new(seed, None, 20, update_ratio);
        let events: Vec<_> = (0..count).map(|_| generator.next_event()).collect();
        let producer = self.producer();
        self.rt.block_on(async {
            let sends = events.iter().map(|e| {
                producer.send(
                    FutureRecord::to(&self.topic)
                        .key(&e.key)
                        .payload(&e.payload),
                    Duration::from_secs(30),
                )
            });
            for result in futures::future::join_all(sends).await {
                result.map_err(|(e, _)| e).expect("kafka acknowledged");
            }
        });
        events
    }

    pub fn conn(&self) -> AsyncPgConnection {
        self.rt
            .block_on(AsyncPgConnection::establish(&self.database_url))
            .expect("connect to test database")
    }

    /// Runs a `SELECT count(*) AS n …` query.
    pub fn count(&self, sql: &str) -> i64 {
        let mut conn = self.conn();
        self.rt
            .block_on(diesel::sql_query(sql).get_result::<Count>(&mut conn))
            .map(|c| c.n)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Audit rows per status (0 when the table does not exist yet).
    pub fn audit_counts(&self) -> HashMap<String, i64> {
        let mut conn = self.conn();
        self.rt
            .block_on(
                diesel::sql_query(
                    "SELECT status, count(*) AS n FROM message_audit GROUP BY status",
                )
                .load::<StatusCount>(&mut conn),
            )
            .map(|rows| rows.into_iter().map(|r| (r.status, r.n)).collect())
            .unwrap_or_default()
    }

    pub fn redis(&self) -> redis::Client {
        redis::Client::open(self.redis_url.as_str()).expect("redis url")
    }

    /// `<prefix>:<topic>`: with the default prefix, `dlq:<topic>`.
    pub fn dlq_list_key(&self) -> String {
        custodian::dlq::Keys::new(&self.dlq_prefix).list(&self.topic)
    }

    pub fn dlq_entries(&self) -> Vec<custodian::dlq::DlqEntry> {
        let client = self.redis();
        self.rt.block_on(async {
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis connection");
            let raw: Vec<String> = redis::cmd("LRANGE")
                .arg(self.dlq_list_key())
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .expect("LRANGE");
            raw.iter()
                .map(|j| {
                    serde_json::from_str(j).expect("DLQ entry is JSON of the documented shape")
                })
                .collect()
        })
    }

    /// Committed offsets of this test's group, per partition.
    pub fn committed(&self) -> Vec<Option<i64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .set("group.id", &self.group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        (0..self.partitions)
            .map(
                |p| match committed.find_partition(&self.topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                },
            )
            .collect()
    }

    /// The high watermark (next offset to be written) per partition.
    pub fn high_watermarks(&self) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .create()
            .expect("consumer");
        (0..self.partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .collect()
    }

    /// An API call with the test token; answers status and JSON body.
    pub fn api(
        &self,
        addr: std::net::SocketAddr,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.request(addr, method, path, body, Some(TEST_TOKEN))
    }

    /// An HTTP call with any token (or none); answers status and JSON body.
    pub fn request(
        &self,
        addr: std::net::SocketAddr,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        self.rt.block_on(async {
            let mut request =
                reqwest::Client::new().request(method, format!("http://{addr}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.expect("HTTP request");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            let json = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("{path} answered {status} with a non-JSON body ({e}): {text}")
            });
            (status, json)
        })
    }

    /// The statuses of a message's audit rows, in order.
    pub fn lifecycle(&self, id: &str) -> Vec<(String, i32)> {
        #[derive(QueryableByName)]
        struct Step {
            #[diesel(sql_type = Text)]
            status: String,
            #[diesel(sql_type = diesel::sql_types::Integer)]
            attempt: i32,
        }
        let mut conn = self.conn();
        let id = Uuid::parse_str(id).expect("message id");
        self.rt
            .block_on(
                diesel::sql_query(
                    "SELECT status, attempt FROM message_audit WHERE message_id = $1 \
                     ORDER BY occurred_at, id",
                )
                .bind::<diesel::sql_types::Uuid, _>(id)
                .load::<Step>(&mut conn),
            )
            .expect("lifecycle")
            .into_iter()
            .map(|s| (s.status, s.attempt))
            .collect()
    }

    pub fn get(&self, addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        self.rt.block_on(async {
            let response = reqwest::get(format!("http://{addr}{path}"))
                .await
                .expect("HTTP request");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        })
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let (admin_url, database) = (self.admin_url.clone(), self.database.clone());
        let _ = self.rt.block_on(async move {
            let mut admin = AsyncPgConnection::establish(&admin_url).await?;
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)
        });
    }
}

/// A row lock held by another session, the way a long-running job or a
/// stuck migration would hold one, until `release`.
pub struct RowLock<'a> {
    env: &'a TestEnv,
    conn: AsyncPgConnection,
}

impl TestEnv {
    /// Locks transaction `id`'s projection row (`SELECT … FOR UPDATE` in an
    /// open transaction).
    pub fn lock_transaction_row(&self, id: &str) -> RowLock<'_> {
        let lock = self.lock_rows(
            diesel::sql_query("SELECT id FROM transactions WHERE id = $1 FOR UPDATE")
                .bind::<Text, _>(id.to_owned()),
        );
        assert_eq!(lock.1, 1, "row {id} exists and is locked");
        lock.0
    }

    /// Runs `locking` (a `SELECT … FOR UPDATE`) in a transaction left open;
    /// answers the lock and how many rows it holds.
    fn lock_rows<Q>(&self, locking: Q) -> (RowLock<'_>, usize)
    where
        Q: diesel_async::methods::ExecuteDsl<AsyncPgConnection>,
    {
        let mut conn = self.conn();
        let locked = self.rt.block_on(async {
            diesel::sql_query("BEGIN")
                .execute(&mut conn)
                .await
                .expect("BEGIN");
            locking.execute(&mut conn).await.expect("lock rows")
        });
        (RowLock { env: self, conn }, locked)
    }

    /// Runs one SQL statement on the test database (test set-up only).
    pub fn execute(&self, sql: &str) {
        let mut conn = self.conn();
        self.rt
            .block_on(diesel::sql_query(sql).execute(&mut conn))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The sum of a counter's or gauge's series whose labels include
    /// `topic="<this test's topic>"`.
    pub fn metric(&self, addr: std::net::SocketAddr, name: &str) -> f64 {
        let (_, text) = self.get(addr, "/metrics");
        let topic = format!("topic=\"{}\"", self.topic);
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&topic))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl RowLock<'_> {
    pub fn release(mut self) {
        self.env
            .rt
            .block_on(diesel::sql_query("COMMIT").execute(&mut self.conn))
            .expect("COMMIT");
    }
}

/// A seed-003 event of `event_type` for transaction `id` with `amount`.
pub fn transaction_event(event_type: &str, id: &str, amount: f64, timestamp: &str) -> String {
    format!(
        r#"{{"event_type":"{event_type}","transaction":{{"id":"{id}","user_id":"u1","transaction_type":"card","status":"completed","currency":"USD","amount":{amount},"metadata":{{}}}},"timestamp":"{timestamp}"}}"#
    )
}

/// A valid seed-003 `transaction.created` event for transaction `id`.
pub fn created_event(id: &str) -> String {
    format!(
        r#"{{"event_type":"transaction.created","transaction":{{"id":"{id}","user_id":"u1","transaction_type":"card","status":"completed","currency":"USD","amount":12.5,"metadata":{{}}}},"timestamp":"2024-01-01T12:00:00Z"}}"#
    )
}

impl TestEnv {
    /// Every one of `n` events applied exactly once: versions add up to `n`
    /// and no message has two PROCESSED rows (redeliveries are DUPLICATE).
    pub fn assert_applied_once(&self, n: i64) {
        assert_eq!(
            self.count("SELECT coalesce(sum(version), 0)::bigint AS n FROM transactions"),
            n
        );
        assert_eq!(
            self.count(
                "SELECT count(*) AS n FROM (SELECT message_id FROM message_audit \
                 WHERE status = 'MESSAGE_PROCESSED' GROUP BY message_id HAVING count(*) > 1) d"
            ),
            0
        );
    }

    /// The group's committed offsets, 0 where none.
    pub fn committed_or_zero(&self) -> Vec<i64> {
        self.committed()
            .into_iter()
            .map(|c| c.unwrap_or(0))
            .collect()
    }

    /// `/ready` answers 503 and names `dependency` as failing.
    pub fn assert_unready(&self, addr: std::net::SocketAddr, dependency: &str) {
        let (status, body) = self.get(addr, "/ready");
        assert_eq!(status, 503, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        assert!(
            body["failing"]
                .as_array()
                .is_some_and(|f| f.iter().any(|d| d == dependency)),
            "{dependency} not named failing: {body}"
        );
    }

    /// Every partition committed up to its end.
    pub fn assert_committed_to_end(&self) {
        assert_eq!(self.committed_or_zero(), self.high_watermarks());
    }
}

/// Polls `check` until it returns true or `timeout` passes; panics with `what`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        if started.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn block_on<F: Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

/// A Redis server of this test's own (real `redis-server`, append-only file
/// in a temporary directory), so the test can stop and restart it without
/// disturbing other tests.
pub struct PrivateRedis {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let dir = std::env::temp_dir().join(format!(
            "custodian-redis-{port}-{}",
            Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = PrivateRedis {
            port,
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and data directory.
    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (dev/services.sh installs it)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("url");
        wait_until(Duration::from_secs(10), "private redis to answer", || {
            client
                .get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    /// Kills the server (as an outage would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL cluster of this test's own (Debian's server binaries, data in
/// a temporary directory), so the test can crash and restart it without
/// disturbing other tests.
pub struct PrivatePostgres {
    pub port: u16,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
}

fn as_postgres_user(program: &std::path::Path) -> std::process::Command {
    // initdb and postgres refuse to run as root.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server packages (dev/services.sh installs them)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("a PostgreSQL server version");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let dir =
            std::env::temp_dir().join(format!("custodian-pg-{port}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("pg dir");
        let _ = std::process::Command::new("chown")
            .arg("postgres:")
            .arg(&dir)
            .status();
        let status = as_postgres_user(&bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("initdb");
        assert!(status.success(), "initdb failed");
        let pg = PrivatePostgres { port, dir, bin };
        pg.restart();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn restart(&self) {
        let status = as_postgres_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "-l"])
            .arg(self.dir.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(status.success(), "pg_ctl start failed");
    }

    /// Stops the server the way a crash would (immediate mode, no checkpoint).
    pub fn crash(&self) {
        let _ = as_postgres_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestEnv {
    /// Locks every `outbox` row (`SELECT … FOR UPDATE` in an open
    /// transaction), as a long transaction touching them would.
    pub fn lock_outbox_rows(&self) -> RowLock<'_> {
        self.lock_rows(diesel::sql_query("SELECT id FROM outbox FOR UPDATE"))
            .0
    }
}
