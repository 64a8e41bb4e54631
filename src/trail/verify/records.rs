//! What the trail says was done to itself, against what was done: every
//! erased entry is named by a MESSAGE_ERASED entry, every released legal
//! hold by an AUDIT_HOLD_RELEASED entry, every period deleted by retention
//! by an ARCHIVE_DELETED entry. The database lets the service's role erase
//! and release; without these checks, a leaked credential could do either
//! without a trace verify would notice.
//!
//! Not checked when a verify starts from checkpoints (the records before
//! them are not read), and not for facts older than the end of the latest
//! period retention deleted (their record may have gone with it).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::trail::entry::Entry;
use crate::trail::operator;

/// Seen while the chains are read.
#[derive(Debug, Default)]
pub(super) struct Records {
    /// Entries found erased, and when they were recorded.
    erased: Vec<(i64, DateTime<Utc>)>,
    /// Entries MESSAGE_ERASED entries name.
    declared_erased: HashSet<i64>,
    /// Holds AUDIT_HOLD_RELEASED entries name.
    released: HashSet<i64>,
    /// Partitions ARCHIVE_DELETED entries name.
    deleted: HashSet<String>,
}

impl Records {
    /// Notes an entry read.
    pub(super) fn see(&mut self, e: &Entry) {
        if e.erased_digest.is_some() {
            self.erased.push((e.id, e.recorded_at));
        }
        let detail = e.detail.as_ref();
        match e.status.as_str() {
            operator::ERASED => {
                let named = detail
                    .and_then(|d| d.get("entries"))
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(serde_json::Value::as_i64);
                self.declared_erased.extend(named);
            }
            operator::HOLD_RELEASED => {
                if let Some(id) = detail
                    .and_then(|d| d.get("hold_id"))
                    .and_then(|v| v.as_i64())
                {
                    self.released.insert(id);
                }
            }
            operator::ARCHIVE_DELETED => {
                if let Some(p) = detail
                    .and_then(|d| d.get("partition"))
                    .and_then(|v| v.as_str())
                {
                    self.deleted.insert(p.to_owned());
                }
            }
            _ => {}
        }
    }

    pub(super) fn merge(&mut self, other: Records) {
        self.erased.extend(other.erased);
        self.declared_erased.extend(other.declared_erased);
        self.released.extend(other.released);
        self.deleted.extend(other.deleted);
    }

    /// What was done without its record (the first 20 of each kind).
    /// `before` is what the database said before the chains were read
    /// (so a release or deletion made during the read is not counted);
    /// `horizon` the end of the latest period retention deleted.
    pub(super) async fn unrecorded(
        &self,
        client: &Client,
        before: &Facts,
        horizon: Option<DateTime<Utc>>,
    ) -> Result<Vec<String>, tokio_postgres::Error> {
        let recent = |t: &DateTime<Utc>| horizon.is_none_or(|h| *t >= h);
        let mut problems = Vec::new();
        let mut silent: Vec<i64> = self
            .erased
            .iter()
            .filter(|(id, at)| recent(at) && !self.declared_erased.contains(id))
            .map(|(id, _)| *id)
            .collect();
        if !silent.is_empty() {
            // An erasure committed while the chains were read: its record
            // is there now.
            let declared: HashSet<i64> = client
                .query(
                    "SELECT DISTINCT (jsonb_array_elements(detail->'entries'))::bigint \
                       FROM audit_log WHERE status = $1",
                    &[&operator::ERASED],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            silent.retain(|id| !declared.contains(id));
        }
        silent.sort_unstable();
        if !silent.is_empty() {
            problems.push(format!(
                "{} entries are erased, but no MESSAGE_ERASED entry names them (ids {:?})",
                silent.len(),
                &silent[..silent.len().min(20)]
            ));
        }
        for (id, at) in &before.released {
            if recent(at) && !self.released.contains(id) {
                problems.push(format!(
                    "legal hold {id} is released, but no AUDIT_HOLD_RELEASED entry says so"
                ));
            }
        }
        for (p, at) in &before.deleted {
            if recent(at) && !self.deleted.contains(p) {
                problems.push(format!(
                    "{p} is marked deleted by retention, but no ARCHIVE_DELETED entry says so"
                ));
            }
        }
        Ok(problems)
    }
}

/// Released holds and retention deletions, as the database says.
#[derive(Debug, Default)]
pub(super) struct Facts {
    released: Vec<(i64, DateTime<Utc>)>,
    deleted: Vec<(String, DateTime<Utc>)>,
}

impl Facts {
    /// Read before the chains are.
    pub(super) async fn read(client: &Client) -> Result<Facts, tokio_postgres::Error> {
        let released = super::pairs(
            client,
            "SELECT id, released_at FROM audit_holds WHERE released_at IS NOT NULL ORDER BY id",
        )
        .await?;
        let deleted = super::pairs(
            client,
            "SELECT name, archive_deleted_at FROM audit_partitions \
              WHERE archive_deleted_at IS NOT NULL ORDER BY name",
        )
        .await?;
        Ok(Facts { released, deleted })
    }
}
