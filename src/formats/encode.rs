//! Writing records in the wire format (`custodian produce --format`, the
//! outbox relay): a subject's schema registered (or its latest version
//! looked up), then each JSON payload encoded behind its header.

use std::sync::Arc;

use super::mismatch::Mismatch;
use super::registry::{FetchError, Registry};
use super::schema::{Kind, Schema};
use super::wire;

/// A subject's schema, ready to encode with.
pub struct Encoder {
    schema: Arc<Schema>,
}

impl Encoder {
    /// Registers `text` under `subject` (or, with no text, takes the
    /// subject's latest version); the schema must be of `kind`.
    pub async fn new(
        registry: &Registry,
        subject: &str,
        kind: Kind,
        text: Option<&str>,
    ) -> Result<Encoder, FetchError> {
        let id = match text {
            Some(text) => registry.register(subject, kind, text).await?,
            None => registry.latest(subject).await?,
        };
        let schema = registry.get(id).await?;
        if schema.kind != kind {
            return Err(FetchError::Unreadable {
                id,
                reason: format!(
                    "subject {subject} holds a {} schema, not {}",
                    schema.kind.as_str(),
                    kind.as_str()
                ),
            });
        }
        Ok(Encoder { schema })
    }

    pub fn schema_id(&self) -> u32 {
        self.schema.id
    }

    /// `json` (a JSON text) in the wire format.
    pub fn encode(&self, json: &[u8]) -> Result<Vec<u8>, Mismatch> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| Mismatch(format!("not JSON: {e}")))?;
        let (body, indexes) = self.schema.encode(&value)?;
        let mut out = wire::header(self.schema.id, indexes.as_deref());
        out.extend_from_slice(&body);
        Ok(out)
    }
}
