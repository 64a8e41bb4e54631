//! Domain events: the envelope `{eventId, type, timestamp, data}`
//! and the four event types, each validated field by field so a bad event
//! is refused naming the field at fault.

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::failure::Failure;
use crate::handlers::domain::EVENT_TYPES;
use crate::handlers::money;

#[derive(Debug, Clone, PartialEq)]
pub enum DomainEvent {
    UserCreated {
        user_id: String,
        name: String,
        email: String,
        created_at: Option<DateTime<Utc>>,
    },
    OrderPlaced {
        order_id: String,
        user_id: String,
        amount: BigDecimal,
        currency: String,
        items: serde_json::Value,
    },
    PaymentSettled {
        order_id: String,
        payment_id: Option<String>,
        amount: BigDecimal,
        status: String,
    },
    InventoryAdjusted {
        sku: String,
        delta: i64,
        reason: Option<String>,
    },
}

/// A domain event on its way to the projections.
#[derive(Debug, Clone)]
pub struct DomainChange {
    pub message_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub event: DomainEvent,
}

impl DomainEvent {
    /// The Kafka key of each event type: userId, orderId, orderId, sku.
    pub fn key(&self) -> &str {
        match self {
            DomainEvent::UserCreated { user_id, .. } => user_id,
            DomainEvent::OrderPlaced { order_id, .. } => order_id,
            DomainEvent::PaymentSettled { order_id, .. } => order_id,
            DomainEvent::InventoryAdjusted { sku, .. } => sku,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    user_id: String,
    name: String,
    email: String,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order<'a> {
    order_id: String,
    user_id: String,
    /// The number's own text, for [`money::parse`] (no f64 on the way).
    #[serde(borrow)]
    amount: &'a RawValue,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    items: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payment<'a> {
    order_id: String,
    #[serde(default)]
    payment_id: Option<String>,
    #[serde(borrow)]
    amount: &'a RawValue,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inventory {
    sku: String,
    delta: i64,
    #[serde(default)]
    reason: Option<String>,
}

fn schema(message: impl Into<String>) -> Failure {
    Failure::schema(message)
}

fn parse<'a, T: Deserialize<'a>>(data: &'a str) -> Result<T, Failure> {
    serde_json::from_str(data).map_err(|e| schema(format!("field `data`: {e}")))
}

fn id(field: &str, value: String) -> Result<String, Failure> {
    if value.trim().is_empty() || value.len() > 200 {
        return Err(schema(format!("field `data.{field}`: 1 to 200 characters")));
    }
    Ok(value)
}

/// Order and payment amounts: exact, non-negative, fitting NUMERIC(24,8).
fn money(field: &str, raw: &RawValue) -> Result<BigDecimal, Failure> {
    money::parse(raw.get(), money::Signs::NonNegative)
        .map_err(|e| schema(format!("field `data.{field}`: {e}")))
}

/// Validates `data` for `event_type` (one of [`EVENT_TYPES`]).
pub fn decode(event_type: &str, data: Option<&str>) -> Result<DomainEvent, Failure> {
    let data = data.ok_or_else(|| schema("missing field `data`"))?;
    match event_type {
        "UserCreated" => {
            let u: User = parse(data)?;
            if !u.email.contains('@') || u.email.len() > 320 {
                return Err(schema("field `data.email`: not an email address"));
            }
            Ok(DomainEvent::UserCreated {
                user_id: id("userId", u.user_id)?,
                name: id("name", u.name)?,
                email: u.email,
                created_at: u.created_at,
            })
        }
        "OrderPlaced" => {
            let o: Order<'_> = parse(data)?;
            let currency = o.currency.unwrap_or_else(|| "USD".into());
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(schema("field `data.currency`: three capital letters"));
            }
            Ok(DomainEvent::OrderPlaced {
                amount: money("amount", o.amount)?,
                order_id: id("orderId", o.order_id)?,
                user_id: id("userId", o.user_id)?,
                currency,
                items: o.items.unwrap_or(serde_json::Value::Array(Vec::new())),
            })
        }
        "PaymentSettled" => {
            let p: Payment<'_> = parse(data)?;
            Ok(DomainEvent::PaymentSettled {
                amount: money("amount", p.amount)?,
                order_id: id("orderId", p.order_id)?,
                payment_id: p.payment_id.map(|v| id("paymentId", v)).transpose()?,
                status: p.status.unwrap_or_else(|| "SETTLED".into()),
            })
        }
        "InventoryAdjusted" => {
            let i: Inventory = parse(data)?;
            Ok(DomainEvent::InventoryAdjusted {
                sku: id("sku", i.sku)?,
                delta: i.delta,
                reason: i.reason,
            })
        }
        other => Err(Failure::unknown_event_type(format!(
            "unknown event type `{other}` (expected one of {})",
            EVENT_TYPES.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_decodes_and_names_its_key() {
        let user = decode(
            "UserCreated",
            Some(r#"{"userId":"u-1","name":"Alice","email":"a@example.com","createdAt":"2025-01-11T12:00:00Z"}"#),
        )
        .expect("user");
        assert_eq!(user.key(), "u-1");
        let order = decode(
            "OrderPlaced",
            Some(r#"{"orderId":"o-1","userId":"u-1","amount":99.95}"#),
        )
        .expect("order");
        assert_eq!(order.key(), "o-1");
        let pay = decode(
            "PaymentSettled",
            Some(r#"{"orderId":"o-1","amount":99.95}"#),
        )
        .expect("payment");
        assert_eq!(pay.key(), "o-1");
        let inv =
            decode("InventoryAdjusted", Some(r#"{"sku":"SKU-1","delta":-3}"#)).expect("inventory");
        assert_eq!(inv.key(), "SKU-1");
    }

    #[test]
    fn amounts_are_exact() {
        for (text, exact) in [
            ("99999999.99999999", "99999999.99999999"),
            ("1234567890123456.12345678", "1234567890123456.12345678"),
            ("-0", "0"),
        ] {
            let data = format!(r#"{{"orderId":"o","userId":"u","amount":{text}}}"#);
            let Ok(DomainEvent::OrderPlaced { amount, .. }) = decode("OrderPlaced", Some(&data))
            else {
                panic!("{text} is a valid order amount")
            };
            assert_eq!(amount.to_string(), exact);
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            ("UserCreated", None, "data"),
            ("UserCreated", Some(r#"{"userId":"u","name":"n"}"#), "email"),
            (
                "UserCreated",
                Some(r#"{"userId":"u","name":"n","email":"nope"}"#),
                "email",
            ),
            (
                "OrderPlaced",
                Some(r#"{"orderId":"o","userId":"u","amount":-1}"#),
                "amount",
            ),
            (
                "OrderPlaced",
                Some(r#"{"orderId":"","userId":"u","amount":1}"#),
                "orderId",
            ),
            (
                "OrderPlaced",
                Some(r#"{"orderId":"o","userId":"u","amount":1e308}"#),
                "data.amount",
            ),
            (
                "PaymentSettled",
                Some(r#"{"orderId":"o","amount":1e-400}"#),
                "data.amount",
            ),
            (
                "PaymentSettled",
                Some(r#"{"orderId":"o","amount":"5.00"}"#),
                "data.amount",
            ),
            (
                "InventoryAdjusted",
                Some(r#"{"sku":"s","delta":"x"}"#),
                "data",
            ),
        ];
        for (kind, data, field) in cases {
            let f = decode(kind, data).expect_err(kind);
            assert_eq!(f.kind, "schema_violation");
            assert!(f.message.contains(field), "{kind}: {}", f.message);
        }
        assert_eq!(
            decode("Nope", Some("{}")).expect_err("unknown").kind,
            "unknown_event_type"
        );
    }
}
