//! The API's answers as a viewer sees them (see `masking`): a dead letter's
//! payload masked and its error scrubbed, audit rows' errors scrubbed of
//! the masked values they quote, projection rows masked column by column.
//! Every handler that answers a payload, an error about one or a
//! projection row goes through here; with no `masking.fields` each is the
//! identity.

use std::collections::HashMap;

use uuid::Uuid;

use crate::api::error::ApiError;
use crate::api::read::query_failed;
use crate::dlq::DlqEntry;
use crate::masking::{MaskedPayload, Masking, Table};
use crate::store::audit::AuditRow;
use crate::store::explorer;
use crate::store::message_projection::ProjectionRow;

/// A dead letter with its payload masked (written as `utf8` then) and
/// its error text scrubbed.
pub fn dead_letter(masking: &Masking, mut entry: DlqEntry) -> DlqEntry {
    if masking.is_off() {
        return entry;
    }
    // A payload that cannot be decoded is masked as the text it is stored as.
    let bytes = match entry.payload_bytes() {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return entry,
        Err(_) => entry.payload.clone().unwrap_or_default().into_bytes(),
    };
    let shown = masking.payload(&entry.topic, &bytes);
    if shown.pointers.is_empty() {
        return entry;
    }
    entry.error = shown.scrub(&entry.error);
    entry.payload = Some(String::from_utf8_lossy(&shown.bytes).into_owned());
    entry.payload_encoding = "utf8".into();
    entry
}

/// Scrubs the errors of `rows` (audit entries) of the masked values of
/// their messages' payloads, read in one query for the rows that have an
/// error.
pub async fn audit_rows(
    conn: &mut diesel_async::AsyncPgConnection,
    masking: &Masking,
    rows: &mut [AuditRow],
) -> Result<(), ApiError> {
    if masking.is_off() {
        return Ok(());
    }
    let mut ids: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.message_id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort_unstable();
    ids.dedup();
    let shown: HashMap<Uuid, MaskedPayload> = explorer::payloads(conn, &ids)
        .await
        .map_err(query_failed)?
        .into_iter()
        .map(|p| {
            let bytes = p.payload.unwrap_or_default();
            (p.message_id, masking.payload(&p.topic, &bytes))
        })
        .collect();
    for row in rows {
        if let (Some(error), Some(shown)) = (&row.error, shown.get(&row.message_id)) {
            row.error = Some(shown.scrub(error));
        }
    }
    Ok(())
}

/// A projection row masked as its table's rows are.
pub fn projection(masking: &Masking, mut p: ProjectionRow) -> ProjectionRow {
    if let Some(table) = Table::from_name(p.table) {
        masking.table(table).apply(&mut p.row);
    }
    p
}
