//! The replay jobs this process runs, and the signal that stops them at
//! shutdown (`dlq::jobs` starts and resumes jobs; `DeadLetters` holds one
//! of these).

use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The replay jobs this process runs, and the signal that stops them.
#[derive(Debug)]
pub struct Jobs {
    stop: CancellationToken,
    /// Each running job holds a clone; `stop_with` drops this one and waits
    /// until `done` sees the last dropped, i.e. every job ended.
    running: Mutex<Option<mpsc::Sender<()>>>,
    done: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Default for Jobs {
    fn default() -> Self {
        let (running, done) = mpsc::channel(1);
        Jobs {
            stop: CancellationToken::new(),
            running: Mutex::new(Some(running)),
            done: Mutex::new(Some(done)),
        }
    }
}

impl Jobs {
    /// True once the stop signal went out: no job may start now.
    pub fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// A token cancelled with the stop signal, for one job.
    pub fn child_token(&self) -> CancellationToken {
        self.stop.child_token()
    }

    /// Sends the stop signal and waits until every job ended.
    pub async fn stop_all(&self) {
        self.stop.cancel();
        drop(self.running.lock().ok().and_then(|mut r| r.take()));
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        if let Some(mut done) = done {
            // Nothing is ever sent: this ends when the last job's sender drops.
            let _ = done.recv().await;
        }
    }

    /// Runs `job` on the system's arbiter, which lives until the end of
    /// the shutdown sequence: an HTTP worker's, where the request that
    /// starts a job runs, is stopped with the server, and would drop the job
    /// mid-entry.
    pub fn spawn(&self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        let running = self.running.lock().ok().and_then(|r| r.clone());
        let job = async move {
            // Held until the job ends.
            let _running = running;
            job.await;
        };
        match actix_rt::System::try_current() {
            Some(system) => {
                system.arbiter().spawn(job);
            }
            None => {
                actix_rt::spawn(job);
            }
        }
    }
}
