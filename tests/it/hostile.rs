//! What a hostile producer or API client found, each as a regression test:
//! operator texts that cannot be stored, replays that multiplied dead
//! letters, forged steering headers, an applied id reused for other bytes,
//! listings that read the whole queue, and a table of hostile records that
//! grows with every defect found.

use std::time::Duration;

use crate::support::{wait_until, PrivateRedis, TestEnv};
use custodian::app::Running;
use reqwest::Method;
use sha2::{Digest, Sha256};

const PATIENCE: Duration = Duration::from_secs(60);
const AT: &str = "2025-01-11T12:00:00Z";

/// A domain envelope of a type no route takes: parked as unknown_event_type
/// under `event_id`, however often it is replayed.
fn unroutable(event_id: &str, n: u32) -> String {
    serde_json::json!({"eventId": event_id, "type": "Exploded", "timestamp": AT, "data": {"n": n}})
        .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends `requests` at once (with the test token); answers in order.
fn concurrently(
    env: &TestEnv,
    addr: std::net::SocketAddr,
    requests: Vec<(Method, String, Option<serde_json::Value>)>,
) -> Vec<(u16, serde_json::Value)> {
    let client = reqwest::Client::new();
    env.rt
        .block_on(futures::future::join_all(requests.into_iter().map(
            |(method, path, body)| {
                let mut request = client
                    .request(method, format!("http://{addr}{path}"))
                    .bearer_auth(crate::support::TEST_TOKEN);
                if let Some(body) = body {
                    request = request.json(&body);
                }
                async move {
                    let response = request.send().await.expect("HTTP request");
                    let status = response.status().as_u16();
                    let text = response.text().await.expect("body");
                    let json = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{path}: {status} non-JSON ({e}): {text}"));
                    (status, json)
                }
            },
        )))
}

#[test]
fn operator_text_that_cannot_be_stored_is_refused_before_anything_is_published() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let id = uuid::Uuid::new_v4().to_string();
    env.produce_with_headers(unroutable(&id, 1).as_bytes(), &[]);
    wait_until(PATIENCE, "parked", || env.db().audited("MESSAGE_DLQ") == 1);

    let one = format!("/replay/{id}");
    let entry_path = format!("/dlq/{id}");
    let cases = [
        (
            Method::POST,
            one.as_str(),
            serde_json::json!({"reason": "a\u{0000}b"}),
            "reason",
        ),
        (
            Method::POST,
            one.as_str(),
            serde_json::json!({"reason": "ok", "requested_by": "eve\u{0000}"}),
            "requested_by",
        ),
        (
            Method::POST,
            one.as_str(),
            serde_json::json!({"reason": "bell \u{0007}"}),
            "reason",
        ),
        (
            Method::POST,
            "/replay",
            serde_json::json!({"topic": env.topic, "reason": "a\u{0000}b"}),
            "reason",
        ),
        (
            Method::DELETE,
            entry_path.as_str(),
            serde_json::json!({"reason": "a\u{0000}b"}),
            "reason",
        ),
    ];
    for (method, path, body, field) in cases {
        for _ in 0..3 {
            let (status, answer) = env.api(&app, method.clone(), path, Some(body.clone()));
            assert_eq!(status, 400, "{method} {path} {body}: {answer}");
            assert_eq!(answer["error"], "bad_request", "{answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(message.starts_with(field), "names {field}: {answer}");
        }
    }
    // Nothing was published, audited or parked again.
    assert_eq!(env.high_watermarks(), vec![1]);
    assert_eq!(env.db().audited("MESSAGE_REPLAYED"), 0);
    assert_eq!(env.dlq_entries().len(), 1);

    // Valid replays of a message that keeps failing: each copy's failure
    // replaces the entry, so one message keeps one entry.
    for round in 1..=3u32 {
        let (status, body) = env.api(
            &app,
            Method::POST,
            &one,
            Some(serde_json::json!({"reason": format!("round {round}\nafter a fix")})),
        );
        assert_eq!(status, 200, "{body}");
        wait_until(PATIENCE, "the copy parked again", || {
            let (status, entry) = env.api(&app, Method::GET, &format!("/dlq/{id}"), None);
            status == 200 && entry["replay_count"] == round
        });
    }
    assert_eq!(env.dlq_entries().len(), 1, "{:?}", env.dlq_entries());
    let lifecycle: Vec<String> = env
        .db()
        .lifecycle(&id)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        lifecycle
            .iter()
            .filter(|s| *s == "MESSAGE_REPLAYED")
            .count(),
        3,
        "{lifecycle:?}"
    );
    // Each REPLAYED row precedes its copy's arrival.
    let first_replayed = lifecycle.iter().position(|s| s == "MESSAGE_REPLAYED");
    let second_received = lifecycle
        .iter()
        .enumerate()
        .filter(|(_, s)| *s == "MESSAGE_RECEIVED")
        .nth(1)
        .map(|(i, _)| i);
    assert!(first_replayed < second_received, "{lifecycle:?}");
    app.stop().expect("graceful stop");
}

