//! custodian as a child process, the one way tests start it: `Launch`
//! builds the command (a subcommand, the test's settings as `CUSTODIAN_*`
//! variables, more settings, an optional config file, what happens to its
//! output), then either runs it to the end (`output`) or spawns it as a
//! `Process` a test can wait on until ready, SIGTERM within a bound, SIGKILL
//! and read the output of. A test uses a process where it kills custodian,
//! runs a command-line tool, or needs custodian's process-wide metrics to
//! itself (tests in this binary share one process and its registry).

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{wait_until, HttpTarget, TestEnv};

/// A free loopback port (bound and released: the child binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The custodian binary the tests start: the one cargo built beside this
/// test binary, or `$TEST_CUSTODIAN_BIN` (a build to test from elsewhere, or a
/// copy taken where another checkout shares the target directory and its
/// builds replace `target/debug/custodian`).
fn binary() -> std::ffi::OsString {
    std::env::var_os("TEST_CUSTODIAN_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_custodian").into())
}

/// `CUSTODIAN_A__B` for the setting `a.b`.
fn variable(key: &str) -> String {
    format!("CUSTODIAN_{}", key.replace('.', "__").to_uppercase())
}

/// What becomes of a child's standard output.
#[derive(Clone, Copy)]
enum Output {
    /// Shown with the test's own output (custodian's logs go to stdout).
    Shown,
    Discarded,
    /// Collected while it runs, for [`Process::finish`].
    Captured,
}

/// A `custodian` command being put together.
pub struct Launch {
    command: Command,
    name: String,
    http: Option<SocketAddr>,
    stdout: Output,
    config: Option<PathBuf>,
}

impl Launch {
    /// `custodian <args>` with no settings of a test (`dev-broker`).
    pub fn bare<S: AsRef<OsStr>>(args: &[S]) -> Launch {
        let mut command = Command::new(binary());
        command.args(args).stderr(Stdio::inherit());
        let name = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        Launch {
            command,
            name: format!("custodian {name}"),
            http: None,
            stdout: Output::Shown,
            config: None,
        }
    }

    /// `custodian <args>` with the test's settings, warnings logged.
    /// Commands that take a role run as the shared token's holder (an
    /// admin) unless the test sets `CUSTODIAN_TOKEN` with [`Launch::env`].
    pub fn command<S: AsRef<OsStr>>(env: &TestEnv, args: &[S]) -> Launch {
        let mut launch = Launch::bare(args);
        launch.command.envs(env.env_vars());
        launch.command.env("CUSTODIAN_TOKEN", super::TEST_TOKEN);
        launch.setting("log.level", "warn")
    }

    /// `custodian run` with the test's settings, serving HTTP on a free
    /// loopback port, its log lines plain text.
    pub fn run(env: &TestEnv) -> Launch {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let mut launch = Launch::command(env, &["run"])
            .setting("http.bind", http)
            .setting("log.format", "plain");
        launch.http = Some(http);
        launch
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.command.arg(arg);
        self
    }

    /// The setting `key` (as in the config file: `retry.max_attempts`).
    pub fn setting(mut self, key: &str, value: impl ToString) -> Launch {
        self.command.env(variable(key), value.to_string());
        self
    }

    /// More settings, `(key, value)`.
    pub fn settings<V: std::fmt::Display>(mut self, settings: &[(&str, V)]) -> Launch {
        for (key, value) in settings {
            self = self.setting(key, value);
        }
        self
    }

    /// An environment variable that is not a setting.
    pub fn env(mut self, name: &str, value: impl AsRef<OsStr>) -> Launch {
        self.command.env(name, value);
        self
    }

