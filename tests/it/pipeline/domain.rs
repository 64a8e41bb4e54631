//! Seed 004's acceptance checklist, the behaviour lines: POST /produce into
//! Kafka, the four event types into their tables, the read API, idempotency
//! by eventId, and the three dead-letter cases. Plus the transactions read
//! API (seed 001/003).

use std::time::Duration;

use crate::support::{created_event, wait_until, Table, TestEnv};
use custodian::app::Running;
use reqwest::Method;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

fn event(kind: &str, data: serde_json::Value) -> (String, serde_json::Value) {
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "eventId": id,
        "type": kind,
        "timestamp": "2025-01-11T12:00:00Z",
        "data": data,
    });
    (id, body)
}

/// custodian and the ids one user's story uses: the user, an order, a
/// stock-keeping unit.
struct Shop {
    env: TestEnv,
    app: Running,
    user: String,
    order: String,
    sku: String,
}

impl Shop {
    fn open() -> Shop {
        let env = TestEnv::new(3);
        let app = Running::start(env.settings()).expect("custodian starts");
        let t = &env.topic;
        let (user, order, sku) = (
            format!("{t}-user"),
            format!("{t}-order"),
            format!("{t}-sku"),
        );
        Shop {
            env,
            app,
            user,
            order,
            sku,
        }
    }

    /// `POST /produce`: accepted, and published to the test's topic.
    fn post(&self, body: &serde_json::Value) {
        let (status, answer) = self.env.api(
            self.app.http_addr,
            Method::POST,
            "/produce",
            Some(body.clone()),
        );
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["eventId"], body["eventId"]);
        assert_eq!(answer["topic"], self.env.topic);
    }

    fn wait_processed(&self, n: i64) {
        wait_until(PATIENCE, &format!("{n} processed"), || {
            self.env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&n)
        })
    }

    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.env.api(self.app.http_addr, Method::GET, path, None)
    }
}

/// A user created through `POST /produce` reads back from `/users`;
/// answers its event's id and body.
fn a_posted_user_reads_back(shop: &Shop) -> (String, serde_json::Value) {
    let (user_event_id, created) = event(
        "UserCreated",
        json!({"userId": shop.user, "name": "Alice Example", "email": "alice@example.com", "createdAt": "2025-01-11T12:00:00Z"}),
    );
    shop.post(&created);
    shop.wait_processed(1);
    let (status, body) = shop.get(&format!("/users/{}", shop.user));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["name"], "Alice Example");
    assert_eq!(body["user"]["email"], "alice@example.com");
    (user_event_id, created)
}

/// An order is PENDING until its payment settles; the user's recent orders
/// list it; two stock adjustments add up.
fn an_order_settles_with_its_payment_and_stock_adds_up(shop: &Shop) {
    let (order, sku) = (&shop.order, &shop.sku);
    shop.post(&event("OrderPlaced", json!({"orderId": order, "userId": shop.user, "amount": 99.95, "items": [{"sku": sku, "qty": 1}]})).1);
    shop.wait_processed(2);
    let (status, body) = shop.get(&format!("/orders/{order}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order"]["user_id"], shop.user.as_str());
    assert_eq!(body["payment_status"], "PENDING");

    shop.post(
        &event(
            "PaymentSettled",
            json!({"orderId": order, "paymentId": "pay-1", "amount": 99.95}),
        )
        .1,
    );
    shop.post(&event("InventoryAdjusted", json!({"sku": sku, "delta": 5})).1);
    shop.post(
        &event(
            "InventoryAdjusted",
            json!({"sku": sku, "delta": -2, "reason": "sold"}),
        )
        .1,
    );
    shop.wait_processed(5);
    let (_, body) = shop.get(&format!("/orders/{order}"));
    assert_eq!(body["payment_status"], "SETTLED", "{body}");
    assert_eq!(body["payment"]["payment_id"], "pay-1");
    let (_, body) = shop.get(&format!("/users/{}", shop.user));
    assert_eq!(body["recent_orders"][0]["id"], order.as_str(), "{body}");
    assert_eq!(shop.env.db().inventory(sku), 3);
}

