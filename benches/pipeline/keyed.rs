//! The keyed-delivery phase (issue 14's concurrency figure): one partition's
//! 1,000 messages over 200 keys, an http route with `concurrency = 32`, a
//! downstream that takes 100 ms per request. Sequentially that is 100 s;
//! the figure is the wall time from the first record produced to the last
//! offset committed, on a process that is already assigned its partition.
//! BENCH_KEYED=0 skips it; BENCH_KEYED_MESSAGES, BENCH_KEYED_KEYS,
//! BENCH_KEYED_CONCURRENCY and BENCH_KEYED_LATENCY_MS change it.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use custodian::downstream::{MockDownstream, Options};

use super::load::{Group, Load};
use super::{env_or, procs, topic_name, wait_settled, Bench, Custodian};

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let messages: usize = env_or("BENCH_KEYED_MESSAGES", 1000);
    let keys: usize = env_or("BENCH_KEYED_KEYS", 200).max(1);
    let concurrency: usize = env_or("BENCH_KEYED_CONCURRENCY", 32);
    let latency = Duration::from_millis(env_or("BENCH_KEYED_LATENCY_MS", 100));
    let down = MockDownstream::start(Options {
        bind: "127.0.0.1:0".parse()?,
        failure_rate: 0.0,
        latency,
        fail_first: 0,
    })?;
    let config = Path::join(&bench.work, "keyed.toml");
    std::fs::write(
        &config,
        format!(
            "[[routes]]\nevent_types = [\"Notify\"]\nhandler = \"http\"\n\
             url = \"http://{}/hook\"\ntimeout = \"5s\"\nrate_per_second = 100000\n\
             burst = 10000\nconcurrency = {concurrency}\n",
            down.addr
        ),
    )?;
    // Made with the broker (all partitions); the load goes to partition 0.
    let topic = topic_name(&bench.run, "keyed");
    let group = format!("bench-{}-keyed", bench.run);
    let extra = [("CUSTODIAN_CONFIG".to_owned(), config.display().to_string())];
    let mut custodian = Custodian::spawn(&bench.target(), &topic, &group, &extra)?;
    custodian.wait_ready(&bench.rt)?;
    let records: Vec<(String, String)> = (0..messages)
        .map(|n| {
            let payload = serde_json::json!({"eventId": uuid::Uuid::new_v4(), "type": "Notify",
                                             "timestamp": "2025-01-11T12:00:00Z", "data": {"n": n}});
            (format!("key-{}", n % keys), payload.to_string())
        })
        .collect();
    let group_reader = Group::new(&bench.broker.bootstrap, &group)?;
    bench.seed += 1;
    let mut load = Load::new(&bench.broker.bootstrap, bench.seed, 0.0)?;
    let cpu_before = procs::cpu_seconds(custodian.pid());
    let started = Instant::now();
    let ends = load.produce_records(&topic, 0, &records)?;
    let (elapsed, _) = wait_settled(&group_reader, &topic, &ends, started, &mut custodian.child)?;
    let cpu = procs::cpu_seconds(custodian.pid()) - cpu_before;
    custodian.stop()?;
    bench.check_outcomes(&topic, messages as i64)?;
    let received = down.received();
    let distinct: HashSet<_> = received.iter().map(|r| r.message_id.clone()).collect();
    anyhow::ensure!(
        received.len() == messages && distinct.len() == messages,
        "the downstream received {} requests for {} messages ({messages} expected)",
        received.len(),
        distinct.len()
    );
    down.stop();
    let sequential = latency * messages as u32;
    println!(
        "keyed delivery: {messages} messages over {keys} keys on one partition, \
         concurrency {concurrency}, downstream {latency:?} per request"
    );
    println!(
        "  settled in:            {:.2} s (sequentially ≥ {:.0} s; each delivered once)",
        elapsed.as_secs_f64(),
        sequential.as_secs_f64()
    );
    println!(
        "  custodian CPU:         {:.1} ms per message",
        cpu * 1e3 / messages as f64
    );
    Ok(())
}
