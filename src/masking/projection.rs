//! Masking rules name fields of a payload; the read API, search and the
//! message view also show projection rows made from payloads. This maps
//! one to the other: which column holds which payload field (so a rule on
//! `/data/email` masks `users.email`), and which columns are derived from
//! which fields (enrichment, search text), masked whole when any of their
//! sources is.

use crate::handlers::registry::HandlerKind;

use crate::config::pointer::Pointer;

/// A projection table a payload writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Transactions,
    Users,
    Orders,
    Payments,
    Inventory,
}

/// Transaction events: `{event_type, transaction: {…}, timestamp}`; the
/// row's own columns are the transaction's fields.
const TRANSACTION_COLUMNS: &[(&str, &str)] = &[
    ("/id", "/transaction/id"),
    ("/user_id", "/transaction/user_id"),
    ("/transaction_type", "/transaction/transaction_type"),
    ("/product", "/transaction/product"),
    ("/status", "/transaction/status"),
    ("/currency", "/transaction/currency"),
    ("/amount", "/transaction/amount"),
    ("/created_at", "/transaction/created_at"),
    ("/metadata", "/transaction/metadata"),
];

/// The words of `searchable_content` (see `handlers::transactions::enrich`).
const SEARCH_WORDS: &[&str] = &[
    "/transaction/transaction_type",
    "/transaction/status",
    "/transaction/currency",
    "/transaction/user_id",
    "/transaction/product",
    "/transaction/amount",
    "/transaction/metadata/merchant_name",
    "/transaction/metadata/counterparty_name",
    "/transaction/metadata/recipient_name",
    "/transaction/metadata/asset",
];

/// What enrichment makes of which fields (`handlers::transactions::enrich`;
/// a test below fails when a strategy writes a field not listed here).
const TRANSACTION_DERIVED: &[(&str, &[&str])] = &[
    (
        "/enrichment/merchant_name",
        &["/transaction/metadata/merchant_name"],
    ),
    (
        "/enrichment/merchant_category",
        &["/transaction/metadata/merchant_name"],
    ),
    (
        "/enrichment/card_mask",
        &["/transaction/metadata/card_last_four"],
    ),
    (
        "/enrichment/counterparty",
        &[
            "/transaction/metadata/counterparty_name",
            "/transaction/metadata/recipient_name",
        ],
    ),
    (
        "/enrichment/direction",
        &["/transaction/metadata/direction", "/transaction/amount"],
    ),
    (
        "/enrichment/asset",
        &["/transaction/metadata/asset", "/transaction/currency"],
    ),
    ("/enrichment/network", &["/transaction/metadata/network"]),
    (
        "/enrichment/wallet_mask",
        &["/transaction/metadata/wallet_address"],
    ),
    (
        "/enrichment/payment_method",
        &["/transaction/transaction_type"],
    ),
    (
        "/enrichment/unenriched_reason",
        &["/transaction/transaction_type"],
    ),
    ("/searchable_content", SEARCH_WORDS),
];

/// Domain envelopes: `{eventId, type, timestamp, data: {…}}`, camelCase.
const USER_COLUMNS: &[(&str, &str)] = &[
    ("/id", "/data/userId"),
    ("/name", "/data/name"),
    ("/email", "/data/email"),
    ("/created_at", "/data/createdAt"),
];
const ORDER_COLUMNS: &[(&str, &str)] = &[
    ("/id", "/data/orderId"),
    ("/user_id", "/data/userId"),
    ("/amount", "/data/amount"),
    ("/currency", "/data/currency"),
    ("/items", "/data/items"),
];
const PAYMENT_COLUMNS: &[(&str, &str)] = &[
    ("/order_id", "/data/orderId"),
    ("/payment_id", "/data/paymentId"),
    ("/amount", "/data/amount"),
    ("/status", "/data/status"),
];
const INVENTORY_COLUMNS: &[(&str, &str)] = &[("/sku", "/data/sku")];
const INVENTORY_DERIVED: &[(&str, &[&str])] = &[("/quantity", &["/data/delta"])];

impl Table {
    /// `transactions`, `users`, … as the database names them.
    pub fn from_name(name: &str) -> Option<Table> {
        Some(match name {
            "transactions" => Table::Transactions,
            "users" => Table::Users,
            "orders" => Table::Orders,
            "payments" => Table::Payments,
            "inventory" => Table::Inventory,
            _ => return None,
        })
    }

    /// The handler kind whose payloads write it.
    pub fn handler(self) -> HandlerKind {
        match self {
            Table::Transactions => HandlerKind::Transactions,
            _ => HandlerKind::Domain,
        }
    }

    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Table::Transactions => TRANSACTION_COLUMNS,
            Table::Users => USER_COLUMNS,
            Table::Orders => ORDER_COLUMNS,
            Table::Payments => PAYMENT_COLUMNS,
            Table::Inventory => INVENTORY_COLUMNS,
        }
    }

    fn derived(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            Table::Transactions => TRANSACTION_DERIVED,
            Table::Inventory => INVENTORY_DERIVED,
            _ => &[],
        }
    }
}

