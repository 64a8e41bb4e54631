//! The `masking` section: which payload fields are personal data, masked in
//! every answer of the API and the console unless an approver unmasks one
//! message (see `masking`).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::pointer::Pointer;
use super::{invalid, ConfigError, RouteSettings};
use crate::handlers::registry::HandlerKind;

/// Masked payload fields, and the key their fingerprints are made with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingSettings {
    /// One rule per handler kind or topic; a message's masked fields are
    /// those of every rule that applies to it.
    pub fields: Vec<MaskRule>,
    /// The HMAC key of the fingerprints (at least 32 bytes; required with
    /// any rule). Every instance needs the same one for fingerprints to
    /// match across them; changing it changes every fingerprint. Never
    /// logged.
    #[serde(default)]
    pub fingerprint_key: Option<SecretString>,
}

/// The payload fields masked on the messages of one handler kind or topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// Messages routed to this handler kind (`transactions`, `domain`,
    /// `http`, `audit`); or `topic`.
    #[serde(default)]
    pub handler: Option<HandlerKind>,
    /// Messages read from this topic; or `handler`.
    #[serde(default)]
    pub topic: Option<String>,
    /// JSON pointers (RFC 6901) into the payload: `/data/email`,
    /// `/card/number`; one naming an object or array masks every value
    /// under it.
    pub pointers: Vec<String>,
}

pub(super) fn defaults() -> serde_json::Value {
    serde_json::json!({ "fields": [] })
}

impl MaskingSettings {
    /// `topics` is `kafka.topics`, `routes` the route table: a rule that
    /// could never apply (a topic not consumed, a kind no route sends to)
    /// would leave its fields in clear without a word, so it is refused.
    pub(super) fn validate(
        &self,
        topics: &[String],
        routes: &[RouteSettings],
    ) -> Result<(), ConfigError> {
        for (i, rule) in self.fields.iter().enumerate() {
            rule.validate(i)?;
            rule.reachable(i, topics, routes)?;
        }
        match &self.fingerprint_key {
            None if !self.fields.is_empty() => Err(invalid(
                "masking.fingerprint_key",
                "is required with masking.fields (at least 32 bytes)",
            )),
            // A secret: say what is wrong, never what it is.
            Some(key) if key.expose_secret().len() < 32 => Err(invalid(
                "masking.fingerprint_key",
                "must be at least 32 bytes",
            )),
            _ => Ok(()),
        }
    }
}

impl MaskRule {
    fn validate(&self, i: usize) -> Result<(), ConfigError> {
        match (&self.handler, &self.topic) {
            (None, None) | (Some(_), Some(_)) => {
                return Err(invalid(
                    format!("masking.fields[{i}]"),
                    "names either `handler` or `topic`",
                ))
            }
            (None, Some(t)) if t.trim().is_empty() => {
                return Err(invalid(
                    format!("masking.fields[{i}].topic"),
                    "must not be empty",
                ))
            }
            _ => {}
        }
        if self.pointers.is_empty() {
            return Err(invalid(
                format!("masking.fields[{i}].pointers"),
                "must list at least one JSON pointer",
            ));
        }
        for (j, p) in self.pointers.iter().enumerate() {
            Pointer::parse(p).map_err(|reason| {
                invalid(
                    format!("masking.fields[{i}].pointers[{j}]"),
                    format!("`{p}` is not a JSON pointer: {reason}"),
                )
            })?;
        }
        Ok(())
    }

    fn reachable(
        &self,
        i: usize,
        topics: &[String],
        routes: &[RouteSettings],
    ) -> Result<(), ConfigError> {
        if let Some(kind) = self.handler {
            if !routes.iter().any(|r| r.handler == kind) {
                return Err(invalid(
                    format!("masking.fields[{i}].handler"),
                    format!("no route sends messages to the {kind} handler, so the rule would never apply"),
                ));
            }
        }
        // A `^pattern` in kafka.topics subscribes by regular expression:
        // the topics are not known here.
        if let Some(topic) = &self.topic {
            if !topics.iter().any(|t| t.starts_with('^')) && !topics.contains(topic) {
                return Err(invalid(
                    format!("masking.fields[{i}].topic"),
                    format!("`{topic}` is not in kafka.topics, so the rule would never apply"),
                ));
            }
        }
        Ok(())
    }

