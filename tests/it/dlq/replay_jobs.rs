//! Dead letters by error kind, the preview count, and bulk replay as a job
//! that runs on after the request that started it, with its progress in
//! Redis; a job cut off by a graceful stop or by its process dying is
//! interrupted, frees its entry and resumes where it was.

use std::time::Duration;

use crate::support::process::Launch;
use crate::support::{transaction_event, wait_until, Table, TestEnv};
use custodian::app::Running;
use reqwest::Method;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn a_bulk_replay_job_is_previewed_started_and_followed_to_the_end() {
    let env = TestEnv::new(1);
    // Slow replays, so the job visibly outlives its request.
    let app = Running::start(env.settings_with(&[("dlq.replay_rate_per_second", 4.into())]))
        .expect("custodian starts");
    env.limit_amounts();
    let big: Vec<String> = (0..6)
        .map(|i| {
            transaction_event(
                "transaction.created",
                &format!("{}-big-{i}", env.topic),
                5000.0,
                "2024-01-01T12:00:00Z",
            )
        })
        .collect();
    let mut records: Vec<(Option<&str>, &[u8], Option<i32>)> = big
        .iter()
        .map(|e| (Some("k"), e.as_bytes(), Some(0)))
        .collect();
    records.push((Some("k"), b"not json", Some(0)));
    records.push((Some("k"), b"{also not", Some(0)));
    env.produce(&records);
    wait_until(PATIENCE, "eight parked", || env.dlq_entries().len() == 8);
    let api = |method: Method, path: &str, body: Option<serde_json::Value>| {
        env.api(app.http_addr, method, path, body)
    };

    // Grouped by kind, most first.
    let (code, kinds) = api(Method::GET, "/dlq/kinds", None);
    assert_eq!(code, 200, "{kinds}");
    let kinds: Vec<(String, u64)> = kinds["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| {
            (
                k["error_kind"].as_str().expect("kind").to_owned(),
                k["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!(kinds[0].1, 6, "{kinds:?}");
    assert_eq!(kinds[1].1, 2, "{kinds:?}");
    let violation = kinds[0].0.clone();

    // The preview.
    let (code, preview) = api(
        Method::GET,
        &format!("/dlq/count?error_kind={violation}"),
        None,
    );
    assert_eq!(code, 200, "{preview}");
    assert_eq!(preview["count"], 6);

    // Without a reason: refused, nothing starts.
    let (code, body) = api(
        Method::POST,
        "/replay/jobs",
        Some(json!({"error_kind": violation, "reason": " "})),
    );
    assert_eq!(code, 400, "{body}");

    env.lift_amount_limit();
    let (code, job) = api(
        Method::POST,
        "/replay/jobs",
        Some(json!({"error_kind": violation, "reason": "limit raised"})),
    );
    assert_eq!(code, 202, "{job}");
    assert_eq!(
        job["state"], "running",
        "the answer comes before the replay ends"
    );
    assert_eq!(job["total"], 6);
    let answered_at = chrono::Utc::now();
    let id = job["id"].as_str().expect("job id").to_owned();

    let mut seen_progress = Vec::new();
    wait_until(PATIENCE, "the job done", || {
        let (code, job) = api(Method::GET, &format!("/replay/jobs/{id}"), None);
        assert_eq!(code, 200, "{job}");
        seen_progress.push(job["replayed"].as_u64().unwrap_or(0));
        job["state"] == "done"
    });
    let (_, done) = api(Method::GET, &format!("/replay/jobs/{id}"), None);
    assert_eq!(done["replayed"], 6, "{done}");
    assert_eq!(done["failed"], 0, "{done}");
    assert_eq!(done["requested_by"], "shared-token");
    let finished: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(done["finished_at"].clone()).expect("finished_at");
    assert!(
        finished > answered_at,
        "the job ran on after its request was answered"
    );
    assert!(
        seen_progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {seen_progress:?}"
    );

    // Replayed, audited with who and why; the other kind stays parked.
    wait_until(PATIENCE, "the replayed ones processed", || {
        env.db().rows(Table::Transactions) == 6
    });
    assert_eq!(env.db().replays_by("shared-token", "limit raised"), 6);
    assert_eq!(env.dlq_entries().len(), 2);
    let (code, _) = api(
        Method::GET,
        &format!("/replay/jobs/{}", uuid::Uuid::new_v4()),
        None,
    );
    assert_eq!(code, 404);
    app.stop().expect("graceful stop");
}

/// How many replays a job's tests make per second: slow enough that the
/// job is cut off midway.
const SLOW: u32 = 1;
/// The entries each job replays.
const ENTRIES: usize = 6;

/// Parks `ENTRIES` records that fail to decode (a replayed copy fails
/// again and is parked again, still matching the job's filter); answers
/// their error kind and ids.
fn park_undecodable(env: &TestEnv) -> (String, Vec<uuid::Uuid>) {
    let payloads: Vec<String> = (0..ENTRIES).map(|i| format!("not json {i}")).collect();
    let records: Vec<(Option<&str>, &[u8], Option<i32>)> = payloads
        .iter()
        .map(|p| (Some("k"), p.as_bytes(), Some(0)))
        .collect();
    env.produce(&records);
    wait_until(PATIENCE, "every record parked", || {
        env.dlq_entries().len() == ENTRIES
    });
    let entries = env.dlq_entries();
    let kind = entries[0].error_kind.clone();
    assert!(entries.iter().all(|e| e.error_kind == kind), "{entries:?}");
    (kind, entries.iter().map(|e| e.message_id).collect())
}

/// `GET /replay/jobs/{id}`: status and the job.
fn job_status(env: &TestEnv, addr: std::net::SocketAddr, id: &str) -> (u16, serde_json::Value) {
    env.api(addr, Method::GET, &format!("/replay/jobs/{id}"), None)
}

/// The operator locks on this test's entries.
fn locks(env: &TestEnv) -> Vec<String> {
    env.redis_query(redis::cmd("KEYS").arg(format!("{}:#lock:*", env.dlq_prefix)))
}

/// Starts a job replaying `kind` and waits until it has replayed a few.
fn start_and_wait_for_progress(
    env: &TestEnv,
    addr: std::net::SocketAddr,
    kind: &str,
    reason: &str,
) -> String {
    let (code, job) = env.api(
        addr,
        Method::POST,
        "/replay/jobs",
        Some(json!({"error_kind": kind, "reason": reason})),
    );
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().expect("job id").to_owned();
    wait_until(PATIENCE, "the job under way", || {
        let (_, job) = job_status(env, addr, &id);
        job["replayed"].as_u64().is_some_and(|n| n >= 2)
    });
    id
}

/// Resumes job `id` and checks it replays every entry, each once overall.
fn resume_to_the_end(env: &TestEnv, addr: std::net::SocketAddr, id: &str, ids: &[uuid::Uuid]) {
    let path = format!("/replay/jobs/{id}/resume");
    let (code, job) = env.api(addr, Method::POST, &path, Some(json!({})));
    assert_eq!(code, 202, "{job}");
    assert_eq!(job["state"], "running", "{job}");
    wait_until(PATIENCE, "the resumed job done", || {
        let (_, job) = job_status(env, addr, id);
        job["state"] == "done"
    });
    let (_, done) = job_status(env, addr, id);
    let replays = env.db().job_replays(id);
    for message in ids {
        assert_eq!(
            replays.get(message),
            Some(&1),
            "{message} replayed once by the job: {replays:?}"
        );
    }
    assert_eq!(replays.len(), ids.len(), "{replays:?}");
    assert_eq!(done["replayed"], ids.len(), "{done}");
    assert_eq!(done["audited"], ids.len(), "{done}");
    assert_eq!(done["resumed_by"], "shared-token", "{done}");
    assert_eq!(done["resumed_operator"]["channel"], "api", "{done}");
    // A done job is not resumed again.
    let (code, body) = env.api(addr, Method::POST, &path, Some(json!({})));
    assert_eq!(code, 409, "{body}");
}

#[test]
fn a_job_cut_off_by_a_graceful_stop_is_interrupted_with_audited_counts_and_resumes() {
    let env = TestEnv::new(1);
    let slow = [("dlq.replay_rate_per_second", SLOW.into())];
    let app = Running::start(env.settings_with(&slow)).expect("custodian starts");
    let (kind, ids) = park_undecodable(&env);
    let id = start_and_wait_for_progress(&env, app.http_addr, &kind, "graceful stop");
    app.stop().expect("graceful stop");

    // The stop recorded the job interrupted, with the counts the audit trail
    // has, and left no lock behind.
    let app = Running::start(env.settings()).expect("custodian starts again");
    let (code, job) = job_status(&env, app.http_addr, &id);
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["state"], "interrupted", "{job}");
    let audited: i64 = env.db().job_replays(&id).values().sum();
    assert!(audited >= 2 && audited < ENTRIES as i64, "{audited}");
    assert_eq!(job["replayed"], audited, "{job}");
    assert_eq!(job["audited"], audited, "{job}");
    assert_eq!(job["failed"], 0, "{job}");
    assert!(job["finished_at"].is_string(), "{job}");
    assert_eq!(locks(&env), Vec::<String>::new());

    resume_to_the_end(&env, app.http_addr, &id, &ids);
    app.stop().expect("graceful stop");
}

#[test]
fn a_job_whose_process_died_is_interrupted_does_not_block_its_entry_and_resumes() {
    let env = TestEnv::new(1);
    let mut doomed = Launch::run(&env)
        .setting("dlq.replay_rate_per_second", SLOW)
        .spawn();
    doomed.wait_ready(&env, PATIENCE);
    let (kind, ids) = park_undecodable(&env);
    let id = start_and_wait_for_progress(&env, doomed.http(), &kind, "sigkill");
    let (_, job) = job_status(&env, doomed.http(), &id);
    let owner = job["owner"]
        .as_str()
        .expect("the job names its owner")
        .to_owned();
    doomed.kill();

    // The entry the dead process held: locked in its name, for the backstop's
    // five minutes.
    let replayed = env.db().job_replays(&id);
    let held = *ids
        .iter()
        .find(|m| !replayed.contains_key(m))
        .expect("an entry the job had not reached");
    env.redis_query::<()>(
        redis::cmd("SET")
            .arg(custodian::dlq::Keys::new(&env.dlq_prefix).lock(held))
            .arg(format!("{owner}/in-flight"))
            .arg("PX")
            .arg(300_000),
    );

    let app = Running::start(env.settings()).expect("another custodian starts");
    wait_until(PATIENCE, "the orphaned job reported interrupted", || {
        let (code, job) = job_status(&env, app.http_addr, &id);
        assert_eq!(code, 200, "{job}");
        job["state"] == "interrupted"
    });
    let (_, job) = job_status(&env, app.http_addr, &id);
    let audited: i64 = env.db().job_replays(&id).values().sum();
    assert_eq!(job["replayed"], audited, "{job}");
    assert_eq!(job["audited"], audited, "{job}");

    // The dead owner's lock does not block an operator.
    let (code, body) = env.api(
        app.http_addr,
        Method::POST,
        &format!("/replay/{held}"),
        Some(json!({"reason": "by hand"})),
    );
    assert_eq!(code, 200, "{body}");
    // Its copy fails again and is parked again, for the job to take.
    wait_until(PATIENCE, "the copy parked again", || {
        env.dlq_entries()
            .iter()
            .any(|e| e.message_id == held && e.replay_count >= 1)
    });

    resume_to_the_end(&env, app.http_addr, &id, &ids);
    app.stop().expect("graceful stop");
}
