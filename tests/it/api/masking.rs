//! Masking personal data (issue 27, part 5), against real PostgreSQL, Redis
//! and the mock Kafka cluster: `masking.fields` masked in the explorer, the
//! message view and its record (the console's download), the lifecycle,
//! dead letters, the read API and search; equal values with equal
//! fingerprints; no search hit found by a masked value alone (pages stay
//! honest); unmasking refused to viewers and operators, and an approver's
//! one chained MESSAGE_UNMASKED entry naming who, which message and why,
//! with `audit verify` still holding.

use std::time::Duration;

use custodian::app::Running;
use reqwest::Method;
use serde_json::{json, Value};

use super::search::search;
use crate::support::process::Launch;
use crate::support::{wait_until, TestEnv};

const KEY: &str = "masking-test-fingerprint-key-0123456789";
const MASK: &str = "••••:";

/// The rules the tests run with: a user's email, a transaction's peer and
/// user.
pub fn masking_settings() -> Vec<(&'static str, Value)> {
    vec![
        (
            "masking.fields",
            json!([
                {"handler": "domain", "pointers": ["/data/email"]},
                {"handler": "transactions", "pointers": [
                    "/transaction/metadata/counterparty_name", "/transaction/user_id"]},
            ]),
        ),
        ("masking.fingerprint_key", json!(KEY)),
    ]
}

pub fn user_created(user: &str, email: Value) -> String {
    json!({
        "eventId": uuid::Uuid::new_v4(),
        "type": "UserCreated",
        "timestamp": "2024-01-01T12:00:00Z",
        "data": {"userId": user, "name": format!("Name of {user}"), "email": email},
    })
    .to_string()
}

fn p2p(id: &str, user: &str, peer: &str) -> String {
    json!({
        "event_type": "transaction.created",
        "transaction": {
            "id": id, "user_id": user, "transaction_type": "p2p", "status": "completed",
            "currency": "USD", "amount": 20.0, "metadata": {"counterparty_name": peer},
        },
        "timestamp": "2024-01-01T12:00:00Z",
    })
    .to_string()
}

fn card(id: &str, product: &str) -> String {
    json!({
        "event_type": "transaction.created",
        "transaction": {
            "id": id, "user_id": "u-card", "transaction_type": "card", "status": "completed",
            "product": product, "currency": "USD", "amount": 5.0,
            "metadata": {"merchant_name": "Corner Shop"},
        },
        "timestamp": "2024-01-01T12:00:00Z",
    })
    .to_string()
}

fn is_mask(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with(MASK))
}

/// The first message id the explorer lists for `key`.
fn id_of(env: &TestEnv, app: &Running, key: &str) -> String {
    let (status, page) = env.api(app, Method::GET, &format!("/messages?key={key}"), None);
    assert_eq!(status, 200, "{page}");
    page["entries"][0]["message_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no entry for {key}: {page}"))
        .to_owned()
}

