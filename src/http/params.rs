//! Query-parameter checks shared by the paged endpoints (search, explorer):
//! a 400 naming the parameter, RFC 3339 times, and opaque keyset cursors
//! (URL-safe base64 of a small JSON object).

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::http::error::ApiError;

pub fn bad(field: &str, reason: &str) -> ApiError {
    ApiError::BadRequest(format!("{field}: {reason}"))
}

pub fn time(field: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(&v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| bad(field, "not an RFC 3339 time like 2024-01-01T00:00:00Z"))
        })
        .transpose()
}

pub fn encode_cursor<T: Serialize>(cursor: &T) -> String {
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The cursor, or none if the text is not one this code made.
pub fn decode_cursor<T: DeserializeOwned>(text: &str) -> Option<T> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|json| serde_json::from_slice::<T>(&json).ok())
}
