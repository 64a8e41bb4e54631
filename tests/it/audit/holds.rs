//! Legal holds and retention (issue 26): a legal hold on a key blocks its
//! erasure; holds on a period or on a key in it block the retention's
//! deletion of an archived period; once released, the period is deleted
//! and verify carries the chains across it by its seal. Against real
//! PostgreSQL, Redis, the mock Kafka cluster and a local archive directory.

use std::time::Duration;

use chrono::Utc;
use custodian::app::Running;

use super::archive::{access, command, fixture, local_store, verify_with};
use super::erasure::{
    archived_entries, erase_approved, erase_over_http, one_text, produce_keyed, BOB, CAROL,
};
use super::trail_defects::wait_processed;

#[test]
fn legal_holds_block_erasure_and_retention_until_released() {
    let end = Utc::now() + chrono::Duration::seconds(10);
    let store = local_store();
    let dir = store.dir.clone().expect("a local store");
    let mut fx = fixture(2, &[end], &store);
    fx.settings.push(("audit.retention", "1d".into()));
    let (env, settings) = (&fx.env, &fx.settings);
    let app = Running::start(env.settings_with(settings)).expect("custodian starts");
    produce_keyed(env, 0, 20);
    wait_processed(env, 40);
    std::thread::sleep(
        (end - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200),
    );
    produce_keyed(env, 20, 10);
    wait_processed(env, 60);
    let a = access(env, settings);
    env.rt.block_on(a.seal(Utc::now())).expect("seals");
    env.rt.block_on(a.archive(false)).expect("archives");

    // A hold on bob: his erasure is refused, nothing changes.
    let run = |args: &[&str]| command(env, args, settings).output();
    let out = run(&["audit", "hold", "--key", BOB, "--reason", "litigation 7"]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let key_hold: i64 = out
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .expect("hold id");
    let bob_before = env.db().count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE message_key = '{BOB}'"
    ));
    let out = erase_approved(
        env,
        &["audit", "erase", "--key", BOB, "--reason", "request 44"],
        settings,
    );
    assert!(!out.success);
    assert!(out.stderr.contains("legal hold"), "{}", out.stderr);
    assert_eq!(
        env.db().count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE message_key = '{BOB}'"
        )),
        bob_before
    );
    assert_eq!(
        env.db()
            .count("SELECT count(*) AS n FROM audit_log WHERE erased_digest IS NOT NULL"),
        0
    );
    // The API says so too, when the request is approved.
    let (status, body) = erase_over_http(
        env,
        &app,
        serde_json::json!({"key": BOB, "reason": "request 44"}),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("legal hold")),
        "{body}"
    );

    // A period hold over the archived period as well.
    let from = (Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let to = end.to_rfc3339();
    let out = run(&[
        "audit",
        "hold",
        "--from",
        &from,
        "--to",
        &to,
        "--reason",
        "audit 2026",
    ]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let period_hold: i64 = out
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .expect("hold id");
    // Two days on, the period is past retention, but held.
    let later = Utc::now() + chrono::Duration::days(2);
    let kept = env
        .rt
        .block_on(a.retain(later, &custodian::operators::Actor::service("test")))
        .expect("retain runs");
    assert!(kept.deleted.is_empty());
    assert_eq!(kept.held, vec![(fx.names[0].clone(), period_hold)]);
    // Released: still held by the key hold (bob is in its files).
    let out = run(&[
        "audit",
        "release",
        &period_hold.to_string(),
        "--reason",
        "audit closed",
    ]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let kept = env
        .rt
        .block_on(a.retain(later, &custodian::operators::Actor::service("test")))
        .expect("retain runs");
    assert_eq!(kept.held, vec![(fx.names[0].clone(), key_hold)]);
    assert!(!archived_entries(&dir).is_empty());
    // Both released: deleted from the archive, and audited.
    let out = run(&[
        "audit",
        "release",
        &key_hold.to_string(),
        "--reason",
        "settled",
    ]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let done = env
        .rt
        .block_on(a.retain(later, &custodian::operators::Actor::service("test")))
        .expect("retain runs");
    assert_eq!(done.deleted, vec![fx.names[0].clone()]);
    assert!(done.not_deleted.is_empty(), "{:?}", done.not_deleted);
    assert!(
        archived_entries(&dir).is_empty(),
        "no archived file is left"
    );
    // A lifecycle is still shown: the deleted period is not searched.
    let live = one_text(
        env,
        "SELECT message_id::text FROM audit_log WHERE status = 'MESSAGE_PROCESSED' \
          ORDER BY id DESC LIMIT 1",
    );
    let out = run(&["audit", "show", &live]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let db = env.db();
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE status = 'AUDIT_HOLD'"),
        2
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE status = 'AUDIT_HOLD_RELEASED'"),
        2
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE status = 'ARCHIVE_DELETED'"),
        1
    );
    // A hold is never deleted or edited, only released once.
    let refused = env.as_superuser_result(&env.superuser_url(), "DELETE FROM audit_holds");
    assert!(refused.is_err(), "{refused:?}");
    // Verify holds: the deleted period is named, each chain carried across
    // it by its seal and checked on through the live partitions.
    let report = verify_with(env, settings);
    assert!(report.holds, "{:?}", report.problems());
    assert_eq!(report.deleted_by_retention, vec![fx.names[0].clone()]);
    // Each partition's chain: its first entries gone with the period, the
    // rest checked after them.
    let partitions: Vec<_> = report
        .chains
        .iter()
        .filter(|c| c.chain.starts_with("partition/"))
        .collect();
    assert_eq!(partitions.len(), 2);
    for c in partitions {
        assert!(
            c.entries > 0 && c.last_seq > c.entries as i64,
            "{c:?} skips the deleted period and goes on"
        );
    }
    // Now bob can be erased.
    let out = erase_approved(
        env,
        &["audit", "erase", "--key", BOB, "--reason", "request 44"],
        settings,
    );
    assert!(out.success, "{}{}", out.stdout, out.stderr);

    // An erased entry given a key again (triggers off, as a superuser can):
    // its hash covers only the kept digest, yet verify names it edited.
    let forge = |value: &str| {
        env.as_superuser(
            &env.superuser_url(),
            &[
                "SET session_replication_role = replica",
                &format!(
                    "UPDATE audit_log SET message_key = {value} WHERE id = \
                     (SELECT min(id) FROM audit_log WHERE erased_digest IS NOT NULL)"
                ),
            ],
        )
    };
    forge("'forged@example.com'");
    let report = verify_with(env, settings);
    assert!(
        report.problems().iter().any(|p| p.contains("edited")),
        "{:?}",
        report.problems()
    );
    forge("NULL");
    assert!(verify_with(env, settings).holds);

    // An erasure done through the database function alone, and a hold
    // released by a bare UPDATE: the chain holds, but verify says neither
    // was recorded.
    let (id, at, digest) = env.rt.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
                .await
                .expect("connect");
        tokio::spawn(connection);
        let row = client
            .query_one(
                &format!(
                    "SELECT {}, c.name FROM audit_log l JOIN audit_chains c USING (chain_id) \
                     WHERE l.blinding IS NOT NULL AND l.status = 'MESSAGE_PROCESSED' LIMIT 1",
                    custodian::trail::entry::COLUMNS
                ),
                &[],
            )
            .await
            .expect("a v2 entry");
        let chain: String = row.get(custodian::trail::entry::COLUMN_COUNT);
        let entry = custodian::trail::entry::Entry::from_row(&row, Some(&chain)).expect("entry");
        let digest = custodian::trail::erase::digest(
            &mut custodian::store::chain::Hasher::default(),
            &entry,
        )
        .expect("a v2 digest");
        (entry.id, entry.recorded_at, digest)
    });
    let hex = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    env.as_superuser(
        &env.superuser_url(),
        &[
            &format!(
                "SELECT custodian_audit_erase(ARRAY[{id}]::bigint[], ARRAY['{}']::timestamptz[], \
                 ARRAY['\\x{hex}']::bytea[])",
                super::archive::stamp(at)
            ),
            "INSERT INTO audit_holds (message_key, reason, held_by) VALUES ('eve@example.com', 'x', 'y')",
            "UPDATE audit_holds SET released_at = now(), released_by = 'nobody', release_reason = 'quietly' \
             WHERE message_key = 'eve@example.com'",
        ],
    );
    let report = verify_with(env, settings);
    assert!(
        report.chains.iter().all(|c| c.breach.is_none()),
        "{:?}",
        report.problems()
    );
    assert!(!report.holds);
    assert!(
        report
            .unrecorded
            .iter()
            .any(|p| p.contains("no MESSAGE_ERASED entry names them")),
        "{:?}",
        report.unrecorded
    );
    assert!(
        report
            .unrecorded
            .iter()
            .any(|p| p.contains("no AUDIT_HOLD_RELEASED entry")),
        "{:?}",
        report.unrecorded
    );

    // A message of carol's parked in the dead-letter queue: its bytes are
    // there too, so erasing her is refused until it is discarded.
    env.produce(&[(Some(CAROL), b"not an event".as_slice(), Some(0))]);
    crate::support::wait_until(Duration::from_secs(30), "carol parked", || {
        !env.dlq_entries().is_empty()
    });
    let out = erase_approved(
        env,
        &["audit", "erase", "--key", CAROL, "--reason", "request 45"],
        settings,
    );
    assert!(!out.success);
    assert!(
        out.stderr.contains("parked in the dead-letter queue"),
        "{}",
        out.stderr
    );
    let carol = env.dlq_entries()[0].message_id.to_string();
    let out = run(&["dlq", "discard", &carol, "--reason", "erasure request 45"]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let out = erase_approved(
        env,
        &["audit", "erase", "--key", CAROL, "--reason", "request 45"],
        settings,
    );
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        env.db().count(&format!(
            "SELECT count(*) AS n FROM audit_log WHERE message_key = '{CAROL}'"
        )),
        0
    );
    // Every chain still holds; only the two unrecorded changes above fail.
    let report = verify_with(env, settings);
    assert!(
        report.chains.iter().all(|c| c.breach.is_none()),
        "{:?}",
        report.problems()
    );
    assert_eq!(report.problems().len(), 2, "{:?}", report.problems());
    assert!(report.erased_entries > 0);
    app.stop().expect("graceful stop");
}
