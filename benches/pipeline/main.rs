//! `dev/bench`: custodian's throughput, latency, CPU and memory, measured
//! from outside. The broker (tansu, or `custodian dev-broker`), custodian
//! (the release binary) and PostgreSQL each run as their own process; this
//! driver produces the load and reads /proc, `/metrics` and the group's
//! committed offsets. Phases:
//! 1. saturated: a preloaded topic drained from a cold start; the clock
//!    stops when every partition's committed offset reaches its end (every
//!    outcome is durable before its offset is committed);
//! 2. paced: the same process fed at a steady rate, for the pipeline's own
//!    latency when it is not behind;
//! 3. keyed: key-ordered parallel delivery to a slow http downstream
//!    (`keyed.rs`);
//! 4. memory: a larger preload drained by a fresh process, for peak RSS;
//!
//! and between 2 and 3, Avro input against JSON input (`avro.rs`;
//! BENCH_AVRO=0 skips it), traces off, at ratio 1.0 and at 0.01
//! (`traces.rs`; BENCH_TRACES=0 skips it), and the comparison (`quix.rs`): the same clean load
//! drained by custodian and by quixstreams with its PostgreSQL sink, and
//! their ratio (BENCH_QUIX=0 skips it; BENCH_QUIX_PYTHON, set by dev/bench,
//! is the venv's interpreter).
//!
//! Environment (defaults): BENCH_MESSAGES (300000), BENCH_PARTITIONS (6),
//! BENCH_POISON (0.01), BENCH_RATE (5000), BENCH_PACED_SECONDS (20),
//! BENCH_MEMORY_MESSAGES (1000000; 0 skips), BENCH_VARIANTS (extra
//! saturated runs, `;`-separated, each a space-separated list of
//! CUSTODIAN_…=value settings; default `CUSTODIAN_AUDIT__CHAIN=false`,
//! empty for none), BENCH_TANSU (tansu's path, or `dev-broker`),
//! BENCH_METRICS_FILE (where to save custodian's /metrics after the paced
//! phase), BENCH_CUSTODIAN_BIN (another build to run instead of this one),
//! BENCH_WINDOW (15000: with the dev broker, how far the load may
//! run ahead of the committed offsets), and from dev/bench:
//! BENCH_ADMIN_URL, BENCH_REDIS_URL, BENCH_PG_DATA.

mod avro;
mod broker;
mod keyed;
mod load;
mod procs;
mod quix;
mod scrape;
mod traces;
mod under_test;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use broker::Broker;
use load::{Ends, Group, Load};
use scrape::Buckets;
use under_test::{Custodian, Target};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .map_err(|_| anyhow::anyhow!("{name} is not set: run the benchmark with dev/bench"))
}

