//! An audit trail that lives for years (issue 26), against real
//! PostgreSQL, Redis, the mock Kafka cluster, a local directory and a real
//! S3-protocol server (s3s-fs, started by `dev/services.sh`):
//! - partitions are created ahead, and a boundary crossed under load keeps
//!   every chain whole;
//! - a period is sealed, archived, dropped, and verify holds across the
//!   archive and the live partitions, on both kinds of store;
//! - every kind of tamper with an archived file is caught and named;
//! - a crash during archive leaves the partition, or a verified archive;
//! - a trail written under the previous migrations still verifies after
//!   the partitioning migration, and its chains continue.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use custodian::app::Running;
use custodian::trail::verify::Report;
use custodian::trail::Access;
use reqwest::Method;

use super::trail_defects::wait_processed;
use crate::support::process::Launch;
use crate::support::{scratch_dir, Table, TestEnv};

/// The signing key of these tests (base64 of a 32-byte seed).
const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub(super) fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Replaces the (empty) first partition with short ones ending at `ends`
/// (in order): a boundary a test can cross within seconds. custodian
/// creates what follows the last one at start.
fn short_partitions(env: &TestEnv, ends: &[DateTime<Utc>]) -> Vec<String> {
    let mut sql = vec![
        "ALTER TABLE audit_log DETACH PARTITION audit_log_initial".to_owned(),
        "DROP TABLE audit_log_initial".to_owned(),
        "DELETE FROM audit_partitions".to_owned(),
    ];
    let mut names = Vec::new();
    let mut from: Option<String> = None;
    for (i, end) in ends.iter().enumerate() {
        let name = format!("audit_log_t{i}");
        let to = stamp(*end);
        let lower = from
            .as_ref()
            .map_or("MINVALUE".to_owned(), |f| format!("'{f}'"));
        sql.push(format!(
            "CREATE TABLE {name} (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        ));
        sql.push(format!(
            "ALTER TABLE {name} ADD CONSTRAINT {name}_chain_seq UNIQUE (chain_id, chain_seq)"
        ));
        sql.push(format!(
            "ALTER TABLE audit_log ATTACH PARTITION {name} FOR VALUES FROM ({lower}) TO ('{to}')"
        ));
        sql.push(format!(
            "INSERT INTO audit_partitions (name, from_time, to_time) VALUES ('{name}', {}, '{to}')",
            from.as_ref()
                .map_or("NULL".to_owned(), |f| format!("'{f}'"))
        ));
        from = Some(to);
        names.push(name);
    }
    let sql: Vec<&str> = sql.iter().map(String::as_str).collect();
    env.as_superuser(&env.superuser_url(), &sql);
    names
}

fn produce(env: &TestEnv, from: usize, n: usize) {
    let records: Vec<Vec<u8>> = (from..from + n)
        .map(|i| crate::support::created_event(&format!("tx-{i}")).into_bytes())
        .collect();
    let borrowed: Vec<(Option<&str>, &[u8], Option<i32>)> = records
        .iter()
        .enumerate()
        .map(|(i, p)| (Some("k"), p.as_slice(), Some((i % 2) as i32)))
        .collect();
    env.produce(&borrowed);
}

/// Entries in the partition named `name` (a table custodian may drop).
pub(super) fn rows_in(env: &TestEnv, name: &str) -> i64 {
    env.db().count(&format!(
        "SELECT count(*) AS n FROM audit_log WHERE tableoid = '{name}'::regclass"
    ))
}

pub(super) struct Store {
    settings: Vec<(&'static str, serde_json::Value)>,
    /// The local directory, for tests that tamper with files.
    pub(super) dir: Option<PathBuf>,
}

pub(super) fn local_store() -> Store {
    let dir = scratch_dir("archive");
    Store {
        settings: vec![("audit.archive.url", dir.display().to_string().into())],
        dir: Some(dir),
    }
}

/// The S3-protocol server `dev/services.sh` starts; its absence fails the
/// test (it is not skipped). `dir` is where s3s-fs keeps this prefix's
/// objects on disk, as plain files: what the server stores, byte for byte.
pub(super) fn s3_store() -> Store {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the tests through dev/test (it starts the S3 server)")
        })
    };
    let prefix = format!("it-{}", uuid::Uuid::new_v4().simple());
    Store {
        settings: vec![
            (
                "audit.archive.url",
                format!("s3://{}/{prefix}", var("TEST_S3_BUCKET")).into(),
            ),
            ("audit.archive.s3_endpoint", var("TEST_S3_ENDPOINT").into()),
            ("audit.archive.s3_region", var("TEST_S3_REGION").into()),
            ("audit.archive.s3_allow_http", true.into()),
            (
                "audit.archive.s3_access_key_id",
                var("TEST_S3_ACCESS_KEY").into(),
            ),
            (
                "audit.archive.s3_secret_access_key",
                var("TEST_S3_SECRET_KEY").into(),
            ),
        ],
        dir: Some(
            PathBuf::from(var("TEST_S3_DATA_DIR"))
                .join(var("TEST_S3_BUCKET"))
                .join(prefix),
        ),
    }
}

