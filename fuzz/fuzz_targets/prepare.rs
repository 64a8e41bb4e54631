//! Fuzz target: any record through decoding, message ids and steering
//! headers (`pipeline::prepare`). It must not panic, and a record that
//! cannot be applied must become a dead letter that gives back its key,
//! payload and headers byte for byte (tests/it/pipeline/properties.rs states the same
//! with generated inputs).
#![no_main]

use std::sync::{Arc, OnceLock};

use chrono::{TimeZone, Utc};
use custodian::kafka::envelope::Envelope;
use custodian::pipeline::prepare;
use custodian::pipeline::route_table::Routes;
use custodian::pipeline::steering::HeaderKey;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/it/support/dead_letter.rs"]
mod dead_letter;

fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(|| {
        Routes::new(
            &custodian::config::Settings::from_overrides(&[])
                .expect("defaults")
                .routes,
        )
    })
}

/// The input's first byte chooses the shape; the rest splits on 0xFE into
/// payload, key, then header name/value pairs (a payload-only input is the
/// common case, so JSON dictionaries and corpora work unchanged).
fn envelope(data: &[u8]) -> Envelope {
    let (flags, rest) = data.split_first().map_or((0, data), |(f, r)| (*f, r));
    let mut parts = rest.split(|b| *b == 0xFE);
    let payload = parts.next().map(<[u8]>::to_vec);
    let key = parts.next().map(<[u8]>::to_vec);
    let mut headers = Vec::new();
    while let Some(name) = parts.next() {
        let value = parts.next().map(<[u8]>::to_vec);
        headers.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    Envelope {
        topic: Arc::from("fuzz"),
        partition: i32::from(flags & 0x3),
        offset: i64::from(flags) << 40,
        key,
        payload: if flags & 0x80 != 0 { None } else { payload },
        headers,
        unreadable_headers: flags & 0x40 != 0,
        timestamp_ms: (flags & 0x20 != 0).then_some(i64::MAX - i64::from(flags)),
        received_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
    }
}

fuzz_target!(|data: &[u8]| {
    let envelope = envelope(data);
    let key = HeaderKey::new(b"fuzz-key-0123456789abcdef0123456789");
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let item = prepare(envelope.clone(), routes(), &key, now);
    let Some(entry) = dead_letter::parked(item, now) else {
        return;
    };
    assert!(!entry.error_kind.is_empty(), "an unclassified failure");
    assert_eq!(entry.payload_bytes().expect("payload"), envelope.payload);
    assert_eq!(entry.key_bytes().expect("key"), envelope.key);
    assert_eq!(entry.header_bytes().expect("headers"), envelope.headers);
});
