//! The provable audit trail (issue 11), against real PostgreSQL and the
//! mock Kafka cluster: a trail custodian wrote verifies; every kind of
//! tampering a superuser can do with the triggers disabled is caught and
//! named (chain, sequence, kind); checkpoints signed with another key are
//! refused; chains stay continuous across a SIGKILL and a rebalance; and
//! reconcile finds one outcome per offset, and the gap a deleted row leaves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::process::{Launch, Process};
use crate::support::{scratch_dir, wait_until, Table, TestEnv};
use custodian::app::Running;
use custodian::config::Settings;
use custodian::trail::checkpoint::{Checkpoint, Signer};
use custodian::trail::checkpointer::Checkpointer;
use custodian::trail::reconcile::{Range, Request};
use custodian::trail::verify::{BreakKind, Report};
use custodian::trail::Access;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::Method;
use secrecy::SecretBox;

/// The checkpoint signing key of these tests (base64 of a 32-byte seed).
const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A file path of this test's own.
fn scratch(name: &str) -> PathBuf {
    scratch_dir("chain").join(name)
}

fn audit_overrides(file: &Path) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("audit.signing_key", SEED.into()),
        ("audit.checkpoint_file", file.display().to_string().into()),
        ("audit.checkpoint_every_entries", 25.into()),
        ("audit.checkpoint_interval", "1s".into()),
        ("audit.origin", "test.example/custodian".into()),
    ]
}

fn settings_for(env: &TestEnv, file: &Path, database_url: Option<&str>) -> Settings {
    let mut extra = audit_overrides(file);
    if let Some(url) = database_url {
        extra.push(("postgres.url", url.into()));
    }
    env.settings_with(&extra)
}

/// Signs every chain head not yet covered, as a last tick would.
fn checkpoint_now(env: &TestEnv, settings: &Settings) {
    let mut checkpointer = Checkpointer::from_settings(settings)
        .expect("settings")
        .expect("a signing key is configured");
    env.rt
        .block_on(checkpointer.tick(true))
        .expect("checkpoint written");
}

fn verify(env: &TestEnv, settings: &Settings, file: Option<&Path>) -> Report {
    let access = Access::from_settings(settings).expect("settings");
    env.rt
        .block_on(access.verify(file, false, None))
        .expect("verify runs")
}

/// A copy of the test database to tamper with; dropped with the value.
struct Copy<'a> {
    env: &'a TestEnv,
    name: String,
    url: String,
}

impl<'a> Copy<'a> {
    fn of(env: &'a TestEnv, case: &str) -> Copy<'a> {
        let name = format!("{}_{case}", env.database);
        env.as_superuser(
            env.admin_url(),
            &[&format!("CREATE DATABASE {name} TEMPLATE {}", env.database)],
        );
        let url = env.database_url_named(&name);
        Copy { env, name, url }
    }

    fn tamper(&self, statements: &[&str]) {
        let mut all = vec!["ALTER TABLE audit_log DISABLE TRIGGER USER"];
        all.extend_from_slice(statements);
        self.env.as_superuser(&self.url, &all);
    }
}

impl Drop for Copy<'_> {
    fn drop(&mut self) {
        self.env.as_superuser(
            self.env.admin_url(),
            &[&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )],
        );
    }
}

/// The one break of `report`, on `chain`.
fn only_break(report: &Report, chain: &str) -> (i64, BreakKind) {
    let broken: Vec<_> = report
        .chains
        .iter()
        .filter(|c| c.breach.is_some())
        .collect();
    assert_eq!(broken.len(), 1, "exactly one broken chain: {report:#?}");
    assert_eq!(broken[0].chain, chain, "{report:#?}");
    let b = broken[0].breach.as_ref().expect("break");
    assert!(!report.holds);
    (b.seq, b.kind)
}

/// A trail custodian wrote and signed, stopped: 60 records over two
/// partitions and one dead letter discarded by an operator (an entry on
/// the operator chain), checkpoints in the file and the table.
struct SignedTrail {
    env: TestEnv,
    settings: Settings,
    file: PathBuf,
    /// Partition 0's chain, the one the tampering cases change.
    chain: String,
    /// Its last sequence number.
    last: i64,
}