#[test]
fn concurrent_bulk_replays_publish_each_id_once() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    // Six events the database refuses until the test lifts its limit.
    env.limit_amounts();
    let events: Vec<String> = (0..6)
        .map(|i| {
            crate::support::transaction_event(
                "transaction.created",
                &format!("{}-{i}", env.topic),
                5000.0,
                AT,
            )
        })
        .collect();
    for event in &events {
        env.produce_with_headers(event.as_bytes(), &[]);
    }
    wait_until(PATIENCE, "six parked", || {
        env.db().audited("MESSAGE_DLQ") == 6
    });
    let ids: Vec<uuid::Uuid> = env.dlq_entries().iter().map(|e| e.message_id).collect();
    env.lift_amount_limit();

    let body = serde_json::json!({"topic": env.topic, "reason": "limit lifted"});
    let calls = (0..3)
        .map(|_| (Method::POST, "/replay".to_owned(), Some(body.clone())))
        .collect();
    let reports: Vec<serde_json::Value> = concurrently(&env, app.http_addr, calls)
        .into_iter()
        .map(|(status, report)| {
            assert_eq!(status, 200, "{report}");
            report
        })
        .collect();
    let replayed: u64 = reports
        .iter()
        .map(|r| r["replayed"].as_u64().expect("count"))
        .sum();
    assert_eq!(replayed, 6, "each id once across all calls: {reports:?}");
    assert!(reports.iter().all(|r| r["failed"] == 0), "{reports:?}");
    wait_until(PATIENCE, "the six copies applied", || {
        env.db().audited("MESSAGE_PROCESSED") == 6
    });
    assert_eq!(env.db().audited("MESSAGE_REPLAYED"), 6);
    for id in &ids {
        let replays = env
            .db()
            .lifecycle(&id.to_string())
            .iter()
            .filter(|(s, _)| s == "MESSAGE_REPLAYED")
            .count();
        assert_eq!(replays, 1, "{id}");
    }
    // One copy each reached Kafka: the original six plus six copies.
    assert_eq!(env.high_watermarks(), vec![12]);
    assert!(env.dlq_entries().is_empty());
    app.stop().expect("graceful stop");
}

#[test]
fn a_bulk_replay_takes_an_id_once_however_many_entries_it_has() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    // One producer id, two payloads: two entries, one id.
    let id = uuid::Uuid::new_v4().to_string();
    env.produce_with_headers(unroutable(&id, 1).as_bytes(), &[]);
    env.produce_with_headers(unroutable(&id, 2).as_bytes(), &[]);
    wait_until(PATIENCE, "two parked", || {
        env.db().audited("MESSAGE_DLQ") == 2
    });
    assert_eq!(env.dlq_entries().len(), 2);
    let body = serde_json::json!({"topic": env.topic, "reason": "once"});
    let (status, report) = env.api(&app, Method::POST, "/replay", Some(body));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["matched"], 1, "{report}");
    assert_eq!(report["replayed"], 1, "{report}");
    assert_eq!(env.high_watermarks(), vec![3]);
    app.stop().expect("graceful stop");
}

