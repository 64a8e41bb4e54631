//! The API against its own contract: schemathesis generates requests from
//! `/openapi.json` (with the token) and checks every answer: no 5xx, only
//! documented statuses and content types, bodies that match their schemas.
//!
//! Needs the `st` CLI: `dev/services.sh env` installs it and exports
//! `SCHEMATHESIS`. Without it this test fails (it is never skipped).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{wait_until, TestEnv, TEST_TOKEN};
use custodian::app::Running;

/// Cases per operation and phase: enough to reach the error paths, few
/// enough for the suite.
const MAX_EXAMPLES: &str = "25";
/// The whole run is cut off (and fails) past this.
const RUN_BOUND: Duration = Duration::from_secs(600);

#[test]
fn the_api_keeps_its_openapi_contract_under_generated_requests() {
    let st = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| {
        panic!("SCHEMATHESIS is not set: run `eval \"$(dev/services.sh env)\"` (it installs schemathesis)")
    });
    assert!(
        std::path::Path::new(&st).is_file(),
        "SCHEMATHESIS={st} does not exist: run `dev/services.sh start` to install schemathesis"
    );
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    // Dead letters, so the DLQ operations have entries to show, replay and
    // discard (undecodable payloads park at once).
    env.produce(&[(None, b"not json", None), (Some("k"), b"{\"half\":", None)]);
    wait_until(Duration::from_secs(30), "two parked", || {
        env.dlq_entries().len() == 2
    });

    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20240601".into());
    let report = std::env::temp_dir().join(format!("custodian-st-{}", env.topic));
    let mut child = Command::new(&st)
        .args([
            "run",
            &format!("http://{}/openapi.json", app.http_addr),
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            &seed,
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--header",
            &format!("Authorization: Bearer {TEST_TOKEN}"),
            "--report-dir",
        ])
        .arg(&report)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {st}: {e}"));
    // Drained while it runs, so a long report cannot fill the pipe and stall it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            break Some(status);
        }
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = format!(
        "{}{}",
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    app.stop().expect("graceful stop");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("schemathesis found contract violations ({s}):\n{output}"),
        None => panic!("schemathesis did not finish within {RUN_BOUND:?}:\n{output}"),
    }
}

/// Every response an operation documents says what its body is (a schema
/// per media type), so `response_schema_conformance` above has something
/// to check each answer against; a response without one would pass unseen.
#[test]
fn every_documented_response_has_a_body_schema() {
    let env = TestEnv::new(1);
    let app = Running::start(env.settings()).expect("custodian starts");
    let (status, doc) = env.request(&app, reqwest::Method::GET, "/openapi.json", None, None);
    app.stop().expect("graceful stop");
    assert_eq!(status, 200);
    let mut missing = Vec::new();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            for (code, response) in op["responses"].as_object().expect("responses") {
                let response = match response["$ref"].as_str() {
                    Some(r) => &doc["components"]["responses"][r.rsplit('/').next().unwrap_or("")],
                    None => response,
                };
                checked += 1;
                let content = response["content"].as_object();
                let described = content.is_some_and(|c| {
                    !c.is_empty() && c.values().all(|media| media["schema"].is_object())
                });
                if !described {
                    missing.push(format!("{} {path} {code}", method.to_uppercase()));
                }
            }
        }
    }
    eprintln!("{checked} documented responses");
    assert!(checked > 0, "the document lists responses");
    assert!(
        missing.is_empty(),
        "responses without a body schema: {missing:#?}"
    );
}
