//! What `audit verify` answers: per chain, how far it holds and its first
//! break, and the summary.

use serde::Serialize;

/// What kind of break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    Edited,
    Deleted,
    Inserted,
    Reordered,
    CheckpointMismatch,
}

impl std::fmt::Display for BreakKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BreakKind::Edited => "edited",
            BreakKind::Deleted => "deleted",
            BreakKind::Inserted => "inserted",
            BreakKind::Reordered => "reordered",
            BreakKind::CheckpointMismatch => "checkpoint mismatch",
        })
    }
}

/// The first break of a chain.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Break {
    /// The sequence number where the chain stops holding.
    pub seq: i64,
    pub kind: BreakKind,
    pub detail: String,
}

/// One chain's result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChainReport {
    pub chain: String,
    /// Entries read (after a break too: they are counted, not trusted).
    pub entries: u64,
    /// Verification started after this sequence number (a trusted
    /// checkpoint's), 0 from the start.
    pub started_after: i64,
    /// The last sequence number read.
    pub last_seq: i64,
    /// Checkpoints whose sequence was reached and whose hash matched.
    pub checkpoints_matched: u64,
    #[serde(rename = "break")]
    pub breach: Option<Break>,
}

/// The whole result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = VerifyReport)]
pub struct Report {
    /// Every chain and checkpoint holds, and every chain was reached.
    pub holds: bool,
    /// False when the time budget ran out first (HTTP); the chains not
    /// reached are missing from `chains`.
    pub complete: bool,
    pub entries_checked: u64,
    pub seconds: f64,
    pub entries_per_second: f64,
    pub chains: Vec<ChainReport>,
    /// Rows of `audit_log` without a chain (written with audit.chain =
    /// false, or inserted by hand): not covered by any hash.
    pub unchained_entries: i64,
    /// Rows of the legacy `message_audit_v1` table, written before chaining
    /// existed: not covered by any hash.
    pub legacy_entries: i64,
    /// Checkpoints the verifier key refused (rows of `audit_checkpoints`,
    /// lines of the checkpoint file).
    pub refused_checkpoints: Vec<String>,
}

impl Report {
    /// Everything checked holds.
    pub fn holds(&self) -> bool {
        self.complete
            && self.refused_checkpoints.is_empty()
            && self.chains.iter().all(|c| c.breach.is_none())
    }
}
