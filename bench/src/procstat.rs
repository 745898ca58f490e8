//! RSS and CPU of processes, from `/proc/PID/status` and `/proc/PID/stat`.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The highest resident set size the process has had, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// User + system CPU time in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after it start behind the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Every process whose command name is `comm` (e.g. all PostgreSQL backends).
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|name| name.trim() == comm)
                .unwrap_or(false)
        })
        .collect()
}

/// What a process (or group of processes) used over a window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Mean CPU over the window, percent of one core.
    pub cpu_percent: f64,
    /// Peak resident set size seen, MiB.
    pub rss_peak_mib: f64,
    /// Resident set size at the end, MiB.
    pub rss_end_mib: f64,
}

/// Named process groups to watch.
#[derive(Clone)]
pub enum Target {
    Pid(u32),
    /// All processes with this command name (the shared PostgreSQL cluster).
    Named(&'static str),
}

impl Target {
    fn pids(&self) -> Vec<u32> {
        match self {
            Target::Pid(pid) => vec![*pid],
            Target::Named(comm) => pids_named(comm),
        }
    }
}

/// Samples `targets` every 500 ms for `window`, then reports per name.
pub async fn sample(targets: &[(String, Target)], window: Duration) -> BTreeMap<String, Usage> {
    let ticks = clock_ticks();
    let total_ticks =
        |target: &Target| -> u64 { target.pids().iter().filter_map(|pid| cpu_ticks(*pid)).sum() };
    let total_rss =
        |target: &Target| -> u64 { target.pids().iter().filter_map(|pid| rss_kib(*pid)).sum() };
    let start = Instant::now();
    let first: Vec<u64> = targets.iter().map(|(_, t)| total_ticks(t)).collect();
    let mut peak: Vec<u64> = targets.iter().map(|(_, t)| total_rss(t)).collect();
    let deadline = start + window;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500).min(deadline - Instant::now())).await;
        for (i, (_, target)) in targets.iter().enumerate() {
            peak[i] = peak[i].max(total_rss(target));
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(0.001);
    targets
        .iter()
        .enumerate()
        .map(|(i, (name, target))| {
            let used = total_ticks(target).saturating_sub(first[i]) as f64 / ticks;
            let end = total_rss(target);
            (
                name.clone(),
                Usage {
                    cpu_percent: used / elapsed * 100.0,
                    rss_peak_mib: peak[i].max(end) as f64 / 1024.0,
                    rss_end_mib: end as f64 / 1024.0,
                },
            )
        })
        .collect()
}
