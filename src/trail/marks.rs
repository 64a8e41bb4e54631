//! When chaining was switched on (and off): a row of `audit_chain_marks`
//! each time an instance starts with an `audit.chain` other than the
//! latest mark's. `audit verify` reads the marks to tell an unchained row
//! custodian wrote (before chaining, or while it was off) from one put
//! there by hand (see `verify::strays`).
//!
//! Called once at start, before the auditors write anything.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

/// One switch of `audit.chain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Pipeline entries after this mark are chained.
    pub chained: bool,
    /// Every `audit_log` id handed out before the mark is at or below this.
    pub after_log_id: i64,
    pub recorded_at: DateTime<Utc>,
}

/// Records `chained` unless the latest mark already says so; true when a
/// mark was written. The watermark is the id sequence, not `max(id)`: a
/// row whose id was taken before the mark but that commits after it was
/// written under the old setting.
pub async fn record(client: &Client, chained: bool) -> Result<bool, tokio_postgres::Error> {
    let written = client
        .execute(
            "INSERT INTO audit_chain_marks (chained, after_log_id) \
             SELECT $1, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END \
                           FROM audit_log_id_seq) \
             WHERE (SELECT chained FROM audit_chain_marks ORDER BY id DESC LIMIT 1) \
                   IS DISTINCT FROM $1",
            &[&chained],
        )
        .await?;
    if written > 0 {
        tracing::info!(chained, "audit.chain recorded in audit_chain_marks");
    }
    Ok(written > 0)
}

/// Every mark, oldest first; `None` on a database older than the marks.
pub async fn all(client: &Client) -> Result<Option<Vec<Mark>>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('audit_chain_marks') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT chained, after_log_id, recorded_at FROM audit_chain_marks ORDER BY id",
            &[],
        )
        .await?;
    Ok(Some(
        rows.iter()
            .map(|r| Mark {
                chained: r.get(0),
                after_log_id: r.get(1),
                recorded_at: r.get(2),
            })
            .collect(),
    ))
}

/// A span of the trail during which every pipeline entry was chained:
/// ids in `(from_id, to_id]` or rows recorded in `(from_time, to_time]`;
/// no end while chaining is still on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chained {
    pub from_id: i64,
    pub to_id: Option<i64>,
    pub from_time: DateTime<Utc>,
    pub to_time: Option<DateTime<Utc>>,
}

/// The spans the marks say were chained: from each `true` mark to the next
/// `false` one (or for ever).
pub fn chained_spans(marks: &[Mark]) -> Vec<Chained> {
    let mut spans = Vec::new();
    let mut open: Option<&Mark> = None;
    for mark in marks {
        match (open, mark.chained) {
            (None, true) => open = Some(mark),
            (Some(on), false) => {
                spans.push(Chained {
                    from_id: on.after_log_id,
                    to_id: Some(mark.after_log_id),
                    from_time: on.recorded_at,
                    to_time: Some(mark.recorded_at),
                });
                open = None;
            }
            _ => {}
        }
    }
    if let Some(on) = open {
        spans.push(Chained {
            from_id: on.after_log_id,
            to_id: None,
            from_time: on.recorded_at,
            to_time: None,
        });
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(chained: bool, id: i64, minute: u32) -> Mark {
        Mark {
            chained,
            after_log_id: id,
            recorded_at: DateTime::parse_from_rfc3339(&format!("2026-12-06T10:{minute:02}:00Z"))
                .expect("time")
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn spans_run_from_each_switch_on_to_the_next_switch_off() {
        assert!(chained_spans(&[]).is_empty());
        assert!(chained_spans(&[mark(false, 5, 1)]).is_empty());
        let spans = chained_spans(&[
            mark(true, 10, 1),
            mark(true, 12, 2),
            mark(false, 20, 3),
            mark(false, 25, 4),
            mark(true, 30, 5),
        ]);
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[0].from_id, spans[0].to_id), (10, Some(20)));
        assert_eq!(spans[0].to_time, Some(mark(false, 20, 3).recorded_at));
        assert_eq!((spans[1].from_id, spans[1].to_id), (30, None));
        assert_eq!(spans[1].to_time, None);
    }
}