/// Waits until the group has committed every record before `ends`,
/// printing progress; returns the time it took from `since`.
/// Also returns when the first offsets were committed and how many, so that
/// the steady rate can be told from the cold start.
fn wait_settled(
    group: &Group,
    topic: &str,
    ends: &Ends,
    since: Instant,
    consumer: &mut Child,
) -> anyhow::Result<(Duration, Option<(Duration, i64)>)> {
    let total: i64 = ends.values().sum();
    let mut last = Instant::now();
    let start = group.settled(topic, ends)?;
    let mut first = None;
    loop {
        let settled = group.settled(topic, ends)?;
        if first.is_none() && settled > start {
            first = Some((since.elapsed(), settled));
        }
        if settled >= total {
            return Ok((since.elapsed(), first));
        }
        if let Some(status) = consumer.try_wait()? {
            anyhow::bail!("the consumer exited early: {status}");
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(1800),
            "not settled in 30 minutes ({settled} of {total})"
        );
        if last.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "  … {settled} / {total} settled, {:.0} s",
                since.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ms(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1000.0)
}

fn quantiles(b: &Buckets) -> String {
    format!(
        "p50 ≤ {}, p99 ≤ {}, p99.9 ≤ {} ({} samples)",
        ms(b.quantile(0.5)),
        ms(b.quantile(0.99)),
        ms(b.quantile(0.999)),
        b.count()
    )
}

/// One drain of a preloaded topic by a fresh process.
struct Drain {
    messages: i64,
    elapsed: Duration,
    first_commit: Option<(Duration, i64)>,
    custodian_cpu: f64,
    postgres_cpu: f64,
    broker_cpu: f64,
    peak_rss: f64,
    pipeline: Buckets,
    end_to_end: Buckets,
}

impl Drain {
    fn print(&self, label: &str) {
        let n = self.messages as f64;
        println!("{label}");
        println!(
            "  messages settled:      {} in {:.2} s (cold start included)",
            self.messages,
            self.elapsed.as_secs_f64()
        );
        println!(
            "  throughput:            {:.0} messages/s",
            n / self.elapsed.as_secs_f64()
        );
        if let Some((at, settled)) = self.first_commit {
            let steady = (self.messages - settled) as f64 / (self.elapsed - at).as_secs_f64();
            println!("  after the first commit: {steady:.0} messages/s (first commit {:.2} s after start)", at.as_secs_f64());
        }
        println!(
            "  PostgreSQL CPU:        {:.1} µs per message ({:.1} s)",
            self.postgres_cpu * 1e6 / n,
            self.postgres_cpu
        );
        println!(
            "  custodian CPU:         {:.1} µs per message ({:.1} s)",
            self.custodian_cpu * 1e6 / n,
            self.custodian_cpu
        );
        println!(
            "  broker CPU:            {:.1} µs per message (same machine)",
            self.broker_cpu * 1e6 / n
        );
        println!("  custodian peak RSS:    {:.0} MiB", self.peak_rss);
        println!("  pipeline_latency:      {}", quantiles(&self.pipeline));
        println!("  end_to_end_latency:    {}", quantiles(&self.end_to_end));
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    broker: Broker,
    target_db: String,
    redis_url: String,
    run: String,
    pg_data: PathBuf,
    /// This run's scratch directory.
    work: PathBuf,
    partitions: i32,
    poison: f64,
    seed: u64,
    /// When set, drains write their load in this wire format.
    encoder: Option<std::sync::Arc<custodian::formats::encode::Encoder>>,
    /// How far ahead of the committed offsets the load may run (only for
    /// the dev broker, which keeps ~5 MB per partition).
    window: Option<u64>,
}

impl Bench {
    fn feed(&self) -> String {
        self.window.map_or_else(
            || "preloaded".to_owned(),
            |w| format!("fed at most {w} ahead of the committed offsets, committed every 100 ms"),
        )
    }

    fn target(&self) -> Target<'_> {
        Target {
            bootstrap: &self.broker.bootstrap,
            database_url: &self.target_db,
            redis_url: &self.redis_url,
            run: &self.run,
        }
    }

    /// Preloads `n` events on a new topic, then drains them with a new
    /// process; the process is returned still running, for a paced phase.
    fn drain(
        &mut self,
        name: &str,
        n: u64,
        extra: &[(String, String)],
    ) -> anyhow::Result<(Drain, Custodian, Load, Group, String, Ends)> {
        let topic = topic_name(&self.run, name);
        let group = format!("bench-{}-{name}", self.run);
        self.broker.create_topic(&topic, self.partitions)?;
        self.seed += 1;
        let mut load = Load::new(&self.broker.bootstrap, self.seed, self.poison)?
            .encoded(self.encoder.clone());
        let produced = Instant::now();
        // A broker that cannot hold the whole load gets its head start,
        // and the rest while custodian drains it.
        let head = self.window.map_or(n, |w| w.min(n));
        let mut ends = load.produce(&topic, head, 0)?;
        eprintln!(
            "  preloaded {head} events on {topic} in {:.1} s",
            produced.elapsed().as_secs_f64()
        );
        let group_reader = Group::new(&self.broker.bootstrap, &group)?;
        let pg_before = procs::cluster_cpu_seconds(&self.pg_data);
        let broker_before = procs::cpu_seconds(self.broker.pid());
        let started = Instant::now();
        // Fed within a window of committed offsets, the feed can go no faster
        // than window / commit interval: commit more often than the default
        // second so that the window is not what limits the run.
        let mut settings = extra.to_vec();
        if self.window.is_some() {
            settings.insert(
                0,
                ("CUSTODIAN_KAFKA__COMMIT_INTERVAL".into(), "100ms".into()),
            );
        }
        let mut custodian = Custodian::spawn(&self.target(), &topic, &group, &settings)?;
        if let Some(window) = self.window.filter(|_| n > head) {
            ends = load.produce_within(&topic, n - head, 0, Some((window, &group_reader)))?;
            eprintln!(
                "  produced the remaining {} events within a window of {window}",
                n - head
            );
        }
        let messages: i64 = ends.values().sum();
        let (elapsed, first_commit) =
            wait_settled(&group_reader, &topic, &ends, started, &mut custodian.child)?;
        // Fed within a window, the first commit came while this thread was
        // still producing: no steady rate to tell apart.
        let first_commit = first_commit.filter(|_| self.window.is_none());
        let postgres_cpu = procs::cluster_cpu_seconds(&self.pg_data) - pg_before;
        let custodian_cpu = procs::cpu_seconds(custodian.pid());
        let broker_cpu = procs::cpu_seconds(self.broker.pid()) - broker_before;
        let peak_rss = procs::peak_rss_mib(custodian.pid());
        let exposition = custodian.metrics(&self.rt);
        let drain = Drain {
            messages,
            elapsed,
            first_commit,
            custodian_cpu,
            postgres_cpu,
            broker_cpu,
            peak_rss,
            pipeline: Buckets::parse(&exposition, "pipeline_latency_seconds"),
            end_to_end: Buckets::parse(&exposition, "end_to_end_latency_seconds"),
        };
        Ok((drain, custodian, load, group_reader, topic, ends))
    }

    /// Every offset of `topic` has exactly one terminal outcome in the audit trail.
    fn check_outcomes(&self, topic: &str, expected: i64) -> anyhow::Result<()> {
        let (rows, distinct) = self.rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&self.target_db, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let row = client
                .query_one(
                    "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM message_audit \
                     WHERE topic = $1 AND status IN ('MESSAGE_PROCESSED','MESSAGE_DLQ','MESSAGE_DUPLICATE')",
                    &[&topic],
                )
                .await?;
            anyhow::Ok((row.get::<_, i64>(0), row.get::<_, i64>(1)))
        })?;
        anyhow::ensure!(
            rows == expected && distinct == expected,
            "{topic}: expected {expected} terminal outcomes, found {rows} rows over {distinct} offsets"
        );
        Ok(())
    }
}

