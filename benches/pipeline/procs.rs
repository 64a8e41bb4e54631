//! What the benchmark reads from /proc: CPU time and peak memory of one
//! process, and the CPU time of a whole PostgreSQL cluster.

use std::path::Path;

/// Clock ticks per second, as /proc counts CPU time.
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The fields of /proc/<pid>/stat after the command name, 0-based from
/// field 3 (`state`).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// (ppid, utime + stime, cutime + cstime) in ticks.
fn cpu_ticks(pid: u32) -> Option<(u32, u64, u64)> {
    let f = stat_fields(pid)?;
    // state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    Some((f[1] as u32, f[11] + f[12], f[13] + f[14]))
}

/// CPU seconds a live process has used so far (user + system).
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_ticks(pid).map_or(f64::NAN, |(_, own, _)| own as f64 / ticks_per_second())
}

/// Peak resident memory of a live process, in MiB (VmHWM).
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU seconds used so far by the PostgreSQL cluster whose data directory is
/// `data`: the postmaster, the children it has reaped, and its live children
/// (backends, WAL writer, checkpointer…).
pub fn cluster_cpu_seconds(data: &Path) -> f64 {
    let Some(postmaster) = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
    else {
        return f64::NAN;
    };
    let Some((_, own, reaped)) = cpu_ticks(postmaster) else {
        return f64::NAN;
    };
    let mut ticks = own + reaped;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        {
            if let Some((ppid, own, _)) = cpu_ticks(pid) {
                if ppid == postmaster {
                    ticks += own;
                }
            }
        }
    }
    ticks as f64 / ticks_per_second()
}
