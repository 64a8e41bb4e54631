//! Looking at dead letters: one entry, a filtered page, the depth per
//! topic. Listings are limited to a few at once, so they cannot crowd out
//! the dead-letter pushes that share Redis with them.

use std::time::Duration;

use uuid::Uuid;

use super::operator::{redis_down, DeadLetters, DlqError};
use super::store::{self as queue, Filter, Page};
use super::DlqEntry;
use crate::telemetry::dlq::DlqDepthRead;
use crate::telemetry::Emit;

const LISTING_WAIT: Duration = Duration::from_secs(5);

impl DeadLetters {
    /// A listing slot, or [`DlqError::Overloaded`] after a short wait.
    pub(super) async fn listing_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, DlqError> {
        match tokio::time::timeout(LISTING_WAIT, self.listings.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(DlqError::Overloaded),
        }
    }

    pub async fn get(&self, id: Uuid) -> Result<DlqEntry, DlqError> {
        let mut conn = self.redis.get().await.map_err(redis_down)?;
        match queue::get(&mut *conn, &self.keys, id).await {
            Ok(Some(stored)) => Ok(stored.entry),
            Ok(None) => Err(DlqError::NotFound(id)),
            Err(e) if e.kind() == redis::ErrorKind::Parse => Err(DlqError::Corrupt {
                id,
                reason: e.to_string(),
            }),
            Err(e) => Err(redis_down(e)),
        }
    }

    pub async fn list(
        &self,
        filter: &Filter,
        offset: usize,
        limit: usize,
    ) -> Result<Page, DlqError> {
        filter.validate().map_err(DlqError::Invalid)?;
        let _slot = self.listing_slot().await?;
        let mut conn = self.redis.get().await.map_err(redis_down)?;
        queue::list(&mut *conn, &self.keys, filter, offset, limit)
            .await
            .map_err(redis_down)
    }

    /// Entries per topic, also set on the `dlq_depth` gauge.
    pub async fn depths(&self) -> Result<Vec<(String, u64)>, DlqError> {
        let mut conn = self.redis.get().await.map_err(redis_down)?;
        let depths = queue::depths(&mut *conn, &self.keys)
            .await
            .map_err(redis_down)?;
        DlqDepthRead { depths: &depths }.emit();
        Ok(depths)
    }
}
