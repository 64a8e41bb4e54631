//! Cutting outside-controlled text to a size fit for one log line or error.

use std::borrow::Cow;

/// Most characters of an outside-controlled field (key, event type, error
/// text quoting input) in one log line.
pub const LOGGED_FIELD_MAX: usize = 256;

/// `text`, cut to [`LOGGED_FIELD_MAX`] characters with its original length
/// in bytes noted, so one hostile record cannot write a megabyte log line.
pub fn clip(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(LOGGED_FIELD_MAX) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len())),
    }
}