/// Produces one record to partition 0 whose headers are added through
/// librdkafka's C API, so their names may be any bytes.
fn produce_with_raw_headers(env: &TestEnv, payload: &[u8], headers: &[(&[u8], &[u8])]) {
    produce_raw(env, None, Some(payload), headers);
}

/// Produces any record to partition 0: any key, payload (or none) and
/// header names.
fn produce_raw(
    env: &TestEnv,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: &[(&[u8], &[u8])],
) {
    use rdkafka::message::OwnedHeaders;
    use rdkafka::producer::FutureRecord;
    let owned = OwnedHeaders::new_with_capacity(headers.len());
    // `BorrowedHeaders` is librdkafka's `rd_kafka_headers_t` pointer itself.
    let native = owned.as_borrowed() as *const _ as *mut rdkafka::bindings::rd_kafka_headers_t;
    for (name, value) in headers {
        // SAFETY: `native` is the live header list `owned` owns; librdkafka
        // copies the name and value.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_header_add(
                native,
                name.as_ptr().cast(),
                name.len() as isize,
                value.as_ptr().cast(),
                value.len() as isize,
            )
        };
        assert_eq!(
            err,
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        );
    }
    let mut record = FutureRecord::<[u8], [u8]>::to(&env.topic)
        .partition(0)
        .headers(owned);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    let producer = env.producer();
    env.rt
        .block_on(producer.send(record, Duration::from_secs(10)))
        .map_err(|(e, _)| e)
        .expect("kafka acknowledged");
}

#[test]
fn forged_steering_headers_neither_take_over_a_dead_letter_nor_an_id() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let victim = uuid::Uuid::new_v4().to_string();
    let original = unroutable(&victim, 1);
    env.produce_with_headers(original.as_bytes(), &[]);
    wait_until(PATIENCE, "victim parked", || {
        env.db().audited("MESSAGE_DLQ") == 1
    });
    let position = format!("{}/0/0", env.topic);

    // Claims to be a replayed copy of the victim, with other bytes.
    let forged = unroutable(&uuid::Uuid::new_v4().to_string(), 666);
    env.produce_with_headers(
        forged.as_bytes(),
        &[
            ("custodian-message-id", victim.as_bytes()),
            ("custodian-replayed-from", position.as_bytes()),
            ("custodian-replay-count", b"1"),
            ("custodian-signature", b"00ff"),
        ],
    );
    // The same claim under a name that reads as the id header up to a NUL.
    let nul_named = unroutable(&uuid::Uuid::new_v4().to_string(), 667);
    produce_with_raw_headers(
        &env,
        nul_named.as_bytes(),
        &[(b"custodian-message-id\0evil", victim.as_bytes())],
    );
    wait_until(PATIENCE, "all three parked", || {
        env.db().audited("MESSAGE_DLQ") == 3
    });

    // The victim's entry is untouched, and a replay republishes its bytes.
    let (status, entry) = env.api(&app, Method::GET, &format!("/dlq/{victim}"), None);
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["payload"], original.as_str(), "{entry}");
    assert_eq!(entry["offset"], 0, "{entry}");
    assert_eq!(
        env.db()
            .lifecycle(&victim)
            .iter()
            .filter(|(s, _)| s == "MESSAGE_RECEIVED")
            .count(),
        1
    );
    // The forgeries are parked under their own ids, and their RECEIVED rows
    // name the headers that were ignored.
    let untrusted = env.db().received_details();
    assert_eq!(untrusted.len(), 2, "{untrusted:?}");
    assert_eq!(
        untrusted[0]["untrusted_headers"],
        serde_json::json!([
            "custodian-message-id",
            "custodian-replayed-from",
            "custodian-replay-count",
            "custodian-signature"
        ])
    );
    assert_eq!(
        untrusted[1]["untrusted_headers"],
        serde_json::json!(["custodian-message-id"])
    );
    let (status, replayed) = env.api(
        &app,
        Method::POST,
        &format!("/replay/{victim}"),
        Some(serde_json::json!({"reason": "check the bytes"})),
    );
    assert_eq!(status, 200, "{replayed}");
    let offset = replayed["offset"].as_i64().expect("offset");
    let (_, payload, headers) = env.record_at(0, offset);
    assert_eq!(payload.as_deref(), Some(original.as_bytes()));
    assert!(headers.iter().any(|(k, _)| k == "custodian-signature"));
    app.stop().expect("graceful stop");
}