/// Idempotency: the same event again changes nothing and is recorded; the
/// same eventId with other data is a conflict, parked, not applied.
fn the_same_event_again_is_a_duplicate_and_its_id_with_other_data_a_conflict(
    shop: &Shop,
    user_event_id: &str,
    created: &serde_json::Value,
) {
    let env = &shop.env;
    shop.post(created);
    wait_until(PATIENCE, "the duplicate recorded", || {
        env.db().audit_counts().get("MESSAGE_DUPLICATE") == Some(&1)
    });
    let mut renamed = created.clone();
    renamed["data"]["name"] = json!("Alice Again");
    shop.post(&renamed);
    wait_until(PATIENCE, "the conflict parked", || {
        env.db().audit_counts().get("MESSAGE_DLQ") == Some(&1)
    });
    let conflicts = env.dlq_entries();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].error_kind, "id_conflict");
    assert_eq!(env.db().rows(Table::Users), 1);
    let (_, body) = shop.get(&format!("/users/{}", shop.user));
    assert_eq!(body["user"]["name"], "Alice Example");
    let lifecycle = env.db().lifecycle(user_event_id);
    assert_eq!(
        lifecycle
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        [
            "MESSAGE_RECEIVED",
            "MESSAGE_PROCESSED",
            "MESSAGE_RECEIVED",
            "MESSAGE_DUPLICATE",
            "MESSAGE_RECEIVED",
            "MESSAGE_FAILED",
            "MESSAGE_DLQ"
        ]
    );
}

/// Absent things answer 404 with a JSON body; a NUL is bad input.
fn absent_things_answer_404_and_a_nul_400(shop: &Shop) {
    let (status, _) = shop.get("/users/%00");
    assert_eq!(status, 400, "a NUL is bad input, not an outage");
    for path in ["/users/nobody", "/orders/nothing", "/transactions/none"] {
        let (status, body) = shop.get(path);
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"], "not_found");
    }
}

/// The producer metric counts the three UserCreated posts.
fn posted_events_are_counted_by_type(shop: &Shop) {
    let (_, metrics) = shop.env.get(shop.app.http_addr, "/metrics");
    assert!(
        metrics.contains(&format!(
            "events_produced_total{{topic=\"{}\",type=\"UserCreated\"}} 3",
            shop.env.topic
        )),
        "{metrics}"
    );
}

#[test]
fn seed_004_events_flow_from_post_produce_to_the_read_api() {
    let shop = Shop::open();
    let (user_event_id, created) = a_posted_user_reads_back(&shop);
    an_order_settles_with_its_payment_and_stock_adds_up(&shop);
    the_same_event_again_is_a_duplicate_and_its_id_with_other_data_a_conflict(
        &shop,
        &user_event_id,
        &created,
    );
    absent_things_answer_404_and_a_nul_400(&shop);
    posted_events_are_counted_by_type(&shop);
    shop.app.stop().expect("graceful stop");
}

#[test]
fn post_produce_refuses_bad_events_naming_the_field() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let ok = event(
        "UserCreated",
        json!({"userId": "u", "name": "n", "email": "e@x.io"}),
    )
    .1;
    let mut cases = Vec::new();
    for (field, change) in [
        ("eventId", json!({"eventId": "not-a-uuid"})),
        ("type", json!({"type": "UserDeleted"})),
        ("timestamp", json!({"timestamp": "yesterday"})),
        ("data", json!({"data": null})),
        (
            "data.email",
            json!({"data": {"userId": "u", "name": "n", "email": "nope"}}),
        ),
    ] {
        let mut body = ok.clone();
        for (k, v) in change.as_object().expect("object") {
            if v.is_null() {
                body.as_object_mut().expect("object").remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        cases.push((field, body));
    }
    for (field, body) in cases {
        let (status, answer) = env.api(&app, Method::POST, "/produce", Some(body));
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(field)),
            "{field}: {answer}"
        );
    }
    // Nothing reached Kafka.
    assert_eq!(env.high_watermarks(), vec![0]);
    app.stop().expect("graceful stop");
}

