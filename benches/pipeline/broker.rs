//! The Kafka-protocol broker under the benchmark, as a process of its own:
//! tansu (its SQLite storage, in the run's work directory) by default, or `custodian dev-broker`
//! (librdkafka's mock cluster, which keeps only about 5 MB per partition, so
//! it cannot hold a preloaded topic of this size).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

pub struct Broker {
    child: Child,
    pub bootstrap: String,
    pub kind: &'static str,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Broker {
    /// Starts tansu at `tansu` (a path), or the dev broker when `tansu` is
    /// "dev-broker" (then `custodian` is its binary and `topics` are created
    /// with it).
    pub fn start(
        tansu: &str,
        custodian: &Path,
        topics: &[String],
        partitions: i32,
        work: &Path,
    ) -> anyhow::Result<Broker> {
        if tansu == "dev-broker" {
            let file = work.join("bootstrap");
            let _ = std::fs::remove_file(&file);
            let mut command = Command::new(custodian);
            command.arg("dev-broker");
            if !topics.is_empty() {
                command.arg("--topics").arg(topics.join(","));
            }
            let child = command
                .arg("--partitions")
                .arg(partitions.to_string())
                .arg("--bootstrap-file")
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let started = Instant::now();
            let bootstrap = loop {
                if let Ok(b) = std::fs::read_to_string(&file) {
                    if !b.is_empty() {
                        break b;
                    }
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "dev-broker did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            return Ok(Broker {
                child,
                bootstrap,
                kind: "custodian dev-broker (librdkafka mock cluster)",
            });
        }
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // Relative to the working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(work)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start tansu at {tansu}: {e} (set BENCH_TANSU)"))?;
        let bootstrap = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let broker = Broker {
            child,
            bootstrap,
            kind: "tansu 0.6 (SQLite storage)",
        };
        for topic in topics {
            broker.create_topic(topic, partitions)?;
        }
        Ok(broker)
    }

    /// Creates `topic` (the dev broker has its topics from the start: the
    /// mock cluster does not answer CreateTopics).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        if self.kind.starts_with("custodian dev-broker") {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let results = rt.block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))?;
        for r in results {
            match r {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => anyhow::bail!("create topic {t}: {e}"),
            }
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