#[test]
fn an_applied_id_arriving_with_other_bytes_is_an_id_conflict_not_a_duplicate() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let event_id = uuid::Uuid::new_v4().to_string();
    let user = |name: &str| {
        serde_json::json!({"eventId": event_id, "type": "UserCreated", "timestamp": AT,
            "data": {"userId": format!("u-{event_id}"), "name": name, "email": "a@example.com"}})
        .to_string()
    };
    let (alice, mallory) = (user("Alice"), user("Mallory"));
    env.produce_with_headers(alice.as_bytes(), &[]);
    wait_until(PATIENCE, "applied", || {
        env.db().audited("MESSAGE_PROCESSED") == 1
    });
    env.produce_with_headers(mallory.as_bytes(), &[]);
    env.produce_with_headers(alice.as_bytes(), &[]);
    wait_until(PATIENCE, "conflict parked, redelivery audited", || {
        env.db().audited("MESSAGE_DLQ") == 1 && env.db().audited("MESSAGE_DUPLICATE") == 1
    });
    let entries = env.dlq_entries();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.error_kind, "id_conflict");
    assert_eq!(entry.payload.as_deref(), Some(mallory.as_str()));
    let applied = hex(&Sha256::digest(alice.as_bytes()));
    let this = hex(&Sha256::digest(mallory.as_bytes()));
    assert!(
        entry.error.contains(&applied) && entry.error.contains(&this),
        "{}",
        entry.error
    );
    assert_eq!(entry.payload_sha256.as_deref(), Some(this.as_str()));
    // The projection still holds what was applied.
    assert_eq!(
        env.db().user_name(&format!("u-{event_id}")).as_deref(),
        Some("Alice")
    );
    app.stop().expect("graceful stop");
}

/// Redis's count of bytes sent to clients.
fn redis_output_bytes(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(conn).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_net_output_bytes")
}

#[test]
fn filtered_listings_read_only_their_page_and_are_bounded() {
    let env = TestEnv::new(1);
    let redis = PrivateRedis::start();
    let app = Running::start(env.settings_with(&[("redis.url", redis.url().into())]))
        .expect("custodian starts");
    // 40 parked messages of 100 KB each: 4 MB of dead letters (the mock
    // cluster keeps about 5 MB per partition).
    let filler = "x".repeat(100 * 1024);
    for n in 0..40u32 {
        let payload = serde_json::json!({"eventId": uuid::Uuid::new_v4().to_string(),
            "type": "Exploded", "timestamp": AT, "data": {"n": n, "filler": filler}})
        .to_string();
        env.produce_with_headers(payload.as_bytes(), &[]);
    }
    wait_until(PATIENCE, "forty parked", || {
        env.db().audited("MESSAGE_DLQ") == 40
    });
    let client = redis::Client::open(redis.url()).expect("url");
    let mut conn = client.get_connection().expect("redis");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut conn)
        .expect("RESETSTAT");
    let before = redis_output_bytes(&mut conn);

    let topic = &env.topic;
    let calls = (0..16)
        .map(|i| {
            let path = if i % 2 == 0 {
                "/dlq?limit=1&error_kind=nomatch".to_owned()
            } else {
                format!("/dlq?limit=1&topic={topic}&error_kind=unknown_event_type")
            };
            (Method::GET, path, None)
        })
        .collect();
    let statuses = concurrently(&env, app.http_addr, calls);
    for (status, body) in &statuses {
        assert!(matches!(status, 200 | 429), "{status}: {body}");
        if *status == 200 {
            let expected = if body["entries"].as_array().is_some_and(|e| e.is_empty()) {
                0
            } else {
                1
            };
            assert_eq!(body["count"], expected, "{body}");
        }
    }
    assert!(statuses.iter().any(|(s, _)| *s == 200));
    let matched: Vec<&serde_json::Value> = statuses
        .iter()
        .filter(|(s, b)| *s == 200 && b["count"] == 1)
        .map(|(_, b)| b)
        .collect();
    assert!(matched.iter().all(|b| b["next_offset"] == 1), "{matched:?}");
    // At most one 100 KB entry per listing crossed from Redis, not the
    // whole queue each time (16 × 4 MB).
    let sent = redis_output_bytes(&mut conn) - before;
    assert!(sent < 8 * 110 * 1024 + 64 * 1024, "Redis sent {sent} bytes");
    let commands: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .expect("INFO");
    assert!(!commands.contains("cmdstat_lrange"), "{commands}");
    app.stop().expect("graceful stop");
}

