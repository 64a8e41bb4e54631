//! Transaction enrichment: one strategy per transaction type (card, p2p,
//! crypto), plus a searchable-content field built for every transaction.
//! Unknown types pass through un-enriched and flagged, never rejected.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::handlers::transactions::event::{Enrichment, Transaction};

/// A per-type enrichment strategy: reads the transaction, returns new fields.
trait Strategy {
    fn enrich(&self, tx: &Transaction) -> Map<String, Value>;
    /// The counterparty-like term worth searching for (merchant, peer, asset).
    fn search_term<'a>(&self, tx: &'a Transaction) -> Option<&'a str>;
}

struct Card;
struct PeerToPeer;
struct Crypto;

fn meta<'a>(tx: &'a Transaction, field: &str) -> Option<&'a str> {
    tx.metadata.get(field).and_then(Value::as_str)
}

fn mask(value: &str) -> String {
    let tail: String = value
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("****{tail}")
}

impl Strategy for Card {
    fn enrich(&self, tx: &Transaction) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(merchant) = meta(tx, "merchant_name") {
            out.insert("merchant_name".into(), json!(merchant));
            out.insert(
                "merchant_category".into(),
                json!(merchant_category(merchant)),
            );
        }
        if let Some(last_four) = meta(tx, "card_last_four") {
            out.insert("card_mask".into(), json!(mask(last_four)));
        }
        out.insert("payment_method".into(), json!("card"));
        out
    }
    fn search_term<'a>(&self, tx: &'a Transaction) -> Option<&'a str> {
        meta(tx, "merchant_name")
    }
}

impl Strategy for PeerToPeer {
    fn enrich(&self, tx: &Transaction) -> Map<String, Value> {
        let mut out = Map::new();
        let peer = meta(tx, "counterparty_name").or_else(|| meta(tx, "recipient_name"));
        if let Some(peer) = peer {
            out.insert("counterparty".into(), json!(peer));
        }
        let direction = match meta(tx, "direction") {
            Some(d) => d.to_owned(),
            None if tx.amount.sign() == bigdecimal::num_bigint::Sign::Minus => "outgoing".into(),
            None => "incoming".into(),
        };
        out.insert("direction".into(), json!(direction));
        out.insert("payment_method".into(), json!("p2p"));
        out
    }
    fn search_term<'a>(&self, tx: &'a Transaction) -> Option<&'a str> {
        meta(tx, "counterparty_name").or_else(|| meta(tx, "recipient_name"))
    }
}

impl Strategy for Crypto {
    fn enrich(&self, tx: &Transaction) -> Map<String, Value> {
        let mut out = Map::new();
        let asset = meta(tx, "asset").unwrap_or(&tx.currency).to_uppercase();
        out.insert("asset".into(), json!(asset));
        if let Some(network) = meta(tx, "network") {
            out.insert("network".into(), json!(network));
        }
        if let Some(wallet) = meta(tx, "wallet_address") {
            out.insert("wallet_mask".into(), json!(mask(wallet)));
        }
        out.insert("payment_method".into(), json!("crypto"));
        out
    }
    fn search_term<'a>(&self, tx: &'a Transaction) -> Option<&'a str> {
        meta(tx, "asset")
    }
}

fn merchant_category(merchant: &str) -> &'static str {
    let m = merchant.to_ascii_lowercase();
    const CATEGORIES: &[(&str, &str)] = &[
        ("starbucks", "coffee"),
        ("coffee", "coffee"),
        ("uber", "transport"),
        ("lyft", "transport"),
        ("amazon", "shopping"),
        ("walmart", "groceries"),
        ("netflix", "entertainment"),
        ("spotify", "entertainment"),
    ];
    CATEGORIES
        .iter()
        .find(|(needle, _)| m.contains(needle))
        .map_or("other", |(_, category)| category)
}

fn strategy_for(transaction_type: &str) -> Option<&'static dyn Strategy> {
    match transaction_type {
        "card" => Some(&Card),
        "p2p" => Some(&PeerToPeer),
        "crypto" => Some(&Crypto),
        _ => None,
    }
}

