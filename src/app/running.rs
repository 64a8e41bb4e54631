//! custodian running on its own thread, for the tests and the benchmark:
//! started with [`Running::start`], stopped (drained, committed) with
//! [`Running::stop`] or by dropping it.

use std::net::SocketAddr;

use tokio::sync::oneshot;

use super::run;
use crate::config::Settings;

/// custodian running on its own thread (tests, the benchmark).
pub struct Running {
    pub http_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Starts custodian and waits until it serves HTTP.
    pub fn start(settings: Settings) -> anyhow::Result<Running> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, is_ready) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("custodian".into())
            .spawn(move || {
                run(
                    settings,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(ready),
                )
            })?;
        match is_ready.blocking_recv() {
            Ok(http_addr) => Ok(Running {
                http_addr,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow::anyhow!("custodian exited before it was ready")),
            },
        }
    }

    /// Graceful stop: drain, commit, exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow::anyhow!("custodian thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
