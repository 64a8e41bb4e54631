//! The audit trail's time partitions (migration 000016): created ahead of
//! need, at start and on a timer, so a write never waits for one; listed
//! with where each is in its life (open, sealed, archived, dropped).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::Period;

/// Creates the partitions missing up to the end of the `ahead`-th period
/// after the current one; returns the names of those created.
pub async fn ensure(
    client: &Client,
    period: Period,
    ahead: u32,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let periods = i32::try_from(ahead).unwrap_or(i32::MAX).saturating_add(1);
    let rows = client
        .query(
            "SELECT custodian_audit_partitions_ensure($1, \
                 date_trunc($1::text, now(), 'UTC') + $2::int * ('1 ' || $1)::interval)",
            &[&period.as_sql(), &periods],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One partition of `audit_log`, past or present.
#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    pub name: String,
    /// `None`: from the beginning (the partition the existing trail became).
    pub from: Option<DateTime<Utc>>,
    pub to: DateTime<Utc>,
    pub sealed_at: Option<DateTime<Utc>>,
    /// When its latest verified archive was recorded.
    pub archived_at: Option<DateTime<Utc>>,
    pub dropped_at: Option<DateTime<Utc>>,
}

impl Partition {
    /// The lowest `recorded_at` of its rows (for an open start, the year
    /// 4000 BC: PostgreSQL's range begins in 4713 BC).
    pub fn lower(&self) -> DateTime<Utc> {
        self.from.unwrap_or_else(|| {
            chrono::NaiveDate::from_ymd_opt(-4000, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map_or(DateTime::UNIX_EPOCH, |t| t.and_utc())
        })
    }
}

/// Every partition, oldest first.
pub async fn list(client: &Client) -> Result<Vec<Partition>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT p.name, p.from_time, p.to_time, p.sealed_at, \
                    (SELECT max(a.recorded_at) FROM audit_archives a WHERE a.partition_name = p.name), \
                    p.dropped_at \
               FROM audit_partitions p ORDER BY p.to_time",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Partition {
            name: r.get(0),
            from: r.get(1),
            to: r.get(2),
            sealed_at: r.get(3),
            archived_at: r.get(4),
            dropped_at: r.get(5),
        })
        .collect())
}
