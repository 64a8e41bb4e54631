//! The `operators` section: four-eyes approval of bulk and erasing actions.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, invalid, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorsSettings {
    /// A bulk replay over this many entries waits for a second person's
    /// approval (an erasure always does).
    pub four_eyes_threshold: u64,
    /// How long a pending request may wait for its approval.
    #[serde(deserialize_with = "duration")]
    pub approval_ttl: Duration,
}

pub(super) fn defaults() -> serde_json::Value {
    serde_json::json!({
        "four_eyes_threshold": 100,
        "approval_ttl": "24h",
    })
}

impl OperatorsSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.approval_ttl < Duration::from_secs(1)
            || self.approval_ttl > Duration::from_secs(30 * 86_400)
        {
            return Err(invalid(
                "operators.approval_ttl",
                "must be between 1s and 30 days",
            ));
        }
        Ok(())
    }
}