fn parsed(text: &str) -> Pointer {
    // The tables above are written here, as valid pointers (tested).
    Pointer::parse(text).unwrap_or_else(|e| unreachable!("`{text}`: {e}"))
}

/// The pointers, into one of `table`'s rows, that hold what `masked` (payload
/// pointers) names: a column holding a masked field, or the part of it
/// under the pointer; a column holding a field a masked pointer is inside
/// of, whole; a derived column any of whose sources overlaps a masked
/// pointer, whole.
pub fn row_pointers(table: Table, masked: &[Pointer]) -> Vec<Pointer> {
    let mut out: Vec<Pointer> = Vec::new();
    let mut add = |p: Pointer| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    for (column, field) in table.columns() {
        let (column, field) = (parsed(column), parsed(field));
        for m in masked {
            if let Some(rest) = m.strip_prefix(&field) {
                add(column.join(rest));
            } else if m.contains(&field) {
                add(column.clone());
            }
        }
    }
    for (column, sources) in table.derived() {
        if sources
            .iter()
            .any(|s| masked.iter().any(|m| m.overlaps(&parsed(s))))
        {
            add(parsed(column));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::handlers::transactions::enrich;
    use crate::handlers::transactions::event::Transaction;

    fn ptrs(list: &[&str]) -> Vec<Pointer> {
        list.iter().map(|p| parsed(p)).collect()
    }

    fn strings(list: Vec<Pointer>) -> Vec<String> {
        list.iter().map(Pointer::to_string).collect()
    }

    #[test]
    fn payload_fields_become_columns() {
        assert_eq!(
            strings(row_pointers(Table::Users, &ptrs(&["/data/email"]))),
            ["/email"]
        );
        assert_eq!(
            strings(row_pointers(
                Table::Orders,
                &ptrs(&["/data/items/0/name", "/data/userId"])
            )),
            ["/user_id", "/items/0/name"]
        );
        // A pointer above the fields masks every column below it.
        assert_eq!(
            row_pointers(Table::Payments, &ptrs(&["/data"])).len(),
            PAYMENT_COLUMNS.len()
        );
        assert!(row_pointers(Table::Users, &ptrs(&["/transaction/user_id"])).is_empty());
    }

    #[test]
    fn derived_columns_follow_their_sources() {
        let got = strings(row_pointers(
            Table::Transactions,
            &ptrs(&["/transaction/metadata/merchant_name"]),
        ));
        for want in [
            "/metadata/merchant_name",
            "/enrichment/merchant_name",
            "/enrichment/merchant_category",
            "/searchable_content",
        ] {
            assert!(got.contains(&want.to_owned()), "{want}: {got:?}");
        }
        assert!(!got.contains(&"/enrichment/network".to_owned()));
        let whole = strings(row_pointers(
            Table::Transactions,
            &ptrs(&["/transaction/metadata"]),
        ));
        assert!(
            whole.contains(&"/enrichment/wallet_mask".to_owned()),
            "{whole:?}"
        );
        assert!(strings(row_pointers(Table::Inventory, &ptrs(&["/data/delta"]))) == ["/quantity"]);
    }

    #[test]
    fn every_field_enrichment_writes_has_its_sources_listed() {
        let tx = |kind: &str, metadata| Transaction {
            id: "t".into(),
            user_id: "u".into(),
            transaction_type: kind.into(),
            product: None,
            status: "completed".into(),
            currency: "USD".into(),
            amount: bigdecimal::BigDecimal::from(1),
            created_at: None,
            metadata,
        };
        let everything = json!({
            "merchant_name": "m", "card_last_four": "1234", "counterparty_name": "c",
            "direction": "outgoing", "asset": "btc", "network": "n", "wallet_address": "w",
        });
        for kind in ["card", "p2p", "crypto", "wire"] {
            let e = enrich::enrich(&tx(kind, everything.clone()), chrono::Utc::now());
            for field in e.data.as_object().expect("an object").keys() {
                let column = format!("/enrichment/{field}");
                assert!(
                    TRANSACTION_DERIVED.iter().any(|(c, _)| *c == column),
                    "{kind}: enrichment writes `{field}`, not in TRANSACTION_DERIVED"
                );
            }
        }
        for (c, sources) in TRANSACTION_DERIVED.iter().chain(INVENTORY_DERIVED) {
            parsed(c);
            sources.iter().for_each(|s| drop(parsed(s)));
        }
    }
}
