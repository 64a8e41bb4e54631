//! The message explorer against real audit rows: each filter, cursor paging
//! through a whole result, bad parameters, and a message's original record.

use std::time::Duration;

use crate::support::{transaction_event, wait_until, Table, TestEnv};
use custodian::app::Running;
use reqwest::Method;

const PATIENCE: Duration = Duration::from_secs(60);

fn ids(page: &serde_json::Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["message_id"].as_str().expect("id").to_owned())
        .collect()
}

/// The offsets of a page's entries, in page order.
fn offsets(page: &serde_json::Value) -> Vec<i64> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["kafka_offset"].as_i64().expect("offset"))
        .collect()
}

fn cursor_of(page: &serde_json::Value) -> String {
    page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned()
}

#[test]
fn the_explorer_filters_pages_and_shows_records() {
    let env = TestEnv::new(2);
    let app = Running::start(env.settings()).expect("custodian starts");
    let events: Vec<String> = (0..8)
        .map(|i| {
            transaction_event(
                if i % 2 == 0 {
                    "transaction.created"
                } else {
                    "transaction.exploded"
                },
                &format!("{}-{i}", env.topic),
                1.0 + i as f64,
                "2024-01-01T12:00:00Z",
            )
        })
        .collect();
    // Keys alice (partition 0) and bob (partition 1); odd events are an
    // unknown type (dead letters); one binary record.
    let mut records: Vec<(Option<&str>, &[u8], Option<i32>)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (key, p) = if i < 5 { ("alice", 0) } else { ("bob", 1) };
            (Some(key), e.as_bytes(), Some(p))
        })
        .collect();
    let binary: &[u8] = &[0xff, 0x00, 0x10, 0x80];
    records.push((Some("bob"), binary, Some(1)));
    env.produce(&records);
    wait_until(PATIENCE, "all settled", || {
        env.committed() == [Some(5), Some(4)]
    });
    let get = |path: &str| env.api(app.http_addr, Method::GET, path, None);

    // By key: alice's five messages (a dead letter has a MESSAGE_FAILED and
    // a MESSAGE_DLQ entry: 3 + 2 x 2), newest first.
    let (code, page) = get("/messages?key=alice");
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["count"], 7, "{page}");
    let distinct: std::collections::HashSet<String> = ids(&page).into_iter().collect();
    assert_eq!(distinct.len(), 5);
    assert!(page["next_cursor"].is_null());
    let times: Vec<&str> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["occurred_at"].as_str().expect("time"))
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");

    // By status: the dead letters (three unknown types and the binary one).
    let (_, dlq) = get("/messages?status=MESSAGE_DLQ");
    assert_eq!(dlq["count"], 5, "{dlq}");
    // By event type.
    let (_, created) = get("/messages?event_type=transaction.created&status=MESSAGE_PROCESSED");
    assert_eq!(created["count"], 4, "{created}");
    // By partition and offset range: offsets 1 and 2 of partition 0.
    let (_, range) = get(&format!(
        "/messages?topic={}&partition=0&offset_from=1&offset_to=3&status=MESSAGE_PROCESSED",
        env.topic
    ));
    let found = offsets(&range);
    assert_eq!(found.len(), 1, "{range}"); // offset 1 is a dead letter (odd event)
    assert_eq!(found, [2]);
    // A partition alone is listed by offset too, highest first: bob's
    // four records, offsets 3 down to 0.
    let (_, bob) = get(&format!("/messages?topic={}&partition=1", env.topic));
    let bob_offsets = offsets(&bob);
    assert_eq!(bob_offsets.first(), Some(&3), "{bob}");
    assert_eq!(bob_offsets.last(), Some(&0), "{bob}");
    assert!(bob_offsets.windows(2).all(|w| w[0] >= w[1]), "{bob}");
    // An offset range pages by offset, highest first, two at a time.
    let range = format!(
        "/messages?topic={}&partition=0&offset_from=0&offset_to=5",
        env.topic
    );
    let (_, whole) = get(&format!("{range}&limit=500"));
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{range}&limit=2&cursor={c}"),
            None => format!("{range}&limit=2"),
        };
        let (code, page) = get(&path);
        assert_eq!(code, 200, "{page}");
        for e in page["entries"].as_array().expect("entries") {
            walked.push((
                e["kafka_offset"].as_i64().expect("offset"),
                e["id"].as_i64().expect("id"),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        walked.len(),
        7,
        "offsets 0..5 of partition 0: 3 processed, 2 x 2 dead letters"
    );
    assert_eq!(walked.len() as u64, whole["count"].as_u64().expect("count"));
    assert!(
        walked.windows(2).all(|w| w[0] > w[1]),
        "highest offset first: {walked:?}"
    );
    // A cursor of one ordering is refused by the other.
    let (code, body) = get(&format!(
        "/messages?key=alice&limit=1&cursor={}",
        cursor_of(&get(&format!("{range}&limit=1")).1)
    ));
    assert_eq!(code, 400, "{body}");
    // By id.
    let one = &ids(&dlq)[0];
    let (_, by_id) = get(&format!("/messages?id={one}"));
    assert!(ids(&by_id).iter().all(|i| i == one) && by_id["count"].as_u64() >= Some(1));
    // A time range that holds nothing.
    let (_, none) = get("/messages?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z");
    assert_eq!(none["count"], 0);

    // Paging two at a time walks every entry exactly once, in one order.
    let (_, all) = get("/messages?limit=500");
    let everything = ids(&all);
    let total = env.db().rows(Table::AuditLog);
    assert_eq!(everything.len() as i64, total);
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/messages?limit=2&cursor={c}"),
            None => "/messages?limit=2".to_owned(),
        };
        let (code, page) = get(&path);
        assert_eq!(code, 200, "{page}");
        walked.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked, everything);

    // Bad parameters: 400 with a JSON body naming them.
    for (query, named) in [
        ("status=BOGUS", "status"),
        ("partition=0", "partition"),
        ("limit=abc", "limit"),
        ("cursor=xyz", "cursor"),
        ("nonsense=1", "nonsense"),
    ] {
        let (code, body) = get(&format!("/messages?{query}"));
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.to_string().contains(named), "{query}: {body}");
    }

    // The original record: JSON payload parsed, binary as hex and base64.
    let json_id = &ids(&created)[0];
    let (code, record) = get(&format!("/messages/{json_id}/record"));
    assert_eq!(code, 200, "{record}");
    assert_eq!(
        record["payload_json"]["event_type"], "transaction.created",
        "{record}"
    );
    // Its projection row, as it stands: the transaction it created.
    let projection = &record["projection"];
    assert_eq!(projection["table"], "transactions", "{record}");
    assert_eq!(
        projection["row"]["id"], record["payload_json"]["transaction"]["id"],
        "{record}"
    );
    assert_eq!(projection["row"]["last_message_id"], json_id.as_str());
    assert_eq!(projection["last_written_by_this_message"], true);
    let (_, bob) = get("/messages?key=bob&status=MESSAGE_DLQ");
    let binary_id = bob["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["event_type"].is_null())
        .expect("the binary record's dead letter")["message_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, raw) = get(&format!("/messages/{binary_id}/record"));
    assert_eq!(raw["payload_hex"], "ff001080", "{raw}");
    assert_eq!(raw["payload_base64"], "/wAQgA==");
    assert!(raw["payload_text"].is_null() && raw["payload_json"].is_null());
    assert!(raw["projection"].is_null(), "{raw}");
    assert_eq!(raw["key"], "bob");
    let (code, _) = get(&format!("/messages/{}/record", uuid::Uuid::new_v4()));
    assert_eq!(code, 404);
    app.stop().expect("graceful stop");
}

#[test]
fn every_status_the_trail_can_hold_is_searchable() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let statuses = env.db().statuses_the_trail_holds();
    assert!(
        statuses.iter().any(|s| s == "MESSAGE_RETRY_SCHEDULED")
            && statuses.iter().any(|s| s == "MESSAGE_PUBLISHED"),
        "{statuses:?}"
    );
    for status in &statuses {
        let (code, page) = env.api(
            app.http_addr,
            Method::GET,
            &format!("/messages?status={status}"),
            None,
        );
        assert_eq!(code, 200, "{status}: {page}");
        assert_eq!(page["count"], 0, "{status}: {page}");
    }
    app.stop().expect("graceful stop");
}
