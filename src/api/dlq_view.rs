//! A dead letter as the API shows it: masked (see `masked`), and, on a
//! schema topic (`formats`), with the JSON its payload decodes to beside
//! the schema it was written with. `payload` stays the record's own
//! bytes, which a replay republishes.

use futures::future::join_all;
use serde::Serialize;

use crate::api::masked;
use crate::dlq::DlqEntry;
use crate::formats::forward::SchemaRef;
use crate::formats::Formats;
use crate::masking::Masking;

/// A dead letter, as listed and shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DlqView {
    #[serde(flatten)]
    pub entry: DlqEntry,
    /// On a schema topic: the JSON the payload decodes to (its
    /// `masking.fields` masked); absent when it does not decode (a
    /// `wire_format`, `unknown_schema` or `schema_mismatch` failure) or
    /// the registry does not answer now.
    pub payload_json: Option<serde_json::Value>,
    /// On a schema topic: the schema the payload was written with.
    pub schema: Option<SchemaRef>,
}

/// `GET /dlq`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DlqPage {
    pub offset: usize,
    pub limit: usize,
    pub count: usize,
    /// Where the next page starts; null on the last page.
    pub next_offset: Option<usize>,
    pub entries: Vec<DlqView>,
}

/// `entry` as shown: masked, and decoded when its topic has a schema.
pub async fn view(masking: &Masking, formats: &Formats, entry: DlqEntry) -> DlqView {
    let decoded = match entry.payload_bytes() {
        Ok(Some(bytes)) => formats.readable_json(&entry.topic, &bytes).await,
        _ => None,
    };
    let mut entry = masked::dead_letter(masking, entry);
    let Some((json, schema)) = decoded else {
        return DlqView {
            entry,
            payload_json: None,
            schema: None,
        };
    };
    let shown = masking.payload(&entry.topic, &json);
    entry.error = shown.scrub(&entry.error);
    DlqView {
        entry,
        payload_json: shown.json,
        schema: Some(schema),
    }
}

/// A page of entries as shown, decoded concurrently (so a registry that
/// does not answer costs one timeout, not one per entry).
pub async fn page(masking: &Masking, formats: &Formats, entries: Vec<DlqEntry>) -> Vec<DlqView> {
    join_all(entries.into_iter().map(|e| view(masking, formats, e))).await
}
