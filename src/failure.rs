//! Why a message did not get processed, and whether trying again can help.
//!
//! Every failure names its stage and a short, stable `kind` (used in the DLQ
//! entry, the audit row and metrics) plus a human message. `Permanent`
//! failures go to the dead-letter queue at once; `Transient` ones (a
//! statement timeout, a deadlock, a downstream 5xx) are retried in place up
//! to `retry.max_attempts`, then parked. A dependency that does not answer
//! at all is no failure of the message: it is waited out (see `retry` and
//! `wait`).

use serde::Serialize;

/// Where in the pipeline the failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Decode,
    Enrich,
    Process,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Enrich => "enrich",
            Stage::Process => "process",
        }
    }
}

/// Whether retrying can change the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    Permanent,
    Transient,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    pub retry: Retry,
    /// Stable machine-readable kind: `undecodable`, `schema_violation`,
    /// `unknown_event_type` (decoding); `constraint_violation`,
    /// `database_timeout`, `database_conflict`, `database_unavailable`,
    /// `database_rejected`, `id_conflict` (PostgreSQL); `downstream_*` and
    /// `no_route` (HTTP delivery).
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    pub fn undecodable(message: impl Into<String>) -> Self {
        Self::permanent(Stage::Decode, "undecodable", message)
    }

    pub fn schema(message: impl Into<String>) -> Self {
        Self::permanent(Stage::Decode, "schema_violation", message)
    }

    pub fn unknown_event_type(message: impl Into<String>) -> Self {
        Self::permanent(Stage::Decode, "unknown_event_type", message)
    }

    pub fn permanent(stage: Stage, kind: &'static str, message: impl Into<String>) -> Self {
        Failure {
            stage,
            retry: Retry::Permanent,
            kind,
            message: message.into(),
        }
    }

    /// A record whose id was applied with other bytes: not a duplicate
    /// (that would drop it silently), but a conflict to look at.
    pub fn id_conflict(id: uuid::Uuid, applied: &[u8; 32], this: &[u8; 32]) -> Self {
        use crate::text::hex;
        Failure::permanent(
            Stage::Process,
            "id_conflict",
            format!(
                "message id {id} was applied with payload sha256 {}; this record's payload has sha256 {}",
                hex(applied),
                hex(this)
            ),
        )
    }

    pub fn is_permanent(&self) -> bool {
        self.retry == Retry::Permanent
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {}: {}",
            self.kind,
            self.stage.as_str(),
            self.message
        )
    }
}

/// One failed attempt at a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFailure {
    /// 1 for the first attempt.
    pub attempt: u32,
    pub at: chrono::DateTime<chrono::Utc>,
    pub failure: Failure,
}

/// Why one try did not succeed.
#[derive(Debug)]
pub enum TryError {
    /// The dependency did not answer; `String` says which and how.
    Unavailable {
        dependency: &'static str,
        error: String,
    },
    /// It answered with a refusal (or a transient failure).
    Failed(Failure),
}
