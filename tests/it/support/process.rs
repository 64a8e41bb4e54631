//! `custodian run` as a child process, so a test can SIGKILL it, SIGTERM it
//! and start it again against the same database, Redis and broker.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::TestEnv;

/// One running custodian process.
pub struct Instance {
    pub http: SocketAddr,
    child: Option<Child>,
}

impl Instance {
    /// Starts `custodian run` with the test's settings, the given broker and
    /// `extra` overrides (`CUSTODIAN_*` variables). Does not wait for it.
    pub fn spawn(env: &TestEnv, bootstrap: &str, extra: &[(&str, String)]) -> Instance {
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let child = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .arg("run")
            .envs(env.env_vars())
            .env("CUSTODIAN_KAFKA__BROKERS", bootstrap)
            .env("CUSTODIAN_HTTP__BIND", http.to_string())
            .env("CUSTODIAN_LOG__LEVEL", "warn")
            .env("CUSTODIAN_LOG__FORMAT", "plain")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            // Warnings show in a failing test's output (logs go to stdout).
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn custodian run");
        Instance {
            http,
            child: Some(child),
        }
    }

    /// `/ready`: status and body (0 and null while it does not answer).
    pub fn ready(&self, env: &TestEnv) -> (u16, serde_json::Value) {
        env.rt.block_on(async {
            let Ok(response) = reqwest::get(format!("http://{}/ready", self.http)).await else {
                return (0, serde_json::Value::Null);
            };
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or_default())
        })
    }

    /// Waits until `/ready` answers 200.
    pub fn wait_ready(&mut self, env: &TestEnv, timeout: Duration) {
        super::wait_until(timeout, "custodian ready", || {
            assert!(self.running(), "custodian exited during start-up");
            self.ready(env).0 == 200
        });
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// SIGKILL: no drain, no commit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM; waits up to `limit` for the exit and answers its status and
    /// how long it took (panics past `limit`).
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("a running instance");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM custodian");
        let sent = Instant::now();
        while sent.elapsed() < limit {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return (status, sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("custodian still running {limit:?} after SIGTERM");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}
