//! Three defects of the provable audit trail found by a hostile run, each
//! against real PostgreSQL, Redis and the mock Kafka cluster:
//! - a checkpoint file custodian cannot append to stops it at start naming
//!   `audit.checkpoint_file`; one that fails later turns `/ready` to 503
//!   and `GET /audit/verify` to `holds: false`, while `audit_checkpoints`
//!   still gets its rows;
//! - rows forged outside the chains (an unchained `audit_log` row while
//!   chaining is on, a legacy row newer than the freeze) fail verify naming
//!   the row, and the CLI exits non-zero, while an honest trail written
//!   before chaining (and with it off) still verifies;
//! - `GET /audit/verify` runs at most two at once: the rest wait, then
//!   answer 429 with Retry-After, and PostgreSQL never sees more than the
//!   bound's connections.

use std::time::Duration;

use crate::support::process::Launch;
use crate::support::{scratch_dir, wait_until, Table, TestEnv, TEST_TOKEN};
use custodian::app::Running;
use custodian::trail::verify::{Report, StrayKind};
use custodian::trail::{Access, CONCURRENT_VERIFIES};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use reqwest::Method;

/// The checkpoint signing key of these tests (base64 of a 32-byte seed).
const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub(crate) fn produce(env: &TestEnv, from: usize, n: usize) {
    let records: Vec<Vec<u8>> = (from..from + n)
        .map(|i| crate::support::created_event(&format!("tx-{i}")).into_bytes())
        .collect();
    let borrowed: Vec<(Option<&str>, &[u8], Option<i32>)> = records
        .iter()
        .map(|p| (Some("k"), p.as_slice(), Some(0)))
        .collect();
    env.produce(&borrowed);
}

pub(crate) fn wait_processed(env: &TestEnv, n: i64) {
    wait_until(Duration::from_secs(60), "every record processed", || {
        env.db()
            .rows_with_status(Table::AuditLog, "MESSAGE_PROCESSED")
            >= n
    });
}

fn verify(env: &TestEnv) -> Report {
    let access = Access::from_settings(&env.settings()).expect("settings");
    env.rt
        .block_on(access.verify(None, false, None))
        .expect("verify runs")
}

/// `custodian audit verify` on the test database: success, and stdout and
/// stderr together.
fn verify_cli(env: &TestEnv) -> (bool, String) {
    let output = Launch::command(env, &["audit", "verify"])
        .setting("log.level", "error")
        .output();
    (
        output.success,
        format!("{}{}", output.stdout, output.stderr),
    )
}

