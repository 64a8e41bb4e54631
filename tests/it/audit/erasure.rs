//! Erasure that keeps the chain (issue 26), against real PostgreSQL,
//! Redis, the mock Kafka cluster and a local archive directory or S3:
//! erasing a key removes its bytes from the live partitions and from the
//! archived files (rewritten under a new manifest naming the old one),
//! records who asked, who approved (every erasure is four-eyes, issue 27)
//! and why in the chain, and verify still holds, counting the entries as
//! erased. Legal holds and retention are in `holds.rs`, which shares the
//! helpers here.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use custodian::app::Running;
use reqwest::Method;

use super::archive::{
    access, command, fixture, local_store, rows_in, s3_store, verify_with, Store,
};
use super::trail_defects::wait_processed;
use crate::support::TestEnv;

pub(super) const ALICE: &str = "alice@example.com";
pub(super) const BOB: &str = "bob@example.com";
pub(super) const CAROL: &str = "carol@example.com";

/// `n` records for each key, alternating partitions.
pub(super) fn produce_keyed(env: &TestEnv, from: usize, n: usize) {
    let records: Vec<(String, Vec<u8>)> = (from..from + n)
        .flat_map(|i| {
            [ALICE, BOB].map(|k| {
                (
                    k.to_owned(),
                    crate::support::created_event(&format!("tx-{k}-{i}")).into_bytes(),
                )
            })
        })
        .collect();
    let borrowed: Vec<(Option<&str>, &[u8], Option<i32>)> = records
        .iter()
        .enumerate()
        .map(|(i, (k, p))| (Some(k.as_str()), p.as_slice(), Some((i % 2) as i32)))
        .collect();
    env.produce(&borrowed);
}

/// The first column of the first row `sql` answers, as text.
/// Every erasure is four-eyes: `args` (an `audit erase`) asks, as the
/// shared token's holder; then a second person, an approver, approves it
/// and it runs. The approval's output.
pub(super) fn erase_approved(
    env: &TestEnv,
    args: &[&str],
    settings: &[(&'static str, serde_json::Value)],
) -> crate::support::process::Finished {
    let asked = command(env, args, settings).output();
    assert!(asked.success, "{}{}", asked.stdout, asked.stderr);
    let id = asked
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("request "))
        .expect("the request's id")
        .trim()
        .to_owned();
    let approver = approver_token(env);
    command(
        env,
        &[
            "approvals",
            "approve",
            &id,
            "--reason",
            "checked the request",
        ],
        settings,
    )
    .env("CUSTODIAN_TOKEN", &approver)
    .output()
}

/// Asks for an erasure over HTTP (as the shared token's holder), then a
/// second person approves it: the approval's answer.
pub(super) fn erase_over_http(
    env: &TestEnv,
    app: &Running,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, asked) = env.api(app, Method::POST, "/audit/erasures", Some(body));
    assert_eq!(status, 202, "a pending request: {asked}");
    let request = asked["approval"]["id"].as_i64().expect("request id");
    env.request(
        app,
        Method::POST,
        &format!("/approvals/{request}/approve"),
        Some(serde_json::json!({"reason": "checked"})),
        Some(&approver_token(env)),
    )
}

/// The token of `second-eyes`, an approver (added on first use).
pub(crate) fn approver_token(env: &TestEnv) -> String {
    let verb = if env
        .db()
        .count("SELECT count(*) AS n FROM operators WHERE name = 'second-eyes'")
        == 0
    {
        vec!["operator", "add", "second-eyes", "--role", "approver"]
    } else {
        vec!["operator", "rotate", "second-eyes"]
    };
    let out = crate::support::process::Launch::command(env, &verb).output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    out.stdout.trim().to_owned()
}

/// The erasure's result in an approval's output (`{"done": …}`).
pub(super) fn erased_of(out: &crate::support::process::Finished) -> serde_json::Value {
    out.stdout
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["done"].clone())
        .unwrap_or_default()
}

pub(super) fn one_text(env: &TestEnv, sql: &str) -> String {
    env.rt.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
                .await
                .expect("connect");
        tokio::spawn(connection);
        client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    })
}

