//! Exact money end to end (issue 9, item 4): an amount goes from its JSON
//! text into NUMERIC(24,8) without passing through an f64, and a value the
//! column cannot hold exactly is refused — dead-lettered as a
//! `schema_violation` with its bytes intact, or a 400 from `POST /produce`
//! naming the field. Payloads are written as text here: a
//! `serde_json::Value` would round the very amounts under test.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{wait_until, TestEnv, TEST_TOKEN};
use custodian::app::Running;
use reqwest::Method;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

/// A seed-003 `transaction.created` event whose amount is `amount`, verbatim.
fn transaction(id: &str, amount: &str) -> String {
    format!(
        r#"{{"event_type":"transaction.created","transaction":{{"id":"{id}","user_id":"u1","transaction_type":"card","status":"completed","currency":"USD","amount":{amount},"metadata":{{}}}},"timestamp":"2024-01-01T12:00:00Z"}}"#
    )
}

/// A seed-004 envelope around `data`, given as JSON text.
fn envelope(kind: &str, data: &str) -> String {
    format!(
        r#"{{"eventId":"{}","type":"{kind}","timestamp":"2025-01-11T12:00:00Z","data":{data}}}"#,
        uuid::Uuid::new_v4()
    )
}

/// `POST /produce` with `body` sent byte for byte (not re-serialized).
fn post_raw(env: &TestEnv, addr: SocketAddr, body: &str) -> (u16, serde_json::Value) {
    env.rt.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("http://{addr}/produce"))
            .bearer_auth(TEST_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("HTTP request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answered {status} with a non-JSON body ({e}): {text}"));
        (status, json)
    })
}

#[test]
fn transaction_amounts_are_stored_exactly_or_dead_lettered_intact() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let t = &env.topic;
    let exact = [
        (format!("{t}-max8"), "99999999.99999999"),
        (format!("{t}-max24"), "1234567890123456.12345678"),
        (format!("{t}-neg"), "-0.00000001"),
    ];
    let refused = [
        (format!("{t}-tiny"), "1e-400"),
        (format!("{t}-huge"), "1e308"),
        (format!("{t}-nine"), "0.123456789"),
    ];
    let payloads: Vec<String> = exact
        .iter()
        .chain(&refused)
        .map(|(id, amount)| transaction(id, amount))
        .collect();
    let records: Vec<_> = payloads
        .iter()
        .map(|p| (Some("u1"), p.as_bytes(), Some(0)))
        .collect();
    env.produce(&records);
    wait_until(PATIENCE, "three processed, three parked", || {
        let counts = env.db().audit_counts();
        counts.get("MESSAGE_PROCESSED") == Some(&3) && counts.get("MESSAGE_DLQ") == Some(&3)
    });

    for (id, amount) in &exact {
        let text = env.db().transaction_amount(id);
        // Each has eight decimals, as NUMERIC(24,8) prints every value.
        assert_eq!(text.as_deref(), Some(*amount));
    }
    // The read API answers the same digits.
    let (status, body) = env.api(
        &app,
        Method::GET,
        &format!("/transactions/{}", exact[0].0),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["amount"], "99999999.99999999");

    let entries = env.dlq_entries();
    assert_eq!(entries.len(), 3);
    for (offset, (id, amount)) in (3..).zip(&refused) {
        let entry = entries
            .iter()
            .find(|e| e.offset == offset)
            .unwrap_or_else(|| panic!("{amount} parked"));
        assert_eq!(entry.error_kind, "schema_violation", "{amount}");
        assert!(
            entry.error.contains("field `transaction.amount`"),
            "{amount}: {}",
            entry.error
        );
        assert_eq!(entry.payload_encoding, "utf8");
        assert_eq!(
            entry.payload.as_deref(),
            Some(transaction(id, amount).as_str()),
            "bytes intact"
        );
        assert_eq!(
            env.db().transaction_amount(id),
            None,
            "{amount} is not stored, not even rounded"
        );
    }
    app.stop().expect("graceful stop");
    assert_eq!(env.committed(), vec![Some(6)]);
}

#[test]
fn post_produce_refuses_inexact_amounts_and_keeps_exact_ones() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let addr = app.http_addr;
    let (user, order) = (
        format!("{}-user", env.topic),
        format!("{}-order", env.topic),
    );

    for (kind, data) in [
        (
            "OrderPlaced",
            format!(r#"{{"orderId":"{order}","userId":"{user}","amount":1e308}}"#),
        ),
        (
            "OrderPlaced",
            format!(r#"{{"orderId":"{order}","userId":"{user}","amount":1e-400}}"#),
        ),
        (
            "PaymentSettled",
            format!(r#"{{"orderId":"{order}","amount":1e308}}"#),
        ),
        (
            "PaymentSettled",
            format!(r#"{{"orderId":"{order}","amount":"12.50"}}"#),
        ),
    ] {
        let (status, answer) = post_raw(&env, addr, &envelope(kind, &data));
        assert_eq!(status, 400, "{data}: {answer}");
        assert_eq!(answer["error"], "bad_request");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("data.amount: ")),
            "{data}: {answer}"
        );
    }
    assert_eq!(
        env.high_watermarks(),
        vec![0],
        "nothing refused reached Kafka"
    );

    let created = json!({"eventId": uuid::Uuid::new_v4(), "type": "UserCreated", "timestamp": "2025-01-11T12:00:00Z",
        "data": {"userId": user, "name": "Payer", "email": "payer@example.com"}});
    let (status, answer) = env.api(addr, Method::POST, "/produce", Some(created));
    assert_eq!(status, 202, "{answer}");
    let placed = envelope(
        "OrderPlaced",
        &format!(r#"{{"orderId":"{order}","userId":"{user}","amount":99999999.99999999}}"#),
    );
    let settled = envelope(
        "PaymentSettled",
        &format!(r#"{{"orderId":"{order}","amount":1234567890123456.12345678}}"#),
    );
    for body in [&placed, &settled] {
        let (status, answer) = post_raw(&env, addr, body);
        assert_eq!(status, 202, "{answer}");
        let offset = answer["offset"].as_i64().expect("offset");
        let (_, payload, _) = env.record_at(0, offset);
        assert_eq!(
            payload.as_deref(),
            Some(body.as_bytes()),
            "published as posted"
        );
    }
    wait_until(PATIENCE, "three processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&3)
    });
    assert_eq!(
        env.db().order_amount(&order).as_deref(),
        Some("99999999.99999999")
    );
    assert_eq!(
        env.db().payment_amount(&order).as_deref(),
        Some("1234567890123456.12345678")
    );
    let (status, body) = env.api(addr, Method::GET, &format!("/orders/{order}"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order"]["amount"], "99999999.99999999");
    assert_eq!(body["payment"]["amount"], "1234567890123456.12345678");
    app.stop().expect("graceful stop");
}
