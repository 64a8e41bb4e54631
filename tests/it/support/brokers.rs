//! Kafka brokers as processes of their own, so a test can SIGKILL and
//! restart them: tansu (SQLite storage under `$DEV_STATE_DIR/tansu`, so a
//! restart keeps records and committed offsets) and `custodian dev-broker`
//! (librdkafka's mock cluster: its data dies with it).
//!
//! tansu 0.6 answers high watermarks below the true end of a partition, so
//! nothing here asks the broker where a partition ends: `produce` counts
//! what it published, per partition, from the delivery reports.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::producer::FutureProducer;

use super::process::{free_port, Launch, Process};
use super::wait_until;

/// Records to produce: key, payload, partition (the partitioner's choice
/// where `None`).
pub type Records = Vec<(Option<String>, Vec<u8>, Option<i32>)>;

/// `n` creations of distinct transactions, spread over `partitions`.
pub fn creations(n: usize, partitions: i32) -> Records {
    (0..n)
        .map(|i| {
            let id = format!("tx-{}", uuid::Uuid::new_v4().simple());
            (
                None,
                super::created_event(&id).into_bytes(),
                Some(i as i32 % partitions),
            )
        })
        .collect()
}

/// Which broker program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tansu,
    DevBroker,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tansu => "tansu",
            Kind::DevBroker => "custodian dev-broker",
        }
    }
}

/// One broker process serving one topic.
pub struct BrokerProcess {
    pub kind: Kind,
    pub topic: String,
    pub partitions: i32,
    /// `host:port`, the same across restarts.
    pub bootstrap: String,
    /// tansu's working directory (its SQLite files), or the dev broker's
    /// bootstrap file's directory.
    dir: PathBuf,
    /// tansu, while it runs.
    tansu: Option<Child>,
    /// `custodian dev-broker`, until it is killed.
    dev_broker: Option<Process>,
}

fn tansu_binary() -> PathBuf {
    let path = std::env::var("DEV_TANSU_BIN").unwrap_or_else(|_| {
        panic!("DEV_TANSU_BIN is not set: run the tests through dev/test (dev/services.sh installs tansu)")
    });
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} is missing: run `dev/services.sh tansu`",
        path.display()
    );
    path
}

impl BrokerProcess {
    /// tansu on a free loopback port with `topic` created.
    pub fn tansu(topic: &str, partitions: i32) -> BrokerProcess {
        let state = std::env::var("DEV_STATE_DIR").unwrap_or_else(|_| "/tmp/custodian-dev".into());
        let dir = PathBuf::from(state)
            .join("tansu")
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&dir).expect("tansu state dir");
        let mut broker = BrokerProcess {
            kind: Kind::Tansu,
            topic: topic.to_owned(),
            partitions,
            bootstrap: format!("127.0.0.1:{}", free_port()),
            dir,
            tansu: None,
            dev_broker: None,
        };
        broker.restart();
        let status = Command::new(tansu_binary())
            .args(["topic", "create", "--broker"])
            .arg(broker.url())
            .args(["--partitions", &partitions.to_string(), topic])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(status.success(), "tansu topic create {topic}: {status}");
        broker
    }

    /// `custodian dev-broker` with `topic`.
    pub fn dev_broker(topic: &str, partitions: i32) -> BrokerProcess {
        let dir = std::env::temp_dir().join(format!(
            "custodian-broker-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("dev broker dir");
        let file = dir.join("bootstrap");
        let process = Launch::bare(&["dev-broker", "--topics", topic])
            .arg("--partitions")
            .arg(partitions.to_string())
            .arg("--bootstrap-file")
            .arg(&file)
            .quiet()
            .spawn();
        let mut bootstrap = String::new();
        wait_until(Duration::from_secs(20), "the dev broker's address", || {
            bootstrap = std::fs::read_to_string(&file).unwrap_or_default();
            !bootstrap.is_empty()
        });
        BrokerProcess {
            kind: Kind::DevBroker,
            topic: topic.to_owned(),
            partitions,
            bootstrap: bootstrap.trim().to_owned(),
            dir,
            tansu: None,
            dev_broker: Some(process),
        }
    }

    fn url(&self) -> String {
        format!("tcp://{}", self.bootstrap)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.tansu.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut process) = self.dev_broker.take() {
            process.kill();
        }
    }

    /// Starts tansu (again) on the same port and storage; waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        assert_eq!(self.kind, Kind::Tansu, "the dev broker cannot restart");
        self.kill();
        let log = std::fs::File::create(self.dir.join("tansu.log")).expect("tansu log");
        let child = Command::new(tansu_binary())
            .arg("broker")
            .args(["--listener-url", &self.url()])
            .args(["--advertised-listener-url", &self.url()])
            // Relative to the working directory (tansu 0.6 joins the path
            // of a `sqlite://` URL onto it).
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.tansu = Some(child);
        let addr = self.bootstrap.parse().expect("socket address");
        wait_until(Duration::from_secs(30), "tansu to listen", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
    }

    /// Deletes tansu's stored group membership (not its committed offsets)
    /// while it is stopped. tansu 0.6 difference: when a group's members all
    /// died while tansu was down, a member joining after its restart is
    /// given an empty assignment, for good (real Kafka expires the dead
    /// members' sessions). Forgetting them stands in for that expiry.
    pub fn forget_group_members(&self) {
        assert!(self.tansu.is_none(), "tansu is stopped");
        let status = Command::new("sqlite3")
            .arg(self.dir.join("tansu.db"))
            .arg("DELETE FROM consumer_group_detail")
            .status()
            .expect("sqlite3 (dev/services.sh installs it)");
        assert!(status.success(), "sqlite3: {status}");
    }

    pub fn producer(&self) -> FutureProducer {
        custodian::kafka::client::producer_config(&self.bootstrap)
            .create()
            .expect("producer")
    }

    /// Publishes `(key, payload, partition)` records and waits for the acks;
    /// answers how many records landed in each partition.
    pub fn produce(
        &self,
        rt: &tokio::runtime::Runtime,
        records: &[(Option<String>, Vec<u8>, Option<i32>)],
    ) -> Vec<i64> {
        let producer = self.producer();
        let mut counts = vec![0i64; self.partitions as usize];
        rt.block_on(async {
            for chunk in records.chunks(2000) {
                let sends = chunk.iter().map(|(key, payload, partition)| {
                    let record = super::record(&self.topic, key.as_deref(), payload, *partition);
                    producer.send(record, Duration::from_secs(60))
                });
                for sent in futures::future::join_all(sends).await {
                    let delivery = sent.map_err(|(e, _)| e).expect("kafka acknowledged");
                    counts[delivery.partition as usize] += 1;
                }
            }
        });
        counts
    }

    /// The group's committed offset per partition (0 where none).
    pub fn committed(&self, group: &str) -> Vec<i64> {
        super::committed_offsets(&self.bootstrap, group, &self.topic, self.partitions)
            .into_iter()
            .map(|o| o.unwrap_or(0))
            .collect()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // A failing scenario shows what the broker said.
            let log = std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("{} log (last lines, newest first):", self.kind.name());
            for line in tail {
                eprintln!("  {line}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
