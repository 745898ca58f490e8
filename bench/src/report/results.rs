//! The data of one run: the machine, the run's settings and everything it measured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    baselines::{Hop, PgBench},
    bridge::{Capacity, Recovery, Sustained},
    load::Throughput,
    procstat::Usage,
    stats::{Summary, median},
    system::E2e,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub cpu: String,
    /// 1-minute load average when the run started (other builds share the machine).
    pub load_average_at_start: String,
}

impl Machine {
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let memory_kib: u64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        Self {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            memory_mib: memory_kib / 1024,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            cpu: read("/proc/cpuinfo")
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_default(),
            load_average_at_start: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunConfig {
    pub scale: f64,
    pub quick: bool,
    pub clients: usize,
    pub sustained_window_seconds: f64,
    pub started_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadyTimes {
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    pub max_ms: f64,
}

impl ReadyTimes {
    pub fn from_runs(runs_ms: Vec<f64>) -> Self {
        Self {
            median_ms: median(&runs_ms),
            max_ms: runs_ms.iter().copied().fold(0.0, f64::max),
            runs_ms,
        }
    }
}

/// Everything one run measured; `None` where a phase failed (see `errors`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub config: RunConfig,
    pub duration_seconds: f64,
    pub hello: Option<Throughput>,
    pub pgbench: Option<PgBench>,
    /// pgbench running GetCustomer's SQL: the read path's floor on this machine.
    #[serde(default)]
    pub pgbench_read: Option<PgBench>,
    pub stack_start_seconds: Option<f64>,
    pub ready_ms: BTreeMap<String, ReadyTimes>,
    pub usage_idle: BTreeMap<String, Usage>,
    pub usage_load: BTreeMap<String, Usage>,
    pub usage_sustained: BTreeMap<String, Usage>,
    pub hop_tansu_200: Option<Hop>,
    pub hop_tansu_1000: Option<Hop>,
    pub hop_mock_200: Option<Hop>,
    pub hop_mock_1000: Option<Hop>,
    pub rpc_read: Option<Throughput>,
    pub rpc_write: Option<Throughput>,
    pub e2e_customers_200: Option<E2e>,
    pub e2e_customers_1000: Option<E2e>,
    pub e2e_stock_200: Option<E2e>,
    pub e2e_stock_1000: Option<E2e>,
    pub mock_e2e_customers_200: Option<E2e>,
    pub mock_e2e_customers_1000: Option<E2e>,
    pub mock_e2e_stock_200: Option<E2e>,
    pub mock_e2e_stock_1000: Option<E2e>,
    /// A lone customer created while the bridge rests: commit -> visible in the ERP.
    #[serde(default)]
    pub e2e_after_rest: Option<Summary>,
    pub capacity: Option<Capacity>,
    pub sustained: Vec<Sustained>,
    pub recovery: Option<Recovery>,
    pub errors: Vec<String>,
}