/// Every file under `dir` holding `needle` as raw bytes.
pub(super) fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .expect("read file")
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Every archived entry under `dir`, decoded.
pub(super) fn archived_entries(dir: &Path) -> Vec<custodian::trail::entry::Entry> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                let bytes = bytes::Bytes::from(std::fs::read(&path).expect("read"));
                all.extend(custodian::trail::archive::parquet::decode(bytes).expect("decodes"));
            }
        }
    }
    all
}

#[test]
fn erasing_a_key_removes_its_bytes_everywhere_and_the_chain_still_verifies() {
    erase_a_key(local_store());
}

/// The same on the S3-protocol server: its stored objects (s3s-fs keeps
/// them as files) are scanned for the key's bytes.
#[test]
fn erasing_a_key_on_s3_removes_its_bytes_from_the_stored_objects() {
    erase_a_key(s3_store());
}

fn erase_a_key(store: Store) {
    let end = Utc::now() + chrono::Duration::seconds(10);
    let dir = store.dir.clone().expect("the store's files");
    let fx = fixture(2, &[end], &store);
    let (env, settings) = (&fx.env, &fx.settings);
    let app = Running::start(env.settings_with(settings)).expect("custodian starts");
    produce_keyed(env, 0, 40);
    wait_processed(env, 80);
    std::thread::sleep(
        (end - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200),
    );
    produce_keyed(env, 40, 20);
    wait_processed(env, 120);
    assert!(rows_in(env, &fx.names[0]) > 0);

    // The first period sealed, archived and dropped.
    let a = access(env, settings);
    let sealed = env.rt.block_on(a.seal(Utc::now())).expect("seals");
    assert_eq!(sealed.len(), 1);
    let archived = env.rt.block_on(a.archive(false)).expect("archives");
    assert!(archived[0].dropped);
    let alice_archived = archived_entries(&dir)
        .iter()
        .filter(|e| e.message_key.as_deref() == Some(ALICE))
        .count();
    assert!(alice_archived > 0, "alice is in the archive before");
    assert!(!files_holding(&dir, ALICE.as_bytes()).is_empty());
    let alice_live = env.db().count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE message_key = '{ALICE}'"
    ));
    assert!(alice_live > 0, "and in the live partitions");

    // Erased by the CLI: asked, then approved by a second person.
    let out = erase_approved(
        env,
        &[
            "audit",
            "erase",
            "--key",
            ALICE,
            "--reason",
            "GDPR art. 17, request 42",
        ],
        settings,
    );
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        erased_of(&out)["messages"].as_array().map(Vec::len),
        Some(60),
        "{}",
        out.stdout
    );

    // Gone from the database: key, key bytes, headers, payload, digest.
    let db = env.db();
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE message_key = '{ALICE}' \
              OR key_bytes = convert_to('{ALICE}', 'UTF8')"
        )),
        0
    );
    let erased = db.count(
        "SELECT count(*) AS n FROM audit_log WHERE erased_digest IS NOT NULL \
          AND payload IS NULL AND payload_sha256 IS NULL AND headers IS NULL AND blinding IS NULL",
    );
    assert_eq!(erased, alice_live, "every live entry of alice erased");
    assert!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE message_key = '{BOB}' AND payload IS NOT NULL"
        )) > 0,
        "bob untouched"
    );
    // Gone from every archived file (the old files deleted); bob's kept.
    assert_eq!(files_holding(&dir, ALICE.as_bytes()), Vec::<String>::new());
    let after = archived_entries(&dir);
    assert!(after.iter().any(|e| e.message_key.as_deref() == Some(BOB)));
    assert_eq!(
        after.iter().filter(|e| e.erased_digest.is_some()).count(),
        alice_archived
    );
    // The new manifest supersedes the old one.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_archives WHERE supersedes IS NOT NULL"),
        1
    );
    // Who asked, who approved, how and why, per message, in the chain.
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM audit_log WHERE status = 'MESSAGE_ERASED' \
              AND detail->>'requested_by' = 'shared-token' \
              AND detail->'operator'->>'channel' = 'cli' \
              AND detail->'approved_by'->>'name' = 'second-eyes' \
              AND detail->'approved_by'->>'role' = 'approver' \
              AND detail->>'reason' = 'GDPR art. 17, request 42'"
        ),
        60
    );
    // The request, its approval: chained too.
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM audit_log WHERE status IN ('REQUEST_CREATED', 'REQUEST_APPROVED') \
              AND chain_id IS NOT NULL"
        ),
        2
    );
    // The chain holds, erased entries counted as such, archive included.
    let report = verify_with(env, settings);
    assert!(report.holds, "{:?}", report.problems());
    assert_eq!(
        report.erased_entries as i64,
        alice_live + alice_archived as i64
    );
    assert!(report.archived_entries > 0);

    // The database takes no other change to an erased (or any) entry.
    let refused = env.as_superuser_result(
        &env.superuser_url(),
        "UPDATE audit_log SET error = 'x' WHERE erased_digest IS NOT NULL",
    );
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("append-only")),
        "{refused:?}"
    );

    // Through the API: bob's messages, one id at a time; bad requests are 400.
    let bob_id = one_text(
        env,
        &format!("SELECT message_id::text FROM audit_log WHERE message_key = '{BOB}' LIMIT 1"),
    );
    let (status, body) = env.api(
        &app,
        Method::POST,
        "/audit/erasures",
        Some(serde_json::json!({"message_id": bob_id, "reason": "request 43", "requested_by": "dpo"})),
    );
    assert_eq!(status, 400, "who asks comes from the token: {body}");
    let (status, body) = erase_over_http(
        env,
        &app,
        serde_json::json!({"message_id": bob_id, "reason": "request 43"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["outcome"]["erased"]["messages"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{body}"
    );
    let (status, body) = env.api(
        &app,
        Method::POST,
        "/audit/erasures",
        Some(serde_json::json!({"key": BOB, "message_id": bob_id, "reason": "x"})),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = env.request(
        &app,
        Method::POST,
        "/audit/erasures",
        Some(serde_json::json!({"key": BOB, "reason": "x"})),
        None,
    );
    assert_eq!(status, 401);
    let report = verify_with(env, settings);
    assert!(report.holds, "{:?}", report.problems());
    // The console's integrity line reads the service's latest verify: it
    // covers the archive and counts the erased entries.
    let (status, body) = env.api(&app, Method::GET, "/audit/verify", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["holds"], true, "{body}");
    let (status, body) = env.api(&app, Method::GET, "/audit/status", None);
    assert_eq!(status, 200, "{body}");
    let last = &body["last_verify"];
    assert_eq!(last["archived_periods"], 1, "{body}");
    assert_eq!(last["erased_entries"], report.erased_entries, "{body}");
    assert!(report.erased_entries as i64 > alice_live + alice_archived as i64);
    app.stop().expect("graceful stop");
}

/// A trail from every earlier layout: rows of the legacy tables (before
/// migration 000006) and chained entries of encoding version 1 (before
/// 000017). Erasing their key empties the legacy rows and the version 1
/// payloads; a version 1 entry keeps its key, which its hash covers as it
/// is; verify still holds.
#[test]
fn a_trail_from_earlier_layouts_is_erased_as_far_as_its_encoding_allows() {
    use custodian::store::chain::{partition_chain, Fields, Hasher, GENESIS};
    use sha2::Digest;
    const DAVE: &str = "dave@example.com";
    let env = TestEnv::new(1);
    let legacy_id = uuid::Uuid::new_v4();
    super::trail_defects::migrate_first(&env, 5);
    env.as_superuser(
        &env.superuser_url(),
        &[
            &format!(
                "INSERT INTO message_audit (message_id, status, topic, kafka_partition, kafka_offset, \
                 message_key, consumer_group, occurred_at) VALUES \
                 ('{legacy_id}', 'MESSAGE_RECEIVED', 'old', 0, 1, '{DAVE}', 'g', now()), \
                 ('{legacy_id}', 'MESSAGE_PROCESSED', 'old', 0, 1, '{DAVE}', 'g', now())"
            ),
            &format!(
                "INSERT INTO message_payloads (message_id, topic, kafka_partition, kafka_offset, \
                 message_key, payload) VALUES ('{legacy_id}', 'old', 0, 1, \
                 convert_to('{DAVE}', 'UTF8'), 'legacy secret')"
            ),
        ],
    );
    // Encoding version 1 entries, chained, as the writer before 000017 wrote them.
    super::trail_defects::migrate_first(&env, 11);
    let chain = partition_chain(&env.topic, 0);
    let at = Utc::now() - chrono::Duration::minutes(5);
    let payload = b"v1 secret";
    let digest: [u8; 32] = sha2::Sha256::digest(payload).into();
    let mut sql = vec![format!(
        "INSERT INTO audit_chains (name) VALUES ('{chain}')"
    )];
    let (mut hasher, mut prev) = (Hasher::default(), GENESIS);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for seq in 1..=3i64 {
        let id = uuid::Uuid::new_v4();
        let fields = Fields {
            chain: &chain,
            seq,
            message_id: id,
            status: "MESSAGE_PROCESSED",
            topic: &env.topic,
            kafka_partition: 0,
            kafka_offset: seq,
            message_key: Some(DAVE),
            event_type: None,
            attempt: 1,
            error: None,
            consumer_group: "g",
            occurred_at: at,
            detail: None,
            received_at: Some(at),
            received_detail: None,
            key_bytes: Some(DAVE.as_bytes()),
            headers: None,
            kafka_timestamp: None,
            payload_sha256: Some(&digest),
            blinding: None,
            erased_digest: None,
        };
        let hash = hasher.hash(&fields, &prev);
        let stamp = super::archive::stamp(at);
        sql.push(format!(
            "INSERT INTO audit_log (message_id, status, topic, kafka_partition, kafka_offset, \
             message_key, attempt, consumer_group, occurred_at, received_at, key_bytes, payload, \
             payload_sha256, chain_id, chain_seq, entry_hash) \
             SELECT '{id}', 'MESSAGE_PROCESSED', '{}', 0, {seq}, '{DAVE}', 1, 'g', '{stamp}', \
             '{stamp}', convert_to('{DAVE}', 'UTF8'), '\\x{}', '\\x{}', chain_id, {seq}, '\\x{}' \
             FROM audit_chains WHERE name = '{chain}'",
            env.topic,
            hex(payload),
            hex(&digest),
            hex(&hash)
        ));
        sql.push(format!(
            "UPDATE audit_chain_heads SET chain_seq = {seq}, entry_hash = '\\x{}' \
             WHERE chain_id = (SELECT chain_id FROM audit_chains WHERE name = '{chain}')",
            hex(&hash)
        ));
        prev = hash;
    }
    let sql: Vec<&str> = sql.iter().map(String::as_str).collect();
    env.as_superuser(&env.superuser_url(), &sql);
    env.migrate();
    let a = custodian::trail::Access::from_settings(&env.settings()).expect("settings");
    let before = env
        .rt
        .block_on(a.verify(None, false, None))
        .expect("verify");
    assert!(before.holds, "{:?}", before.problems());

    let erased = env
        .rt
        .block_on(a.erase(
            &custodian::trail::erase::Selector::Key(DAVE.into()),
            &custodian::trail::erase::Asked {
                actor: &custodian::operators::Actor::service("dpo"),
                approver: None,
            },
            "request 46",
        ))
        .expect("erases");
    assert_eq!(erased.messages.len(), 4, "{erased:?}");
    assert_eq!(erased.payload_only, 3, "{erased:?}");
    assert_eq!(erased.legacy_rows, 3, "{erased:?}");
    let db = env.db();
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM message_audit_v1 WHERE message_key = '{DAVE}'"
        )),
        0
    );
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM message_payloads_v1 \
              WHERE payload IS NOT NULL OR message_key IS NOT NULL"
        ),
        0
    );
    // Version 1: the payloads are gone, the keys stay (their hashes cover them).
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE payload IS NOT NULL"),
        0
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE message_key = '{DAVE}' AND chain_seq IS NOT NULL \
              AND status = 'MESSAGE_PROCESSED'"
        )),
        3
    );
    let after = env
        .rt
        .block_on(a.verify(None, false, None))
        .expect("verify");
    assert!(after.holds, "{:?}", after.problems());
    // A legacy row takes no other change.
    let refused = env.as_superuser_result(
        &env.superuser_url(),
        "UPDATE message_payloads_v1 SET topic = 'x'",
    );
    assert!(refused.is_err(), "{refused:?}");
}
