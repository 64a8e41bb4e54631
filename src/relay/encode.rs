//! The relay's payload encodings (`relay.encodings`): a topic's rows, JSON
//! in the outbox, published in the wire format with their subject's
//! latest schema. A row that does not fit the schema is the row's fault
//! (refused: its aggregate waits and tries again, the error on the row);
//! a registry that does not answer is an outage (nothing counted).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::Settings;
use crate::formats::encode::Encoder;
use crate::formats::registry::{Endpoint, FetchError, Registry};
use crate::formats::schema::Kind;
use crate::relay::outbox::Pending;
use crate::relay::record::SendFailure;

/// The encodings, and each subject's encoder once looked up.
pub struct Encodings {
    by_topic: HashMap<String, (Kind, String)>,
    registry: Option<Registry>,
    ready: Mutex<HashMap<String, Arc<Encoder>>>,
}

impl Encodings {
    pub fn from_settings(settings: &Settings) -> Result<Encodings, reqwest::Error> {
        let by_topic: HashMap<String, (Kind, String)> = settings
            .relay
            .encodings
            .iter()
            .filter_map(|e| {
                let kind = crate::formats::schema_kind(e.format)?;
                Some((e.topic.clone(), (kind, e.subject())))
            })
            .collect();
        let registry = match Endpoint::configured(&settings.schema_registry) {
            Some(endpoint) if !by_topic.is_empty() => Some(Registry::new(
                endpoint,
                settings.schema_registry.cache_size,
            )?),
            _ => None,
        };
        Ok(Encodings {
            by_topic,
            registry,
            ready: Mutex::new(HashMap::new()),
        })
    }

    /// The bytes to publish for `row`: its payload as it is, or encoded
    /// when its topic has an encoding.
    pub async fn payload<'r>(
        &self,
        row: &'r Pending,
    ) -> Result<Option<Cow<'r, [u8]>>, SendFailure> {
        let Some((kind, subject)) = self.by_topic.get(&row.topic) else {
            return Ok(row.payload.as_deref().map(Cow::Borrowed));
        };
        let encoder = self.encoder(*kind, subject).await?;
        let json = row.payload.as_deref().unwrap_or_default();
        encoder
            .encode(json)
            .map(|bytes| Some(Cow::Owned(bytes)))
            .map_err(|e| {
                SendFailure::Refused(format!("the payload does not fit subject {subject}: {e}"))
            })
    }

    async fn encoder(&self, kind: Kind, subject: &str) -> Result<Arc<Encoder>, SendFailure> {
        if let Some(found) = self.ready.lock().ok().and_then(|r| r.get(subject).cloned()) {
            return Ok(found);
        }
        let registry = self
            .registry
            .as_ref()
            .ok_or_else(|| SendFailure::Refused("no schema_registry.url".into()))?;
        let encoder = Encoder::new(registry, subject, kind, None)
            .await
            .map(Arc::new)
            .map_err(|e| match e {
                FetchError::Unavailable(e) => SendFailure::Outage(e),
                other => SendFailure::Refused(other.to_string()),
            })?;
        if let Ok(mut ready) = self.ready.lock() {
            ready.insert(subject.to_owned(), Arc::clone(&encoder));
        }
        Ok(encoder)
    }
}
