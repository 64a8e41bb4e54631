//! End-to-end throughput of the full pipeline: Kafka (librdkafka's mock
//! cluster) → partition actors → enrichers → processors (PostgreSQL
//! projection) → auditors (PostgreSQL audit trail, durable commit) → offsets.
//!
//! Run it with `dev/bench` (starts PostgreSQL and Redis). It prints messages
//! per second, p50/p99 latency from Kafka timestamp to durable audit, and the
//! process's peak memory (which includes the in-process mock broker and the
//! producer). Events are produced while custodian consumes, kept within a
//! window so the mock cluster (about 5 MB per partition) never drops data it
//! has not delivered yet. Options (environment): BENCH_MESSAGES (200000),
//! BENCH_PARTITIONS (6), BENCH_WINDOW (40000), BENCH_RATE (messages per
//! second; unset = as fast as custodian takes them). Saturated, the latency
//! is mostly time queued in Kafka; with a BENCH_RATE below capacity it is
//! the pipeline's own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custodian::app::Running;
use custodian::config::Settings;
use custodian::kafka::dev_broker::DevBroker;
use custodian::metrics::metrics;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Messages whose audit rows are committed.
fn durable() -> u64 {
    metrics().audited.get()
}

/// The smallest bucket bound below which `q` of the observations fall.
fn quantile(h: &prometheus::Histogram, q: f64) -> f64 {
    use prometheus::core::Collector;
    let families = h.collect();
    let Some(metric) = families.first().and_then(|f| f.get_metric().first()) else {
        return f64::NAN;
    };
    let hist = metric.get_histogram();
    let target = (hist.get_sample_count() as f64 * q).ceil() as u64;
    hist.get_bucket()
        .iter()
        .find(|b| b.cumulative_count() >= target)
        .map_or(f64::INFINITY, |b| b.upper_bound())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let n = env_or("BENCH_MESSAGES", 200_000);
    let partitions = env_or("BENCH_PARTITIONS", 6) as i32;
    let window = env_or("BENCH_WINDOW", 40_000);
    let rate = env_or("BENCH_RATE", 0);
    let admin = std::env::var("TEST_POSTGRES_ADMIN_URL").map_err(|_| {
        anyhow::anyhow!("TEST_POSTGRES_ADMIN_URL is not set: run the benchmark with dev/bench")
    })?;
    let redis =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".into());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("custodian_bench_{}", &id[..12]);
    rt.block_on(async {
        use diesel_async::RunQueryDsl;
        let mut conn = AsyncPgConnection::establish(&admin).await?;
        diesel::sql_query(format!("CREATE DATABASE {database}"))
            .execute(&mut conn)
            .await?;
        anyhow::Ok(())
    })?;
    let database_url = format!(
        "{}/{database}",
        admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b)
    );

    let topic = format!("bench-{}", &id[..8]);
    let broker = DevBroker::start(1, std::slice::from_ref(&topic), partitions)?;
    let settings = Settings::from_overrides(&[
        ("kafka.brokers", broker.bootstrap_servers().into()),
        ("kafka.group_id", format!("bench-{}", &id[..8]).into()),
        ("kafka.topics", serde_json::json!([topic])),
        ("postgres.url", database_url.clone().into()),
        ("redis.url", redis.into()),
        ("http.bind", "127.0.0.1:0".into()),
        ("log.level", "warn".into()),
    ])?;
    // CUSTODIAN_* variables tune the run like they tune custodian.
    let settings = {
        let mut s = settings;
        if let Ok(v) = std::env::var("CUSTODIAN_PIPELINE__AUDIT_FLUSH_INTERVAL") {
            s.pipeline.audit_flush_interval =
                custodian::config::parse_duration(&v).map_err(anyhow::Error::msg)?;
        }
        for (name, slot) in [
            (
                "CUSTODIAN_PIPELINE__AUDIT_BATCH_SIZE",
                &mut s.pipeline.audit_batch_size,
            ),
            ("CUSTODIAN_PIPELINE__AUDITORS", &mut s.pipeline.auditors),
            ("CUSTODIAN_PIPELINE__PROCESSORS", &mut s.pipeline.processors),
            ("CUSTODIAN_PIPELINE__ENRICHERS", &mut s.pipeline.enrichers),
            (
                "CUSTODIAN_PIPELINE__PARTITION_BATCH_SIZE",
                &mut s.pipeline.partition_batch_size,
            ),
        ] {
            if let Some(v) = std::env::var(name).ok().and_then(|v| v.parse().ok()) {
                *slot = v;
            }
        }
        s.validate()?;
        s
    };
    println!(
        "custodian pipeline benchmark: {n} seed-003 events, {partitions} partitions, rate {}, enrichers={} processors={} auditors={} partition_batch={} audit_batch={} flush={:?}",
        if rate > 0 { format!("{rate}/s") } else { "unlimited".to_owned() },
        settings.pipeline.enrichers,
        settings.pipeline.processors,
        settings.pipeline.auditors,
        settings.pipeline.partition_batch_size,
        settings.pipeline.audit_batch_size,
        settings.pipeline.audit_flush_interval,
    );
    custodian::telemetry::init(&settings.log);
    let app = Running::start(settings)?;
    // Produce only once the group has its assignment, so latency measures the
    // pipeline, not the group join.
    let ready_url = format!("http://{}/ready", app.http_addr);
    let joined = Instant::now();
    while rt
        .block_on(reqwest::get(&ready_url))
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        anyhow::ensure!(
            joined.elapsed() < Duration::from_secs(60),
            "custodian not ready after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Pre-generate payloads so the producer costs as little CPU as possible.
    let mut generator = custodian::synth::Generator::new(42, None, 1000, 0.1);
    let events: Vec<_> = (0..n).map(|_| generator.next_event()).collect();
    let producer: FutureProducer =
        custodian::kafka::client::producer_config(&broker.bootstrap_servers())
            .set("linger.ms", "10")
            .set("batch.num.messages", "10000")
            .create()?;
    let produced = Arc::new(AtomicU64::new(0));

    let started = Instant::now();
    let producing = {
        let (produced, topic) = (Arc::clone(&produced), topic.clone());
        let _ = &topic;
        std::thread::spawn(move || {
            let paced = Instant::now();
            for (i, event) in events.iter().enumerate() {
                if rate > 0 {
                    let due = paced + Duration::from_secs_f64(i as f64 / rate as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                while produced.load(Ordering::Relaxed).saturating_sub(durable()) >= window {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let record = FutureRecord::to(&topic)
                    .key(&event.key)
                    .payload(&event.payload);
                let mut record = Some(record);
                while let Some(r) = record.take() {
                    if let Err((rdkafka::error::KafkaError::MessageProduction(_), r)) =
                        producer.send_result(r)
                    {
                        producer.poll(Duration::from_millis(5));
                        record = Some(r);
                    }
                }
                produced.fetch_add(1, Ordering::Relaxed);
            }
            let _ = producer.flush(Duration::from_secs(60));
        })
    };
    let mut last_report = Instant::now();
    let mut first_durable: Option<Instant> = None;
    while durable() < n {
        std::thread::sleep(Duration::from_millis(10));
        if first_durable.is_none() && durable() > 0 {
            first_durable = Some(Instant::now());
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            let done = durable();
            let in_flight: i64 = (0..partitions)
                .map(|p| {
                    metrics()
                        .in_flight
                        .with_label_values(&[topic.as_str(), &p.to_string()])
                        .get()
                })
                .sum();
            eprintln!(
                "  {done} / {n} durable ({:.0} msg/s so far), produced {}, in flight {in_flight}",
                done as f64 / started.elapsed().as_secs_f64(),
                produced.load(Ordering::Relaxed)
            );
            last_report = Instant::now();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "benchmark did not finish in 15 minutes"
        );
    }
    let total = started.elapsed();
    // Throughput is timed from the first durable message.
    let elapsed = first_durable.map_or(total, |t| t.elapsed());
    let _ = producing.join();

    let audited = rt.block_on(async {
        use diesel_async::RunQueryDsl;
        let mut conn = AsyncPgConnection::establish(&database_url).await?;
        let c: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM message_audit WHERE status = 'MESSAGE_PROCESSED'",
        )
        .get_result(&mut conn)
        .await?;
        anyhow::Ok(c.n)
    })?;
    let e2e = &metrics().end_to_end_seconds;
    println!("messages:            {n} ({audited} MESSAGE_PROCESSED rows committed in PostgreSQL)");
    println!(
        "elapsed:             {:.2} s from first durable message ({:.2} s including group join)",
        elapsed.as_secs_f64(),
        total.as_secs_f64()
    );
    println!(
        "throughput:          {:.0} messages/s end to end",
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50:         <= {:.1} ms (Kafka timestamp to durable audit)",
        quantile(e2e, 0.50) * 1000.0
    );
    println!(
        "latency p99:         <= {:.1} ms",
        quantile(e2e, 0.99) * 1000.0
    );
    let batches = &metrics().audit_batch_size;
    println!(
        "audit flushes:       {} (mean {:.0} messages per PostgreSQL transaction)",
        batches.get_sample_count(),
        batches.get_sample_sum() / batches.get_sample_count().max(1) as f64
    );
    println!("peak memory (RSS):   {:.0} MiB (whole process: custodian, mock broker, producer, payloads)", peak_rss_mib());
    anyhow::ensure!(
        audited as u64 == n,
        "expected {n} PROCESSED rows, found {audited}"
    );
    app.stop()?;
    rt.block_on(async {
        use diesel_async::RunQueryDsl;
        let mut conn = AsyncPgConnection::establish(&admin).await?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
        anyhow::Ok(())
    })?;
    Ok(())
}
