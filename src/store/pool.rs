//! Connection pools for PostgreSQL (diesel-async over bb8) and Redis (bb8-redis).
//!
//! Build them once, inside the running actix system, and keep them for its
//! lifetime: a pooled connection's I/O task lives on the runtime that opened
//! it. `build_unchecked` means a database that is down at start does not
//! abort the start: the pool connects when it can and callers pause meanwhile.

use std::time::Duration;

use diesel_async::pooled_connection::{bb8, AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::FutureExt;
use secrecy::ExposeSecret;

use crate::config::{PostgresSettings, RedisSettings};
use crate::store::StoreError;

pub type PgPool = bb8::Pool<AsyncPgConnection>;
pub type RedisPool = ::bb8::Pool<bb8_redis::RedisConnectionManager>;

pub fn postgres(settings: &PostgresSettings) -> PgPool {
    let timeout_ms = settings.statement_timeout.as_millis().to_string();
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(move |url| {
        let timeout_ms = timeout_ms.clone();
        async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            // A bound parameter, not SET: the value never becomes SQL text.
            diesel::sql_query("SELECT set_config('statement_timeout', $1, false)")
                .bind::<diesel::sql_types::Text, _>(timeout_ms)
                .execute(&mut conn)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.expose_secret(),
        config,
    );
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
        .connection_customizer(Box::new(ResponseTimeout(settings.response_timeout)))
        .build_unchecked(manager))
}

/// Sets `redis.response_timeout` on each new Redis connection (bb8-redis
/// opens them with the client's default).
#[derive(Debug)]
struct ResponseTimeout(Duration);

impl ::bb8::CustomizeConnection<redis::aio::MultiplexedConnection, redis::RedisError>
    for ResponseTimeout
{
    fn on_acquire<'a>(
        &'a self,
        conn: &'a mut redis::aio::MultiplexedConnection,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), redis::RedisError>> + Send + 'a>,
    > {
        conn.set_response_timeout(self.0);
        Box::pin(std::future::ready(Ok(())))
    }
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
