//! Dead letters by error kind, the preview count, and bulk replay as a job
//! that runs on after the request that started it, with its progress in
//! Redis.

mod common;

use std::time::Duration;

use common::{transaction_event, wait_until, TestEnv};
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
    env.execute("ALTER TABLE transactions ADD CONSTRAINT test_limit CHECK (amount < 1000)");
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

    env.execute("ALTER TABLE transactions DROP CONSTRAINT test_limit");
    let (code, job) = api(
        Method::POST,
        "/replay/jobs",
        Some(json!({"error_kind": violation, "reason": "limit raised", "requested_by": "dana"})),
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
    assert_eq!(done["requested_by"], "dana");
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
        env.count("SELECT count(*) AS n FROM transactions") == 6
    });
    assert_eq!(env.replays_by("dana", "limit raised"), 6);
    assert_eq!(env.dlq_entries().len(), 2);
    let (code, _) = api(
        Method::GET,
        &format!("/replay/jobs/{}", uuid::Uuid::new_v4()),
        None,
    );
    assert_eq!(code, 404);
    app.stop().expect("graceful stop");
}