fn variants() -> Vec<Vec<(String, String)>> {
    // By default the saturated phase runs again unchained, so that every
    // run prints what chaining the audit trail costs.
    std::env::var("BENCH_VARIANTS")
        .unwrap_or_else(|_| "CUSTODIAN_AUDIT__CHAIN=false".to_owned())
        .split(';')
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            v.split_whitespace()
                .filter_map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                })
                .collect()
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let n: u64 = env_or("BENCH_MESSAGES", 300_000);
    let partitions: i32 = env_or("BENCH_PARTITIONS", 6);
    let poison: f64 = env_or("BENCH_POISON", 0.01);
    let rate: u64 = env_or("BENCH_RATE", 5_000);
    let paced_seconds: u64 = env_or("BENCH_PACED_SECONDS", 20);
    let memory_n: u64 = env_or("BENCH_MEMORY_MESSAGES", 1_000_000);
    let admin = required("BENCH_ADMIN_URL")?;
    let redis_url = required("BENCH_REDIS_URL")?;
    let pg_data = PathBuf::from(required("BENCH_PG_DATA")?);
    let tansu = std::env::var("BENCH_TANSU").unwrap_or_else(|_| "tansu".into());
    let window = (tansu == "dev-broker").then(|| env_or("BENCH_WINDOW", 15_000u64));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let database = format!("custodian_bench_{run}");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        // A name made here from hex digits: safe to place in the statement.
        client
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await?;
        anyhow::Ok(())
    })?;
    let target_db = format!(
        "{}/{database}",
        admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b)
    );
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{run}"));
    std::fs::create_dir_all(&work)?;
    let variants = variants();
    let phases = [
        "saturated",
        "memory",
        "keyed",
        "clean",
        "quix",
        "json",
        "avro",
        "traces0",
        "traces1",
        "traces2",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain((0..variants.len()).map(|i| format!("variant{i}")));
    let topics: Vec<String> = phases.map(|p| topic_name(&run, &p)).collect();
    let broker = Broker::start(
        &tansu,
        Path::new(env!("CARGO_BIN_EXE_custodian")),
        &topics,
        partitions,
        &work,
    )?;
    println!(
        "custodian benchmark on {} ({} CPUs): broker {} (pid {}), {partitions} partitions, {:.0}% poison",
        hostname(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        broker.kind,
        broker.pid(),
        poison * 100.0
    );
    let mut bench = Bench {
        rt,
        broker,
        target_db,
        redis_url,
        run,
        pg_data,
        work,
        partitions,
        poison,
        seed: 42,
        encoder: None,
        window,
    };

    // 1. Saturated, from a cold start.
    let (drain, custodian, mut load, group, topic, ends) = bench.drain("saturated", n, &[])?;
    drain.print(&format!(
        "saturated: {n} events ({}), cold start",
        bench.feed()
    ));

    // 2. Paced, on the same (warm) process.
    let before = custodian.metrics(&bench.rt);
    let cpu_before = procs::cpu_seconds(custodian.pid());
    let pg_before = procs::cluster_cpu_seconds(&bench.pg_data);
    let paced_n = rate * paced_seconds;
    anyhow::ensure!(
        paced_n > 0,
        "BENCH_RATE and BENCH_PACED_SECONDS must be positive"
    );
    let started = Instant::now();
    let more = load.produce(&topic, paced_n, rate)?;
    let mut custodian = custodian;
    wait_settled(&group, &topic, &more, started, &mut custodian.child)?;
    let after = custodian.metrics(&bench.rt);
    if let Ok(path) = std::env::var("BENCH_METRICS_FILE") {
        std::fs::write(path, &after)?;
    }
    let pipeline = Buckets::parse(&after, "pipeline_latency_seconds")
        .since(&Buckets::parse(&before, "pipeline_latency_seconds"));
    let e2e = Buckets::parse(&after, "end_to_end_latency_seconds")
        .since(&Buckets::parse(&before, "end_to_end_latency_seconds"));
    let added = (more.values().sum::<i64>() - ends.values().sum::<i64>()) as f64;
    println!("paced: {paced_n} events at {rate}/s on the warm process");
    println!("  pipeline_latency:      {}", quantiles(&pipeline));
    println!("  end_to_end_latency:    {}", quantiles(&e2e));
    println!(
        "  custodian CPU:         {:.1} µs per message",
        (procs::cpu_seconds(custodian.pid()) - cpu_before) * 1e6 / added
    );
    println!(
        "  PostgreSQL CPU:        {:.1} µs per message",
        (procs::cluster_cpu_seconds(&bench.pg_data) - pg_before) * 1e6 / added
    );
    custodian.stop()?;
    bench.check_outcomes(&topic, more.values().sum())?;

    // Extra saturated runs with other settings, for before/after figures.
    for (i, extra) in variants.iter().enumerate() {
        let (drain, custodian, _, _, topic, ends) =
            bench.drain(&format!("variant{i}"), n, extra)?;
        let label: Vec<String> = extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        drain.print(&format!("saturated, {}", label.join(" ")));
        custodian.stop()?;
        bench.check_outcomes(&topic, ends.values().sum())?;
    }

    // The same work for custodian and quixstreams: their ratio.
    if env_or("BENCH_QUIX", 1) != 0 {
        quix::run(&mut bench, n)?;
    }

    // Avro input against JSON input, saturated.
    if env_or("BENCH_AVRO", 1) != 0 {
        avro::run(&mut bench, n)?;
    }

    // What tracing costs: off, at ratio 1.0 and at 0.01.
    if env_or("BENCH_TRACES", 1) != 0 {
        traces::run(&mut bench, n)?;
    }

    // 3. Keyed delivery to a slow downstream.
    if env_or("BENCH_KEYED", 1) != 0 {
        keyed::run(&mut bench)?;
    }

    // 4. Memory: a larger preload drained by a fresh process.
    if memory_n > 0 {
        let (drain, custodian, _, _, topic, ends) = bench.drain("memory", memory_n, &[])?;
        drain.print(&format!(
            "memory: {memory_n} events ({}), cold start",
            bench.feed()
        ));
        custodian.stop()?;
        bench.check_outcomes(&topic, ends.values().sum())?;
    }
    Ok(())
}

fn topic_name(run: &str, phase: &str) -> String {
    format!("bench-{run}-{phase}")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "?".into(), |h| h.trim().to_owned())
}