impl SignedTrail {
    /// `WHERE` of the entry at `seq` of partition 0's chain.
    fn at(&self, seq: i64) -> String {
        format!("chain_id = {} AND chain_seq = {seq}", self.chain_id())
    }

    /// Partition 0's chain id, as SQL.
    fn chain_id(&self) -> String {
        format!(
            "(SELECT chain_id FROM audit_chains WHERE name = '{}')",
            self.chain
        )
    }

    /// Verifies a copy of the database after `statements` ran on it as
    /// the superuser with the triggers off, against `file` if given
    /// (custodian's own `audit.checkpoint_file` is `configured`, if given).
    fn verify_tampered(
        &self,
        case: &str,
        statements: &[String],
        configured: Option<&Path>,
        file: Option<&Path>,
    ) -> Report {
        let copy = Copy::of(&self.env, case);
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        copy.tamper(&refs);
        let configured = configured.map_or_else(|| scratch("unused"), Path::to_path_buf);
        let settings = settings_for(&self.env, &configured, Some(&copy.url));
        verify(&self.env, &settings, file)
    }

    /// `statements` break partition 0's chain at `want`, and only there.
    fn assert_named(
        &self,
        case: &str,
        statements: &[String],
        file: Option<&Path>,
        want: (i64, BreakKind),
    ) {
        let report = self.verify_tampered(case, statements, None, file);
        assert_eq!(
            only_break(&report, &self.chain),
            want,
            "{case}: {report:#?}"
        );
    }

    /// Deletes the last three entries and every checkpoint of the chain in
    /// the database: only the file still knows how long it was.
    fn truncation(&self) -> Vec<String> {
        let id = self.chain_id();
        vec![
            format!(
                "DELETE FROM audit_log WHERE chain_id = {id} AND chain_seq > {}",
                self.last - 3
            ),
            "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER".into(),
            format!("DELETE FROM audit_checkpoints WHERE chain_id = {id}"),
        ]
    }
}

fn a_signed_trail_with_an_operator_entry() -> SignedTrail {
    let env = TestEnv::new(2);
    let file = scratch("checkpoints.log");
    let settings = settings_for(&env, &file, None);
    let app = Running::start(settings.clone()).expect("custodian starts");
    let records: Vec<(Option<&str>, Vec<u8>, Option<i32>)> = (0..60)
        .map(|i| {
            (
                Some("k"),
                crate::support::created_event(&format!("tx-{i}")).into_bytes(),
                Some(i % 2),
            )
        })
        .collect();
    let borrowed: Vec<(Option<&str>, &[u8], Option<i32>)> = records
        .iter()
        .map(|(k, p, part)| (*k, p.as_slice(), *part))
        .collect();
    env.produce(&borrowed);
    env.produce(&[(None, b"not json", Some(0))]);
    wait_until(Duration::from_secs(60), "every record audited", || {
        let db = env.db();
        db.rows_with_status(Table::AuditLog, "MESSAGE_PROCESSED")
            + db.rows_with_status(Table::AuditLog, "MESSAGE_DLQ")
            == 61
    });
    let parked = env.dlq_entries();
    assert_eq!(parked.len(), 1);
    let (status, body) = env.api(
        &app,
        Method::DELETE,
        &format!("/dlq/{}", parked[0].message_id),
        Some(serde_json::json!({"reason": "poison test"})),
    );
    assert_eq!(status, 200, "{body}");
    // The endpoint agrees before anything is touched.
    let (status, body) = env.api(&app, Method::GET, "/audit/verify?budget_ms=20000", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["holds"], true, "{body}");
    app.stop().expect("graceful stop");
    checkpoint_now(&env, &settings);
    let chain = format!("partition/{}/0", env.topic);
    SignedTrail {
        env,
        settings,
        file,
        chain,
        last: 0,
    }
}

/// The untouched trail verifies, every row on a chain, every chain matched
/// by a checkpoint; answers the last sequence number of partition 0's.
fn the_untouched_trail_verifies_against_its_checkpoints(trail: &SignedTrail) -> i64 {
    let clean = verify(&trail.env, &trail.settings, None);
    assert!(clean.holds, "{clean:#?}");
    assert_eq!(
        clean.entries_checked as i64,
        trail.env.db().rows(Table::AuditLog),
        "{clean:#?}"
    );
    let operator_entries = clean
        .chains
        .iter()
        .filter(|c| c.chain == "operator")
        .map(|c| c.entries)
        .next();
    assert_eq!(operator_entries, Some(1), "the operator chain: {clean:#?}");
    assert!(
        clean.chains.iter().all(|c| c.checkpoints_matched >= 1),
        "{clean:#?}"
    );
    let last = clean
        .chains
        .iter()
        .find(|c| c.chain == trail.chain)
        .expect("partition 0's chain")
        .last_seq;
    assert!(
        last >= 31,
        "30 processed + the dead-lettered one on partition 0: {last}"
    );
    last
}