    /// Settings from a TOML file (`CUSTODIAN_CONFIG`), for what environment
    /// variables cannot say (a table of routes, a map of client options);
    /// variables still win over it. Removed with the process.
    pub fn config(mut self, toml: &str) -> Launch {
        let path = std::env::temp_dir().join(format!(
            "custodian-config-{}.toml",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, toml).expect("config file");
        self.command.env("CUSTODIAN_CONFIG", &path);
        self.config = Some(path);
        self
    }

    /// Its standard output is thrown away.
    pub fn quiet(mut self) -> Launch {
        self.stdout = Output::Discarded;
        self
    }

    /// Its standard output is kept, for [`Process::finish`].
    pub fn capture(mut self) -> Launch {
        self.stdout = Output::Captured;
        self
    }

    /// Its standard error goes to the file `path`.
    pub fn stderr_to(mut self, path: &std::path::Path) -> Launch {
        let file = std::fs::File::create(path).expect("stderr file");
        self.command.stderr(file);
        self
    }

    /// Starts it; does not wait for anything.
    pub fn spawn(mut self) -> Process {
        self.command.stdout(match self.stdout {
            Output::Shown => Stdio::inherit(),
            Output::Discarded => Stdio::null(),
            Output::Captured => Stdio::piped(),
        });
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.name));
        // Drained while it runs, so a full pipe cannot stall it.
        let stdout = child.stdout.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        Process {
            name: self.name,
            http: self.http,
            child: Some(child),
            stdout,
            config: self.config.take(),
        }
    }

    /// Runs it to the end with `input` on its standard input.
    pub fn output_with_input(mut self, input: &[u8]) -> Finished {
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.name));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write to its standard input");
        let output = child.wait_with_output().expect("it finishes");
        self.cleanup();
        Finished::from(output)
    }

    /// Runs it to the end; its status and what it printed.
    pub fn output(mut self) -> Finished {
        let output = self
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.name));
        self.cleanup();
        Finished::from(output)
    }

    fn cleanup(&mut self) {
        if let Some(path) = self.config.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A command that ran to its end.
pub struct Finished {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Finished {
    fn from(output: std::process::Output) -> Finished {
        Finished {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A running custodian process; SIGKILLed if the test ends first.
pub struct Process {
    name: String,
    http: Option<SocketAddr>,
    child: Option<Child>,
    stdout: Option<JoinHandle<String>>,
    config: Option<PathBuf>,
}

impl Process {
    /// Where `custodian run` serves HTTP.
    pub fn http(&self) -> SocketAddr {
        self.http
            .unwrap_or_else(|| panic!("{} serves no HTTP", self.name))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running process").id()
    }

    /// `/ready`: status and body (0 and null while it does not answer).
    pub fn ready(&self, env: &TestEnv) -> (u16, serde_json::Value) {
        let url = format!("http://{}/ready", self.http());
        env.rt.block_on(async {
            let Ok(response) = reqwest::get(url).await else {
                return (0, serde_json::Value::Null);
            };
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or_default())
        })
    }

    /// Waits until `/ready` answers 200 (and fails if it exits first).
    pub fn wait_ready(&mut self, env: &TestEnv, timeout: Duration) -> &mut Process {
        let name = self.name.clone();
        wait_until(timeout, &format!("{name} ready"), || {
            assert!(self.running(), "{name} exited during start-up");
            self.ready(env).0 == 200
        });
        self
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// SIGKILL, as a crash would: no drain, no commit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`TERM`, `KILL`, …).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// Waits up to `limit` for it to exit on its own: its status, or `None`
    /// (and it is SIGKILLed) if it is still running then.
    pub fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        let child = self.child.as_mut().expect("a running process");
        while started.elapsed() < limit {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// SIGTERM; waits up to `limit` for the exit; its status and how long
    /// it took (panics past `limit`).
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        self.signal("TERM");
        let sent = Instant::now();
        match self.exit_within(limit) {
            Some(status) => (status, sent.elapsed()),
            None => panic!("{} still running {limit:?} after SIGTERM", self.name),
        }
    }

    /// SIGTERM, and the exit is orderly (status 0, not a watchdog's) and
    /// within `bound` (waiting 30 s longer, so a failure says by how much).
    pub fn terminate_within_bound(&mut self, bound: Duration) {
        let (status, took) = self.terminate(bound + Duration::from_secs(30));
        eprintln!("{} exited {status} {took:?} after SIGTERM", self.name);
        assert!(
            took <= bound,
            "{} took {took:?} to exit after SIGTERM; the bound is {bound:?}",
            self.name
        );
        assert!(
            status.success(),
            "{} exited {status:?}: not through the orderly path",
            self.name
        );
    }

    /// SIGTERM, and a graceful exit (status 0) within 30 s.
    pub fn stop(&mut self) {
        let (status, _) = self.terminate(Duration::from_secs(30));
        assert!(status.success(), "{} exited {status:?}", self.name);
    }

    /// What it wrote to standard output ([`Launch::capture`]), once it has
    /// exited.
    pub fn finish(mut self) -> String {
        assert!(self.child.is_none(), "{} still running", self.name);
        self.stdout
            .take()
            .expect("its output was captured")
            .join()
            .expect("the output reader")
    }
}

impl HttpTarget for Process {
    fn http_addr(&self) -> SocketAddr {
        self.http()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if let Some(path) = self.config.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
