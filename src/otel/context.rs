//! W3C trace context (`traceparent`, `tracestate`) in Kafka record headers
//! and HTTP requests. A replayed record carries custodian's own
//! `custodian-traceparent` (the replay's span, which continues the dead
//! letter's trace) beside its producer's untouched `traceparent`.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header custodian's replay sets: its span's context.
pub const REPLAY_TRACEPARENT: &str = "custodian-traceparent";
const TRACEPARENT: &str = "traceparent";

/// A record's headers, read as a carrier: the last of a name wins.
struct Headers<'a>(&'a [(String, Option<Vec<u8>>)], Option<&'a str>);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // `traceparent` read from custodian's own header when it is there.
        let key = match (key, self.1) {
            (TRACEPARENT, Some(own)) => own,
            _ => key,
        };
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_deref())
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// The context a record's headers carry: a replay's own
/// (`custodian-traceparent`) first, else its producer's `traceparent`;
/// an empty context when neither is valid.
pub fn from_headers(headers: &[(String, Option<Vec<u8>>)]) -> Context {
    let own = headers
        .iter()
        .any(|(k, _)| k == REPLAY_TRACEPARENT)
        .then_some(REPLAY_TRACEPARENT);
    TraceContextPropagator::new().extract(&Headers(headers, own))
}

/// The context a stored `traceparent` names, if it is valid.
pub fn from_traceparent(traceparent: &str) -> Option<Context> {
    let headers = [(
        TRACEPARENT.to_owned(),
        Some(traceparent.as_bytes().to_vec()),
    )];
    let cx = TraceContextPropagator::new().extract(&Headers(&headers, None));
    cx.span().span_context().is_valid().then_some(cx)
}

#[derive(Default)]
struct Pairs(Vec<(String, String)>);

impl Injector for Pairs {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// `span`'s context as headers (`traceparent`, and `tracestate` when it
/// has one); none when the span is not exported.
pub fn headers_of(span: &tracing::Span) -> Vec<(String, String)> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut pairs = Pairs::default();
    TraceContextPropagator::new().inject_context(&cx, &mut pairs);
    pairs.0
}

/// `span`'s `traceparent`, if it is exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    headers_of(span)
        .into_iter()
        .find(|(k, _)| k == TRACEPARENT)
        .map(|(_, v)| v)
}

/// `span`'s trace id (32 hex digits), if it is exported.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
