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

/// custodian with eight transaction events and one binary record settled:
/// keys alice (partition 0, five records) and bob (partition 1, four);
/// the odd events are of an unknown type, so dead letters, and so is the
/// binary record.
struct Explored {
    env: TestEnv,
    app: Running,
}

impl Explored {
    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.env.api(self.app.http_addr, Method::GET, path, None)
    }

    /// Follows `next_cursor` from `first` (a query without a cursor, with
    /// `limit=2`) to the end; each page's entries through `take`.
    fn walk<T>(&self, first: &str, take: impl Fn(&serde_json::Value) -> Vec<T>) -> Vec<T> {
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("{first}&cursor={c}"),
                None => first.to_owned(),
            };
            let (code, page) = self.get(&path);
            assert_eq!(code, 200, "{page}");
            walked.extend(take(&page));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        walked
    }

    /// Partition 0's offsets 0..5, as an explorer query.
    fn offset_range(&self) -> String {
        format!(
            "/messages?topic={}&partition=0&offset_from=0&offset_to=5",
            self.env.topic
        )
    }
}

fn alice_bob_and_a_binary_record_settled() -> Explored {
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
    Explored { env, app }
}

/// By key: alice's five messages (a dead letter has a MESSAGE_FAILED and
/// a MESSAGE_DLQ entry: 3 + 2 x 2), newest first.
fn a_key_lists_its_messages_newest_first(x: &Explored) {
    let (code, page) = x.get("/messages?key=alice");
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
}

fn status_event_type_and_offsets_narrow_the_list(x: &Explored) {
    // By status: the dead letters (three unknown types and the binary one).
    let (_, dlq) = x.get("/messages?status=MESSAGE_DLQ");
    assert_eq!(dlq["count"], 5, "{dlq}");
    // By event type.
    let (_, created) = x.get("/messages?event_type=transaction.created&status=MESSAGE_PROCESSED");
    assert_eq!(created["count"], 4, "{created}");
    // By partition and offset range: offsets 1 and 2 of partition 0.
    let (_, range) = x.get(&format!(
        "/messages?topic={}&partition=0&offset_from=1&offset_to=3&status=MESSAGE_PROCESSED",
        x.env.topic
    ));
    let found = offsets(&range);
    assert_eq!(found.len(), 1, "{range}"); // offset 1 is a dead letter (odd event)
    assert_eq!(found, [2]);
}

/// A partition alone is listed by offset too, highest first: bob's four
/// records, offsets 3 down to 0.
fn a_partition_lists_by_offset_highest_first(x: &Explored) {
    let (_, bob) = x.get(&format!("/messages?topic={}&partition=1", x.env.topic));
    let bob_offsets = offsets(&bob);
    assert_eq!(bob_offsets.first(), Some(&3), "{bob}");
    assert_eq!(bob_offsets.last(), Some(&0), "{bob}");
    assert!(bob_offsets.windows(2).all(|w| w[0] >= w[1]), "{bob}");
}

/// An offset range pages by offset, highest first, two at a time; its
/// cursor is refused by the other ordering.
fn an_offset_range_pages_by_offset_and_its_cursor_is_refused_by_a_key_query(x: &Explored) {
    let range = x.offset_range();
    let (_, whole) = x.get(&format!("{range}&limit=500"));
    let walked = x.walk(&format!("{range}&limit=2"), |page| {
        page["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e["kafka_offset"].as_i64().expect("offset"),
                    e["id"].as_i64().expect("id"),
                )
            })
            .collect()
    });
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
    let (code, body) = x.get(&format!(
        "/messages?key=alice&limit=1&cursor={}",
        cursor_of(&x.get(&format!("{range}&limit=1")).1)
    ));
    assert_eq!(code, 400, "{body}");
}

fn an_id_finds_its_entries_and_an_empty_time_range_none(x: &Explored) {
    let (_, dlq) = x.get("/messages?status=MESSAGE_DLQ");
    let one = &ids(&dlq)[0];
    let (_, by_id) = x.get(&format!("/messages?id={one}"));
    assert!(ids(&by_id).iter().all(|i| i == one) && by_id["count"].as_u64() >= Some(1));
    let (_, none) = x.get("/messages?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z");
    assert_eq!(none["count"], 0);
}

/// Paging two at a time walks every entry exactly once, in one order.
fn paging_two_at_a_time_walks_every_entry_once(x: &Explored) {
    let (_, all) = x.get("/messages?limit=500");
    let everything = ids(&all);
    assert_eq!(everything.len() as i64, x.env.db().rows(Table::AuditLog));
    let walked = x.walk("/messages?limit=2", ids);
    assert_eq!(walked, everything);
}

fn bad_parameters_are_a_400_naming_them(x: &Explored) {
    for (query, named) in [
        ("status=BOGUS", "status"),
        ("partition=0", "partition"),
        ("limit=abc", "limit"),
        ("cursor=xyz", "cursor"),
        ("nonsense=1", "nonsense"),
    ] {
        let (code, body) = x.get(&format!("/messages?{query}"));
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.to_string().contains(named), "{query}: {body}");
    }
}

/// The original record: JSON payload parsed, and the projection row it
/// wrote, as it stands.
fn a_json_records_view_shows_its_payload_and_projection_row(x: &Explored) {
    let (_, created) = x.get("/messages?event_type=transaction.created&status=MESSAGE_PROCESSED");
    let json_id = &ids(&created)[0];
    let (code, record) = x.get(&format!("/messages/{json_id}/record"));
    assert_eq!(code, 200, "{record}");
    assert_eq!(
        record["payload_json"]["event_type"], "transaction.created",
        "{record}"
    );
    let projection = &record["projection"];
    assert_eq!(projection["table"], "transactions", "{record}");
    assert_eq!(
        projection["row"]["id"], record["payload_json"]["transaction"]["id"],
        "{record}"
    );
    assert_eq!(projection["row"]["last_message_id"], json_id.as_str());
    assert_eq!(projection["last_written_by_this_message"], true);
}

fn a_binary_records_view_shows_hex_and_base64(x: &Explored) {
    let (_, bob) = x.get("/messages?key=bob&status=MESSAGE_DLQ");
    let binary_id = bob["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["event_type"].is_null())
        .expect("the binary record's dead letter")["message_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, raw) = x.get(&format!("/messages/{binary_id}/record"));
    assert_eq!(raw["payload_hex"], "ff001080", "{raw}");
    assert_eq!(raw["payload_base64"], "/wAQgA==");
    assert!(raw["payload_text"].is_null() && raw["payload_json"].is_null());
    assert!(raw["projection"].is_null(), "{raw}");
    assert_eq!(raw["key"], "bob");
    let (code, _) = x.get(&format!("/messages/{}/record", uuid::Uuid::new_v4()));
    assert_eq!(code, 404);
}

#[test]
fn the_explorer_filters_pages_and_shows_records() {
    let explored = alice_bob_and_a_binary_record_settled();
    a_key_lists_its_messages_newest_first(&explored);
    status_event_type_and_offsets_narrow_the_list(&explored);
    a_partition_lists_by_offset_highest_first(&explored);
    an_offset_range_pages_by_offset_and_its_cursor_is_refused_by_a_key_query(&explored);
    an_id_finds_its_entries_and_an_empty_time_range_none(&explored);
    paging_two_at_a_time_walks_every_entry_once(&explored);
    bad_parameters_are_a_400_naming_them(&explored);
    a_json_records_view_shows_its_payload_and_projection_row(&explored);
    a_binary_records_view_shows_hex_and_base64(&explored);
    explored.app.stop().expect("graceful stop");
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