fn trail_settings(store: &Store, checkpoints: &Path) -> Vec<(&'static str, serde_json::Value)> {
    let mut all = vec![
        ("audit.signing_key", SEED.into()),
        (
            "audit.checkpoint_file",
            checkpoints.display().to_string().into(),
        ),
        ("audit.checkpoint_every_entries", 50.into()),
        ("audit.checkpoint_interval", "1s".into()),
        ("audit.partition", "day".into()),
        ("audit.archive.file_rows", 1000.into()),
    ];
    all.extend(store.settings.iter().cloned());
    all
}

pub(super) fn verify_with(env: &TestEnv, settings: &[(&'static str, serde_json::Value)]) -> Report {
    let access = Access::from_settings(&env.settings_with(settings)).expect("settings");
    env.rt
        .block_on(access.verify(None, false, None))
        .expect("verify runs")
}

pub(super) fn access(env: &TestEnv, settings: &[(&'static str, serde_json::Value)]) -> Access {
    Access::from_settings(&env.settings_with(settings)).expect("settings")
}

/// `custodian <args>` as a process with these settings.
pub(super) fn command(
    env: &TestEnv,
    args: &[&str],
    settings: &[(&'static str, serde_json::Value)],
) -> Launch {
    settings
        .iter()
        .fold(Launch::command(env, args), |l, (k, v)| match v {
            serde_json::Value::String(s) => l.setting(k, s),
            other => l.setting(k, other),
        })
}

/// A test database whose first partitions end at `ends`, and the trail
/// settings with `store`.
pub(super) struct Fixture {
    pub(super) env: TestEnv,
    pub(super) names: Vec<String>,
    pub(super) settings: Vec<(&'static str, serde_json::Value)>,
    pub(super) checkpoints: PathBuf,
}

pub(super) fn fixture(partitions: i32, ends: &[DateTime<Utc>], store: &Store) -> Fixture {
    let env = TestEnv::new(partitions);
    env.migrate();
    let names = short_partitions(&env, ends);
    let checkpoints = scratch_dir("trail").join("checkpoints.log");
    let settings = trail_settings(store, &checkpoints);
    Fixture {
        env,
        names,
        settings,
        checkpoints,
    }
}

#[test]
fn partitions_are_created_ahead_and_a_boundary_crossed_under_load_keeps_every_chain() {
    let boundary = Utc::now() + chrono::Duration::seconds(6);
    let Fixture {
        env,
        names,
        settings,
        ..
    } = fixture(2, &[boundary], &local_store());
    let app = Running::start(env.settings_with(&settings)).expect("custodian starts");

    // Ahead: from the boundary to the end of the second day after today.
    let ahead = env.db().count(
        "SELECT count(*) AS n FROM audit_partitions \
          WHERE to_time >= date_trunc('day', now(), 'UTC') + interval '3 days'",
    );
    assert_eq!(ahead, 1, "the partitions through today + 2 days exist");
    let days = env.db().count("SELECT count(*) AS n FROM audit_partitions");
    assert!(days >= 4, "the short one and three days at least: {days}");

    // Load across the boundary: batches until well past it.
    let mut sent = 0;
    while Utc::now() < boundary + chrono::Duration::seconds(3) {
        produce(&env, sent, 100);
        sent += 100;
        std::thread::sleep(Duration::from_millis(150));
    }
    wait_processed(&env, sent as i64);
    let next = env
        .db()
        .count("SELECT count(*) AS n FROM audit_partitions WHERE from_time IS NOT NULL");
    assert!(next >= 3);
    let before = rows_in(&env, &names[0]);
    let all = env.db().rows(Table::AuditLog);
    assert!(
        before > 0 && before < all,
        "entries on both sides of the boundary: {before} of {all}"
    );
    // Each chain runs on from one partition into the next, without a gap.
    let seams = env.db().count(&format!(
        "SELECT count(*) AS n FROM (SELECT chain_id, max(chain_seq) AS last FROM audit_log \
           WHERE tableoid = '{0}'::regclass GROUP BY chain_id) a \
         JOIN (SELECT chain_id, min(chain_seq) AS first FROM audit_log \
           WHERE tableoid <> '{0}'::regclass GROUP BY chain_id) b USING (chain_id) \
         WHERE b.first = a.last + 1",
        names[0]
    ));
    assert_eq!(
        seams, 2,
        "both partitions' chains continue across the boundary"
    );
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM (SELECT message_id FROM audit_log \
              WHERE status = 'MESSAGE_PROCESSED' GROUP BY message_id HAVING count(*) > 1) d"
        ),
        0,
        "no message processed twice"
    );
    let report = verify_with(&env, &settings);
    assert!(report.holds, "{:?}", report.problems());
    assert_eq!(report.entries_checked as i64, all);
    app.stop().expect("graceful stop");
}

/// Writes entries on both sides of a boundary `secs` from now and waits
/// past it: the first partition is over and can be sealed.
fn trail_across_a_boundary(
    env: &TestEnv,
    settings: &[(&'static str, serde_json::Value)],
    ends: &[DateTime<Utc>],
) -> (Running, usize) {
    let app = Running::start(env.settings_with(settings)).expect("custodian starts");
    let mut sent = 0;
    for end in ends {
        produce(env, sent, 150);
        sent += 150;
        wait_processed(env, sent as i64);
        let left = (*end - Utc::now()).to_std().unwrap_or_default();
        std::thread::sleep(left + Duration::from_millis(200));
    }
    produce(env, sent, 100);
    sent += 100;
    wait_processed(env, sent as i64);
    (app, sent)
}

fn seal_archive_drop_verify(store: Store) {
    let end = Utc::now() + chrono::Duration::seconds(10);
    let Fixture {
        env,
        names,
        settings,
        checkpoints,
    } = fixture(2, &[end], &store);
    let (app, sent) = trail_across_a_boundary(&env, &settings, &[end]);
    let sealed_rows = rows_in(&env, &names[0]);
    assert!(sealed_rows > 0);
    let archived_id: String = env.rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
            .query_one(
                &format!("SELECT message_id::text FROM audit_log WHERE tableoid = '{}'::regclass LIMIT 1", names[0]),
                &[],
            )
            .await
            .expect("an entry of the sealed period")
            .get(0)
    });

    // The CLI seals the ended period: a signed line in the file and a row.
    let out = command(
        &env,
        &["audit", "seal", "--before", &stamp(Utc::now())],
        &settings,
    )
    .output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("sealed {}", names[0])),
        "{}",
        out.stdout
    );
    let file = std::fs::read_to_string(&checkpoints).expect("checkpoint file");
    assert!(
        file.contains(&format!("seal/{}", names[0])),
        "the seal line is in the file"
    );
    assert_eq!(env.db().count("SELECT count(*) AS n FROM audit_seals"), 1);
    // A sealed partition takes no entry, even from the superuser's insert.
    let refused = env.rt.block_on(async {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(&env.superuser_url())
            .await
            .expect("connect");
        diesel::sql_query(format!(
            "INSERT INTO audit_log (message_id, status, topic, kafka_partition, kafka_offset, \
             attempt, consumer_group, occurred_at, recorded_at) VALUES (gen_random_uuid(), \
             'MESSAGE_PROCESSED', 'x', 0, 1, 1, 'g', now(), '{}')",
            stamp(end - chrono::Duration::seconds(1))
        ))
        .execute(&mut conn)
        .await
        .expect_err("a sealed partition refuses inserts")
        .to_string()
    });
    assert!(refused.contains("sealed"), "{refused}");

    // Archive, verify the copy, drop.
    let out = command(&env, &["audit", "archive"], &settings).output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("dropped"), "{}", out.stdout);
    assert_eq!(
        env.db().count(&format!(
            "SELECT count(*) AS n FROM pg_class WHERE relname = '{}'",
            names[0]
        )),
        0,
        "the partition is gone from PostgreSQL"
    );
    assert_eq!(
        env.db()
            .count("SELECT count(*) AS n FROM audit_partitions WHERE dropped_at IS NOT NULL"),
        1
    );

    // Verify reads the archive, then the live partitions, and holds.
    let report = verify_with(&env, &settings);
    assert!(report.holds, "{:?}", report.problems());
    assert_eq!(report.archived_periods, 1);
    assert_eq!(report.archived_entries as i64, sealed_rows);
    assert_eq!(report.entries_checked as i64, sent as i64);
    let out = command(&env, &["audit", "verify"], &settings).output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);

    // The archived message is found, and where: the API, the CLI, the explorer.
    let (status, body) = env.api(&app, Method::GET, &format!("/messages/{archived_id}"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["archived"], true, "{body}");
    assert_eq!(body["partitions"], serde_json::json!([names[0]]), "{body}");
    assert_eq!(body["files"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(
        body["lifecycle"][0]["status"], "MESSAGE_PROCESSED",
        "{body}"
    );
    let out = command(&env, &["audit", "show", &archived_id, "--json"], &settings).output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let shown: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(shown["entries"][0]["source"], "archive", "{shown}");
    assert_eq!(
        shown["archive"]["files_total"], 2,
        "two chains' files: {shown}"
    );
    let out = command(&env, &["audit", "show", &archived_id], &settings).output();
    assert!(
        out.stdout.contains("MESSAGE_PROCESSED") && out.stdout.contains("archive"),
        "{}",
        out.stdout
    );
    let unknown = uuid::Uuid::new_v4();
    let (status, _) = env.api(&app, Method::GET, &format!("/messages/{unknown}"), None);
    assert_eq!(status, 404);
    let out = command(&env, &["audit", "show", &unknown.to_string()], &settings).output();
    assert!(!out.success, "an unknown id is not found");
    let (status, page) = env.api(&app, Method::GET, "/messages?limit=5", None);
    assert_eq!(status, 200);
    let before: DateTime<Utc> =
        serde_json::from_value(page["archived_before"].clone()).expect("a time");
    assert_eq!(before.timestamp_micros(), end.timestamp_micros(), "{page}");

    // The chains go on: more entries, still whole.
    produce(&env, sent, 50);
    wait_processed(&env, (sent + 50) as i64 - sealed_rows);
    let report = verify_with(&env, &settings);
    assert!(report.holds, "{:?}", report.problems());
    if let Some(dir) = &store.dir {
        let files = std::fs::read_dir(dir.join(&names[0]))
            .expect("the archive")
            .count();
        assert!(files >= 3, "two chains' files and a manifest: {files}");
    }
    app.stop().expect("graceful stop");
}

#[test]
fn a_period_sealed_archived_to_a_directory_and_dropped_still_verifies() {
    seal_archive_drop_verify(local_store());
}

#[test]
fn a_period_sealed_archived_to_s3_and_dropped_still_verifies() {
    seal_archive_drop_verify(s3_store());
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn every_kind_of_tamper_with_an_archived_file_is_caught_and_named() {
    use custodian::trail::archive::parquet;
    let first = Utc::now() + chrono::Duration::seconds(10);
    let second = first + chrono::Duration::seconds(6);
    let store = local_store();
    let root = store.dir.clone().expect("a directory");
    let Fixture {
        env,
        names,
        settings,
        ..
    } = fixture(2, &[first, second], &store);
    let (app, _) = trail_across_a_boundary(&env, &settings, &[first, second]);
    let audit = access(&env, &settings);
    env.rt
        .block_on(audit.seal(Utc::now()))
        .expect("seals both periods");
    let archived = env.rt.block_on(audit.archive(false)).expect("archives");
    assert_eq!(archived.len(), 2, "{archived:?}");
    assert!(verify_with(&env, &settings).holds);

    let parquet_files: Vec<PathBuf> = files_under(&root.join(&names[0]))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    let target = parquet_files[0].clone();
    let name = target
        .strip_prefix(&root)
        .expect("under the root")
        .display()
        .to_string();
    let original = std::fs::read(&target).expect("the file");
    let caught = |what: &str, expect_in_problem: &str| {
        let report = verify_with(&env, &settings);
        assert!(!report.holds, "{what}: verify must fail");
        let problems = report.problems().join("\n");
        assert!(
            problems.contains(expect_in_problem),
            "{what}: a problem names {expect_in_problem}:\n{problems}"
        );
    };

    // Edited: one byte of the file changed.
    let mut edited = original.clone();
    let middle = edited.len() / 2;
    edited[middle] ^= 0x55;
    std::fs::write(&target, &edited).expect("edit");
    caught("edited", &name);
    // Truncated.
    std::fs::write(&target, &original[..original.len() / 2]).expect("truncate");
    caught("truncated", &name);
    // Deleted.
    std::fs::remove_file(&target).expect("delete");
    caught("deleted", &format!("archive file {name} is missing"));
    // Reordered: the same entries, two of them swapped, written as a valid file.
    let mut entries = parquet::decode(bytes::Bytes::from(original.clone())).expect("decodes");
    entries.swap(1, 2);
    std::fs::write(&target, parquet::encode(&entries).expect("encodes")).expect("reorder");
    caught(
        "reordered",
        &format!("archive file {name}: its entries are out of sequence order (reordered)"),
    );
    std::fs::write(&target, &original).expect("restore");
    assert!(
        verify_with(&env, &settings).holds,
        "restored, it holds again"
    );

    // Manifest swap: the second period's manifest in place of the first's.
    let manifest = |partition: &str| {
        files_under(&root.join(partition))
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "json"))
            .expect("a manifest")
    };
    let (m0, m1) = (manifest(&names[0]), manifest(&names[1]));
    let kept = std::fs::read(&m0).expect("manifest");
    std::fs::copy(&m1, &m0).expect("swap");
    let m0_name = m0.strip_prefix(&root).expect("under").display().to_string();
    caught("manifest swapped", &m0_name);
    std::fs::write(&m0, &kept).expect("restore");
    assert!(verify_with(&env, &settings).holds);
    app.stop().expect("graceful stop");
}

#[test]
fn a_crash_during_archive_leaves_the_partition_or_a_verified_archive() {
    let end = Utc::now() + chrono::Duration::seconds(10);
    let Fixture {
        env,
        names,
        settings,
        ..
    } = fixture(2, &[end], &local_store());
    let (app, _) = trail_across_a_boundary(&env, &settings, &[end]);
    let audit = access(&env, &settings);
    env.rt.block_on(audit.seal(Utc::now())).expect("seals");
    let rows = rows_in(&env, &names[0]);
    let launch = || command(&env, &["audit", "archive"], &settings);
    // Killed once the files are written, before the archive is recorded;
    // then once recorded, before the drop.
    for (point, recorded) in [("archive_uploaded", 0), ("archive_recorded", 1)] {
        let out = launch().env("OUTCOME_CRASH_POINT", point).output();
        assert!(!out.success, "{point}: the process died there");
        assert!(
            out.stderr.contains(&format!("crash point {point} reached")),
            "{point}: {}",
            out.stderr
        );
        assert_eq!(
            env.db().count("SELECT count(*) AS n FROM audit_archives"),
            recorded,
            "{point}: archives recorded"
        );
        assert_eq!(
            rows_in(&env, &names[0]),
            rows,
            "{point}: the partition is still whole"
        );
        assert_eq!(
            env.db()
                .count("SELECT count(*) AS n FROM audit_partitions WHERE dropped_at IS NOT NULL"),
            0,
            "{point}: nothing dropped"
        );
        let report = verify_with(&env, &settings);
        assert!(report.holds, "{point}: {:?}", report.problems());
    }
    // The run after them checks the recorded archive again and drops.
    let out = launch().output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        env.db().count("SELECT count(*) AS n FROM audit_archives"),
        1,
        "one archive recorded, not one per attempt"
    );
    let report = verify_with(&env, &settings);
    assert!(report.holds, "{:?}", report.problems());
    assert_eq!(report.archived_entries as i64, rows);
    app.stop().expect("graceful stop");
}

#[test]
fn a_drop_without_a_recorded_archive_and_the_service_role_are_refused_by_the_database() {
    let end = Utc::now() + chrono::Duration::seconds(2);
    let Fixture {
        env,
        names,
        settings,
        ..
    } = fixture(1, &[end], &local_store());
    std::thread::sleep(Duration::from_secs(3));
    let audit = access(&env, &settings);
    env.rt.block_on(audit.seal(Utc::now())).expect("seals");
    let refused = |sql: &str| {
        env.rt.block_on(async {
            use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
            let mut conn = AsyncPgConnection::establish(&env.superuser_url())
                .await
                .expect("connect");
            for statement in sql.split(';') {
                if let Err(e) = diesel::sql_query(statement).execute(&mut conn).await {
                    return e.to_string();
                }
            }
            String::new()
        })
    };
    // Sealed, with its seal recorded, but no archive: not dropped.
    let drop = format!("SELECT custodian_audit_partition_drop('{}')", names[0]);
    let err = refused(&drop);
    assert!(err.contains("no seal and verified archive"), "{err}");
    // custodian's service role can neither drop, seal, nor record a seal.
    for sql in [
        format!("SET ROLE custodian_audit_writer; {drop}"),
        format!(
            "SET ROLE custodian_audit_writer; SELECT custodian_audit_partition_seal('{}')",
            names[0]
        ),
        "SET ROLE custodian_audit_writer; INSERT INTO audit_seals (partition_name, entries, line) \
         VALUES ('x', 0, 'forged')"
            .to_owned(),
    ] {
        let err = refused(&sql);
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
    assert_eq!(
        env.db().count(&format!(
            "SELECT count(*) AS n FROM pg_class WHERE relname = '{}'",
            names[0]
        )),
        1,
        "the partition is still there"
    );
}

#[test]
fn a_trail_written_before_partitioning_verifies_after_the_migration_and_its_chains_go_on() {
    use custodian::store::chain::{partition_chain, Fields, Hasher, GENESIS};
    let env = TestEnv::new(1);
    super::trail_defects::migrate_first(&env, 15);
    // A chain of this test's partition 0, written as the previous
    // migrations' writer did (sequence numbers, hashes, a unique index).
    let chain = partition_chain(&env.topic, 0);
    let mut hasher = Hasher::default();
    let mut prev = GENESIS;
    let mut inserts = vec![format!(
        "INSERT INTO audit_chains (name) VALUES ('{chain}')"
    )];
    let occurred = Utc::now() - chrono::Duration::days(40);
    for seq in 1..=30i64 {
        let id = uuid::Uuid::new_v4();
        let fields = Fields {
            chain: &chain,
            seq,
            message_id: id,
            status: "MESSAGE_PROCESSED",
            topic: &env.topic,
            kafka_partition: 0,
            kafka_offset: 1000 + seq,
            message_key: None,
            event_type: None,
            attempt: 1,
            error: None,
            consumer_group: "old-group",
            occurred_at: occurred,
            detail: None,
            received_at: None,
            received_detail: None,
            key_bytes: None,
            headers: None,
            kafka_timestamp: None,
            payload_sha256: None,
            // Encoding version 1, as written then.
            blinding: None,
            erased_digest: None,
        };
        let hash = hasher.hash(&fields, &prev);
        inserts.push(format!(
            "INSERT INTO audit_log (message_id, status, topic, kafka_partition, kafka_offset, attempt, \
             consumer_group, occurred_at, chain_id, chain_seq, entry_hash) \
             SELECT '{id}', 'MESSAGE_PROCESSED', '{}', 0, {}, 1, 'old-group', '{}', chain_id, {seq}, \
             '\\x{}' FROM audit_chains WHERE name = '{chain}'",
            env.topic,
            1000 + seq,
            stamp(occurred),
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        prev = hash;
    }
    let inserts: Vec<&str> = inserts.iter().map(String::as_str).collect();
    env.as_superuser(&env.superuser_url(), &inserts);

    // The partitioning migration (and any after it) runs at start.
    let settings = trail_settings(
        &local_store(),
        &scratch_dir("migrated").join("checkpoints.log"),
    );
    let app = Running::start(env.settings_with(&settings)).expect("custodian starts");
    assert_eq!(
        env.db().count(
            "SELECT count(*) AS n FROM audit_log WHERE tableoid = 'audit_log_initial'::regclass"
        ),
        30,
        "the old table became the first partition, rows untouched"
    );
    let report = verify_with(&env, &settings);
    assert!(report.holds, "{:?}", report.problems());
    assert_eq!(report.entries_checked, 30);
    // The chain continues from its head: seq 31 on.
    super::trail_defects::produce(&env, 0, 20);
    wait_processed(&env, 50);
    assert_eq!(
        env.db().count(&format!(
            "SELECT max(chain_seq) AS n FROM audit_log l JOIN audit_chains c USING (chain_id) \
              WHERE c.name = '{chain}'"
        )),
        50
    );
    let report = verify_with(&env, &settings);
    assert!(report.holds, "{:?}", report.problems());
    assert_eq!(report.entries_checked, 50);
    app.stop().expect("graceful stop");
}
