//! Avro input against JSON input: the same clean events (same seed) drained
//! saturated by a fresh process each, back to back on the same broker and
//! database: once as JSON, once in the Confluent wire format with
//! `dev/schemas/transaction.avsc`, registered with the real registry
//! `dev/services.sh` runs (BENCH_REGISTRY_URL, set by dev/bench; without
//! it the phase is skipped, and says so). Then their ratio.

use std::sync::Arc;
use std::time::Duration;

use custodian::formats::encode::Encoder;
use custodian::formats::registry::{Endpoint, Registry};
use custodian::formats::schema::Kind;

use crate::{topic_name, Bench, Drain};

/// One drain of `name`, printed, stopped and checked; its figures.
fn drain(
    bench: &mut Bench,
    name: &str,
    n: u64,
    extra: &[(String, String)],
) -> anyhow::Result<Drain> {
    let (drain, custodian, load, _, topic, ends) = bench.drain(name, n, extra)?;
    drain.print(&format!(
        "saturated, no poison, {name} input: {n} events (preloaded), cold start"
    ));
    if load.unencoded > 0 {
        println!(
            "  ({} events did not fit the schema and went as JSON)",
            load.unencoded
        );
    }
    custodian.stop()?;
    bench.check_outcomes(&topic, ends.values().sum())?;
    Ok(drain)
}

pub fn run(bench: &mut Bench, n: u64) -> anyhow::Result<()> {
    let Ok(url) = std::env::var("BENCH_REGISTRY_URL") else {
        println!("avro: skipped (BENCH_REGISTRY_URL is not set: dev/bench sets it when dev/services.sh runs the registry)");
        return Ok(());
    };
    let registry = Registry::new(
        Endpoint {
            url: url.clone(),
            username: None,
            password: None,
            timeout: Duration::from_secs(10),
        },
        16,
    )?;
    let schema = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dev/schemas/transaction.avsc"
    ))?;
    let topic = topic_name(&bench.run, "avro");
    let encoder = bench.rt.block_on(Encoder::new(
        &registry,
        &format!("{topic}-value"),
        Kind::Avro,
        Some(&schema),
    ))?;

    let poison = std::mem::replace(&mut bench.poison, 0.0);
    let seed = bench.seed;
    let json = drain(bench, "json", n, &[]);
    // The same events again (drain takes the next seed), encoded.
    bench.seed = seed;
    bench.encoder = Some(Arc::new(encoder));
    let settings = [
        ("CUSTODIAN_SCHEMA_REGISTRY__URL".to_owned(), url),
        (
            "CUSTODIAN_FORMATS".to_owned(),
            format!("[{{topic = \"{topic}\", format = \"avro\"}}]"),
        ),
    ];
    let avro = drain(bench, "avro", n, &settings);
    bench.encoder = None;
    bench.poison = poison;
    let (json, avro) = (json?, avro?);
    let rate = |d: &Drain| d.messages as f64 / d.elapsed.as_secs_f64();
    let per = |cpu: f64, d: &Drain| cpu * 1e6 / d.messages as f64;
    println!(
        "avro against json: throughput ×{:.2} ({:.0} vs {:.0} messages/s); custodian CPU {:.1} vs {:.1} µs per message; PostgreSQL CPU {:.1} vs {:.1} µs per message",
        rate(&avro) / rate(&json),
        rate(&avro),
        rate(&json),
        per(avro.custodian_cpu, &avro),
        per(json.custodian_cpu, &json),
        per(avro.postgres_cpu, &avro),
        per(json.postgres_cpu, &json),
    );
    Ok(())
}