fn get(env: &TestEnv, app: &Running, path: &str) -> Value {
    let (status, body) = env.api(app, Method::GET, path, None);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Every secret the test produced, none of which a viewer may read.
const SECRETS: [&str; 6] = [
    "ann@example.com",
    "bob@example.com",
    "Zelda",
    "u-zed",
    "12345678",
    "secret-card-4111",
];

fn assert_no_secret(what: &str, body: &Value) {
    let text = body.to_string();
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

#[test]
fn masking_covers_every_view_and_unmasking_takes_an_approver_and_is_audited() {
    let env = TestEnv::new(1);
    let settings = env.settings_with(&masking_settings());
    let app = Running::start(settings.clone()).expect("custodian starts");
    let ann = user_created("u-ann", json!("ann@example.com"));
    let ann2 = user_created("u-ann2", json!("ann@example.com"));
    let bob = user_created("u-bob", json!("bob@example.com"));
    let tx = p2p("tx-zed", "u-zed", "Zelda Quintessa");
    // Two dead letters: an email of the wrong type (its error quotes it),
    // and a payload that is not JSON.
    let wrong = user_created("u-num", json!(12345678));
    env.produce(&[
        (Some("u-ann"), ann.as_bytes(), None),
        (Some("u-ann2"), ann2.as_bytes(), None),
        (Some("u-bob"), bob.as_bytes(), None),
        (Some("tx-zed"), tx.as_bytes(), None),
        (Some("u-num"), wrong.as_bytes(), None),
        (Some("raw"), b"not json: secret-card-4111".as_slice(), None),
    ]);
    wait_until(Duration::from_secs(60), "4 processed, 2 parked", || {
        let counts = env.db().audit_counts();
        counts.get("MESSAGE_PROCESSED") == Some(&4) && counts.get("MESSAGE_DLQ") == Some(&2)
    });

    // The explorer's list and each lifecycle.
    let list = get(&env, &app, "/messages?limit=500");
    assert!(list["count"].as_u64().is_some_and(|n| n >= 6), "{list}");
    assert_no_secret("the explorer", &list);
    let num_id = id_of(&env, &app, "u-num");
    let lifecycle = get(&env, &app, &format!("/messages/{num_id}"));
    let error = lifecycle["lifecycle"]
        .as_array()
        .and_then(|rows| rows.iter().find_map(|r| r["error"].as_str()))
        .expect("the dead letter's error");
    assert!(
        error.contains("invalid type") && error.contains(MASK),
        "{error}"
    );
    assert_no_secret("the lifecycle", &lifecycle);

    // The message view's record: payload (text, JSON, base64, hex: what
    // the console downloads) and projection row.
    let ann_id = id_of(&env, &app, "u-ann");
    let record = get(&env, &app, &format!("/messages/{ann_id}/record"));
    assert_eq!(record["masked"], json!(["/data/email"]), "{record}");
    let email = &record["payload_json"]["data"]["email"];
    assert!(is_mask(email), "{record}");
    assert_eq!(record["payload_json"]["data"]["name"], "Name of u-ann");
    assert_eq!(record["projection"]["table"], "users");
    assert_eq!(
        &record["projection"]["row"]["email"], email,
        "same value, same mask"
    );
    use base64::Engine as _;
    let downloaded = base64::engine::general_purpose::STANDARD
        .decode(record["payload_base64"].as_str().expect("base64"))
        .expect("decodes");
    assert!(!String::from_utf8_lossy(&downloaded).contains("ann@example.com"));
    assert_eq!(
        record["payload_bytes"].as_u64(),
        Some(downloaded.len() as u64)
    );
    assert_no_secret("the record", &record);
    // Equal values, equal fingerprints; others differ.
    let ann2_record = get(
        &env,
        &app,
        &format!("/messages/{}/record", id_of(&env, &app, "u-ann2")),
    );
    let bob_record = get(
        &env,
        &app,
        &format!("/messages/{}/record", id_of(&env, &app, "u-bob")),
    );
    assert_eq!(&ann2_record["payload_json"]["data"]["email"], email);
    assert!(is_mask(&bob_record["payload_json"]["data"]["email"]));
    assert_ne!(&bob_record["payload_json"]["data"]["email"], email);
    // Not JSON: masked whole.
    let raw = get(
        &env,
        &app,
        &format!("/messages/{}/record", id_of(&env, &app, "raw")),
    );
    assert_eq!(raw["masked"], json!([""]));
    assert!(
        raw["payload_text"]
            .as_str()
            .is_some_and(|t| t.starts_with(MASK)),
        "{raw}"
    );

    // Dead letters: listed and shown.
    let dlq = get(&env, &app, "/dlq");
    assert_eq!(dlq["count"], 2, "{dlq}");
    assert_no_secret("the dead-letter list", &dlq);
    let shown = get(&env, &app, &format!("/dlq/{num_id}"));
    assert_eq!(shown["payload_encoding"], "utf8");
    let parked: Value =
        serde_json::from_str(shown["payload"].as_str().expect("payload")).expect("json");
    assert!(is_mask(&parked["data"]["email"]), "{shown}");
    assert_no_secret("a dead letter", &shown);

    // The read API.
    let user = get(&env, &app, "/users/u-ann");
    assert_eq!(&user["user"]["email"], email);
    assert_no_secret("a user", &user);
    let one = get(&env, &app, "/transactions/tx-zed");
    assert!(
        is_mask(&one["metadata"]["counterparty_name"]) && is_mask(&one["user_id"]),
        "{one}"
    );
    assert!(is_mask(&one["enrichment"]["counterparty"]) && is_mask(&one["searchable_content"]));
    assert_no_secret("a transaction", &one);
    assert_no_secret("transactions", &get(&env, &app, "/transactions"));
    let (status, body) = env.api(&app, Method::GET, "/transactions?user_id=u-zed", None);
    assert_eq!(status, 400, "a masked column is no filter: {body}");

    // Search: shown masked; found by what is visible, never by a masked
    // value.
    let (status, page) = search(&env, &app, "q=completed");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count"], 1, "{page}");
    assert_no_secret("a search", &page);
    assert!(
        is_mask(&page["results"][0]["enrichment"]["counterparty"]),
        "{page}"
    );
    assert!(page["results"][0]["highlight"]
        .as_str()
        .is_some_and(|h| h.contains("<mark>")));
    for hidden in [
        "zelda",
        "quintessa",
        "%22zelda%20quintessa%22",
        "u-zed",
        "zelda%20or%20nothing",
    ] {
        let (status, page) = search(&env, &app, &format!("q={hidden}"));
        assert_eq!(status, 200, "{hidden}: {page}");
        assert_eq!(page["count"], 0, "{hidden}: {page}");
        assert!(page["next_cursor"].is_null(), "{hidden}: {page}");
    }
    for refused in ["q=completed%20-zelda", "q=completed&user_id=u-zed"] {
        let (status, body) = search(&env, &app, refused);
        assert_eq!(status, 400, "{refused}: {body}");
    }

    // Unmasking: refused to a viewer and an operator, an approver's
    // recorded once, then answered in clear.
    let token = |name: &str, role: &str| {
        let out = Launch::command(&env, &["operator", "add", name, "--role", role]).output();
        assert!(out.success, "{}{}", out.stdout, out.stderr);
        out.stdout.trim().to_owned()
    };
    let (vera, otto, april) = (
        token("vera", "viewer"),
        token("otto", "operator"),
        token("april", "approver"),
    );
    let path = format!("/messages/{ann_id}/unmask");
    let why = json!({"reason": "ticket 7: the customer asked which address we hold"});
    for (who, t) in [("viewer", &vera), ("operator", &otto)] {
        let (status, body) = env.request(&app, Method::POST, &path, Some(why.clone()), Some(t));
        assert_eq!(status, 403, "{who}: {body}");
        assert_no_secret(who, &body);
    }
    let (status, body) = env.request(
        &app,
        Method::POST,
        &path,
        Some(json!({"reason": "  "})),
        Some(&april),
    );
    assert_eq!(status, 400, "a blank reason: {body}");
    let db = env.db();
    let unmasked_entries = || {
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_UNMASKED' AND message_id = '{ann_id}'"
        ))
    };
    assert_eq!(unmasked_entries(), 0, "nothing recorded for refusals");
    let (status, clear) = env.request(&app, Method::POST, &path, Some(why.clone()), Some(&april));
    assert_eq!(status, 200, "{clear}");
    assert_eq!(clear["payload_json"]["data"]["email"], "ann@example.com");
    assert_eq!(clear["projection"]["row"]["email"], "ann@example.com");
    assert_eq!(clear["unmasked"], json!(["/data/email"]));
    assert_eq!(clear["masked"], json!([]));
    assert_eq!(unmasked_entries(), 1);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_UNMASKED' \
              AND message_id = '{ann_id}' AND chain_id IS NOT NULL \
              AND detail->>'requested_by' = 'april' AND detail->'operator'->>'role' = 'approver' \
              AND detail->>'reason' = 'ticket 7: the customer asked which address we hold' \
              AND detail->'pointers' = '[\"/data/email\"]'::jsonb"
        )),
        1,
        "who, which message, why and what, chained"
    );
    // Listed by the explorer as what it is, the record still masked.
    let entries = get(&env, &app, "/messages?status=MESSAGE_UNMASKED");
    assert_eq!(entries["count"], 1, "{entries}");
    assert!(is_mask(
        &get(&env, &app, &format!("/messages/{ann_id}/record"))["payload_json"]["data"]["email"]
    ));
    // The trail holds.
    let access = custodian::trail::Access::from_settings(&settings).expect("settings");
    let report = env
        .rt
        .block_on(access.verify(None, false, None))
        .expect("verify");
    assert!(report.holds, "{:?}", report.problems());
    app.stop().expect("graceful stop");
}

