//! Query-parameter checks shared by the paged endpoints (search, explorer):
//! a 400 naming the parameter, RFC 3339 times, and opaque keyset cursors
//! (URL-safe base64 of a small JSON object).

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::error::ApiError;

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

/// `[from, to)`: either end may be open.
pub type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A time window from two RFC 3339 parameters; `from` must not be after
/// `to`.
pub fn window(from: Option<String>, to: Option<String>) -> Result<Window, ApiError> {
    let (from, to) = (time("from", from)?, time("to", to)?);
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(bad("from", "must not be after `to`"));
        }
    }
    Ok((from, to))
}

/// The `limit` parameter: `default` when absent, else 1 to `max`.
pub fn page_size(value: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| bad("limit", &format!("a whole number from 1 to {max}"))),
    }
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