fn an_edited_entry_is_named_edited(trail: &SignedTrail) {
    let edit = format!(
        "UPDATE audit_log SET kafka_offset = 999 WHERE {}",
        trail.at(5)
    );
    trail.assert_named("edit", &[edit], None, (5, BreakKind::Edited));
    let payload = format!(
        "UPDATE audit_log SET payload = 'replaced' WHERE {}",
        trail.at(3)
    );
    trail.assert_named("payload", &[payload], None, (3, BreakKind::Edited));
}

fn a_deleted_entry_is_named_deleted(trail: &SignedTrail) {
    let delete = format!("DELETE FROM audit_log WHERE {}", trail.at(7));
    trail.assert_named("delete", &[delete], None, (7, BreakKind::Deleted));
}

fn a_forged_entry_is_named_inserted(trail: &SignedTrail) {
    let id = trail.chain_id();
    let statements = [
        // Make room at 9 (two steps: the unique constraint holds per row)…
        format!("UPDATE audit_log SET chain_seq = chain_seq + 1000000 WHERE chain_id = {id} AND chain_seq >= 9"),
        format!("UPDATE audit_log SET chain_seq = chain_seq - 999999 WHERE chain_id = {id} AND chain_seq > 1000000"),
        // …and forge an entry there.
        format!(
            "INSERT INTO audit_log (message_id, status, topic, kafka_partition, kafka_offset, attempt, \
             consumer_group, occurred_at, chain_id, chain_seq, entry_hash) \
             SELECT gen_random_uuid(), 'MESSAGE_PROCESSED', topic, kafka_partition, 12345, 1, \
             consumer_group, occurred_at, chain_id, 9, sha256('forged') FROM audit_log WHERE {}",
            trail.at(8)
        ),
    ];
    trail.assert_named("insert", &statements, None, (9, BreakKind::Inserted));
}

fn two_swapped_entries_are_named_reordered(trail: &SignedTrail) {
    let statements = [
        format!(
            "UPDATE audit_log SET chain_seq = 1000000 WHERE {}",
            trail.at(11)
        ),
        format!("UPDATE audit_log SET chain_seq = 11 WHERE {}", trail.at(12)),
        format!(
            "UPDATE audit_log SET chain_seq = 12 WHERE {}",
            trail.at(1000000)
        ),
    ];
    trail.assert_named("swap", &statements, None, (11, BreakKind::Reordered));
}

fn a_truncated_tail_is_seen_only_against_the_checkpoint_file(trail: &SignedTrail) {
    let empty = scratch("empty.log");
    std::fs::write(&empty, "").expect("empty file");
    let without_file = trail.verify_tampered(
        "tail_unseen",
        &trail.truncation(),
        Some(&empty),
        Some(&empty),
    );
    assert!(
        without_file.holds,
        "without the file a truncated tail looks whole: that is what the file is for"
    );
    trail.assert_named(
        "tail",
        &trail.truncation(),
        Some(&trail.file),
        (trail.last - 2, BreakKind::Deleted),
    );
}

fn a_checkpoint_signed_with_another_key_is_refused(trail: &SignedTrail) {
    let forger = Signer::new(
        "test.example/custodian",
        &SecretBox::new(Box::new([42u8; 32])),
    );
    let forged = forger.sign(&Checkpoint {
        origin: "test.example/custodian".into(),
        chain: trail.chain.clone(),
        seq: trail.last,
        hash: [0; 32],
        time: chrono::Utc::now(),
    });
    let mut text = std::fs::read_to_string(&trail.file).expect("checkpoint file");
    text.push_str(&forged);
    text.push('\n');
    let tampered_file = scratch("forged.log");
    std::fs::write(&tampered_file, text).expect("write");
    let report = verify(&trail.env, &trail.settings, Some(&tampered_file));
    assert!(!report.holds);
    assert_eq!(report.refused_checkpoints.len(), 1, "{report:#?}");
    assert!(
        report.chains.iter().all(|c| c.breach.is_none()),
        "{report:#?}"
    );
}

