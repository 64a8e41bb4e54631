//! Cutting outside-controlled text to a size fit for one log line or error:
//! for fields whose size a Kafka producer or an HTTP client chooses. A leaf.

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

/// Lower-case hex, as digests are shown in dead letters and errors.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::{clip, LOGGED_FIELD_MAX};

    #[test]
    fn long_fields_are_clipped_with_their_length() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(1000);
        let clipped = clip(&long);
        assert!(clipped.starts_with(&"é".repeat(LOGGED_FIELD_MAX)));
        assert!(clipped.ends_with("… (2000 bytes)"), "{clipped}");
        assert!(clipped.chars().count() < LOGGED_FIELD_MAX + 20);
    }
}
