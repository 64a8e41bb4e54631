//! Masking personal data (issue 27, part 5): the payload fields
//! `masking.fields` names are masked in every answer of the API (the
//! explorer, the message view and its record, dead letters, the read API,
//! search), and so in the console, for every caller; an approver or admin
//! unmasks one message at a time, each time an audited entry
//! (`POST /messages/{id}/unmask`, `api::unmask`).
//!
//! - [`pointer`]: JSON pointers (RFC 6901), as rules name fields.
//! - [`mask`]: the masking itself, pure: masks and their keyed
//!   fingerprints, whole masks of payloads that are not JSON, error texts
//!   scrubbed of the values they quote.
//! - [`projection`]: which projection column holds which payload field.
//! - [`search`]: a transaction's search text with its masked values in
//!   place, to check a hit against.
//!
//! This file: which rules apply to a message or a projection table.

pub mod mask;
pub mod projection;
pub mod search;

use serde_json::Value;

pub use crate::config::pointer::Pointer;
pub use mask::{Fingerprint, MASK_PREFIX};
pub use projection::Table;

use crate::config::Settings;
use crate::handlers::registry::HandlerKind;
use crate::pipeline::route_table::Routes;

/// What a rule's pointers apply to.
#[derive(Debug)]
enum Applies {
    Handler(HandlerKind),
    Topic(String),
}

#[derive(Debug)]
struct Rule {
    applies: Applies,
    pointers: Vec<Pointer>,
}

/// The masking rules, with what they need to know which apply: the route
/// table (a message's handler kind) and the key. Built once at start.
#[derive(Debug, Default)]
pub struct Masking {
    rules: Vec<Rule>,
    fingerprint: Option<Fingerprint>,
    routes: Routes,
    /// Each route's topic (none: every topic) and handler kind.
    route_kinds: Vec<(Option<String>, HandlerKind)>,
}

/// A payload as a viewer sees it.
#[derive(Debug, Clone)]
pub struct MaskedPayload {
    /// The bytes to show: the original ones when nothing is masked, else
    /// the masked JSON (compact), or a payload that is not JSON masked whole.
    pub bytes: Vec<u8>,
    /// The same, parsed, when it is JSON.
    pub json: Option<Value>,
    /// The pointers masked (`""`: the whole payload); empty: nothing.
    pub pointers: Vec<String>,
    /// The masked values and their masks, for [`MaskedPayload::scrub`].
    leaves: Vec<(String, String)>,
}

impl MaskedPayload {
    /// `text` (an error message about this payload) without the masked
    /// values it quotes.
    pub fn scrub(&self, text: &str) -> String {
        if self.leaves.is_empty() {
            text.to_owned()
        } else {
            mask::scrub(text, &self.leaves)
        }
    }

    /// `bytes` as they are, nothing masked.
    pub fn unchanged(bytes: &[u8]) -> MaskedPayload {
        MaskedPayload {
            bytes: bytes.to_vec(),
            json: serde_json::from_slice(bytes).ok(),
            pointers: Vec::new(),
            leaves: Vec::new(),
        }
    }
}

/// The pointers to mask in one projection table's rows (row coordinates).
#[derive(Debug)]
pub struct RowMask<'a> {
    pointers: Vec<Pointer>,
    fingerprint: Option<&'a Fingerprint>,
}

impl RowMask<'_> {
    pub fn is_empty(&self) -> bool {
        self.pointers.is_empty() || self.fingerprint.is_none()
    }

    /// Masks `row` (one row as JSON) in place.
    pub fn apply(&self, row: &mut Value) {
        if let Some(fp) = self.fingerprint {
            mask::mask_in_place(row, &self.pointers, fp);
        }
    }

    /// Masks each row of `rows`, a JSON array (or one row).
    pub fn apply_each(&self, rows: &mut Value) {
        match rows {
            Value::Array(items) => items.iter_mut().for_each(|r| self.apply(r)),
            row => self.apply(row),
        }
    }

    /// `value` as JSON, masked as a row of this table.
    pub fn row<T: serde::Serialize>(&self, value: &T) -> Value {
        let mut json = serde_json::to_value(value).unwrap_or(Value::Null);
        self.apply_each(&mut json);
        json
    }

    /// Whether the column (or a part of it) at `column` is masked.
    pub fn covers(&self, column: &Pointer) -> bool {
        !self.is_empty() && self.pointers.iter().any(|p| p.overlaps(column))
    }
}

