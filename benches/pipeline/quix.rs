//! The comparison phase: the same preloaded work drained by custodian and by
//! quixstreams 3.x with its PostgreSQL sink (`benches/quixstreams/sink.py`,
//! in the venv `dev/bench` makes), each a process of its own on the same
//! broker and database, one after the other; then their ratio.
//!
//! The load has no poison: quixstreams' JSON deserializer stops the
//! application on a record it cannot decode (its documented default), so
//! both consumers get a clean copy of the same events (same seed). The
//! clock stops, for both, when the group's committed offsets reach the end:
//! quixstreams commits after its sink flushed the checkpoint's rows, and
//! custodian after the outcome is durable.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::load::{Group, Load};
use crate::{procs, topic_name, wait_settled, Bench};

/// PostgreSQL connection parts of a `postgres://user[:password]@host:port/db`
/// URL (the form `dev/services.sh` gives), for psycopg2's keyword arguments.
struct PgParts {
    user: String,
    password: String,
    host: String,
    port: String,
    db: String,
}

fn pg_parts(url: &str) -> anyhow::Result<PgParts> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| anyhow::anyhow!("not a postgres:// URL"))?;
    let (auth, place) = rest
        .split_once('@')
        .ok_or_else(|| anyhow::anyhow!("no user in the database URL"))?;
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, db) = place
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("no database in the URL"))?;
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    Ok(PgParts {
        user: user.to_owned(),
        password: password.to_owned(),
        host: host.to_owned(),
        port: port.to_owned(),
        db: db.split('?').next().unwrap_or(db).to_owned(),
    })
}

/// Runs the phase when `BENCH_QUIX_PYTHON` names the venv's interpreter
/// (`dev/bench` sets it; `BENCH_QUIX=0` skips the phase).
pub fn run(bench: &mut Bench, n: u64) -> anyhow::Result<()> {
    let Some(python) = std::env::var_os("BENCH_QUIX_PYTHON") else {
        println!("quixstreams: skipped (BENCH_QUIX_PYTHON is not set; dev/bench sets it)");
        return Ok(());
    };
    if bench.window.is_some() {
        // quixstreams commits every 5 s: a window of committed offsets
        // would be what limits it, not its own speed. And the mock cluster
        // cannot hold the load preloaded, even spread over 38 partitions
        // (tried on 2026-12-06: 71,363 of 300,000 records were left).
        println!("quixstreams: skipped on the dev broker (it cannot hold a preloaded load)");
        return Ok(());
    }
    let poison = std::mem::replace(&mut bench.poison, 0.0);
    let ours = bench.drain("clean", n, &[]);
    bench.poison = poison;
    let (drain, custodian, _, _, topic, ends) = ours?;
    drain.print(&format!(
        "saturated, no poison: {n} events (preloaded), cold start"
    ));
    custodian.stop()?;
    bench.check_outcomes(&topic, ends.values().sum())?;
    let custodian_rate = drain.messages as f64 / drain.elapsed.as_secs_f64();

    // The same events (the seed `drain` just used) on a topic of its own.
    let topic = topic_name(&bench.run, "quix");
    let group = format!("bench-{}-quix", bench.run);
    bench.broker.create_topic(&topic, bench.partitions)?;
    let mut load = Load::new(&bench.broker.bootstrap, bench.seed, 0.0)?;
    let ends = load.produce(&topic, n, 0)?;
    let reader = Group::new(&bench.broker.bootstrap, &group)?;
    let pg = pg_parts(&bench.target_db)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/quixstreams/sink.py");
    let pg_before = procs::cluster_cpu_seconds(&bench.pg_data);
    let broker_before = procs::cpu_seconds(bench.broker.pid());
    let started = Instant::now();
    let mut quix = Command::new(&python)
        .arg(&script)
        .env("QUIX_BROKER", &bench.broker.bootstrap)
        .env("QUIX_TOPIC", &topic)
        .env("QUIX_GROUP", &group)
        .env("QUIX_PG_HOST", &pg.host)
        .env("QUIX_PG_PORT", &pg.port)
        .env("QUIX_PG_DB", &pg.db)
        .env("QUIX_PG_USER", &pg.user)
        .env("QUIX_PG_PASSWORD", &pg.password)
        .env("QUIX_TABLE", "quix_events")
        // Its state store (unused here) goes to the run's work directory.
        .current_dir(&bench.work)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let settled = wait_settled(&reader, &topic, &ends, started, &mut quix);
    let quix_cpu = procs::cpu_seconds(quix.id());
    let peak_rss = procs::peak_rss_mib(quix.id());
    let postgres_cpu = procs::cluster_cpu_seconds(&bench.pg_data) - pg_before;
    let broker_cpu = procs::cpu_seconds(bench.broker.pid()) - broker_before;
    let _ = quix.kill();
    let _ = quix.wait();
    let (elapsed, _) = settled?;
    let messages = ends.values().sum::<i64>() as f64;
    let quix_rate = messages / elapsed.as_secs_f64();
    println!("quixstreams 3 with its PostgreSQL sink: the same {n} events (preloaded)");
    println!("  throughput:            {quix_rate:.0} messages/s");
    println!(
        "  PostgreSQL CPU:        {:.1} µs per message",
        postgres_cpu * 1e6 / messages
    );
    println!(
        "  quixstreams CPU:       {:.1} µs per message",
        quix_cpu * 1e6 / messages
    );
    println!(
        "  broker CPU:            {:.1} µs per message (same machine)",
        broker_cpu * 1e6 / messages
    );
    println!("  quixstreams peak RSS:  {peak_rss:.0} MiB");
    println!(
        "custodian / quixstreams: {:.2}× ({custodian_rate:.0} against {quix_rate:.0} messages/s, broker {})",
        custodian_rate / quix_rate,
        bench.broker.kind
    );
    Ok(())
}
