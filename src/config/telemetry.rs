//! The `telemetry` section: OpenTelemetry traces, exported over OTLP/HTTP
//! (protobuf) when `otlp_endpoint` is set, off otherwise.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, invalid, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The collector's traces URL, whole (`http://collector:4318/v1/traces`);
    /// unset: no traces.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The share of new traces kept (by trace id, so every instance decides
    /// alike); a record whose producer sampled its trace is kept, one it
    /// dropped is not; dead letters always are.
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Longest one export may take.
    #[serde(deserialize_with = "duration")]
    pub export_timeout: Duration,
    /// Most spans waiting for export; past it new ones are dropped (and the
    /// exporter says so), never the pipeline slowed.
    pub queue_size: usize,
}

pub(super) fn defaults() -> serde_json::Value {
    serde_json::json!({
        "sample_ratio": 1.0,
        "service_name": "custodian",
        "export_timeout": "5s",
        "queue_size": 8192,
    })
}

impl TelemetrySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.otlp_endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    "an http:// or https:// URL (the collector's /v1/traces)",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid("telemetry.sample_ratio", "between 0 and 1"));
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        if self.export_timeout.is_zero() || self.export_timeout > Duration::from_secs(60) {
            return Err(invalid(
                "telemetry.export_timeout",
                "more than zero, at most 60s",
            ));
        }
        if !(64..=1_000_000).contains(&self.queue_size) {
            return Err(invalid("telemetry.queue_size", "64 to 1000000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    #[test]
    fn telemetry_settings_are_checked_by_key() {
        let s = Settings::from_overrides(&[]).expect("defaults load");
        assert!(s.telemetry.otlp_endpoint.is_none());
        for (key, value) in [
            (
                "telemetry.otlp_endpoint",
                serde_json::json!("collector:4318"),
            ),
            ("telemetry.sample_ratio", serde_json::json!(1.5)),
            ("telemetry.export_timeout", serde_json::json!("0s")),
        ] {
            let err = Settings::from_overrides(&[(key, value)]).expect_err(key);
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }
}
