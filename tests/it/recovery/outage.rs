//! A dependency that goes away pauses the work that needs it; nothing is
//! dropped and no offset moves past an outcome that is not durable.

use std::time::Duration;

use crate::support::{
    created_event, wait_until, Db, PrivatePostgres, PrivateRedis, Table, TestEnv,
};
use custodian::app::Running;

/// A valid event of the test's `n`th transaction.
fn valid(env: &TestEnv, n: u32) -> String {
    created_event(&format!("{}-{n}", env.topic))
}

/// custodian with `setting` (a private server's URL) in place of the
/// shared one, and two valid events processed (in `db`) and committed.
fn two_committed_with(env: &TestEnv, db: &Db<'_>, setting: (&'static str, String)) -> Running {
    let app = Running::start(env.settings_with(&[(setting.0, setting.1.into())]))
        .expect("custodian starts");
    env.produce(&[
        (None, valid(env, 0).as_bytes(), None),
        (None, valid(env, 1).as_bytes(), None),
    ]);
    wait_until(
        Duration::from_secs(60),
        "first two processed and committed",
        || db.audited("MESSAGE_PROCESSED") == 2 && env.committed() == vec![Some(2)],
    );
    app
}

#[test]
fn redis_outage_pauses_dead_letters_and_commits_nothing_past_them() {
    let env = TestEnv::new(1);
    let mut redis = PrivateRedis::start();
    let db = env.db();
    let app = two_committed_with(&env, &db, ("redis.url", redis.url()));

    redis.stop();
    env.produce(&[
        (None, b"\xffpoison", None),
        (None, valid(&env, 2).as_bytes(), None),
    ]);
    wait_until(
        Duration::from_secs(60),
        "the message after the poison processed",
        || db.audited("MESSAGE_PROCESSED") == 3,
    );
    env.assert_unready(&app, "redis");
    std::thread::sleep(Duration::from_secs(2));
    // Its outcome is audited (the entries commit first, then the push), but
    // it is not in Redis and its offset does not move until it is.
    assert_eq!(
        db.audited("MESSAGE_DLQ"),
        1,
        "the dead letter's entries committed before the push"
    );
    let held = env.committed();
    assert_eq!(
        held,
        vec![Some(2)],
        "committed past the unparked dead letter"
    );

    redis.restart();
    wait_until(
        Duration::from_secs(60),
        "the dead letter parked and everything committed",
        || db.audited("MESSAGE_DLQ") == 1 && env.committed() == vec![Some(4)],
    );
    assert_eq!(env.dlq_entries_at(&redis.url()).len(), 1, "parked once");
    assert_eq!(env.get(&app, "/ready").0, 200);
    app.stop().expect("graceful stop");
}

#[test]
fn postgres_outage_pauses_processing_and_resumes_without_loss() {
    let env = TestEnv::new(1);
    let pg = PrivatePostgres::start();
    let db = Db::at(&env, &pg.url());
    let app = two_committed_with(&env, &db, ("postgres.url", pg.url()));

    pg.crash();
    let later: Vec<String> = (2..5).map(|n| valid(&env, n)).collect();
    let records: Vec<_> = later.iter().map(|e| (None, e.as_bytes(), None)).collect();
    env.produce(&records);
    std::thread::sleep(Duration::from_secs(3));
    env.assert_unready(&app, "postgres");
    let held = env.committed();
    assert_eq!(held, vec![Some(2)], "committed while PostgreSQL is down");

    pg.restart();
    wait_until(
        Duration::from_secs(90),
        "all five processed and committed",
        || db.audited("MESSAGE_PROCESSED") == 5 && env.committed() == vec![Some(5)],
    );
    assert_eq!(db.versions(), 5);
    assert_eq!(
        db.rows_with_status(Table::MessageAudit, "MESSAGE_DLQ"),
        0,
        "an outage is not a poison message"
    );
    app.stop().expect("graceful stop");
}