fn the_command_line_names_the_break_and_fails(trail: &SignedTrail) {
    let copy = Copy::of(&trail.env, "cli");
    copy.tamper(&[&format!("DELETE FROM audit_log WHERE {}", trail.at(4))]);
    let output = Launch::command(&trail.env, &["audit", "verify", "--checkpoints"])
        .arg(&trail.file)
        .setting("postgres.url", &copy.url)
        .setting("audit.signing_key", SEED)
        .setting("audit.origin", "test.example/custodian")
        .setting("log.level", "error")
        .output();
    let stderr = &output.stderr;
    assert!(!output.success, "{stderr}");
    assert!(
        stderr.contains(&format!("{} seq 4: deleted", trail.chain)),
        "names chain, sequence and kind: {stderr}"
    );
}

#[test]
fn tampering_of_every_kind_is_detected_and_named_and_foreign_checkpoints_are_refused() {
    let mut trail = a_signed_trail_with_an_operator_entry();
    trail.last = the_untouched_trail_verifies_against_its_checkpoints(&trail);
    an_edited_entry_is_named_edited(&trail);
    a_deleted_entry_is_named_deleted(&trail);
    a_forged_entry_is_named_inserted(&trail);
    two_swapped_entries_are_named_reordered(&trail);
    a_truncated_tail_is_seen_only_against_the_checkpoint_file(&trail);
    a_checkpoint_signed_with_another_key_is_refused(&trail);
    the_command_line_names_the_break_and_fails(&trail);
}

/// Signs the heads, then verifies against the file: every chain holds and is
/// gap-free (its last sequence number is its number of rows), and every row
/// of `audit_log` is on a chain.
fn assert_every_chain_whole(env: &TestEnv, settings: &Settings, file: &Path) {
    checkpoint_now(env, settings);
    let report = verify(env, settings, Some(file));
    assert!(report.holds, "{report:#?}");
    assert_eq!(
        report.entries_checked as i64,
        env.db().rows(Table::AuditLog)
    );
    for c in &report.chains {
        assert_eq!(c.last_seq as u64, c.entries, "{c:#?}");
    }
}

#[test]
fn the_audit_role_may_insert_and_select_but_not_change_the_trail() {
    let env = TestEnv::new(1);
    env.migrate();
    env.rt.block_on(async {
        let mut conn = AsyncPgConnection::establish(&env.database_url)
            .await
            .expect("connect");
        diesel::sql_query("SET ROLE custodian_audit_writer")
            .execute(&mut conn)
            .await
            .expect("SET ROLE");
        diesel::sql_query("SELECT count(*) FROM audit_log")
            .execute(&mut conn)
            .await
            .expect("the role may read");
        for sql in [
            "UPDATE audit_log SET error = 'x'",
            "DELETE FROM audit_log",
            "UPDATE audit_checkpoints SET line = 'x'",
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
        ] {
            let err = diesel::sql_query(sql)
                .execute(&mut conn)
                .await
                .expect_err(sql);
            let text = err.to_string();
            assert!(
                text.contains("permission denied") || text.contains("must be owner"),
                "{sql}: {text}"
            );
        }
        diesel::sql_query("INSERT INTO audit_chains (name) VALUES ('partition/role-test/0')")
            .execute(&mut conn)
            .await
            .expect("the role may append");
    });
}

/// `custodian run` as a process, signing checkpoints into `file`, in small
/// batches so a kill lands mid-stream.
fn spawn(env: &TestEnv, file: &Path) -> Process {
    Launch::run(env)
        .setting("audit.signing_key", SEED)
        .setting("audit.checkpoint_file", file.display())
        .setting("audit.checkpoint_every_entries", 100)
        .setting("audit.origin", "test.example/custodian")
        .setting("pipeline.partition_batch_size", 50)
        .setting("pipeline.max_in_flight_per_partition", 400)
        .quiet()
        .spawn()
}