#[test]
fn masking_keeps_search_pages_honest_when_hits_are_hidden() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings_with(&masking_settings())).expect("custodian starts");
    // Three found only by their masked peer (ranked first: the peer weighs
    // most), two by their product, which is not masked.
    let mut events: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("tx-h{i}"),
                p2p(&format!("tx-h{i}"), "u-zed", "Zelda Quintessa"),
            )
        })
        .collect();
    events.extend((0..2).map(|i| (format!("tx-v{i}"), card(&format!("tx-v{i}"), "Zelda"))));
    let records: Vec<(Option<&str>, &[u8], Option<i32>)> = events
        .iter()
        .map(|(k, p)| (Some(k.as_str()), p.as_bytes(), None))
        .collect();
    env.produce(&records);
    wait_until(Duration::from_secs(60), "5 processed", || {
        env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&5)
    });
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let query = match &cursor {
            Some(c) => format!("q=zelda&limit=1&cursor={c}"),
            None => "q=zelda&limit=1".to_owned(),
        };
        let (status, page) = search(&env, &app, &query);
        assert_eq!(status, 200, "{page}");
        let text = page["results"].to_string();
        assert!(
            !text.contains("Quintessa") && !text.contains("u-zed"),
            "{text}"
        );
        let results = page["results"].as_array().expect("results");
        assert_eq!(page["count"].as_u64(), Some(results.len() as u64));
        assert!(results.len() <= 1, "{page}");
        seen.extend(
            results
                .iter()
                .map(|r| r["id"].as_str().expect("id").to_owned()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ["tx-v0", "tx-v1"], "the visible ones, each once");
    assert!(cursor.is_none(), "the pages end");
    app.stop().expect("graceful stop");
}
