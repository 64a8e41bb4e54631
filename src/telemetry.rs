//! Tracing setup: JSON lines for machines, a plain format on a terminal.
//! `RUST_LOG` wins over the configured level. And [`clip`], for fields whose
//! size a Kafka producer or an HTTP client chooses.

use std::borrow::Cow;
use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogSettings;

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match settings.format.as_str() {
        "json" => true,
        "plain" => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