    /// The rule's pointers, parsed (checked at start).
    pub fn parsed(&self) -> Vec<Pointer> {
        self.pointers
            .iter()
            .filter_map(|p| Pointer::parse(p).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::Settings;

    const KEY: &str = "a-fingerprint-key-of-32-bytes-or-more";

    #[test]
    fn rules_are_checked_naming_the_key() {
        let s = Settings::from_overrides(&[]).expect("defaults load");
        assert!(s.masking.fields.is_empty());
        for (overrides, named) in [
            (
                vec![(
                    "masking.fields",
                    json!([{"handler": "domain", "pointers": ["/data/email"]}]),
                )],
                "masking.fingerprint_key",
            ),
            (
                vec![
                    (
                        "masking.fields",
                        json!([
                            {"handler": "domain", "pointers": ["/data/email"]},
                            {"topic": "transactions", "pointers": ["/a"]},
                            {"handler": "transactions", "pointers": ["transaction/user_id"]},
                        ]),
                    ),
                    ("masking.fingerprint_key", json!(KEY)),
                ],
                "masking.fields[2].pointers[0]",
            ),
            (
                vec![
                    (
                        "masking.fields",
                        json!([{"handler": "domain", "pointers": ["/a", "/b~2"]}]),
                    ),
                    ("masking.fingerprint_key", json!(KEY)),
                ],
                "masking.fields[0].pointers[1]",
            ),
            (
                vec![
                    (
                        "masking.fields",
                        json!([{"handler": "domain", "topic": "transactions", "pointers": ["/a"]}]),
                    ),
                    ("masking.fingerprint_key", json!(KEY)),
                ],
                "masking.fields[0]",
            ),
            (
                vec![
                    (
                        "masking.fields",
                        json!([{"topic": "transactions", "pointers": []}]),
                    ),
                    ("masking.fingerprint_key", json!(KEY)),
                ],
                "masking.fields[0].pointers",
            ),
            (
                vec![
                    (
                        "masking.fields",
                        json!([{"topic": "transactoins", "pointers": ["/a"]}]),
                    ),
                    ("masking.fingerprint_key", json!(KEY)),
                ],
                "masking.fields[0].topic",
            ),
            (
                vec![
                    (
                        "masking.fields",
                        json!([{"handler": "http", "pointers": ["/a"]}]),
                    ),
                    ("masking.fingerprint_key", json!(KEY)),
                ],
                "masking.fields[0].handler",
            ),
        ] {
            let err = Settings::from_overrides(&overrides).expect_err(named);
            assert!(
                err.to_string().contains(&format!("`{named}`")),
                "{named}: {err}"
            );
        }
    }

    #[test]
    fn the_key_is_never_shown() {
        let err = Settings::from_overrides(&[
            (
                "masking.fields",
                json!([{"handler": "domain", "pointers": ["/data/email"]}]),
            ),
            ("masking.fingerprint_key", json!("short-secret")),
        ])
        .expect_err("too short");
        assert!(err.to_string().contains("masking.fingerprint_key"), "{err}");
        assert!(!err.to_string().contains("short-secret"), "{err}");
        let s = Settings::from_overrides(&[
            (
                "masking.fields",
                json!([{"topic": "transactions", "pointers": ["/card/number"]}]),
            ),
            ("masking.fingerprint_key", json!(KEY)),
        ])
        .expect("loads");
        assert!(!format!("{s:?}").contains(KEY));
        assert_eq!(s.masking.fields[0].parsed().len(), 1);
    }
}