impl Masking {
    /// From validated settings.
    pub fn from_settings(settings: &Settings) -> Masking {
        let rules = settings
            .masking
            .fields
            .iter()
            .filter_map(|r| {
                let applies = match (&r.handler, &r.topic) {
                    (Some(kind), _) => Applies::Handler(*kind),
                    (None, Some(topic)) => Applies::Topic(topic.clone()),
                    (None, None) => return None,
                };
                Some(Rule {
                    applies,
                    pointers: r.parsed(),
                })
            })
            .collect();
        Masking {
            rules,
            fingerprint: settings
                .masking
                .fingerprint_key
                .clone()
                .map(Fingerprint::new),
            routes: Routes::new(&settings.routes),
            route_kinds: settings
                .routes
                .iter()
                .map(|r| (r.topic.clone(), r.handler))
                .collect(),
        }
    }

    /// Masks nothing (benchmarks, tools without settings).
    pub fn none() -> Masking {
        Masking::default()
    }

    /// Whether nothing is ever masked.
    pub fn is_off(&self) -> bool {
        self.rules.is_empty() || self.fingerprint.is_none()
    }

    /// Whether some route of `topic` goes to `kind`.
    fn may_route(&self, topic: &str, kind: HandlerKind) -> bool {
        self.route_kinds
            .iter()
            .any(|(t, k)| *k == kind && t.as_deref().is_none_or(|t| t == topic))
    }

    /// The handler kind a JSON payload read from `topic` is routed to, if
    /// it names its event type (`type` of an `eventId` envelope, else
    /// `event_type`) and a route takes it.
    pub fn handler_of(&self, topic: &str, payload: &Value) -> Option<HandlerKind> {
        let field = if payload.get("eventId").is_some() {
            "type"
        } else {
            "event_type"
        };
        let event_type = payload.get(field)?.as_str()?;
        self.routes.handler(topic, event_type).map(|h| h.kind)
    }

