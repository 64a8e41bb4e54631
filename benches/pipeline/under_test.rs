//! The custodian under test as a child process: what it is given (the
//! broker, database and Redis of the run), how it is started, scraped,
//! waited for and stopped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What one custodian process is given.
pub struct Target<'a> {
    pub bootstrap: &'a str,
    pub database_url: &'a str,
    pub redis_url: &'a str,
    pub run: &'a str,
}

/// custodian as a child process, and where to scrape it.
pub struct Custodian {
    pub child: Child,
    metrics_url: String,
    http: reqwest::Client,
}

impl Custodian {
    pub fn spawn(
        t: &Target,
        topic: &str,
        group: &str,
        extra: &[(String, String)],
    ) -> anyhow::Result<Custodian> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(custodian_bin())
            .arg("run")
            .env("CUSTODIAN_KAFKA__BROKERS", t.bootstrap)
            .env("CUSTODIAN_KAFKA__GROUP_ID", group)
            .env("CUSTODIAN_KAFKA__TOPICS", format!("[\"{topic}\"]"))
            .env(
                "CUSTODIAN_KAFKA__HEADER_KEY",
                format!("bench-header-key-{}-0123456789abcdef", t.run),
            )
            .env("CUSTODIAN_POSTGRES__URL", t.database_url)
            .env("CUSTODIAN_REDIS__URL", t.redis_url)
            .env("CUSTODIAN_DLQ__KEY_PREFIX", format!("bench{}", t.run))
            .env("CUSTODIAN_HTTP__BIND", format!("127.0.0.1:{port}"))
            .env(
                "CUSTODIAN_HTTP__API_TOKEN",
                "bench-token-not-secret-0123456789",
            )
            .env("CUSTODIAN_LOG__LEVEL", "warn")
            .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Custodian {
            child,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            // No pooled connections: nothing drives them between scrapes.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()?,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn metrics(&self, rt: &tokio::runtime::Runtime) -> String {
        rt.block_on(async {
            match self.http.get(&self.metrics_url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        })
    }

    /// Waits until `/ready` answers 200 (partitions assigned, PostgreSQL
    /// and Redis up).
    pub fn wait_ready(&mut self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let url = self.metrics_url.replace("/metrics", "/ready");
        let since = Instant::now();
        loop {
            let ready = rt.block_on(async {
                let answer = self.http.get(&url).send().await;
                answer.is_ok_and(|r| r.status().is_success())
            });
            if ready {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("custodian exited early: {status}");
            }
            anyhow::ensure!(
                since.elapsed() < Duration::from_secs(120),
                "custodian not ready in 2 minutes"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, and wait for the graceful exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "custodian exited with {status}");
        Ok(())
    }
}

impl Drop for Custodian {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The custodian under test: this build, or `BENCH_CUSTODIAN_BIN` (to
/// compare another build on the same broker, database and load).
fn custodian_bin() -> PathBuf {
    std::env::var_os("BENCH_CUSTODIAN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_custodian")))
}
