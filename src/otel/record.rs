//! A record's trace: its consumer "process" span, which continues the
//! record's trace context (or starts a trace), with the messaging semantic
//! conventions' attributes, and the child spans the stages open on it:
//! decode and enrich, apply, each http attempt (a client span whose
//! context goes to the downstream), the audit write, the dead-letter push.
//! The span ends when the record's outcome is durable (its last handle is
//! dropped). Empty when tracing is off: no span is created at all.

use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::context;
use super::TARGET;
use crate::kafka::envelope::Envelope;

/// The record's span, and whether its trace is sampled (an unsampled
/// record gets no children but its dead letter's: they would be dropped,
/// and they cost as much to make).
#[derive(Debug, Default, Clone)]
pub struct RecordTrace(Option<Span>, bool);

impl RecordTrace {
    /// The "process" span of `envelope`, read by `group`, continuing the
    /// trace its headers carry.
    pub fn start(envelope: &Envelope, group: &str) -> RecordTrace {
        if !super::enabled() {
            return RecordTrace(None, false);
        }
        let span = tracing::info_span!(
            target: TARGET,
            "process",
            otel.name = %format!("process {}", envelope.topic),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.name = "process",
            messaging.operation.type = "process",
            messaging.destination.name = %envelope.topic,
            messaging.destination.partition.id = %envelope.partition,
            messaging.consumer.group.name = group,
            messaging.kafka.offset = envelope.offset,
            messaging.message.body.size = envelope.payload.as_ref().map_or(0, Vec::len),
            messaging.message.id = Empty,
            custodian.event_type = Empty,
        );
        // Before the span starts (entered, or its context read).
        let _ = span.set_parent(context::from_headers(&envelope.headers));
        let sampled = {
            use opentelemetry::trace::TraceContextExt;
            span.context().span().span_context().is_sampled()
        };
        RecordTrace(Some(span), sampled)
    }

    /// The record's span, when its trace is sampled: the parent of its
    /// children.
    fn sampled(&self) -> Option<&Span> {
        self.0.as_ref().filter(|_| self.1)
    }

    /// The record's span, when tracing is on.
    pub fn span(&self) -> Option<&Span> {
        self.0.as_ref()
    }

    /// Names the message once it is decoded.
    pub fn decoded(&self, message_id: uuid::Uuid, event_type: Option<&str>) {
        if let Some(span) = &self.0 {
            span.record("messaging.message.id", tracing::field::display(message_id));
            if let Some(event_type) = event_type {
                span.record("custodian.event_type", event_type);
            }
        }
    }

    /// Decoding and enriching it.
    pub fn decode(&self) -> Option<Span> {
        let parent = self.sampled()?;
        Some(tracing::info_span!(target: TARGET, parent: parent, "decode"))
    }

    /// Applying its stored effect (projection or ledger row).
    pub fn apply(&self) -> Option<Span> {
        let parent = self.sampled()?;
        Some(tracing::info_span!(target: TARGET, parent: parent, "apply"))
    }

    /// Writing its audit entries (and committing them).
    pub fn audit_write(&self, chained: bool) -> Option<Span> {
        let parent = self.sampled()?;
        Some(tracing::info_span!(
            target: TARGET,
            parent: parent,
            "audit write",
            db.system.name = "postgresql",
            custodian.chained = chained,
        ))
    }

    /// One http delivery attempt to `route` (a client span; its context
    /// goes to the downstream as `traceparent`). Unsampled, there is none,
    /// and the downstream gets the record's context (see
    /// [`RecordTrace::context`]).
    pub fn http(&self, route: &str) -> Option<Span> {
        let parent = self.sampled()?;
        Some(tracing::info_span!(
            target: TARGET,
            parent: parent,
            "POST",
            otel.kind = "client",
            http.request.method = "POST",
            url.full = route,
            http.response.status_code = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        ))
    }

    /// Its push to the dead-letter queue: a failure's span, kept whatever
    /// the sampling ratio.
    pub fn dead_letter(&self, error_kind: &str) -> Option<Span> {
        let parent = self.0.as_ref()?;
        Some(tracing::info_span!(
            target: TARGET,
            parent: parent,
            "dead letter",
            custodian.failure = true,
            error.type = error_kind,
            otel.status_code = "ERROR",
        ))
    }

    /// The headers that carry the record's own context (for a downstream
    /// of an unsampled record: its trace, marked not sampled).
    pub fn context(&self) -> Vec<(String, String)> {
        self.0.as_ref().map(context::headers_of).unwrap_or_default()
    }

    /// Its trace id (32 hex digits), when its trace is exported: sampled,
    /// or `dead` (a dead letter's span is kept whatever the sampling).
    pub fn trace_id(&self, dead: bool) -> Option<String> {
        let span = self.0.as_ref().filter(|_| self.1 || dead)?;
        context::trace_id_of(span)
    }
}

/// A producer span for a record custodian publishes (`what`: `replay` or
/// `outbox`), continuing the trace of `traceparent` (a dead letter's, an
/// outbox row's); its context goes on the record, so the record's next
/// "process" span is its child. None when traces are off.
pub fn send(what: &'static str, traceparent: Option<&str>, topic: &str) -> Option<Span> {
    if !super::enabled() {
        return None;
    }
    let span = tracing::info_span!(
        target: TARGET,
        "replay",
        otel.name = %format!("send {topic}"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.name = "send",
        messaging.operation.type = "send",
        messaging.destination.name = topic,
        custodian.send = what,
    );
    if let Some(parent) = traceparent.and_then(context::from_traceparent) {
        let _ = span.set_parent(parent);
    }
    Some(span)
}
