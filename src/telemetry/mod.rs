//! Tracing setup: JSON lines for machines, a plain format on a terminal.
//! `RUST_LOG` wins over the configured level. (Cutting long fields for a
//! log line is [`crate::text::clip`], a leaf the configuration uses too.)

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogSettings;

pub(crate) mod events;

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let noise = ClientNoise {
        show: filter.max_level_hint() >= Some(LevelFilter::DEBUG),
    };
    let json = match settings.format.as_str() {
        "json" => true,
        "plain" => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let format = fmt::layer()
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    let format = if json {
        format
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed()
    } else {
        format.boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(noise)
        .with(format)
        .try_init();
}

/// actix-http logs a client's broken request (a malformed header, a
/// connection reset mid-request) as `ERROR stream error: …`, though the
/// client got its 400 and custodian did nothing wrong. Those lines are
/// dropped unless the filter asks for debug output. (tracing cannot lower
/// another crate's level, so when shown they keep actix's label.)
struct ClientNoise {
    /// The filter asks for debug: let them through.
    show: bool,
}

const DISPATCHER: &str = "actix_http::h1::dispatcher";

impl<S: Subscriber> Layer<S> for ClientNoise {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if self.show || *meta.level() != Level::ERROR || meta.target() != DISPATCHER {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        !message.0.starts_with("stream error")
    }
}

/// An event's `message` field, as text.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Everything the fmt layer writes, for inspection.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(level: &str) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let filter = EnvFilter::new(level);
        let noise = ClientNoise {
            show: filter.max_level_hint() >= Some(LevelFilter::DEBUG),
        };
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(noise)
            .with(fmt::layer().with_writer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            // What actix-http emits for a malformed header…
            tracing::error!(target: "actix_http::h1::dispatcher", "stream error: {}", "Parse error: invalid Header provided");
            // …and its errors that are not the client's.
            tracing::error!(target: "actix_http::h1::dispatcher", "Internal server error: unexpected eof");
            tracing::error!("custodian's own error");
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        text
    }

    #[test]
    fn a_clients_broken_request_is_logged_only_when_debugging() {
        let info = logged("info");
        assert!(!info.contains("stream error"), "{info}");
        assert!(info.contains("unexpected eof"), "{info}");
        assert!(info.contains("custodian's own error"), "{info}");
        let debug = logged("info,actix_http=debug");
        assert!(debug.contains("stream error"), "{debug}");
    }
}