#[test]
fn chains_survive_a_hard_kill_and_reconcile_finds_one_outcome_per_offset_then_a_deleted_one() {
    let env = TestEnv::new(3);
    const N: i64 = 3000;
    let file = scratch("checkpoints.log");
    env.produce_synthetic(N as usize, 41, 0.3);
    env.migrate();
    let mut first = spawn(&env, &file);
    wait_until(Duration::from_secs(90), "progress before the kill", || {
        env.db()
            .rows_with_status(Table::AuditLog, "MESSAGE_PROCESSED")
            >= 300
    });
    first.kill();
    let at_kill = env
        .db()
        .rows_with_status(Table::AuditLog, "MESSAGE_PROCESSED");
    assert!(at_kill < N, "the kill landed mid-stream ({at_kill} of {N})");
    let mut second = spawn(&env, &file);
    wait_until(Duration::from_secs(120), "every message processed", || {
        env.db()
            .messages_with_status(Table::AuditLog, "MESSAGE_PROCESSED")
            == N
    });
    second.stop();
    env.assert_committed_to_end();

    let settings = settings_for(&env, &file, None);
    assert_every_chain_whole(&env, &settings, &file);

    let access = Access::from_settings(&settings).expect("settings");
    let request = Request {
        topic: env.topic.clone(),
        partition: None,
        range: Range::Committed,
    };
    let reconciled = env
        .rt
        .block_on(access.reconcile(&request))
        .expect("reconcile");
    assert_eq!(
        (reconciled.gaps, reconciled.doubles),
        (0, 0),
        "{reconciled:#?}"
    );
    assert_eq!(reconciled.pending, 0, "{reconciled:#?}");
    let t = &reconciled.totals;
    assert_eq!(
        (t.processed + t.duplicate + t.dead_lettered) as i64,
        N,
        "one outcome per offset: {reconciled:#?}"
    );

    // A time before Kafka's epoch (1970) means every record, not an error.
    let request = Request {
        topic: env.topic.clone(),
        partition: None,
        range: Range::Since("1900-01-01T00:00:00Z".parse().expect("a time")),
    };
    let since = env
        .rt
        .block_on(access.reconcile(&request))
        .expect("reconcile since 1900");
    let t = &since.totals;
    assert_eq!(
        (t.processed + t.duplicate + t.dead_lettered) as i64,
        N,
        "every offset since 1900: {since:#?}"
    );

    // A superuser deletes the terminal row of partition 1, offset 10.
    env.as_superuser(
        &env.database_url,
        &[
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
            &format!(
                "DELETE FROM audit_log WHERE topic = '{}' AND kafka_partition = 1 AND kafka_offset = 10",
                env.topic
            ),
        ],
    );
    let request = Request {
        topic: env.topic.clone(),
        partition: Some(1),
        range: Range::Offsets { from: 0, to: 20 },
    };
    let reconciled = env
        .rt
        .block_on(access.reconcile(&request))
        .expect("reconcile");
    assert_eq!(reconciled.gaps, 1, "{reconciled:#?}");
    assert_eq!(reconciled.partitions[0].gap_ranges, vec![[10, 10]]);
    // And the chain says the same.
    let report = verify(&env, &settings, Some(&file));
    let broken: Vec<_> = report
        .chains
        .iter()
        .filter_map(|c| c.breach.as_ref())
        .collect();
    assert_eq!(broken.len(), 1, "{report:#?}");
    assert_eq!(broken[0].kind, BreakKind::Deleted);
}

#[test]
fn a_new_owner_after_a_rebalance_continues_each_chain() {
    let env = TestEnv::new(4);
    const N: i64 = 2000;
    let file = scratch("checkpoints.log");
    let settings = settings_for(&env, &file, None);
    let first = Running::start(settings.clone()).expect("first instance");
    env.produce_synthetic(N as usize / 2, 51, 0.2);
    wait_until(
        Duration::from_secs(60),
        "progress on the first instance",
        || env.db().rows(Table::AuditLog) >= 200,
    );
    let second = Running::start(settings.clone()).expect("second instance");
    env.produce_synthetic(N as usize / 2, 52, 0.2);
    wait_until(Duration::from_secs(120), "every event audited", || {
        env.db()
            .messages_with_status(Table::AuditLog, "MESSAGE_PROCESSED")
            == N
    });
    second.stop().expect("graceful stop");
    first.stop().expect("graceful stop");
    assert_every_chain_whole(&env, &settings, &file);
}