/// The enrichment field that holds a transaction type's search term (its
/// merchant, peer or asset): masking rebuilds the search text from it.
pub fn search_term_field(transaction_type: &str) -> Option<&'static str> {
    match transaction_type {
        "card" => Some("merchant_name"),
        "p2p" => Some("counterparty"),
        "crypto" => Some("asset"),
        _ => None,
    }
}

/// Enriches one transaction. `now` is passed in so tests control the clock.
pub fn enrich(tx: &Transaction, now: DateTime<Utc>) -> Enrichment {
    let strategy = strategy_for(&tx.transaction_type);
    let mut words: Vec<&str> = vec![&tx.transaction_type, &tx.status, &tx.currency, &tx.user_id];
    if let Some(product) = tx.product.as_deref() {
        words.push(product);
    }
    if let Some(term) = strategy.and_then(|s| s.search_term(tx)) {
        words.push(term);
    }
    let amount = tx.amount.normalized().to_string();
    words.push(&amount);
    let searchable_content = words.join(" ").to_lowercase();
    match strategy {
        Some(strategy) => Enrichment {
            enriched: true,
            data: Value::Object(strategy.enrich(tx)),
            searchable_content,
            enriched_at: Some(now),
        },
        None => Enrichment {
            enriched: false,
            data: json!({ "unenriched_reason": format!("no enrichment strategy for transaction_type `{}`", tx.transaction_type) }),
            searchable_content,
            enriched_at: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn tx(kind: &str, metadata: Value) -> Transaction {
        Transaction {
            id: "t".into(),
            user_id: "user_1".into(),
            transaction_type: kind.into(),
            product: Some("Card".into()),
            status: "completed".into(),
            currency: "USD".into(),
            amount: bigdecimal::BigDecimal::from_str("100.50").expect("decimal"),
            created_at: None,
            metadata,
        }
    }

    #[test]
    fn card_gets_merchant_category_and_mask() {
        let e = enrich(
            &tx(
                "card",
                json!({"merchant_name": "Starbucks", "card_last_four": "1234"}),
            ),
            Utc::now(),
        );
        assert!(e.enriched);
        assert_eq!(e.data["merchant_category"], "coffee");
        assert_eq!(e.data["card_mask"], "****1234");
        assert!(e.searchable_content.contains("starbucks"));
        assert!(e.searchable_content.contains("100.5"));
    }

    #[test]
    fn p2p_and_crypto_strategies_apply() {
        let p = enrich(&tx("p2p", json!({"counterparty_name": "Ana"})), Utc::now());
        assert_eq!(p.data["counterparty"], "Ana");
        assert_eq!(p.data["direction"], "incoming");
        let c = enrich(
            &tx(
                "crypto",
                json!({"asset": "btc", "wallet_address": "bc1qxyz9876"}),
            ),
            Utc::now(),
        );
        assert_eq!(c.data["asset"], "BTC");
        assert_eq!(c.data["wallet_mask"], "****9876");
    }

    #[test]
    fn the_search_term_is_in_the_field_named_for_it() {
        for (kind, metadata) in [
            ("card", json!({"merchant_name": "Starbucks"})),
            ("p2p", json!({"recipient_name": "Ana"})),
            ("crypto", json!({"asset": "btc"})),
        ] {
            let t = tx(kind, metadata);
            let term = strategy_for(kind)
                .and_then(|s| s.search_term(&t))
                .expect("a term");
            let field = search_term_field(kind).expect("a field");
            let e = enrich(&t, Utc::now());
            assert_eq!(
                e.data[field].as_str().map(str::to_lowercase),
                Some(term.to_lowercase()),
                "{kind}"
            );
        }
        assert_eq!(search_term_field("wire"), None);
    }

    #[test]
    fn unknown_type_passes_through_flagged() {
        let e = enrich(&tx("wire", json!({})), Utc::now());
        assert!(!e.enriched);
        assert!(e.enriched_at.is_none());
        assert!(e.data["unenriched_reason"]
            .as_str()
            .is_some_and(|s| s.contains("wire")));
        assert!(e.searchable_content.contains("wire"));
    }
}
