//! The relay's own PostgreSQL session, and the advisory lock that makes its
//! instance the one publisher.
//!
//! The lock is session-level: it lives exactly as long as this connection.
//! A relay that dies (SIGKILL included) closes its connection, PostgreSQL
//! ends the session and frees the lock, and a standby, which tries for it
//! every `relay.interval`, takes over. The leader reads and marks rows on
//! this same session, so a leader whose session is gone cannot mark
//! anything: its last batch is republished by the next leader and
//! recognised downstream by id.

use std::time::Duration;

use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// The advisory lock key ("custodia" in ASCII). Advisory locks are per
/// database, so each database has its own publisher.
pub const LOCK_KEY: i64 = 0x6375_7374_6f64_6961;

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Opens the session: the statement timeout every custodian connection
/// has, and an application name with this process id, so
/// `pg_stat_activity` (joined with `pg_locks`) shows which instance leads.
pub async fn connect(
    url: &str,
    statement_timeout: Duration,
) -> Result<AsyncPgConnection, diesel::ConnectionError> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    let setup = diesel::sql_query(
        "SELECT set_config('statement_timeout', $1, false), set_config('application_name', $2, false)",
    )
    .bind::<Text, _>(statement_timeout.as_millis().to_string())
    .bind::<Text, _>(format!("custodian-relay {}", std::process::id()))
    .execute(&mut conn)
    .await;
    setup.map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    // A relay killed while a statement of its session waits on a row lock
    // would keep the lock until that wait ends; with this (PostgreSQL 14+)
    // the server notices the closed connection within a second. Older
    // servers do not know the setting, which is fine.
    let _ =
        diesel::sql_query("SELECT set_config('client_connection_check_interval', '1000', false)")
            .execute(&mut conn)
            .await;
    Ok(conn)
}

/// Takes the publisher lock if no other session holds it.
pub async fn try_lead(conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
    diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<BigInt, _>(LOCK_KEY)
        .get_result::<Locked>(conn)
        .await
        .map(|l| l.locked)
}
