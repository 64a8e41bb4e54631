//! A dependency that goes away pauses the work that needs it; nothing is
//! dropped and no offset moves past an outcome that is not durable.

use std::time::Duration;

use crate::support::{created_event, wait_until, PrivatePostgres, PrivateRedis, TestEnv};
use custodian::app::Running;
use custodian::config::Settings;

#[test]
fn redis_outage_pauses_dead_letters_and_commits_nothing_past_them() {
    let env = TestEnv::new(1);
    let mut redis = PrivateRedis::start();
    let mut overrides = env.overrides();
    overrides.push(("redis.url", redis.url().into()));
    let app =
        Running::start(Settings::from_overrides(&overrides).expect("settings")).expect("starts");

    let valid = |n: u32| created_event(&format!("{}-{n}", env.topic));
    env.produce(&[
        (None, valid(0).as_bytes(), None),
        (None, valid(1).as_bytes(), None),
    ]);
    wait_until(
        Duration::from_secs(60),
        "first two processed and committed",
        || env.committed() == vec![Some(2)],
    );

    redis.stop();
    env.produce(&[
        (None, b"\xffpoison", None),
        (None, valid(2).as_bytes(), None),
    ]);
    wait_until(
        Duration::from_secs(60),
        "the message after the poison processed",
        || env.db().audit_counts().get("MESSAGE_PROCESSED") == Some(&3),
    );
    env.assert_unready(&app, "redis");
    std::thread::sleep(Duration::from_secs(2));
    // Its outcome is audited (the entries commit first, then the push), but
    // it is not in Redis and its offset does not move until it is.
    assert_eq!(
        env.db().audit_counts().get("MESSAGE_DLQ"),
        Some(&1),
        "the dead letter's entries committed before the push"
    );
    assert_eq!(
        env.committed(),
        vec![Some(2)],
        "nothing committed past the undelivered dead letter"
    );

    redis.restart();
    wait_until(
        Duration::from_secs(60),
        "the dead letter parked and everything committed",
        || {
            env.db().audit_counts().get("MESSAGE_DLQ") == Some(&1)
                && env.committed() == vec![Some(4)]
        },
    );
    let client = redis::Client::open(redis.url()).expect("url");
    let mut conn = client.get_connection().expect("connection");
    let parked: usize = redis::cmd("LLEN")
        .arg(env.dlq_list_key())
        .query(&mut conn)
        .expect("LLEN");
    assert_eq!(parked, 1);
    assert_eq!(env.get(&app, "/ready").0, 200);
    app.stop().expect("graceful stop");
}

#[test]
fn postgres_outage_pauses_processing_and_resumes_without_loss() {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    let env = TestEnv::new(1);
    let pg = PrivatePostgres::start();
    let mut overrides = env.overrides();
    overrides.push(("postgres.url", pg.url().into()));
    let app =
        Running::start(Settings::from_overrides(&overrides).expect("settings")).expect("starts");
    let count = |sql: &str| -> Option<i64> {
        env.rt.block_on(async {
            let mut conn = AsyncPgConnection::establish(&pg.url()).await.ok()?;
            diesel::sql_query(sql)
                .get_result::<Count>(&mut conn)
                .await
                .ok()
                .map(|c| c.n)
        })
    };
    let processed =
        || count("SELECT count(*) AS n FROM message_audit WHERE status = 'MESSAGE_PROCESSED'");
    let valid = |n: u32| created_event(&format!("pg-{n}"));
    env.produce(&[
        (None, valid(0).as_bytes(), None),
        (None, valid(1).as_bytes(), None),
    ]);
    wait_until(
        Duration::from_secs(60),
        "first two processed and committed",
        || processed() == Some(2) && env.committed() == vec![Some(2)],
    );

    pg.crash();
    env.produce(&[
        (None, valid(2).as_bytes(), None),
        (None, valid(3).as_bytes(), None),
        (None, valid(4).as_bytes(), None),
    ]);
    std::thread::sleep(Duration::from_secs(3));
    env.assert_unready(&app, "postgres");
    assert_eq!(
        env.committed(),
        vec![Some(2)],
        "nothing committed while PostgreSQL is down"
    );

    pg.restart();
    wait_until(
        Duration::from_secs(90),
        "all five processed and committed",
        || processed() == Some(5) && env.committed() == vec![Some(5)],
    );
    assert_eq!(
        count("SELECT coalesce(sum(version), 0)::bigint AS n FROM transactions"),
        Some(5)
    );
    assert_eq!(
        count("SELECT count(*) AS n FROM message_audit WHERE status = 'MESSAGE_DLQ'"),
        Some(0),
        "an outage is not a poison message"
    );
    app.stop().expect("graceful stop");
}