    /// The pointers masked on a message read from `topic` and routed to
    /// `handler`. A message whose kind is not known (not JSON, no event
    /// type, no route: a dead letter, often) gets every rule of a kind
    /// some route of its topic could send it to: masking more, never less.
    pub fn pointers_for(&self, topic: &str, handler: Option<HandlerKind>) -> Vec<Pointer> {
        let mut out: Vec<Pointer> = Vec::new();
        for rule in &self.rules {
            let applies = match (&rule.applies, handler) {
                (Applies::Topic(t), _) => t == topic,
                (Applies::Handler(k), Some(h)) => *k == h,
                (Applies::Handler(k), None) => self.may_route(topic, *k),
            };
            if applies {
                for p in &rule.pointers {
                    if !out.contains(p) {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }

    /// A message's payload (read from `topic`) as a viewer sees it.
    pub fn payload(&self, topic: &str, bytes: &[u8]) -> MaskedPayload {
        let Some(fp) = self.fingerprint.as_ref().filter(|_| !self.is_off()) else {
            return MaskedPayload::unchanged(bytes);
        };
        if bytes.is_empty() {
            return MaskedPayload::unchanged(bytes);
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(json) => {
                let pointers = self.pointers_for(topic, self.handler_of(topic, &json));
                if pointers.is_empty() {
                    return MaskedPayload::unchanged(bytes);
                }
                let masked = mask::mask_value(&json, &pointers, fp);
                MaskedPayload {
                    bytes: serde_json::to_vec(&masked).unwrap_or_default(),
                    leaves: mask::masked_leaves(&json, &pointers, fp),
                    json: Some(masked),
                    pointers: pointers.iter().map(Pointer::to_string).collect(),
                }
            }
            Err(_) => {
                if self.pointers_for(topic, None).is_empty() {
                    return MaskedPayload::unchanged(bytes);
                }
                // Not JSON: no field to point at, so all of it.
                let whole = fp.of_bytes(bytes);
                let leaves = match std::str::from_utf8(bytes) {
                    Ok(text) => vec![(text.to_owned(), whole.clone())],
                    Err(_) => Vec::new(),
                };
                MaskedPayload {
                    bytes: whole.into_bytes(),
                    json: None,
                    pointers: vec![String::new()],
                    leaves,
                }
            }
        }
    }

    /// What to mask in `table`'s rows: the rules of its handler kind, and
    /// those of every topic some route sends to that kind (a row does not
    /// remember which topic wrote it: masking more, never less).
    pub fn table(&self, table: Table) -> RowMask<'_> {
        if self.is_off() {
            return RowMask {
                pointers: Vec::new(),
                fingerprint: None,
            };
        }
        let kind = table.handler();
        let mut fields: Vec<Pointer> = Vec::new();
        for rule in &self.rules {
            let applies = match &rule.applies {
                Applies::Handler(k) => *k == kind,
                Applies::Topic(t) => self.may_route(t, kind),
            };
            if applies {
                fields.extend(rule.pointers.iter().cloned());
            }
        }
        RowMask {
            pointers: projection::row_pointers(table, &fields),
            fingerprint: self.fingerprint.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn masking(fields: Value) -> Masking {
        let settings = Settings::from_overrides(&[
            ("masking.fields", fields),
            ("masking.fingerprint_key", json!("k".repeat(32))),
            ("kafka.topics", json!(["tx", "raw"])),
        ])
        .expect("valid");
        Masking::from_settings(&settings)
    }

    #[test]
    fn rules_apply_by_handler_kind_and_by_topic() {
        let m = masking(json!([
            {"handler": "domain", "pointers": ["/data/email"]},
            {"topic": "raw", "pointers": ["/card/number"]},
        ]));
        let user = json!({"eventId": "e", "type": "UserCreated", "data": {"email": "a@b.c", "name": "Ann"}});
        let shown = m.payload("tx", user.to_string().as_bytes());
        assert_eq!(shown.pointers, ["/data/email"]);
        let json = shown.json.expect("json");
        assert_eq!(json["data"]["name"], "Ann");
        assert!(json["data"]["email"]
            .as_str()
            .is_some_and(|s| s.starts_with(MASK_PREFIX)));
        assert!(!String::from_utf8_lossy(&shown.bytes).contains("a@b.c"));
        // Not a domain event: untouched on `tx`; on `raw`, the topic's rule.
        let card = json!({"event_type": "transaction.created", "card": {"number": "4242"}});
        assert!(m
            .payload("tx", card.to_string().as_bytes())
            .pointers
            .is_empty());
        assert_eq!(
            m.payload("raw", card.to_string().as_bytes()).pointers,
            ["/card/number"]
        );
    }

    #[test]
    fn a_payload_of_unknown_kind_gets_every_rule_its_topic_could_route_to() {
        let m = masking(json!([{"handler": "domain", "pointers": ["/data/email"]}]));
        let unrouted = json!({"data": {"email": "a@b.c"}});
        assert_eq!(
            m.payload("tx", unrouted.to_string().as_bytes()).pointers,
            ["/data/email"]
        );
        let shown = m.payload("tx", b"not json: a@b.c");
        assert_eq!(shown.pointers, [""]);
        let text = String::from_utf8(shown.bytes.clone()).expect("utf8");
        assert!(text.starts_with(MASK_PREFIX) && !text.contains("a@b.c"));
        assert!(!shown
            .scrub("payload was `not json: a@b.c`")
            .contains("a@b.c"));
        assert!(m.payload("tx", b"").pointers.is_empty());
    }

    #[test]
    fn without_rules_nothing_changes() {
        let m = Masking::none();
        assert!(m.is_off());
        let bytes = br#"{"data":{"email":"a@b.c"}}"#;
        assert_eq!(m.payload("tx", bytes).bytes, bytes);
        assert!(m.table(Table::Users).is_empty());
    }

    #[test]
    fn tables_take_their_kinds_rules() {
        let m = masking(json!([{"handler": "domain", "pointers": ["/data/email"]}]));
        let users = m.table(Table::Users);
        let row = users.row(&json!({"id": "u1", "email": "a@b.c"}));
        assert_eq!(row["id"], "u1");
        assert!(row["email"]
            .as_str()
            .is_some_and(|s| s.starts_with(MASK_PREFIX)));
        assert!(m.table(Table::Transactions).is_empty());
        // The same email, the same fingerprint, in the payload and the row.
        let user = json!({"eventId": "e", "type": "UserCreated", "data": {"email": "a@b.c"}});
        let shown = m
            .payload("tx", user.to_string().as_bytes())
            .json
            .expect("json");
        assert_eq!(shown["data"]["email"], row["email"]);
    }
}
