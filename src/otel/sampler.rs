//! The sampler: parent-based, a new trace kept with `telemetry.sample_ratio`
//! (by trace id, so every instance decides alike), but a span that says it
//! is a failure (`custodian.failure = true` when it is created: a dead
//! letter, a failed attempt) always kept, whatever its trace's decision.
//! Tail decisions are not possible in-process: the failure's own span is
//! what is kept of an unsampled trace.

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

/// The attribute that marks a failure's span.
pub const FAILURE: &str = "custodian.failure";

#[derive(Debug, Clone)]
pub struct KeepFailures {
    inner: Sampler,
}

impl KeepFailures {
    pub fn new(ratio: f64) -> KeepFailures {
        KeepFailures {
            inner: Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
        }
    }
}

impl ShouldSample for KeepFailures {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let failure = attributes
            .iter()
            .any(|kv| kv.key.as_str() == FAILURE && kv.value == Value::Bool(true));
        if failure {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: parent
                    .map(|cx| cx.span().span_context().trace_state().clone())
                    .unwrap_or_default(),
            };
        }
        self.inner
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(sampler: &KeepFailures, attributes: &[KeyValue]) -> SamplingDecision {
        sampler
            .should_sample(
                None,
                TraceId::from_bytes([7; 16]),
                "x",
                &SpanKind::Consumer,
                attributes,
                &[],
            )
            .decision
    }

    #[test]
    fn a_failure_is_kept_at_ratio_zero_and_the_rest_by_the_ratio() {
        let none = KeepFailures::new(0.0);
        assert_eq!(decide(&none, &[]), SamplingDecision::Drop);
        assert_eq!(
            decide(&none, &[KeyValue::new(FAILURE, true)]),
            SamplingDecision::RecordAndSample
        );
        let all = KeepFailures::new(1.0);
        assert_eq!(decide(&all, &[]), SamplingDecision::RecordAndSample);
    }
}
