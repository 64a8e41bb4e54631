//! Transaction search (`GET /transactions/search`) over the projection the
//! pipeline builds from seed-003 events: matches by merchant, counterparty
//! and asset, filters, keyset paging that holds while updates land, and
//! hostile query text answered 400 or safely, never 500.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{wait_until, Table, TestEnv};
use custodian::app::Running;
use reqwest::Method;
use serde_json::{json, Value};

/// One seed-003 transaction (full state, as created/updated events carry).
struct Tx<'a> {
    id: String,
    user: &'a str,
    kind: &'a str,
    status: &'a str,
    amount: f64,
    created_at: &'a str,
    product: Option<&'a str>,
    metadata: Value,
}

impl Tx<'_> {
    fn event(&self, event_type: &str, timestamp: &str) -> String {
        json!({
            "event_type": event_type,
            "transaction": {
                "id": self.id,
                "user_id": self.user,
                "transaction_type": self.kind,
                "product": self.product,
                "status": self.status,
                "currency": "USD",
                "amount": self.amount,
                "created_at": self.created_at,
                "metadata": self.metadata,
            },
            "timestamp": timestamp,
        })
        .to_string()
    }
}

fn card<'a>(id: String, user: &'a str, merchant: &str) -> Tx<'a> {
    Tx {
        id,
        user,
        kind: "card",
        status: "completed",
        amount: 4.5,
        created_at: "2024-01-10T09:00:00Z",
        product: None,
        metadata: json!({ "merchant_name": merchant, "card_last_four": "4242" }),
    }
}

/// Publishes the events and waits until the projection has `rows` rows
/// whose versions add up to `versions`.
fn apply(env: &TestEnv, events: &[(String, String)], rows: i64, versions: i64) {
    let records: Vec<(Option<&str>, &[u8], Option<i32>)> = events
        .iter()
        .map(|(key, payload)| (Some(key.as_str()), payload.as_bytes(), None))
        .collect();
    env.produce(&records);
    wait_until(Duration::from_secs(60), "events applied", || {
        env.db().rows(Table::Transactions) == rows && env.db().versions() == versions
    });
}

/// `GET /transactions/search?{query}` with the test token.
pub(super) fn search(env: &TestEnv, app: &Running, query: &str) -> (u16, Value) {
    env.api(
        app,
        Method::GET,
        &format!("/transactions/search?{query}"),
        None,
    )
}

fn ids(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn finds_transactions_by_merchant_counterparty_and_asset_with_highlights_and_versions() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let id = |n: &str| format!("{}-{n}", env.topic);
    let coffee = card(id("coffee"), "u1", "Starbucks Reserve");
    let books = card(id("books"), "u1", "Amazon");
    let peer = Tx {
        id: id("peer"),
        user: "u2",
        kind: "p2p",
        status: "completed",
        amount: -20.0,
        created_at: "2024-01-11T09:00:00Z",
        product: None,
        metadata: json!({ "counterparty_name": "Alice Johnson" }),
    };
    let coin = Tx {
        id: id("coin"),
        user: "u2",
        kind: "crypto",
        status: "pending",
        amount: 0.5,
        created_at: "2024-01-12T09:00:00Z",
        product: None,
        metadata: json!({ "asset": "btc", "network": "bitcoin" }),
    };
    let t = "2024-01-12T10:00:00Z";
    let mut events: Vec<(String, String)> = [&coffee, &books, &peer, &coin]
        .iter()
        .map(|tx| (tx.id.clone(), tx.event("transaction.created", t)))
        .collect();
    events.push((
        coffee.id.clone(),
        coffee.event("transaction.updated", "2024-01-12T11:00:00Z"),
    ));
    apply(&env, &events, 4, 5);

    for (query, expected) in [
        ("q=starbucks", &coffee.id),
        ("q=STARBUCKS%20reserve", &coffee.id),
        ("q=coffee", &coffee.id), // the merchant's category
        ("q=alice", &peer.id),
        ("q=%22alice%20johnson%22", &peer.id),
        ("q=btc", &coin.id),
        ("q=bitcoin", &coin.id), // the network
        ("q=amazon%20or%20nothing", &books.id),
    ] {
        let (status, page) = search(&env, &app, query);
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(ids(&page), vec![expected.clone()], "{query}");
    }
    let (_, page) = search(&env, &app, "q=starbucks");
    let hit = &page["results"][0];
    assert!(
        hit["highlight"]
            .as_str()
            .is_some_and(|h| h.contains("<mark>starbucks</mark>")),
        "{hit}"
    );
    assert!(hit["rank"].as_f64().is_some_and(|r| r > 0.0));
    // Seed 003's versioning fields: two events applied, enriched.
    assert_eq!(hit["version"], 2);
    assert_eq!(hit["enriched"], true);
    assert!(hit["enriched_at"].is_string() && hit["updated_at"].is_string());
    assert_eq!(hit["enrichment"]["merchant_name"], "Starbucks Reserve");
    assert!(page["next_cursor"].is_null());
    // A word nobody has, and an exclusion, match nothing.
    let (_, page) = search(&env, &app, "q=starbucks%20-reserve");
    assert_eq!(page["count"], 0);
    // Behind the token.
    let (status, _) = env.request(
        &app,
        Method::GET,
        "/transactions/search?q=starbucks",
        None,
        None,
    );
    assert_eq!(status, 401);
    app.stop().expect("clean stop");
}

