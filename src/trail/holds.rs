//! Legal holds: on a message key or on a period. An active hold blocks the
//! erasure of what it covers and the deletion of an archived period it
//! covers (by period, or by a key one of its entries holds). Placing and
//! releasing are chained operator entries (`AUDIT_HOLD`,
//! `AUDIT_HOLD_RELEASED`); the database refuses any other change to a hold.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use tokio_postgres::Client;

use crate::identity::Actor;
use crate::trail::{exclusive, operator};

/// What a hold covers.
#[derive(Debug, Clone)]
pub enum HoldOn {
    Key(String),
    /// Entries recorded in `[from, to)`.
    Period(DateTime<Utc>, DateTime<Utc>),
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hold {
    pub id: i64,
    pub key: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub reason: String,
    pub held_by: String,
    pub held_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
    pub released_by: Option<String>,
}

impl Hold {
    /// Covers an entry with this key, recorded at `at`?
    pub fn covers(&self, key: Option<&str>, at: DateTime<Utc>) -> bool {
        self.released_at.is_none()
            && (key.is_some() && self.key.as_deref() == key
                || matches!((self.from, self.to), (Some(f), Some(t)) if f <= at && at < t))
    }

    /// Covers any of `[from, to)` (`from` None: from the beginning)?
    pub fn covers_period(&self, from: Option<DateTime<Utc>>, to: DateTime<Utc>) -> bool {
        self.released_at.is_none()
            && matches!((self.from, self.to), (Some(f), Some(t)) if f < to && from.is_none_or(|from| from < t))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("reading the holds failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("recording the hold failed: {0}")]
    Record(#[from] diesel::result::Error),
    #[error("no active hold {0}")]
    NotActive(i64),
    #[error("a period runs forward: from {0} to {1}")]
    Backwards(DateTime<Utc>, DateTime<Utc>),
}

const SELECT: &str = "SELECT id, message_key, from_time, to_time, reason, held_by, held_at, \
    released_at, released_by FROM audit_holds";

fn from_row(r: &tokio_postgres::Row) -> Hold {
    Hold {
        id: r.get(0),
        key: r.get(1),
        from: r.get(2),
        to: r.get(3),
        reason: r.get(4),
        held_by: r.get(5),
        held_at: r.get(6),
        released_at: r.get(7),
        released_by: r.get(8),
    }
}

/// The holds not released.
pub async fn active(client: &Client) -> Result<Vec<Hold>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("{SELECT} WHERE released_at IS NULL ORDER BY id"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Every hold, released ones too.
pub async fn all(client: &Client) -> Result<Vec<Hold>, tokio_postgres::Error> {
    let rows = client.query(&format!("{SELECT} ORDER BY id"), &[]).await?;
    Ok(rows.iter().map(from_row).collect())
}

#[derive(diesel::QueryableByName)]
struct Placed {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// Places a hold; its id.
pub async fn place(
    conn: &mut AsyncPgConnection,
    on: &HoldOn,
    reason: &str,
    by: &Actor,
) -> Result<i64, HoldError> {
    use diesel::sql_types::{Nullable, Text, Timestamptz};
    let (key, from, to) = match on {
        HoldOn::Key(k) => (Some(k.as_str()), None, None),
        HoldOn::Period(f, t) if f >= t => return Err(HoldError::Backwards(*f, *t)),
        HoldOn::Period(f, t) => (None, Some(*f), Some(*t)),
    };
    let id = conn
        .transaction(async |conn| {
            diesel::sql_query(exclusive::HOLD_WAIT)
                .execute(conn)
                .await?;
            diesel::sql_query(exclusive::IN_TRANSACTION)
                .execute(conn)
                .await?;
            let placed = diesel::sql_query(
                "INSERT INTO audit_holds (message_key, from_time, to_time, reason, held_by) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind::<Nullable<Text>, _>(key)
            .bind::<Nullable<Timestamptz>, _>(from)
            .bind::<Nullable<Timestamptz>, _>(to)
            .bind::<Text, _>(reason)
            .bind::<Text, _>(&by.name)
            .get_result::<Placed>(conn)
            .await?;
            let subject = format!("hold/{}", placed.id);
            operator::record(
                conn,
                operator::Action::about(
                    &subject,
                    operator::HOLD,
                    placed.id,
                    key,
                    serde_json::json!({
                        "hold_id": placed.id,
                        "requested_by": by.name,
                        "operator": by.to_json(),
                        "reason": reason,
                        "from": from,
                        "to": to,
                    }),
                ),
            )
            .await?;
            Ok::<i64, diesel::result::Error>(placed.id)
        })
        .await?;
    Ok(id)
}

/// Releases an active hold.
pub async fn release(
    conn: &mut AsyncPgConnection,
    id: i64,
    reason: &str,
    by: &Actor,
) -> Result<(), HoldError> {
    use diesel::sql_types::{BigInt, Text};
    let released = conn
        .transaction(async |conn| {
            diesel::sql_query(exclusive::HOLD_WAIT)
                .execute(conn)
                .await?;
            diesel::sql_query(exclusive::IN_TRANSACTION)
                .execute(conn)
                .await?;
            let n = diesel::sql_query(
                "UPDATE audit_holds SET released_at = now(), released_by = $2, release_reason = $3 \
                 WHERE id = $1 AND released_at IS NULL",
            )
            .bind::<BigInt, _>(id)
            .bind::<Text, _>(&by.name)
            .bind::<Text, _>(reason)
            .execute(conn)
            .await?;
            if n == 1 {
                operator::record(
                    conn,
                    operator::Action::about(
                        &format!("hold/{id}"),
                        operator::HOLD_RELEASED,
                        id,
                        None,
                        serde_json::json!({
                            "hold_id": id,
                            "requested_by": by.name,
                        "operator": by.to_json(),
                            "reason": reason,
                        }),
                    ),
                )
                .await?;
            }
            Ok::<bool, diesel::result::Error>(n == 1)
        })
        .await?;
    if released {
        Ok(())
    } else {
        Err(HoldError::NotActive(id))
    }
}