#[test]
fn seed_004_dead_letter_cases() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    // Straight to Kafka, past POST /produce's validation, as another producer would.
    let missing_data = json!({"eventId": uuid::Uuid::new_v4(), "type": "UserCreated", "timestamp": "2025-01-11T12:00:00Z"}).to_string();
    let bad_type = event("UserExploded", json!({"userId": "u"})).1.to_string();
    let orphan = event(
        "OrderPlaced",
        json!({"orderId": format!("{}-o", env.topic), "userId": "no-such-user", "amount": 5}),
    )
    .1
    .to_string();
    env.produce(&[
        (Some("k1"), missing_data.as_bytes(), Some(0)),
        (Some("k2"), bad_type.as_bytes(), Some(0)),
        (Some("k3"), orphan.as_bytes(), Some(0)),
    ]);
    wait_until(PATIENCE, "three parked", || {
        env.db().audit_counts().get("MESSAGE_DLQ") == Some(&3)
    });
    let entries = env.dlq_entries();
    let by_offset = |o: i64| entries.iter().find(|e| e.offset == o).expect("entry");
    assert_eq!(by_offset(0).error_kind, "schema_violation");
    assert!(
        by_offset(0).error.contains("data"),
        "{}",
        by_offset(0).error
    );
    assert_eq!(by_offset(0).payload.as_deref(), Some(missing_data.as_str()));
    assert_eq!(by_offset(1).error_kind, "unknown_event_type");
    assert_eq!(by_offset(1).payload.as_deref(), Some(bad_type.as_str()));
    assert_eq!(by_offset(2).error_kind, "constraint_violation");
    assert!(
        by_offset(2).error.contains("foreign key"),
        "the database's own error: {}",
        by_offset(2).error
    );
    assert_eq!(by_offset(2).payload.as_deref(), Some(orphan.as_str()));
    assert_eq!(env.db().rows(Table::Orders), 0);
    app.stop().expect("graceful stop");
    assert_eq!(env.committed(), vec![Some(3)]);
}

#[test]
fn an_order_that_arrives_before_its_user_waits_for_it() {
    // Keyed by userId and orderId, the two usually land on different
    // partitions; the order's missing user is retried, not parked.
    let env = TestEnv::new(3);
    let app = Running::start(env.settings_with(&[("retry.max_attempts", 10.into())]))
        .expect("custodian starts");
    let user = format!("{}-late-user", env.topic);
    let order = format!("{}-early-order", env.topic);
    let (_, order_event) = event(
        "OrderPlaced",
        json!({"orderId": order, "userId": user, "amount": 5}),
    );
    let (_, user_event) = event(
        "UserCreated",
        json!({"userId": user, "name": "Late", "email": "l@x.io"}),
    );
    // As a producer keying them apart would: different partitions, the
    // order first.
    let (order_event, user_event) = (order_event.to_string(), user_event.to_string());
    env.produce(&[(Some(order.as_str()), order_event.as_bytes(), Some(0))]);
    std::thread::sleep(Duration::from_millis(300));
    env.produce(&[(Some(user.as_str()), user_event.as_bytes(), Some(1))]);
    wait_until(PATIENCE, "both processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&2)
    });
    assert_eq!(env.db().audit_counts().get("MESSAGE_DLQ"), None);
    let (status, body) = env.api(&app, Method::GET, &format!("/orders/{order}"), None);
    assert_eq!(status, 200, "{body}");
    app.stop().expect("graceful stop");
}

#[test]
fn transactions_are_listed_by_user_and_status() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let ids: Vec<String> = (0..3).map(|i| format!("{}-tx-{i}", env.topic)).collect();
    let events: Vec<String> = ids.iter().map(|id| created_event(id)).collect();
    let records: Vec<_> = events
        .iter()
        .map(|e| (Some("u1"), e.as_bytes(), Some(0)))
        .collect();
    env.produce(&records);
    wait_until(PATIENCE, "three processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&3)
    });
    let (status, body) = env.api(
        &app,
        Method::GET,
        "/transactions?user_id=u1&status=completed&limit=2",
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 2);
    let (_, body) = env.api(&app, Method::GET, "/transactions?user_id=u1&offset=2", None);
    assert_eq!(body["count"], 1);
    let (_, body) = env.api(&app, Method::GET, "/transactions?user_id=u2", None);
    assert_eq!(body["count"], 0);
    let (status, body) = env.api(
        &app,
        Method::GET,
        &format!("/transactions/{}", ids[0]),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "u1");
    assert_eq!(body["version"], 1);
    assert_eq!(body["enriched"], true);
    for bad in [
        "limit=0",
        "limit=x",
        "offset=-1",
        "colour=red",
        "user_id=%00",
    ] {
        let (status, _) = env.api(&app, Method::GET, &format!("/transactions?{bad}"), None);
        assert_eq!(status, 400, "{bad}");
    }
    app.stop().expect("graceful stop");
}
