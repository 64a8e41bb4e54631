//! Embedded migrations, run before the actor system starts.
//!
//! diesel-async's harness calls `block_in_place`, which panics on the
//! single-threaded runtimes actix uses, so this owns a small multi-threaded
//! runtime of its own. A database that is not up yet is waited for, with the
//! wait logged, up to `patience`.

use std::time::{Duration, Instant};

use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use secrecy::{ExposeSecret, SecretString};

use crate::wait::{until_back, DependencyWait, Down, Patience};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot reach PostgreSQL after {waited:?}: {last_error}")]
    Unreachable {
        waited: Duration,
        last_error: String,
    },
    #[error("migration failed: {0}")]
    Failed(String),
    #[error("cannot start the migration runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Applies pending migrations; returns how many ran.
pub fn run(url: &SecretString, patience: Duration) -> Result<usize, MigrateError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let wait = DependencyWait {
            min: Duration::from_millis(200),
            max: Duration::from_secs(5),
        };
        let conn = until_back(wait, Patience::Until(started + patience), async || {
            let conn = AsyncPgConnection::establish(url.expose_secret()).await;
            conn.map_err(|e| Down::new("postgres", e))
        })
        .await
        .map_err(|down| MigrateError::Unreachable {
            waited: started.elapsed(),
            last_error: down.error,
        })?;
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> =
            AsyncConnectionWrapper::from(conn);
        tokio::task::spawn_blocking(move || {
            wrapper
                .run_pending_migrations(MIGRATIONS)
                .map(|applied| applied.len())
                .map_err(|e| MigrateError::Failed(e.to_string()))
        })
        .await
        .map_err(|e| MigrateError::Failed(e.to_string()))?
    })
}
