//! What tracing costs: the same clean load drained saturated by a fresh
//! process three times, back to back: traces off, on at ratio 1.0, on at
//! ratio 0.01, exporting to a sink here (an HTTP server that reads each
//! OTLP request whole and answers 200, so the exporter does all its work).
//! BENCH_TRACES=0 skips the phase.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{Bench, Drain};

/// Accepts OTLP/HTTP requests and counts their bytes.
fn sink() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/v1/traces", listener.local_addr()?);
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&bytes);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counted = Arc::clone(&counted);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => return,
                });
                let mut stream = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    counted.fetch_add(length as u64, Ordering::Relaxed);
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((url, bytes))
}

pub fn run(bench: &mut Bench, n: u64) -> anyhow::Result<()> {
    let (url, bytes) = sink()?;
    let poison = std::mem::replace(&mut bench.poison, 0.0);
    let mut rows: Vec<(String, Drain, u64)> = Vec::new();
    for (label, ratio) in [
        ("off", None),
        ("on, ratio 1.0", Some("1.0")),
        ("on, ratio 0.01", Some("0.01")),
    ] {
        let mut settings = Vec::new();
        if let Some(ratio) = ratio {
            settings.push(("CUSTODIAN_TELEMETRY__OTLP_ENDPOINT".to_owned(), url.clone()));
            settings.push((
                "CUSTODIAN_TELEMETRY__SAMPLE_RATIO".to_owned(),
                ratio.to_owned(),
            ));
        }
        let before = bytes.load(Ordering::Relaxed);
        let name = format!("traces{}", rows.len());
        let drained = bench.drain(&name, n, &settings);
        let (drain, custodian, _, _, topic, ends) = match drained {
            Ok(d) => d,
            Err(e) => {
                bench.poison = poison;
                return Err(e);
            }
        };
        drain.print(&format!(
            "saturated, no poison, traces {label}: {n} events (preloaded), cold start"
        ));
        custodian.stop()?;
        bench.check_outcomes(&topic, ends.values().sum())?;
        rows.push((
            label.to_owned(),
            drain,
            bytes.load(Ordering::Relaxed) - before,
        ));
    }
    bench.poison = poison;
    let rate = |d: &Drain| d.messages as f64 / d.elapsed.as_secs_f64();
    let base = rate(&rows[0].1);
    for (label, d, exported) in &rows {
        println!(
            "traces {label}: ×{:.2} throughput ({:.0} messages/s), custodian CPU {:.1} µs per message, PostgreSQL CPU {:.1} µs per message, {:.1} MiB of OTLP exported",
            rate(d) / base,
            rate(d),
            d.custodian_cpu * 1e6 / d.messages as f64,
            d.postgres_cpu * 1e6 / d.messages as f64,
            *exported as f64 / 1048576.0
        );
    }
    Ok(())
}
