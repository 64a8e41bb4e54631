//! A transaction's search text as a viewer may see it: the fields the
//! `search_vector` column is made of (migration 000009: merchant,
//! counterparty, asset; category, network, product; then the words of
//! `searchable_content`), in the same order, each masked one replaced by
//! its mask. `api::search` keeps a hit only if its query still matches
//! this text, so nothing is found by a value only a masked field holds.

use serde_json::Value;

use super::RowMask;
use crate::config::pointer::Pointer;
use crate::handlers::transactions::enrich::search_term_field;
use crate::store::search::Hit;

/// A value as a word of the text: strings as they are, numbers and
/// booleans written out, nothing for the rest.
fn word(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        _ => String::new(),
    }
}

/// The search text of `hit`, whose shown (masked) form is `shown`.
pub fn document(hit: &Hit, shown: &Value, mask: &RowMask<'_>) -> String {
    // The original word, or the shown one where the column is masked.
    let text = |column: &str, original: String| -> String {
        match Pointer::parse(column) {
            Ok(p) if mask.covers(&p) => word(shown.pointer(column)),
            _ => original,
        }
    };
    let enrichment = |field: &str| {
        text(
            &format!("/enrichment/{field}"),
            word(hit.enrichment.get(field)),
        )
    };
    let product = || text("/product", hit.product.clone().unwrap_or_default());
    let term = search_term_field(&hit.transaction_type)
        .map(enrichment)
        .unwrap_or_default();
    [
        enrichment("merchant_name"),
        enrichment("counterparty"),
        enrichment("asset"),
        enrichment("merchant_category"),
        enrichment("network"),
        product(),
        text("/transaction_type", hit.transaction_type.clone()),
        text("/status", hit.status.clone()),
        text("/currency", hit.currency.clone()),
        text("/user_id", hit.user_id.clone()),
        product(),
        term,
        // As enrichment writes it (`4.5`, not the column's `4.50000000`).
        text("/amount", hit.amount.normalized().to_string()),
    ]
    .join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Settings;
    use crate::masking::{Masking, Table, MASK_PREFIX};

    fn hit() -> Hit {
        Hit {
            id: "tx-1".into(),
            user_id: "u1".into(),
            transaction_type: "p2p".into(),
            product: None,
            status: "completed".into(),
            currency: "USD".into(),
            amount: "4.50000000".parse().expect("decimal"),
            created_at: None,
            enrichment: json!({"counterparty": "Alice Johnson", "direction": "incoming"}),
            version: 1,
            updated_at: chrono::Utc::now(),
            enriched: true,
            enriched_at: None,
            rank: 0.1,
            highlight: String::new(),
        }
    }

    #[test]
    fn masked_fields_leave_only_their_masks_in_the_text() {
        let settings = Settings::from_overrides(&[
            (
                "masking.fields",
                json!([{"handler": "transactions", "pointers": ["/transaction/metadata/counterparty_name"]}]),
            ),
            ("masking.fingerprint_key", json!("k".repeat(32))),
        ])
        .expect("valid");
        let masking = Masking::from_settings(&settings);
        let mask = masking.table(Table::Transactions);
        let h = hit();
        let shown = mask.row(&h);
        let doc = document(&h, &shown, &mask);
        assert!(!doc.to_lowercase().contains("alice"), "{doc}");
        assert!(doc.contains(MASK_PREFIX), "{doc}");
        assert!(
            doc.contains("completed") && doc.contains("u1") && doc.contains(" 4.5"),
            "{doc}"
        );
        // Unmasked, the text holds the name (twice: field and term).
        let plain = Masking::none();
        let none = plain.table(Table::Transactions);
        let doc = document(&h, &none.row(&h), &none);
        assert_eq!(doc.matches("Alice Johnson").count(), 2, "{doc}");
    }
}
