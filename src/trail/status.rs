//! What this instance last learned about its audit trail, for `/ready`,
//! `GET /audit/verify` and `GET /audit/status` (the console's integrity
//! line): the checkpointer's latest result, whether it can append to
//! `audit.checkpoint_file`, and the summary of the latest verify.
//!
//! Written by the checkpointer and by `Access::verify`, read by the HTTP
//! handlers. The lock is never held across an await.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::trail::verify::Report;

/// Shared by the checkpointer and the HTTP side.
#[derive(Debug, Default)]
pub struct TrailStatus {
    inner: Mutex<AuditStatus>,
}

/// `GET /audit/status`.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct AuditStatus {
    pub checkpoints: CheckpointerStatus,
    /// The latest verify this instance ran (any caller's), if any.
    pub last_verify: Option<VerifySummary>,
}

/// The checkpointer's latest result.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct CheckpointerStatus {
    /// A signing key is configured, so this instance signs checkpoints.
    pub signing: bool,
    /// When it last signed heads (in the table, the file or both).
    pub last_signed_at: Option<DateTime<Utc>>,
    /// How many chain heads it signed then.
    pub last_signed_chains: usize,
    /// Why its latest attempt failed, if it did.
    pub last_error: Option<String>,
    /// Why `audit.checkpoint_file` cannot be appended to, while it cannot;
    /// checkpoints still go to `audit_checkpoints`.
    pub file_error: Option<String>,
    /// Since when the file has been failing.
    pub file_failing_since: Option<DateTime<Utc>>,
}

/// A verify's result, in short.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VerifySummary {
    pub finished_at: DateTime<Utc>,
    pub holds: bool,
    pub complete: bool,
    pub entries_checked: u64,
    pub chains: usize,
    pub seconds: f64,
    /// Rows no chain covers that custodian wrote (before chaining, or
    /// with `audit.chain = false`).
    pub unchained_entries: i64,
    /// Archived periods read from the archive store, and the entries of
    /// theirs checked.
    pub archived_periods: usize,
    pub archived_entries: u64,
    /// Entries erased (`audit erase`), checked by the digest they keep.
    pub erased_entries: u64,
    /// Periods deleted from the archive by `audit.retention`.
    pub deleted_periods: usize,
    /// The first failures (breaks, refused checkpoints, stray rows, the
    /// checkpoint file), one line each.
    pub problems: Vec<String>,
}

/// Problems kept in a summary.
const PROBLEMS_KEPT: usize = 10;

impl TrailStatus {
    fn with<T>(&self, f: impl FnOnce(&mut AuditStatus) -> T) -> T {
        // A panic elsewhere while holding the lock leaves plain data behind.
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    pub fn snapshot(&self) -> AuditStatus {
        self.with(|s| s.clone())
    }

    /// Why the checkpoint file cannot be appended to now, if it cannot.
    pub fn checkpoint_file_error(&self) -> Option<String> {
        self.with(|s| s.checkpoints.file_error.clone())
    }

    pub fn signing(&self) {
        self.with(|s| s.checkpoints.signing = true);
    }

    /// The file took the lines (`None`) or refused them; true when that
    /// changed, so the caller logs a change once, not every tick.
    pub fn file_result(&self, error: Option<String>) -> bool {
        self.with(|s| {
            let c = &mut s.checkpoints;
            let changed = c.file_error != error;
            match (&error, c.file_failing_since) {
                (None, _) => c.file_failing_since = None,
                (Some(_), None) => c.file_failing_since = Some(Utc::now()),
                (Some(_), Some(_)) => {}
            }
            c.file_error = error;
            changed
        })
    }

    pub fn signed(&self, chains: usize, at: DateTime<Utc>) {
        self.with(|s| {
            s.checkpoints.last_signed_at = Some(at);
            s.checkpoints.last_signed_chains = chains;
        });
    }

    pub fn tick_result(&self, error: Option<String>) {
        self.with(|s| s.checkpoints.last_error = error);
    }

    pub fn verified(&self, report: &Report) {
        let mut problems = report.problems();
        problems.truncate(PROBLEMS_KEPT);
        let summary = VerifySummary {
            finished_at: Utc::now(),
            holds: report.holds,
            complete: report.complete,
            entries_checked: report.entries_checked,
            chains: report.chains.len(),
            seconds: report.seconds,
            unchained_entries: report.unchained_entries + report.legacy_entries,
            archived_periods: report.archived_periods,
            archived_entries: report.archived_entries,
            erased_entries: report.erased_entries,
            deleted_periods: report.deleted_by_retention.len(),
            problems,
        };
        self.with(|s| s.last_verify = Some(summary));
    }
}
