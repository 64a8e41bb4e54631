//! Synthetic transaction events (what seed 003's
//! `publish_test_data_to_kafka.py` produces): creates, and with
//! `update_ratio` probability updates of an earlier transaction, keyed by
//! `user_id` so one user's events stay in order on one partition.

use chrono::{SecondsFormat, Utc};
use rand::prelude::*;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use uuid::Uuid;

pub struct Generator {
    rng: StdRng,
    users: Vec<String>,
    update_ratio: f64,
    /// Share of events made deliberately invalid (for DLQ demos).
    poison_ratio: f64,
    /// Transactions created so far (id, user), for updates.
    created: Vec<(String, String)>,
}

/// One event ready to publish.
pub struct SyntheticEvent {
    pub key: String,
    pub payload: Vec<u8>,
}

/// A transaction event as published. Serialized from a struct, not `json!`,
/// because a `serde_json::Value` holds a number as an f64; here the amount
/// is written as exact decimal text.
#[derive(Serialize)]
struct Published<'a> {
    event_type: &'a str,
    transaction: PublishedTransaction<'a>,
    timestamp: &'a str,
    source: &'a str,
}

#[derive(Serialize)]
struct PublishedTransaction<'a> {
    id: &'a str,
    user_id: &'a str,
    transaction_type: &'a str,
    product: &'a str,
    status: &'a str,
    currency: &'a str,
    amount: Box<RawValue>,
    created_at: &'a str,
    metadata: serde_json::Value,
}

/// An amount of cents as the JSON number text with two decimals: `12.05`.
fn decimal_cents(cents: i64) -> Box<RawValue> {
    let sign = if cents < 0 { "-" } else { "" };
    let (units, rest) = (cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
    RawValue::from_string(format!("{sign}{units}.{rest:02}"))
        .expect("digits, a point and two digits are a JSON number")
}

const MERCHANTS: &[&str] = &[
    "Starbucks",
    "Uber",
    "Amazon",
    "Netflix",
    "Walmart",
    "Corner Shop",
];
const PEERS: &[&str] = &["Ana", "Bruno", "Chen", "Dara", "Emeka"];
const ASSETS: &[&str] = &["BTC", "ETH", "USDC"];
const STATUSES: &[&str] = &["pending", "completed", "failed"];

impl Generator {
    /// `user_id` pins every event to one user; otherwise `users` users.
    pub fn new(seed: u64, user_id: Option<String>, users: usize, update_ratio: f64) -> Self {
        let users = match user_id {
            Some(u) => vec![u],
            None => (0..users.max(1)).map(|i| format!("user_{i:04}")).collect(),
        };
        Generator {
            rng: StdRng::seed_from_u64(seed),
            users,
            update_ratio: update_ratio.clamp(0.0, 1.0),
            poison_ratio: 0.0,
            created: Vec::new(),
        }
    }

    /// Makes about `ratio` of the events invalid: alternately bytes that are
    /// not JSON, and a transaction event of an unknown type.
    pub fn with_poison_ratio(mut self, ratio: f64) -> Self {
        self.poison_ratio = ratio.clamp(0.0, 1.0);
        self
    }

    fn poison(&mut self) -> SyntheticEvent {
        let user = self.users[self.rng.random_range(0..self.users.len())].clone();
        let payload = if self.rng.random_bool(0.5) {
            vec![
                0xff, 0xfe, b'n', b'o', b't', b' ', b'j', b's', b'o', b'n', 0x00,
            ]
        } else {
            json!({
                "event_type": "transaction.refunded",
                "transaction": { "id": Uuid::from_u128(self.rng.random()).to_string(), "user_id": user },
                "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            })
            .to_string()
            .into_bytes()
        };
        SyntheticEvent { key: user, payload }
    }

    pub fn next_event(&mut self) -> SyntheticEvent {
        if self.poison_ratio > 0.0 && self.rng.random_bool(self.poison_ratio) {
            return self.poison();
        }
        let update = !self.created.is_empty() && self.rng.random_bool(self.update_ratio);
        let (id, user, event_type) = if update {
            let pick = self.rng.random_range(0..self.created.len());
            let (id, user) = self.created[pick].clone();
            (id, user, "transaction.updated")
        } else {
            let user = self.users[self.rng.random_range(0..self.users.len())].clone();
            let id = Uuid::from_u128(self.rng.random()).to_string();
            self.created.push((id.clone(), user.clone()));
            (id, user, "transaction.created")
        };
        let (kind, product, metadata) = match self.rng.random_range(0..10) {
            0..=5 => (
                "card",
                "Card",
                json!({
                    "merchant_name": MERCHANTS[self.rng.random_range(0..MERCHANTS.len())],
                    "card_last_four": format!("{:04}", self.rng.random_range(0..10_000)),
                }),
            ),
            6..=8 => (
                "p2p",
                "Transfer",
                json!({ "counterparty_name": PEERS[self.rng.random_range(0..PEERS.len())] }),
            ),
            _ => (
                "crypto",
                "Crypto",
                json!({
                    "asset": ASSETS[self.rng.random_range(0..ASSETS.len())],
                    "network": "mainnet",
                    "wallet_address": format!("bc1q{:012x}", self.rng.random::<u64>() >> 16),
                }),
            ),
        };
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let cents: i64 = self.rng.random_range(100..500_000);
        let payload = Published {
            event_type,
            transaction: PublishedTransaction {
                id: &id,
                user_id: &user,
                transaction_type: kind,
                product,
                status: STATUSES[self.rng.random_range(0..STATUSES.len())],
                currency: "USD",
                amount: decimal_cents(cents),
                created_at: &now,
                metadata,
            },
            timestamp: &now,
            source: "custodian_synthetic",
        };
        SyntheticEvent {
            payload: serde_json::to_vec(&payload).expect("strings and a Value serialize"),
            key: user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::registry::Task;
    use crate::kafka::envelope::Envelope;
    use crate::pipeline::decode::decode;

    #[test]
    fn synthetic_events_decode_and_updates_reuse_ids() {
        let mut g = Generator::new(7, None, 3, 0.5);
        let mut updates = 0;
        let routes = crate::pipeline::route_table::Routes::new(
            &crate::config::Settings::from_overrides(&[])
                .expect("defaults")
                .routes,
        );
        for offset in 0..200 {
            let e = g.next_event();
            let envelope = Envelope {
                key: Some(e.key.clone().into_bytes()),
                ..Envelope::at("t", 0, offset, Some(&e.payload))
            };
            let Ok(Task::Transaction(change)) = decode(&envelope, &routes, None, Utc::now()).work
            else {
                panic!("synthetic event must decode")
            };
            let tx = change.event;
            assert_eq!(
                tx.transaction.as_ref().map(|t| t.user_id.as_str()),
                Some(e.key.as_str())
            );
            // The amount is written as exact two-decimal text, not an f64.
            let amount = tx.transaction.as_ref().map(|t| t.amount.with_scale(2));
            let written = format!(r#""amount":{}"#, amount.expect("full state"));
            assert!(
                String::from_utf8_lossy(&e.payload).contains(&written),
                "{written}"
            );
            if tx.action == crate::handlers::transactions::event::Action::Updated {
                updates += 1;
            }
        }
        assert!(updates > 50 && updates < 150, "{updates}");
    }

    #[test]
    fn cents_are_written_as_exact_decimals() {
        for (cents, text) in [
            (100, "1.00"),
            (105, "1.05"),
            (499_999, "4999.99"),
            (7, "0.07"),
            (-250, "-2.50"),
        ] {
            assert_eq!(decimal_cents(cents).get(), text);
        }
    }
}
