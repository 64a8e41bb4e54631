//! `custodian status`: the `/status` document as a terminal table, in the
//! manner of `kafka-consumer-groups --describe`.

use super::report::{Dependency, StatusReport};

fn or_dash(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn health(name: &str, d: &Dependency) -> String {
    match &d.error {
        None if d.ok => format!("{name}: ok"),
        Some(e) => format!("{name}: DOWN ({e})"),
        None => format!("{name}: DOWN"),
    }
}

/// The report as lines of text: a health line, then one row per partition.
pub fn render(report: &StatusReport) -> String {
    let mut out = format!(
        "instance {}  at {}\n{}   {}   {}\n\n",
        report.instance,
        report.generated_at.format("%Y-%m-%d %H:%M:%S UTC"),
        health("kafka", &report.health.kafka),
        health("postgres", &report.health.postgres),
        health("redis", &report.health.redis),
    );
    let header = [
        "TOPIC",
        "PARTITION",
        "STATE",
        "CURRENT-OFFSET",
        "DURABLE",
        "LOG-END-OFFSET",
        "LAG",
        "IN-FLIGHT",
        "OWNER",
        "LAST-ERROR",
    ];
    let rows: Vec<[String; 10]> = report
        .partitions
        .iter()
        .map(|p| {
            [
                p.topic.clone(),
                p.partition.to_string(),
                p.state.clone(),
                or_dash(p.committed_offset),
                or_dash(p.durable_watermark),
                or_dash(p.high_watermark),
                or_dash(p.lag),
                p.in_flight.to_string(),
                p.owner.clone(),
                p.last_error
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |e| e.message.clone()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        out.push_str("(no partitions assigned to this instance)\n");
    }
    for p in &report.partitions {
        if let Some(why) = &p.held_by {
            out.push_str(&format!("{}/{} held: {why}\n", p.topic, p.partition));
        }
        if let Some(stall) = &p.stalled {
            out.push_str(&format!(
                "{}/{} stalled: offset {} waiting since {}\n",
                p.topic,
                p.partition,
                stall.offset,
                stall.since.format("%H:%M:%S UTC")
            ));
        }
    }
    for r in &report.routes {
        let breaker = r.breaker.as_ref().map_or_else(
            || "breaker off".to_owned(),
            |b| format!("breaker {}", b.state),
        );
        let paused = r
            .paused_by
            .as_ref()
            .map_or_else(String::new, |why| format!(", {why}"));
        out.push_str(&format!("route {}: {breaker}{paused}\n", r.route));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::report::{Dependencies, PartitionRow};

    #[test]
    fn columns_line_up_and_missing_figures_are_dashes() {
        let ok = Dependency {
            ok: true,
            error: None,
        };
        let report = StatusReport {
            instance: "h/1".into(),
            generated_at: chrono::DateTime::from_timestamp(0, 0).expect("time"),
            assigned_partitions: Some(2),
            health: Dependencies {
                kafka: ok.clone(),
                postgres: ok.clone(),
                redis: Dependency {
                    ok: false,
                    error: Some("refused".into()),
                },
            },
            partitions: vec![
                PartitionRow {
                    topic: "tx".into(),
                    partition: 0,
                    owner: "h/1".into(),
                    state: "running".into(),
                    committed_offset: Some(12345),
                    durable_watermark: Some(12345),
                    high_watermark: Some(12350),
                    lag: Some(5),
                    in_flight: 5,
                    held_by: None,
                    stalled: None,
                    last_error: None,
                },
                PartitionRow {
                    topic: "tx".into(),
                    partition: 1,
                    owner: "h/1".into(),
                    state: "paused".into(),
                    committed_offset: None,
                    durable_watermark: None,
                    high_watermark: Some(0),
                    lag: None,
                    in_flight: 0,
                    held_by: None,
                    stalled: None,
                    last_error: None,
                },
            ],
            routes: Vec::new(),
        };
        let text = render(&report);
        assert!(text.contains("redis: DOWN (refused)"), "{text}");
        let lines: Vec<&str> = text.lines().skip(3).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].contains("12345") && lines[1].contains("12350"));
        assert!(lines[2].contains("paused"));
        // The LAG column starts at the same place on every line.
        let lag_at = lines[0].find("LAG").expect("LAG header");
        assert_eq!(&lines[1][lag_at..lag_at + 1], "5");
        assert_eq!(&lines[2][lag_at..lag_at + 1], "-");
    }
}