/// A hostile record and what must become of it.
struct Hostile {
    what: &'static str,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The dead letter's error kind.
    error_kind: &'static str,
}

/// Every hostile record found so far. Add a row for each new one.
fn hostile_records() -> Vec<Hostile> {
    let transaction = |event_type: &str| {
        format!(
            r#"{{"event_type":"{event_type}","transaction":{{"id":"t-1","user_id":"u","transaction_type":"card","status":"completed","currency":"USD","amount":1}},"timestamp":"{AT}"}}"#
        )
    };
    // Amounts an f64 would round, zero or let through to the database.
    let amount = |amount: &str| {
        Some(
            transaction("transaction.created")
                .replace(r#""amount":1"#, &format!(r#""amount":{amount}"#))
                .into_bytes(),
        )
    };
    let row = |what, payload: Option<Vec<u8>>, error_kind| Hostile {
        what,
        key: None,
        payload,
        headers: Vec::new(),
        error_kind,
    };
    vec![
        row(
            "invalid UTF-8",
            Some(b"\xff\xfe{\"event_type\"\x00".to_vec()),
            "undecodable",
        ),
        row(
            "JSON nested 100,000 deep",
            Some("[".repeat(100_000).into_bytes()),
            "undecodable",
        ),
        row(
            "a 900 KB event type",
            Some(transaction(&"x".repeat(900 * 1024)).into_bytes()),
            "unknown_event_type",
        ),
        row("a tombstone", None, "undecodable"),
        Hostile {
            what: "binary and NUL header values",
            headers: vec![
                (b"bin".to_vec(), vec![0xff, 0x00, 0xfe]),
                (b"nul".to_vec(), b"a\0b".to_vec()),
            ],
            ..row(
                "",
                Some(transaction("transaction.exploded").into_bytes()),
                "unknown_event_type",
            )
        },
        Hostile {
            what: "a binary header name",
            headers: vec![(vec![0xff, 0xfe, b'h'], b"v".to_vec())],
            ..row(
                "",
                Some(transaction("transaction.created").into_bytes()),
                "undecodable",
            )
        },
        Hostile {
            what: "a 600 KB binary key",
            key: Some((0..600 * 1024).map(|i| (i % 251) as u8).collect()),
            ..row(
                "",
                Some(transaction("transaction.exploded").into_bytes()),
                "unknown_event_type",
            )
        },
        row("an amount of 1e-400", amount("1e-400"), "schema_violation"),
        row("an amount of 1e308", amount("1e308"), "schema_violation"),
        row(
            "an amount of 0.123456789 (nine decimals)",
            amount("0.123456789"),
            "schema_violation",
        ),
        row(
            "an amount of 1e999999999",
            amount("1e999999999"),
            "schema_violation",
        ),
        row(
            "an amount of 100,000 digits",
            amount(&"9".repeat(100_000)),
            "schema_violation",
        ),
    ]
}

#[test]
fn hostile_records_are_dead_lettered_whole_and_the_partition_keeps_flowing() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let records = hostile_records();
    for r in &records {
        let headers: Vec<(&[u8], &[u8])> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        produce_raw(&env, r.key.as_deref(), r.payload.as_deref(), &headers);
    }
    let valid = crate::support::created_event(&format!("{}-after", env.topic));
    env.produce_with_headers(valid.as_bytes(), &[]);
    let n = records.len() as i64;
    wait_until(
        PATIENCE,
        "every hostile record parked, the valid one processed",
        || env.db().audited("MESSAGE_DLQ") == n && env.db().audited("MESSAGE_PROCESSED") == 1,
    );
    wait_until(PATIENCE, "offsets committed to the end", || {
        env.committed_or_zero() == env.high_watermarks()
    });
    let entries = env.dlq_entries();
    assert_eq!(entries.len(), records.len());
    for (r, entry) in records.iter().zip(&entries) {
        let what = r.what;
        assert_eq!(entry.error_kind, r.error_kind, "{what}: {}", entry.error);
        assert_eq!(
            entry.payload_bytes().expect("payload decodes"),
            r.payload,
            "{what}"
        );
        assert_eq!(entry.key_bytes().expect("key decodes"), r.key, "{what}");
        assert!(
            entry.error.len() < 2048,
            "{what}: error text of {} bytes",
            entry.error.len()
        );
        if r.headers
            .iter()
            .all(|(k, _)| std::str::from_utf8(k).is_ok())
        {
            let restored: Vec<(Vec<u8>, Vec<u8>)> = entry
                .header_bytes()
                .expect("headers decode")
                .into_iter()
                .map(|(k, v)| (k.into_bytes(), v.unwrap_or_default()))
                .collect();
            assert_eq!(restored, r.headers, "{what}");
        } else {
            assert!(entry.headers_unreadable, "{what}");
        }
    }
    app.stop().expect("graceful stop");
}

