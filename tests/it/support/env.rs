//! The services a test runs against: its own PostgreSQL database, Redis
//! key prefix, topic and group (`TestEnv`), its settings, and private
//! PostgreSQL and Redis servers for outage tests.

use std::time::Duration;

use custodian::config::Settings;
use custodian::kafka::dev_broker::DevBroker;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::*;

pub struct TestEnv {
    pub rt: tokio::runtime::Runtime,
    pub broker: DevBroker,
    pub topic: String,
    pub group: String,
    pub partitions: i32,
    pub database: String,
    pub(super) admin_url: String,
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

impl RowLock<'_> {
    pub fn release(mut self) {
        self.env
            .rt
            .block_on(diesel::sql_query("COMMIT").execute(&mut self.conn))
            .expect("COMMIT");
    }
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

    pub fn conn(&self) -> AsyncPgConnection {
        self.rt
            .block_on(AsyncPgConnection::establish(&self.database_url))
            .expect("connect to test database")
    }

    pub fn redis(&self) -> redis::Client {
        redis::Client::open(self.redis_url.as_str()).expect("redis url")
    }

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

    /// Locks `table` against writes (`LOCK TABLE … IN EXCLUSIVE MODE`:
    /// reads go on) in a transaction left open until the lock is released.
    pub fn lock_table(&self, table: &str) -> RowLock<'_> {
        self.lock_rows(diesel::sql_query(format!(
            "LOCK TABLE {table} IN EXCLUSIVE MODE"
        )))
        .0
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

    /// Locks every `outbox` row (`SELECT … FOR UPDATE` in an open
    /// transaction), as a long transaction touching them would.
    pub fn lock_outbox_rows(&self) -> RowLock<'_> {
        self.lock_rows(diesel::sql_query("SELECT id FROM outbox FOR UPDATE"))
            .0
    }
}
