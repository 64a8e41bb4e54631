//! Connection pools for PostgreSQL (diesel-async over bb8) and Redis (bb8-redis).
//!
//! Build them once, inside the running actix system, and keep them for its
//! lifetime: a pooled connection's I/O task lives on the runtime that opened
//! it. `build_unchecked` means a database that is down at start does not
//! abort the start: the pool connects when it can and callers pause meanwhile.

use std::time::Duration;

use diesel_async::pooled_connection::{bb8, AsyncDieselConnectionManager};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::ExposeSecret;

use crate::config::{PostgresSettings, RedisSettings};
use crate::store::StoreError;

pub type PgPool = bb8::Pool<AsyncPgConnection>;
pub type RedisPool = ::bb8::Pool<bb8_redis::RedisConnectionManager>;

pub fn postgres(settings: &PostgresSettings) -> PgPool {
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new(settings.url.expose_secret());
    bb8::Pool::builder()
        .max_size(settings.pool_size)
        .connection_timeout(settings.connect_timeout)
        .build_unchecked(manager)
}

pub fn redis(settings: &RedisSettings) -> Result<RedisPool, redis::RedisError> {
    let manager = bb8_redis::RedisConnectionManager::new(settings.url.expose_secret())?;
    Ok(::bb8::Pool::builder()
        .max_size(settings.pool_size)
        .connection_timeout(settings.connect_timeout)
        .build_unchecked(manager))
}

/// `SELECT 1` with a deadline: is PostgreSQL answering right now?
pub async fn ping_postgres(pool: &PgPool, deadline: Duration) -> Result<(), StoreError> {
    let probe = async {
        let mut conn = pool
            .get()
            .await
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    };
    tokio::time::timeout(deadline, probe)
        .await
        .unwrap_or_else(|_| Err(StoreError::Pool("timed out".into())))
}

/// `PING` with a deadline: is Redis answering right now?
pub async fn ping_redis(pool: &RedisPool, deadline: Duration) -> Result<(), String> {
    let probe = async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut *conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(deadline, probe)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}
