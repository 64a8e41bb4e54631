//! Start-up as build, then run (zero2prod's shape).
//!
//! [`App::build`]: migrations have run (before the actor system, see
//! `store/migrate.rs`); the shared dependencies are built once
//! (`deps.rs`), the data path's actors started from them (`stages.rs`), the
//! tasks beside it (`background.rs`), the consumer with its Supervisor and
//! event thread, and the HTTP server, bound.
//! [`App::run_until`]: serves until the shutdown future resolves, then
//! stops everything in order, each step bounded (`stop.rs`), so
//! `custodian run` exits within `runtime.drain_timeout` +
//! `shutdown::MARGIN` whatever Kafka, PostgreSQL or Redis do.

mod background;
mod deps;
mod running;
mod stages;
mod stop;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::oneshot;

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::shutdown;
use crate::store::migrate;
use crate::trail::checkpointer::Checkpointer;
pub use running::Running;

/// How long start-up waits for PostgreSQL to accept connections.
const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// custodian, built and serving.
pub struct App {
    http_addr: SocketAddr,
    stopping: stop::Stopping,
}

impl App {
    /// Builds and starts everything; fails naming the setting at fault.
    /// Call on the actor system (see [`run`]).
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        tracing::info!(config = ?settings.summary(), "starting custodian");
        let checkpointer = Checkpointer::from_settings(&settings)?;
        let deps = deps::Deps::build(settings).await?;
        let started = stages::start(&deps);
        let auditors = started.stages.auditors.clone();
        let mut background = background::Background::start(&deps, auditors, checkpointer);
        let consuming = stages::consume(&deps, &started)?;
        let state = AppState {
            postgres: deps.postgres.clone(),
            redis: deps.redis.clone(),
            health: deps.health.clone(),
            audit: deps.audit.clone(),
            status: deps.status.clone(),
            samples: deps.samples.clone(),
            operators: deps.settings.operators.clone(),
            formats: std::sync::Arc::clone(&deps.formats),
            masking: std::sync::Arc::new(crate::masking::Masking::from_settings(&deps.settings)),
            flow: deps.flow.clone(),
            endpoints: std::sync::Arc::clone(&deps.endpoints),
            topics: deps.settings.kafka.topics.clone(),
        };
        let http = &deps.settings.http;
        let (server, http_addr) = api::server(
            http,
            state,
            deps.dead_letters.clone(),
            deps.produce_target(),
        )
        .with_context(|| format!("cannot bind http.bind {}", http.bind))?;
        let server_handle = server.handle();
        actix_rt::spawn(server);
        background.start_relay(&deps)?;
        tracing::info!(addr = %http_addr, "custodian running: GET /health /ready /metrics; API /messages /dlq /replay");
        Ok(App {
            http_addr,
            stopping: stop::Stopping {
                drain_timeout: deps.settings.runtime.drain_timeout,
                consuming,
                server: server_handle,
                arbiters: started.arbiters,
                background,
            },
        })
    }

    /// Where the HTTP server listens (port 0 in tests binds a free one).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves until `shutdown` resolves, then stops in order.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        stop::stop(self.stopping).await;
    }
}

/// Runs custodian until `shutdown` resolves. Blocks the calling thread.
/// `on_ready` receives the HTTP address once everything is started.
pub fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + 'static,
    on_ready: Option<oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    system(&settings)?.block_on(async move {
        let app = App::build(settings).await?;
        if let Some(on_ready) = on_ready {
            let _ = on_ready.send(app.http_addr());
        }
        app.run_until(shutdown).await;
        Ok(())
    })
}

/// `custodian run`: runs until SIGTERM or Ctrl-C and returns within
/// `runtime.drain_timeout` + [`shutdown::MARGIN`] of the signal; the caller
/// should end the process right away. A watchdog armed at the signal ends
/// it if the orderly path overruns.
pub fn run_until_signal(settings: Settings) -> anyhow::Result<()> {
    let drain_timeout = settings.runtime.drain_timeout;
    let signal = async move {
        shutdown_signal().await;
        shutdown::arm_watchdog(drain_timeout);
    };
    let system = system(&settings)?;
    let result = system.block_on(async move {
        App::build(settings).await?.run_until(signal).await;
        Ok(())
    });
    // Dropping the runtime would join its blocking pool and drop what it
    // still owns, which can block on an unreachable dependency; the bounded
    // steps are done, so the process ends without it.
    std::mem::forget(system);
    result
}

/// Migrations, then the actor system to serve on.
fn system(settings: &Settings) -> anyhow::Result<actix::SystemRunner> {
    let applied = migrate::run(&settings.postgres.url, STARTUP_PATIENCE)?;
    tracing::info!(applied, "migrations up to date");
    Ok(actix::System::new())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
