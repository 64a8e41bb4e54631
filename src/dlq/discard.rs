//! Discarding a dead letter for good, audited MESSAGE_DISCARDED with who
//! and why.

use uuid::Uuid;

use super::operator::{redis_down, DeadLetters, DlqError, Request};
use super::store::{self as queue};
use super::DlqEntry;
use crate::store::audit::DISCARDED;
use crate::telemetry::dlq::DeadLetterActed;
use crate::telemetry::Emit;

impl DeadLetters {
    /// Removes a dead letter for good, audited MESSAGE_DISCARDED with who and
    /// why (and the failure it had).
    pub async fn discard(&self, id: Uuid, request: &Request) -> Result<DlqEntry, DlqError> {
        request.validate()?;
        let result = self
            .locked(id, |stored| async move {
                let e = &stored.entry;
                let mut detail = request.detail();
                detail["error_kind"] = e.error_kind.clone().into();
                detail["error"] = e.error.clone().into();
                detail["attempts"] = e.attempts.into();
                self.audit(
                    &stored,
                    DISCARDED,
                    e.attempts as i32,
                    chrono::Utc::now(),
                    detail,
                )
                .await?;
                let mut conn = self.redis.get().await.map_err(redis_down)?;
                if !queue::remove(&mut *conn, &self.keys, &stored)
                    .await
                    .map_err(redis_down)?
                {
                    return Err(DlqError::Changed(id));
                }
                Ok(stored.entry)
            })
            .await;
        if let Ok(entry) = &result {
            DeadLetterActed {
                topic: &entry.topic,
                result: "discarded",
            }
            .emit();
        }
        result
    }
}