#[test]
fn filters_narrow_the_results() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let id = |n: usize| format!("{}-{n}", env.topic);
    let days = [
        "2024-03-01T08:00:00Z",
        "2024-03-02T08:00:00Z",
        "2024-03-03T08:00:00Z",
    ];
    let mut events = Vec::new();
    for n in 0..12 {
        let mut tx = card(id(n), ["u1", "u2"][n % 2], "Uber Trip");
        tx.status = ["completed", "pending", "failed"][n % 3];
        tx.created_at = days[n % 3];
        if n == 11 {
            tx.kind = "p2p";
            tx.metadata = json!({ "counterparty_name": "Uber Driver" });
        }
        events.push((tx.id.clone(), tx.event("transaction.created", days[2])));
    }
    apply(&env, &events, 12, 12);

    let found = |query: &str| {
        let (status, page) = search(&env, &app, &format!("q=uber&limit=100&{query}"));
        assert_eq!(status, 200, "{query}: {page}");
        let mut ids = ids(&page);
        ids.sort();
        ids
    };
    let expect = |keep: &dyn Fn(usize) -> bool| {
        let mut ids: Vec<String> = (0..12).filter(|n| keep(*n)).map(id).collect();
        ids.sort();
        ids
    };
    assert_eq!(found(""), expect(&|_| true));
    assert_eq!(found("user_id=u1"), expect(&|n| n % 2 == 0));
    assert_eq!(found("status=pending"), expect(&|n| n % 3 == 1));
    assert_eq!(found("type=p2p"), expect(&|n| n == 11));
    assert_eq!(
        found("from=2024-03-02T00:00:00Z&to=2024-03-03T00:00:00Z"),
        expect(&|n| n % 3 == 1)
    );
    assert_eq!(
        found("user_id=u2&status=failed&from=2024-03-03T00:00:00Z"),
        expect(&|n| n % 2 == 1 && n % 3 == 2)
    );
    app.stop().expect("clean stop");
}

