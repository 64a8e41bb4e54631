//! A test's own world (`TestEnv`): its PostgreSQL database (dropped with
//! it), Redis key prefix, mock Kafka cluster, topic and consumer group, the
//! settings of its custodian, and the set-up it does in the database (a
//! statement, a row or table lock held open like a long transaction's).

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

/// A fresh directory of this test's own under the temporary directory,
/// for files custodian writes (checkpoint files, say).
pub fn scratch_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("custodian-{what}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
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

impl TestEnv {
    pub fn new(partitions: i32) -> TestEnv {
        // Warnings and errors show in a failing test's output; RUST_LOG widens.
        custodian::telemetry::init(
            &custodian::config::LogSettings {
                level: "warn".into(),
                format: "plain".into(),
            },
            None,
        );
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
        self.lock_transaction_row_at(&self.database_url, id)
    }

    /// Locks transaction `id`'s projection row in the database at `url` (a
    /// private server's).
    pub fn lock_transaction_row_at(&self, url: &str, id: &str) -> RowLock<'_> {
        let lock = self.lock_rows(
            url,
            diesel::sql_query("SELECT id FROM transactions WHERE id = $1 FOR UPDATE")
                .bind::<Text, _>(id.to_owned()),
        );
        assert_eq!(lock.1, 1, "row {id} exists and is locked");
        lock.0
    }

    /// Locks `table` against writes (`LOCK TABLE … IN EXCLUSIVE MODE`:
    /// reads go on) in a transaction left open until the lock is released.
    pub fn lock_table(&self, table: &str) -> RowLock<'_> {
        self.lock_rows(
            &self.database_url,
            diesel::sql_query(format!("LOCK TABLE {table} IN EXCLUSIVE MODE")),
        )
        .0
    }

    /// Runs `locking` (a `SELECT … FOR UPDATE`) in a transaction left open;
    /// answers the lock and how many rows it holds.
    fn lock_rows<Q>(&self, url: &str, locking: Q) -> (RowLock<'_>, usize)
    where
        Q: diesel_async::methods::ExecuteDsl<AsyncPgConnection>,
    {
        let mut conn = self
            .rt
            .block_on(AsyncPgConnection::establish(url))
            .expect("connect to lock rows");
        let locked = self.rt.block_on(async {
            diesel::sql_query("BEGIN")
                .execute(&mut conn)
                .await
                .expect("BEGIN");
            locking.execute(&mut conn).await.expect("lock rows")
        });
        (RowLock { env: self, conn }, locked)
    }

    /// Runs custodian's migrations on the test database (what `run` does
    /// first), for tests that write before or without a custodian.
    pub fn migrate(&self) {
        custodian::store::migrate::run(
            &secrecy::SecretString::from(self.database_url.clone()),
            std::time::Duration::from_secs(30),
        )
        .expect("migrations");
    }

    /// The test database's URL with the admin URL's credentials: the
    /// superuser, who can disable the triggers that keep the trail
    /// append-only.
    pub fn superuser_url(&self) -> String {
        self.database_url_named(&self.database)
    }

    /// The URL of database `name` on the test server, as the superuser.
    pub fn database_url_named(&self, name: &str) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("TEST_POSTGRES_ADMIN_URL has no database part"),
        }
    }

    /// Runs `statements` in order as the superuser on `url` (the admin
    /// database, the test database, or a copy of it).
    pub fn as_superuser(&self, url: &str, statements: &[&str]) {
        self.rt.block_on(async {
            let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
            for sql in statements {
                diesel::sql_query(*sql)
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        });
    }

    /// Runs one statement as the superuser on `url`: its error, if refused.
    pub fn as_superuser_result(&self, url: &str, sql: &str) -> Result<(), String> {
        self.rt.block_on(async {
            let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
            diesel::sql_query(sql)
                .execute(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    /// The admin database's URL (to create and drop databases).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Runs one SQL statement on the test database (test set-up only).
    pub fn execute(&self, sql: &str) {
        let mut conn = self.conn();
        self.rt
            .block_on(diesel::sql_query(sql).execute(&mut conn))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Makes PostgreSQL refuse transactions of 1000 or more (a CHECK
    /// constraint): their events are dead-lettered as constraint violations
    /// until [`TestEnv::lift_amount_limit`].
    pub fn limit_amounts(&self) {
        self.execute(
            "ALTER TABLE transactions ADD CONSTRAINT test_amount_limit CHECK (amount < 1000)",
        );
    }

    /// Lifts [`TestEnv::limit_amounts`]: the refused events would apply now.
    pub fn lift_amount_limit(&self) {
        self.execute("ALTER TABLE transactions DROP CONSTRAINT test_amount_limit");
    }

    /// Locks every `outbox` row (`SELECT … FOR UPDATE` in an open
    /// transaction), as a long transaction touching them would.
    pub fn lock_outbox_rows(&self) -> RowLock<'_> {
        self.lock_rows(
            &self.database_url,
            diesel::sql_query("SELECT id FROM outbox FOR UPDATE"),
        )
        .0
    }
}