#[test]
fn a_checkpoint_file_that_cannot_be_opened_stops_check_config_and_the_start() {
    let env = TestEnv::new(1);
    let dir = scratch_dir("trail");
    for command in ["check-config", "run"] {
        let log = dir.join(format!("{command}.stderr"));
        let mut custodian = Launch::command(&env, &[command])
            .setting("audit.signing_key", SEED)
            // A directory: it exists, but lines cannot be appended to it.
            .setting("audit.checkpoint_file", dir.display())
            .quiet()
            .stderr_to(&log)
            .spawn();
        // Without the check, `run` would start and keep running.
        let status = custodian.exit_within(Duration::from_secs(20));
        let stderr = std::fs::read_to_string(&log).expect("stderr");
        assert!(
            status.is_some_and(|s| !s.success()),
            "{command} refuses to start: {status:?} {stderr}"
        );
        assert!(
            stderr.contains("audit.checkpoint_file"),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn a_checkpoint_file_failing_later_shows_in_ready_and_verify_and_the_rows_are_still_written() {
    let env = TestEnv::new(1);
    let dir = scratch_dir("trail");
    let file = dir.join("checkpoints.log");
    let app = Running::start(env.settings_with(&[
        ("audit.signing_key", SEED.into()),
        ("audit.checkpoint_file", file.display().to_string().into()),
        ("audit.checkpoint_every_entries", 10.into()),
        ("audit.checkpoint_interval", "1s".into()),
    ]))
    .expect("custodian starts");
    produce(&env, 0, 20);
    wait_processed(&env, 20);
    wait_until(Duration::from_secs(30), "a checkpoint in the file", || {
        std::fs::read_to_string(&file).is_ok_and(|t| !t.is_empty())
    });
    let (status, body) = env.api(&app, Method::GET, "/audit/verify", None);
    assert_eq!(
        (status, &body["holds"]),
        (200, &serde_json::json!(true)),
        "{body}"
    );

    // The file becomes a directory: no more lines can go there (even as root).
    std::fs::remove_file(&file).expect("remove the file");
    std::fs::create_dir(&file).expect("a directory in its place");
    let rows_before = env.db().rows(Table::AuditCheckpoints);
    produce(&env, 20, 20);
    wait_processed(&env, 40);
    wait_until(Duration::from_secs(30), "/ready says so", || {
        let (status, body) = env.request(&app, Method::GET, "/ready", None, None);
        status == 503
            && body["failing"] == serde_json::json!(["audit_checkpoint_file"])
            && body["audit_checkpoint_file"]
                .as_str()
                .is_some_and(|e| e.contains("checkpoints.log"))
    });
    // The table row is still written.
    wait_until(Duration::from_secs(30), "rows still written", || {
        env.db().rows(Table::AuditCheckpoints) > rows_before
    });
    let (status, body) = env.api(&app, Method::GET, "/audit/verify", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["holds"], false, "{body}");
    assert!(
        body["checkpoint_file_error"]
            .as_str()
            .is_some_and(|e| e.contains("checkpoints.log")),
        "{body}"
    );
    let (_, status_body) = env.api(&app, Method::GET, "/audit/status", None);
    assert!(
        status_body["checkpoints"]["file_error"].is_string(),
        "{status_body}"
    );

    // Back to a file: ready again, and the next checkpoint lands there.
    std::fs::remove_dir(&file).expect("remove the directory");
    produce(&env, 40, 20);
    wait_processed(&env, 60);
    wait_until(Duration::from_secs(30), "ready again", || {
        env.request(&app, Method::GET, "/ready", None, None).0 == 200
    });
    assert!(std::fs::read_to_string(&file).is_ok_and(|t| !t.is_empty()));
    app.stop().expect("graceful stop");
}

/// Runs the first `n` migrations on the test database (the rest at start).
pub(crate) fn migrate_first(env: &TestEnv, n: usize) {
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
    use diesel_migrations::MigrationHarness;
    let url = env.database_url.clone();
    env.rt.block_on(async move {
        let conn = AsyncPgConnection::establish(&url).await.expect("connect");
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
        tokio::task::spawn_blocking(move || {
            for _ in 0..n {
                wrapper
                    .run_next_migration(custodian::store::migrate::MIGRATIONS)
                    .expect("migration");
            }
        })
        .await
        .expect("migrations ran");
    });
}

#[test]
fn an_honest_trail_from_before_chaining_verifies_and_forged_unchained_and_legacy_rows_do_not() {
    let env = TestEnv::new(1);
    // A trail from before the lean layout: rows in the first tables.
    migrate_first(&env, 5);
    env.as_superuser(
        &env.superuser_url(),
        &["INSERT INTO message_audit (message_id, status, topic, kafka_partition, kafka_offset, consumer_group, occurred_at) \
           SELECT gen_random_uuid(), s, 'old', 0, g, 'old-group', now() \
             FROM generate_series(1, 3) g, unnest(ARRAY['MESSAGE_RECEIVED', 'MESSAGE_PROCESSED']) s",
          "INSERT INTO message_payloads (message_id, topic, kafka_partition, kafka_offset, payload) \
           SELECT gen_random_uuid(), 'old', 0, g, 'x' FROM generate_series(1, 3) g"],
    );
    // …then from before chaining: audit_log rows without a chain.
    migrate_first(&env, 1);
    env.as_superuser(
        &env.superuser_url(),
        &["INSERT INTO audit_log (message_id, status, topic, kafka_partition, kafka_offset, attempt, consumer_group, occurred_at) \
           SELECT gen_random_uuid(), 'MESSAGE_PROCESSED', 'old', 0, g, 1, 'old-group', now() FROM generate_series(4, 5) g"],
    );
    // Then custodian with chaining off (the benchmark's way), then on.
    let app = Running::start(env.settings_with(&[("audit.chain", false.into())]))
        .expect("custodian starts");
    produce(&env, 0, 5);
    wait_processed(&env, 2 + 5);
    app.stop().expect("graceful stop");
    let app = Running::start(env.settings()).expect("custodian starts again");
    produce(&env, 5, 5);
    wait_processed(&env, 2 + 10);

    let honest = verify(&env);
    assert!(honest.holds, "{honest:#?}");
    assert_eq!(honest.legacy_entries, 6, "{honest:#?}");
    assert!(honest.unchained_entries >= 2 + 5, "{honest:#?}");
    assert!(honest.strays.is_empty(), "{honest:#?}");
    let (ok, out) = verify_cli(&env);
    assert!(ok, "{out}");

    // A forged discard, unchained, "approved by compliance".
    let forged_id: i64 = {
        env.as_superuser(
        &env.superuser_url(),
            &["INSERT INTO audit_log (message_id, status, topic, kafka_partition, kafka_offset, attempt, consumer_group, occurred_at, detail) \
               SELECT message_id, 'MESSAGE_DISCARDED', topic, kafka_partition, kafka_offset, 1, consumer_group, now(), \
                      '{\"reason\": \"approved by compliance\", \"requested_by\": \"compliance\"}' \
                 FROM audit_log WHERE chain_id IS NOT NULL ORDER BY id DESC LIMIT 1"],
        );
        env.db()
            .newest_id(Table::AuditLog, Some("MESSAGE_DISCARDED"))
    };
    let report = verify(&env);
    assert!(!report.holds, "{report:#?}");
    assert!(
        report.chains.iter().all(|c| c.breach.is_none()),
        "the chains hold"
    );
    let stray = report
        .strays
        .iter()
        .find(|s| s.table == "audit_log")
        .expect("the forged row named");
    assert_eq!(stray.kind, StrayKind::UnchainedAfterChaining, "{report:#?}");
    assert_eq!(stray.id, Some(forged_id), "{report:#?}");
    assert_eq!(stray.status.as_deref(), Some("MESSAGE_DISCARDED"));
    let (ok, out) = verify_cli(&env);
    assert!(!ok, "the CLI fails: {out}");
    assert!(
        out.contains(&format!(
            "unchained after chaining: audit_log id {forged_id}"
        )),
        "names the row: {out}"
    );
    // The endpoint agrees, and so does what the console reads.
    let (status, body) = env.api(&app, Method::GET, "/audit/verify", None);
    assert_eq!(
        (status, &body["holds"]),
        (200, &serde_json::json!(false)),
        "{body}"
    );
    let (_, status_body) = env.api(&app, Method::GET, "/audit/status", None);
    assert_eq!(status_body["last_verify"]["holds"], false, "{status_body}");

    // Legacy rows newer than the freeze.
    env.as_superuser(
        &env.superuser_url(),
        &["INSERT INTO message_audit_v1 (message_id, status, topic, kafka_partition, kafka_offset, consumer_group, occurred_at) \
           VALUES (gen_random_uuid(), 'MESSAGE_DISCARDED', 'old', 0, 2, 'old-group', now())",
          "INSERT INTO message_payloads_v1 (message_id, topic, kafka_partition, kafka_offset, payload) \
           VALUES (gen_random_uuid(), 'old', 0, 2, 'forged')"],
    );
    let legacy_id = env.db().newest_id(Table::MessageAuditV1, None);
    let report = verify(&env);
    assert!(!report.holds);
    let legacy: Vec<_> = report
        .strays
        .iter()
        .filter(|s| s.kind == StrayKind::LegacyAfterFreeze)
        .collect();
    assert_eq!(legacy.len(), 2, "{report:#?}");
    assert!(legacy
        .iter()
        .any(|s| s.table == "message_audit_v1" && s.id == Some(legacy_id)));
    assert!(legacy
        .iter()
        .any(|s| s.table == "message_payloads_v1" && s.message_id.is_some()));
    assert_eq!(report.stray_entries, 3, "{report:#?}");
    app.stop().expect("graceful stop");
}

/// Connections the verifies hold open now, seen from PostgreSQL.
fn verify_connections(env: &TestEnv) -> i64 {
    env.db()
        .sessions_named("custodian audit verify", &env.database)
}

#[test]
fn concurrent_verifies_are_bounded_and_the_rest_answer_429() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    produce(&env, 0, 5);
    wait_processed(&env, 5);
    let connections_each = env.settings().audit.verify_connections as i64;
    let bound = CONCURRENT_VERIFIES as i64 * connections_each;

    // Hold every verify at its first read, so the running ones keep their
    // slots (and connections) while the rest queue.
    let url = env.superuser_url();
    let (locker, connection) = env
        .rt
        .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .expect("connect");
    env.rt.spawn(connection);
    env.rt
        .block_on(locker.batch_execute("BEGIN; LOCK TABLE audit_chains IN ACCESS EXCLUSIVE MODE"))
        .expect("lock");

    let addr = app.http_addr;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            env.rt.spawn(async move {
                let response = reqwest::Client::new()
                    .get(format!("http://{addr}/audit/verify?budget_ms=60000"))
                    .bearer_auth(TEST_TOKEN)
                    .send()
                    .await
                    .expect("HTTP request");
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").cloned();
                let body: serde_json::Value = response.json().await.expect("a JSON body");
                (status, retry_after, body)
            })
        })
        .collect();
    let mut most = 0;
    let started = std::time::Instant::now();
    while calls.iter().filter(|c| c.is_finished()).count() < 20 - CONCURRENT_VERIFIES
        && most <= bound
        && started.elapsed() < Duration::from_secs(30)
    {
        most = most.max(verify_connections(&env));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(most <= bound, "{most} verify connections, bound {bound}");
    env.rt
        .block_on(locker.batch_execute("COMMIT"))
        .expect("unlock");
    let answers: Vec<_> = calls
        .into_iter()
        .map(|c| env.rt.block_on(c).expect("call"))
        .collect();
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(refused.len(), 20 - CONCURRENT_VERIFIES, "{answers:?}");
    for (_, retry_after, body) in &refused {
        assert!(retry_after.is_some(), "Retry-After: {body}");
        assert_eq!(body["error"], "too_many_requests", "{body}");
    }
    assert!(
        answers
            .iter()
            .filter(|(s, _, b)| *s == 200 && b["holds"] == true)
            .count()
            == CONCURRENT_VERIFIES,
        "{answers:?}"
    );
    app.stop().expect("graceful stop");
}