#[test]
fn paging_holds_while_updates_land() {
    let env = TestEnv::new(3);
    let app = Running::start(env.settings()).expect("custodian starts");
    let id = |n: usize| format!("{}-{n:02}", env.topic);
    const N: usize = 45;
    // Three rank levels: the name in the merchant only, also in the
    // product, and in both plus the category word.
    let txs: Vec<Tx<'_>> = (0..N)
        .map(|n| {
            let mut tx = card(id(n), "u1", "Starbucks");
            tx.status = "pending";
            tx.product = match n % 3 {
                0 => None,
                1 => Some("Starbucks Card"),
                _ => Some("Starbucks Starbucks Rewards"),
            };
            tx
        })
        .collect();
    let created: Vec<(String, String)> = txs
        .iter()
        .map(|tx| {
            (
                tx.id.clone(),
                tx.event("transaction.created", "2024-05-01T00:00:00Z"),
            )
        })
        .collect();
    apply(&env, &created, N as i64, N as i64);

    let mut seen: HashMap<String, Value> = HashMap::new();
    let mut order = Vec::new();
    let mut cursor: Option<String> = None;
    let mut extra = 0;
    for round in 0.. {
        let query = match &cursor {
            None => "q=starbucks&limit=10".to_owned(),
            Some(c) => format!("q=starbucks&limit=10&cursor={c}"),
        };
        let (status, page) = search(&env, &app, &query);
        assert_eq!(status, 200, "{page}");
        for hit in page["results"].as_array().expect("results") {
            let id = hit["id"].as_str().expect("id").to_owned();
            order.push((hit["rank"].as_f64().expect("rank"), id.clone()));
            assert!(
                seen.insert(id.clone(), hit.clone()).is_none(),
                "{id} shown twice"
            );
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
        // Between pages: every transaction (seen or not) changes status and
        // amount, and a new matching one arrives.
        let mut updates: Vec<(String, String)> = txs
            .iter()
            .map(|tx| {
                let mut tx = Tx {
                    status: "completed",
                    amount: 5.0 + round as f64,
                    ..card(tx.id.clone(), "u1", "Starbucks")
                };
                tx.product = txs.iter().find(|t| t.id == tx.id).and_then(|t| t.product);
                (
                    tx.id.clone(),
                    tx.event(
                        "transaction.updated",
                        &format!("2024-05-02T00:00:{round:02}Z"),
                    ),
                )
            })
            .collect();
        // Ranked first and sorting first: ahead of every cursor, where an
        // offset would shift the pages and show a row twice.
        let mut fresh = card(format!("{}-0-new{round}", env.topic), "u1", "Starbucks");
        fresh.product = Some("Starbucks Starbucks Rewards");
        updates.push((
            fresh.id.clone(),
            fresh.event("transaction.created", "2024-05-02T00:00:00Z"),
        ));
        extra += 1;
        let versions = N as i64 * (round as i64 + 2) + extra;
        apply(&env, &updates, N as i64 + extra, versions);
    }
    // Every transaction that matched throughout was shown exactly once, in
    // rank order, and pages read after an update show the new version.
    for n in 0..N {
        assert!(seen.contains_key(&id(n)), "{} missing", id(n));
    }
    assert_eq!(
        seen.len(),
        N,
        "rows that arrived ahead of the cursor stay behind it"
    );
    assert!(order.windows(2).all(|w| w[0].0 >= w[1].0), "{order:?}");
    assert!(
        seen.values()
            .any(|hit| hit["version"].as_i64() > Some(1) && hit["status"] == "completed"),
        "later pages show updated rows"
    );
    app.stop().expect("clean stop");
}

#[test]
fn hostile_query_text_is_a_400_naming_the_field_or_answered_never_a_500() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let tx = card(format!("{}-x", env.topic), "u1", "O'Reilly & Sons <b>");
    apply(
        &env,
        &[(
            tx.id.clone(),
            tx.event("transaction.created", "2024-01-01T00:00:00Z"),
        )],
        1,
        1,
    );
    let long = "a".repeat(201);
    let hostile = [
        "'",
        "\"",
        "\\",
        "&",
        "|",
        "!",
        "(",
        ")",
        ":*",
        "<->",
        "&|!():*",
        "''",
        "\"unclosed",
        "a & b | !c",
        "foo:*",
        "foo <-> bar",
        "-",
        "or",
        "--",
        "'; DROP TABLE transactions; --",
        "<script>alert(1)</script>",
        "%",
        "_",
        "💳",
        "ü",
        "o'reilly",
        "O'Reilly & Sons",
        "\u{202e}",
        "a\u{0}b",
        "\t",
        " ",
        "",
        &long,
    ];
    for q in hostile {
        let encoded: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
        let (status, body) = search(&env, &app, &format!("q={encoded}"));
        assert!(status == 200 || status == 400, "{q:?}: {status} {body}");
        if status == 400 {
            assert_eq!(body["error"], "bad_request", "{q:?}");
            assert!(
                body["message"].as_str().is_some_and(|m| m.starts_with("q")),
                "{q:?}: {body}"
            );
        }
    }
    // The punctuation is ignored, the words still found.
    let (_, page) = search(&env, &app, "q=o%27reilly%20%26%20sons");
    assert_eq!(ids(&page), vec![tx.id.clone()]);
    for (query, field) in [
        ("", "q"),
        ("q=x&cursor=%%%", "cursor"),
        ("q=x&cursor=eyJyIjoiTmFOIn0", "cursor"),
        ("q=x&limit=1000", "limit"),
        ("q=x&limit=-1", "limit"),
        ("q=x&from=2024-13-01", "from"),
        ("q=x&to=now", "to"),
        ("q=x&user_id=%01", "user_id"),
        ("q=x&colour=red", "colour"),
        ("q=%FF", "q"),
    ] {
        let (status, body) = search(&env, &app, query);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(field)),
            "{query}: {body}"
        );
    }
    assert_eq!(env.db().rows(Table::Transactions), 1);
    app.stop().expect("clean stop");
}