/// A hostile API request and the answer it must get.
struct HostileRequest {
    what: &'static str,
    path: String,
    /// The status, and for a refusal the parameter its message names.
    status: u16,
    names: Option<&'static str>,
}

/// Every hostile request found so far. Add a row for each new one.
fn hostile_requests() -> Vec<HostileRequest> {
    use custodian::store::explorer::Cursor;
    let cursor = |at| {
        custodian::api::explorer::encode_cursor(&Cursor {
            at,
            id: 1,
            offset: None,
        })
    };
    let refused = |what, path: String, names| HostileRequest {
        what,
        path,
        status: 400,
        names: Some(names),
    };
    vec![
        // Was a 503 "postgres is unavailable" and a warning: PostgreSQL
        // refused the time (22008), an input fault taken for an outage.
        refused(
            "an explorer cursor before PostgreSQL's earliest time",
            format!(
                "/messages?cursor={}",
                cursor(chrono::DateTime::<chrono::Utc>::MIN_UTC)
            ),
            "cursor",
        ),
        refused(
            "an explorer cursor in the year -10000",
            format!(
                "/messages?cursor={}",
                cursor(
                    chrono::NaiveDate::from_ymd_opt(-10_000, 1, 1)
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .expect("a date chrono holds")
                        .and_utc()
                )
            ),
            "cursor",
        ),
        refused(
            "an explorer cursor that is not one",
            "/messages?cursor=bm90LWEtY3Vyc29y".to_owned(),
            "cursor",
        ),
        // Was a 503: PostgreSQL refuses a NUL in text (an input fault).
        refused(
            "a search cursor whose id holds a NUL",
            format!(
                "/transactions/search?q=card&cursor={}",
                custodian::api::search::encode_cursor(&custodian::store::search::Cursor {
                    rank: 0.5,
                    id: "tx\u{0}1".to_owned(),
                })
            ),
            "cursor",
        ),
        // Was refused although deferred routes write it.
        HostileRequest {
            what: "the explorer asked for parked retries",
            path: "/messages?status=MESSAGE_RETRY_SCHEDULED".to_owned(),
            status: 200,
            names: None,
        },
    ]
}

#[test]
fn hostile_requests_are_answered_as_the_requests_fault() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    for r in hostile_requests() {
        let what = r.what;
        let (status, answer) = env.api(&app, Method::GET, &r.path, None);
        assert_eq!(status, r.status, "{what}: {answer}");
        if let Some(named) = r.names {
            assert_eq!(answer["error"], "bad_request", "{what}: {answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(message.starts_with(named), "{what} names {named}: {answer}");
        }
    }
    app.stop().expect("graceful stop");
}
