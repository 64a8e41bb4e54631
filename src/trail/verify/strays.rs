//! Rows outside every chain that custodian did not write: an unchained
//! `audit_log` row from a time chaining was on (by the marks of
//! `trail::marks`), and a legacy row (`message_audit_v1`,
//! `message_payloads_v1`) newer than the migration that froze those
//! tables. No hash covers such a row, so the chains cannot catch it; these
//! queries can.
//!
//! What stays out of reach: a superuser who also forges a mark, or who
//! gives a forged row an id and a time below the watermarks and keeps the
//! legacy row counts (by deleting as many rows as they add).

use tokio_postgres::Client;
use uuid::Uuid;

use super::report::{Stray, StrayKind};
use crate::trail::marks;

/// Rows named per kind; the rest are counted.
const NAMED: i64 = 20;

/// The stray rows (at most [`NAMED`] of each kind named) and how many
/// there are in all.
pub(super) async fn find(client: &Client) -> Result<(Vec<Stray>, i64), tokio_postgres::Error> {
    let Some(marks) = marks::all(client).await? else {
        return Ok((Vec::new(), 0));
    };
    let mut strays = Vec::new();
    let mut total = 0;
    for span in marks::chained_spans(&marks) {
        let filter = "chain_id IS NULL AND ((id > $1 AND ($2::int8 IS NULL OR id <= $2)) \
             OR (recorded_at > $3 AND ($4::timestamptz IS NULL OR recorded_at <= $4)))";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&span.from_id, &span.to_id, &span.from_time, &span.to_time];
        total += client
            .query_one(
                &format!("SELECT count(*) FROM audit_log WHERE {filter}"),
                &params,
            )
            .await?
            .get::<_, i64>(0);
        let rows = client
            .query(
                &format!(
                    "SELECT id, message_id, status, recorded_at FROM audit_log WHERE {filter} \
                     ORDER BY id LIMIT {NAMED}"
                ),
                &params,
            )
            .await?;
        strays.extend(rows.iter().map(|r| {
            let recorded_at: chrono::DateTime<chrono::Utc> = r.get(3);
            Stray {
                kind: StrayKind::UnchainedAfterChaining,
                table: "audit_log",
                id: Some(r.get(0)),
                message_id: Some(r.get(1)),
                status: Some(r.get(2)),
                detail: format!(
                    "no chain, recorded {recorded_at}: chaining was on since {} (audit_log id {})",
                    span.from_time, span.from_id
                ),
            }
        }));
    }
    let (legacy, legacy_total) = legacy(client).await?;
    strays.extend(legacy);
    let (unknown, unknown_total) = unknown_chains(client).await?;
    strays.extend(unknown);
    Ok((strays, total + legacy_total + unknown_total))
}

/// `audit_log` rows naming a chain `audit_chains` does not hold (it is
/// append-only and its ids dense, so outside its range): no verify reads
/// them. The per-partition (chain_id, chain_seq) indexes answer this
/// without reading the table.
async fn unknown_chains(client: &Client) -> Result<(Vec<Stray>, i64), tokio_postgres::Error> {
    let filter = "chain_id IS NOT NULL AND (chain_id < 1 OR chain_id > \
                  (SELECT coalesce(max(chain_id), 0) FROM audit_chains))";
    let total: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM audit_log WHERE {filter}"),
            &[],
        )
        .await?
        .get(0);
    let rows = client
        .query(
            &format!(
                "SELECT id, message_id, status, chain_id FROM audit_log WHERE {filter} \
                 ORDER BY id LIMIT {NAMED}"
            ),
            &[],
        )
        .await?;
    Ok((
        rows.iter()
            .map(|r| Stray {
                kind: StrayKind::UnknownChain,
                table: "audit_log",
                id: Some(r.get(0)),
                message_id: Some(r.get(1)),
                status: Some(r.get(2)),
                detail: format!("chain_id {} is not in audit_chains", r.get::<_, i32>(3)),
            })
            .collect(),
        total,
    ))
}

/// Legacy rows past the freeze: above its id or after its time, and any
/// excess over the counts it took.
async fn legacy(client: &Client) -> Result<(Vec<Stray>, i64), tokio_postgres::Error> {
    let Some(frozen) = client
        .query_opt(
            "SELECT last_id, audit_rows, payload_rows, recorded_at FROM audit_legacy_frozen",
            &[],
        )
        .await?
    else {
        return Ok((Vec::new(), 0));
    };
    let (last_id, audit_rows, payload_rows, at): (i64, i64, i64, chrono::DateTime<chrono::Utc>) =
        (frozen.get(0), frozen.get(1), frozen.get(2), frozen.get(3));
    let frozen_since = format!("newer than the freeze of the legacy tables ({at})");
    let mut strays = Vec::new();

    let newer = "id > $1 OR recorded_at > $2";
    let audit_newer: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM message_audit_v1 WHERE {newer}"),
            &[&last_id, &at],
        )
        .await?
        .get(0);
    let rows = client
        .query(
            &format!(
                "SELECT id, message_id, status FROM message_audit_v1 WHERE {newer} \
                 ORDER BY id LIMIT {NAMED}"
            ),
            &[&last_id, &at],
        )
        .await?;
    strays.extend(rows.iter().map(|r| Stray {
        kind: StrayKind::LegacyAfterFreeze,
        table: "message_audit_v1",
        id: Some(r.get(0)),
        message_id: Some(r.get(1)),
        status: Some(r.get(2)),
        detail: frozen_since.clone(),
    }));
    let audit_now: i64 = client
        .query_one("SELECT count(*) FROM message_audit_v1", &[])
        .await?
        .get(0);
    // Rows slipped in below the frozen id and time.
    let audit_hidden = (audit_now - audit_rows - audit_newer).max(0);
    if audit_hidden > 0 {
        strays.push(count_only("message_audit_v1", audit_hidden, audit_rows));
    }

    let payloads_newer: i64 = client
        .query_one(
            "SELECT count(*) FROM message_payloads_v1 WHERE first_seen_at > $1",
            &[&at],
        )
        .await?
        .get(0);
    let rows = client
        .query(
            &format!(
                "SELECT message_id FROM message_payloads_v1 WHERE first_seen_at > $1 \
                 ORDER BY first_seen_at LIMIT {NAMED}"
            ),
            &[&at],
        )
        .await?;
    strays.extend(rows.iter().map(|r| Stray {
        kind: StrayKind::LegacyAfterFreeze,
        table: "message_payloads_v1",
        id: None,
        message_id: Some(r.get::<_, Uuid>(0)),
        status: None,
        detail: frozen_since.clone(),
    }));
    let payloads_now: i64 = client
        .query_one("SELECT count(*) FROM message_payloads_v1", &[])
        .await?
        .get(0);
    let payloads_hidden = (payloads_now - payload_rows - payloads_newer).max(0);
    if payloads_hidden > 0 {
        strays.push(count_only(
            "message_payloads_v1",
            payloads_hidden,
            payload_rows,
        ));
    }
    Ok((
        strays,
        audit_newer + audit_hidden + payloads_newer + payloads_hidden,
    ))
}

fn count_only(table: &'static str, extra: i64, frozen: i64) -> Stray {
    Stray {
        kind: StrayKind::LegacyAfterFreeze,
        table,
        id: None,
        message_id: None,
        status: None,
        detail: format!(
            "{extra} row(s) more than the {frozen} the freeze counted, hidden below its id and time"
        ),
    }
}
