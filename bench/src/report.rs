//! The results of one run, the figures with their baselines and targets, and the report files.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    baselines::{Hop, PgBench},
    bridge::{Capacity, Recovery, Sustained},
    load::Throughput,
    procstat::Usage,
    stats::median,
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
    pub capacity: Option<Capacity>,
    pub sustained: Vec<Sustained>,
    pub recovery: Option<Recovery>,
    pub errors: Vec<String>,
}

/// One line of the summary: a figure, its same-run baseline, the ratio, the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub value: Option<f64>,
    pub unit: String,
    pub baseline_name: Option<String>,
    pub baseline: Option<f64>,
    /// value / baseline.
    pub ratio: Option<f64>,
    pub target: Option<String>,
    pub pass: Option<bool>,
    /// Where a target is missed: the measured limit and why.
    pub note: Option<String>,
}

#[derive(Serialize)]
struct Document<'a> {
    figures: &'a [Figure],
    results: &'a Results,
    /// The figures of the report this one replaced: the "before" of a change.
    previous: Option<&'a Previous>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Previous {
    pub started_at: String,
    pub figures: Vec<Figure>,
}

/// What an earlier `bench-results.json` holds that the next report needs.
#[derive(Deserialize)]
struct Saved {
    results: Results,
    #[serde(default)]
    figures: Vec<Figure>,
    #[serde(default)]
    previous: Option<Previous>,
}

/// The "before" of this report: the report in `dir` it replaces, or, when `results` are that
/// report's own (a re-render), the one that report replaced.
fn previous(dir: &Path, results: &Results) -> Option<Previous> {
    let text = std::fs::read_to_string(dir.join("bench-results.json")).ok()?;
    let saved: Saved = serde_json::from_str(&text).ok()?;
    if saved.results.config.started_at == results.config.started_at {
        saved.previous
    } else {
        Some(Previous {
            started_at: saved.results.config.started_at,
            figures: saved.figures,
        })
    }
}

struct Builder(Vec<Figure>);

impl Builder {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: &str,
        value: Option<f64>,
        unit: &str,
        baseline: Option<(&str, Option<f64>)>,
        target: Option<(&str, bool)>,
        note: Option<String>,
    ) {
        let (baseline_name, baseline) = match baseline {
            Some((n, v)) => (Some(n.to_owned()), v),
            None => (None, None),
        };
        let ratio = match (value, baseline) {
            (Some(v), Some(b)) if b > 0.0 => Some(v / b),
            _ => None,
        };
        let pass = target.map(|(_, ok)| value.is_some() && ok);
        self.0.push(Figure {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            baseline_name,
            baseline,
            ratio,
            target: target.map(|(t, _)| t.to_owned()),
            pass,
            note: if pass == Some(false) { note } else { None },
        });
    }
}

fn p50(e: Option<&E2e>) -> Option<f64> {
    e.filter(|e| e.visible > 0).map(|e| e.latency.p50_ms)
}
fn p99(e: Option<&E2e>) -> Option<f64> {
    e.filter(|e| e.visible > 0).map(|e| e.latency.p99_ms)
}
fn hop50(h: Option<&Hop>) -> Option<f64> {
    h.filter(|h| h.received > 0).map(|h| h.latency.p50_ms)
}
fn hop99(h: Option<&Hop>) -> Option<f64> {
    h.filter(|h| h.received > 0).map(|h| h.latency.p99_ms)
}

pub fn figures(r: &Results) -> Vec<Figure> {
    let mut b = Builder(Vec::new());
    let le = |v: Option<f64>, t: f64| v.is_some_and(|v| v <= t);
    let ge = |v: Option<f64>, t: f64| v.is_some_and(|v| v >= t);
    let f1 = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into());

    // End-to-end latency at 200/s, both directions, both brokers.
    for (label, e2e, hop, mock_e2e, mock_hop) in [
        (
            "CRM -> ERP",
            &r.e2e_customers_200,
            &r.hop_tansu_200,
            &r.mock_e2e_customers_200,
            &r.hop_mock_200,
        ),
        (
            "ERP stock -> CRM",
            &r.e2e_stock_200,
            &r.hop_tansu_200,
            &r.mock_e2e_stock_200,
            &r.hop_mock_200,
        ),
    ] {
        for (broker, e, h) in [("tansu", e2e, hop), ("mock cluster", mock_e2e, mock_hop)] {
            let why = format!(
                "the broker hop alone (same client settings, same rate) takes p50 {} / p99 {} ms on {broker}, so the \
                 excess of the sync path over its broker floor is p50 {} / p99 {} ms; {}",
                f1(hop50(h.as_ref())),
                f1(hop99(h.as_ref())),
                f1(p50(e.as_ref()).zip(hop50(h.as_ref())).map(|(a, b)| a - b)),
                f1(p99(e.as_ref()).zip(hop99(h.as_ref())).map(|(a, b)| a - b)),
                if broker == "tansu" {
                    "tansu answers a fetch only after fetch.wait.max.ms (10 ms), which sets most of that floor"
                } else {
                    "the excess is the relay's cycle (a commit landing while the relay awaits the acks of \
                     the previous batch waits for the next one) and the bridge's apply (a gRPC call and a transaction)"
                },
            );
            b.add(
                &format!("e2e {label} p50 at 200/s ({broker})"),
                p50(e.as_ref()),
                "ms",
                Some(("raw broker hop p50", hop50(h.as_ref()))),
                Some(("<= 10 ms", le(p50(e.as_ref()), 10.0))),
                Some(why.clone()),
            );
            b.add(
                &format!("e2e {label} p99 at 200/s ({broker})"),
                p99(e.as_ref()),
                "ms",
                Some(("raw broker hop p99", hop99(h.as_ref()))),
                Some(("<= 50 ms", le(p99(e.as_ref()), 50.0))),
                Some(why),
            );
        }
    }
    for (label, e, h) in [
        (
            "e2e CRM -> ERP p99 at 1000/s (tansu)",
            &r.e2e_customers_1000,
            &r.hop_tansu_1000,
        ),
        (
            "e2e ERP stock -> CRM p99 at 1000/s (tansu)",
            &r.e2e_stock_1000,
            &r.hop_tansu_1000,
        ),
        (
            "e2e CRM -> ERP p99 at 1000/s (mock cluster)",
            &r.mock_e2e_customers_1000,
            &r.hop_mock_1000,
        ),
        (
            "e2e ERP stock -> CRM p99 at 1000/s (mock cluster)",
            &r.mock_e2e_stock_1000,
            &r.hop_mock_1000,
        ),
    ] {
        b.add(
            label,
            p99(e.as_ref()),
            "ms",
            Some(("raw broker hop p99", hop99(h.as_ref()))),
            None,
            None,
        );
    }

    // Bridge throughput.
    let best = r
        .sustained
        .iter()
        .filter(|s| s.flat)
        .map(|s| s.rate)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let capacity = r.capacity.as_ref();
    let void = !r.sustained.is_empty()
        && r.sustained
            .iter()
            .all(|s| s.produced_per_second < 0.97 * s.rate);
    let note = if void {
        format!(
            "void in this run: the injector got only {} events/s acknowledged by the broker (offered {}), so the \
             broker, not the bridge, was the limit; the bridge drained a stored backlog at {} events/s",
            r.sustained
                .iter()
                .map(|s| f1(Some(s.produced_per_second)))
                .collect::<Vec<_>>()
                .join(", "),
            r.sustained
                .iter()
                .map(|s| f1(Some(s.rate)))
                .collect::<Vec<_>>()
                .join(", "),
            f1(capacity.map(|c| c.bridge_drain_per_second)),
        )
    } else {
        format!(
            "the bridge drained a backlog at {} events/s while a plain consumer with its settings read the same topic at {} \
             events/s and the injector produced at {} events/s; the bridge applies each partition's waiting events in \
             one ErpSync.ApplyCustomers call (one ERP transaction, up to consumer.batch_max events; 3 partitions)",
            f1(capacity.map(|c| c.bridge_drain_per_second)),
            f1(capacity.map(|c| c.raw_consume_per_second)),
            f1(capacity.map(|c| c.produce_per_second)),
        )
    };
    b.add(
        "sustained bridge throughput, lag flat for the whole window",
        best,
        "events/s",
        Some((
            "raw consumer read rate (bridge settings)",
            capacity.map(|c| c.raw_consume_per_second),
        )),
        Some((">= 2500 events/s", ge(best, 2500.0))),
        Some(note),
    );

    // RPCs.
    let write = r.rpc_write.as_ref().map(|t| t.per_second);
    let pg = r.pgbench.as_ref().map(|p| p.tps);
    b.add(
        "CRM write RPC (CreateCustomer), 8 clients",
        write,
        "calls/s",
        Some(("pgbench, same SQL, 8 clients (tps)", pg)),
        Some(("ratio >= 0.50", write.zip(pg).is_some_and(|(w, p)| p > 0.0 && w / p >= 0.5))),
        Some(format!(
            "CreateCustomer p50 {} ms vs pgbench p50 {} ms for the same SQL: the service adds gRPC decoding, validation, \
             the envelope's JSON and four round trips to PostgreSQL through sqlx (begin, customer, outbox, commit), \
             each a task wake-up in the CRM; and every commit is then published: during this phase the broker (tansu) \
             took about half a core and the relay its share, CPU that pgbench had to itself. In the CRM's profile \
             (perf, release build) a third of its CPU is the kernel switching tasks and waking sockets, the rest \
             allocation, tracing and sqlx; next: the customer and outbox inserts as one statement",
            f1(r.rpc_write.as_ref().map(|t| t.latency.p50_ms)),
            f1(r.pgbench.as_ref().map(|p| p.latency.p50_ms)),
        )),
    );
    let read = r.rpc_read.as_ref().map(|t| t.per_second);
    let hello = r.hello.as_ref().map(|t| t.per_second);
    b.add(
        "CRM read RPC (GetCustomer), 8 clients",
        read,
        "calls/s",
        Some(("tonic hello-world, 8 clients", hello)),
        Some(("ratio >= 0.60", read.zip(hello).is_some_and(|(v, h)| h > 0.0 && v / h >= 0.6))),
        Some(format!(
            "GetCustomer p50 {} ms vs hello-world p50 {} ms: each read runs its SQL on PostgreSQL, which the \
             hello-world server does not. pgbench running only that SQL (prepared, 8 clients, same run) reaches {} \
             tps, {} of hello-world: that is the ceiling of any read served from PostgreSQL on these 2 shared cores, \
             and GetCustomer reaches {} of it. The gap is the service's per-call cost (two round trips through sqlx, \
             each a task wake-up; HTTP/2 framing) plus the broker's idle fetch polling (about a quarter of a core on \
             tansu while only reads run)",
            f1(r.rpc_read.as_ref().map(|t| t.latency.p50_ms)),
            f1(r.hello.as_ref().map(|t| t.latency.p50_ms)),
            f1(r.pgbench_read.as_ref().map(|p| p.tps)),
            ratio(r.pgbench_read.as_ref().map(|p| p.tps), hello),
            ratio(read, r.pgbench_read.as_ref().map(|p| p.tps)),
        )),
    );
    for (label, t) in [
        ("CRM write RPC p99", &r.rpc_write),
        ("CRM read RPC p99", &r.rpc_read),
    ] {
        let baseline = if label.contains("write") {
            ("pgbench p99", r.pgbench.as_ref().map(|p| p.latency.p99_ms))
        } else {
            (
                "hello-world p99",
                r.hello.as_ref().map(|t| t.latency.p99_ms),
            )
        };
        b.add(
            label,
            t.as_ref().map(|t| t.latency.p99_ms),
            "ms",
            Some(baseline),
            None,
            None,
        );
    }

    // Recovery.
    let rec = r.recovery.as_ref();
    b.add(
        "recovery after a 5 s bridge outage at 1000 events/s",
        rec.and_then(|r| r.recovered_seconds),
        "s",
        Some(("bridge restart to ready", rec.map(|r| r.restart_ready_seconds))),
        Some(("<= 10 s", le(rec.and_then(|r| r.recovered_seconds), 10.0))),
        Some(format!(
            "peak lag {} events; the injector got {} of 1000 events/s acknowledged (below 970 the figure is void); a \
             backlog drains at (capacity - 1000)/s, with a measured drain capacity of {} events/s",
            rec.map(|r| r.peak_lag.to_string()).unwrap_or_else(|| "n/a".into()),
            f1(rec.map(|r| r.produced_per_second)),
            f1(capacity.map(|c| c.bridge_drain_per_second)),
        )),
    );

    // Resources and start-up.
    for service in ["crm-service", "erp-service", "sync-bridge"] {
        let rss = r.usage_idle.get(service).map(|u| u.rss_end_mib);
        b.add(
            &format!("{service} RSS idle"),
            rss,
            "MiB",
            None,
            Some(("<= 50 MiB", le(rss, 50.0))),
            Some("resident set after start-up and the preparation load".into()),
        );
    }
    for service in ["crm-service", "erp-service", "sync-bridge"] {
        let ready = r.ready_ms.get(service).filter(|t| !t.runs_ms.is_empty());
        b.add(
            &format!("{service} start to ready (max of 3, migrations applied)"),
            ready.map(|t| t.max_ms),
            "ms",
            None,
            Some(("<= 1000 ms", le(ready.map(|t| t.max_ms), 1000.0))),
            Some("measured from spawn to /readyz 200".into()),
        );
    }
    b.0
}

/// Renders the report again from a `bench-results.json` (after a change to the report's text).
pub fn rerender(json: &Path, dir: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let saved: Saved = serde_json::from_str(&text).context("parsing bench-results.json")?;
    write(dir, &saved.results)
}

pub fn write(dir: &Path, results: &Results) -> Result<()> {
    let figures = figures(results);
    let previous = previous(dir, results);
    let json = serde_json::to_string_pretty(&Document {
        figures: &figures,
        results,
        previous: previous.as_ref(),
    })?;
    std::fs::write(dir.join("bench-results.json"), json + "\n")
        .context("writing bench-results.json")?;
    std::fs::write(
        dir.join("BENCHMARKS.md"),
        markdown(results, &figures, previous.as_ref()),
    )
    .context("writing BENCHMARKS.md")?;
    Ok(())
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v.is_nan() => "n/a".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn e2e_row(out: &mut String, name: &str, e: &Option<E2e>, hop: &Option<Hop>) {
    let Some(e) = e else {
        let _ = writeln!(out, "| {name} | n/a | | | | | | |");
        return;
    };
    let l = e.latency;
    let h = hop.as_ref().map(|h| h.latency);
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} | {} / {} | {} | {} of {} ({} missing, {} shed) |",
        num(Some(l.p50_ms)),
        num(Some(l.p99_ms)),
        num(Some(l.max_ms)),
        num(h.map(|h| h.p50_ms)),
        num(h.map(|h| l.p50_ms - h.p50_ms)),
        num(h.map(|h| l.p99_ms - h.p99_ms)),
        num(Some(e.writes.latency.p99_ms)),
        e.visible,
        e.writes.sent,
        e.missing,
        e.writes.shed,
    );
}

fn markdown(r: &Results, figures: &[Figure], previous: Option<&Previous>) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = writeln!(o, "# Benchmarks\n");
    let _ = writeln!(
        o,
        "Generated by `make bench` (bench/, issue 7) on {}. Machine: {} CPUs ({}), {} MiB memory, kernel {}, load \
         average {} at the start; the machine is shared with other builds, so every figure is set against a baseline \
         measured in the same run. Run time {:.0} s.{}\n",
        r.config.started_at,
        m.nproc,
        m.cpu,
        m.memory_mib,
        m.kernel,
        m.load_average_at_start,
        r.duration_seconds,
        if r.config.quick || (r.config.scale - 1.0).abs() > f64::EPSILON {
            format!(
                " **Shortened run** (scale {}, sustained window {} s): not the issue's durations.",
                r.config.scale, r.config.sustained_window_seconds
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(
        o,
        "| figure | value | baseline (same run) | ratio | target | result |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for f in figures {
        let _ = writeln!(
            o,
            "| {} | {} {} | {} | {} | {} | {} |",
            f.name,
            num(f.value),
            f.unit,
            match (&f.baseline_name, f.baseline) {
                (Some(n), v) => format!("{n}: {}", num(v)),
                _ => String::new(),
            },
            f.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
            f.target.clone().unwrap_or_default(),
            match f.pass {
                Some(true) => "pass",
                Some(false) => "**FAIL**",
                None => "",
            }
        );
    }
    if let Some(previous) = previous {
        before_and_after(&mut o, figures, previous);
    }
    let missed: Vec<&Figure> = figures.iter().filter(|f| f.pass == Some(false)).collect();
    if !missed.is_empty() {
        let _ = writeln!(o, "\n## Missed targets: the measured limit and why\n");
        for f in missed {
            let _ = writeln!(
                o,
                "- **{}**: {} {} (target {}). {}.",
                f.name,
                num(f.value),
                f.unit,
                f.target.clone().unwrap_or_default(),
                f.note
                    .clone()
                    .unwrap_or_else(|| "the phase did not produce a value; see Errors".into())
            );
        }
    }

    let _ = writeln!(o, "\n## End-to-end sync latency\n");
    let _ = writeln!(
        o,
        "From the moment the writer got the commit acknowledged (CreateCustomer in the CRM, ReceiveStock in the ERP) to \
         the moment the change is readable in the other side's database (polled every 2 ms: one indexed query for all \
         pending keys), at a fixed arrival rate. \"Excess\" subtracts the raw broker hop measured at the same rate with \
         the relay's producer settings and the bridge's consumer settings.\n"
    );
    let _ = writeln!(
        o,
        "| flow, rate, broker | p50 ms | p99 ms | max ms | broker hop p50 ms | excess p50 / p99 ms | write RPC p99 ms | seen |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    e2e_row(
        &mut o,
        "CRM -> ERP, 200/s, tansu",
        &r.e2e_customers_200,
        &r.hop_tansu_200,
    );
    e2e_row(
        &mut o,
        "CRM -> ERP, 1000/s, tansu",
        &r.e2e_customers_1000,
        &r.hop_tansu_1000,
    );
    e2e_row(
        &mut o,
        "ERP stock -> CRM, 200/s, tansu",
        &r.e2e_stock_200,
        &r.hop_tansu_200,
    );
    e2e_row(
        &mut o,
        "ERP stock -> CRM, 1000/s, tansu",
        &r.e2e_stock_1000,
        &r.hop_tansu_1000,
    );
    e2e_row(
        &mut o,
        "CRM -> ERP, 200/s, mock cluster",
        &r.mock_e2e_customers_200,
        &r.hop_mock_200,
    );
    e2e_row(
        &mut o,
        "CRM -> ERP, 1000/s, mock cluster",
        &r.mock_e2e_customers_1000,
        &r.hop_mock_1000,
    );
    e2e_row(
        &mut o,
        "ERP stock -> CRM, 200/s, mock cluster",
        &r.mock_e2e_stock_200,
        &r.hop_mock_200,
    );
    e2e_row(
        &mut o,
        "ERP stock -> CRM, 1000/s, mock cluster",
        &r.mock_e2e_stock_1000,
        &r.hop_mock_1000,
    );

    let _ = writeln!(o, "\n## Broker floor: raw produce -> consume hop\n");
    let _ = writeln!(
        o,
        "| broker, rate | p50 ms | p99 ms | max ms | received / produced |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|");
    for (name, h) in [
        ("tansu, 200/s", &r.hop_tansu_200),
        ("tansu, 1000/s", &r.hop_tansu_1000),
        ("mock cluster, 200/s", &r.hop_mock_200),
        ("mock cluster, 1000/s", &r.hop_mock_1000),
    ] {
        match h {
            Some(h) => {
                let _ = writeln!(
                    o,
                    "| {name} | {} | {} | {} | {} / {} |",
                    num(Some(h.latency.p50_ms)),
                    num(Some(h.latency.p99_ms)),
                    num(Some(h.latency.max_ms)),
                    h.received,
                    h.produced
                );
            }
            None => {
                let _ = writeln!(o, "| {name} | n/a | | | |");
            }
        }
    }

    let _ = writeln!(
        o,
        "\n## RPC throughput (closed loop, 8 clients, one connection each)\n"
    );
    let _ = writeln!(o, "| what | calls/s | p50 ms | p99 ms | max ms | errors |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for (name, t) in [
        (
            "tonic hello-world (baseline, in-process server, 2 threads)",
            &r.hello,
        ),
        ("CRM GetCustomer", &r.rpc_read),
        ("CRM CreateCustomer", &r.rpc_write),
    ] {
        match t {
            Some(t) => {
                let _ = writeln!(
                    o,
                    "| {name} | {} | {} | {} | {} | {} |",
                    num(Some(t.per_second)),
                    num(Some(t.latency.p50_ms)),
                    num(Some(t.latency.p99_ms)),
                    num(Some(t.latency.max_ms)),
                    t.errors
                );
            }
            None => {
                let _ = writeln!(o, "| {name} | n/a | | | | |");
            }
        }
    }
    for (name, pgbench) in [
        ("CreateCustomer's SQL", &r.pgbench),
        ("GetCustomer's SQL", &r.pgbench_read),
    ] {
        if let Some(p) = pgbench {
            let _ = writeln!(
                o,
                "| pgbench, {name} (baseline, prepared, 8 clients) | {} | {} | {} | {} | |",
                num(Some(p.tps)),
                num(Some(p.latency.p50_ms)),
                num(Some(p.latency.p99_ms)),
                num(Some(p.latency.max_ms))
            );
        }
    }

    let _ = writeln!(o, "\n## Bridge throughput\n");
    let _ = writeln!(
        o,
        "Measured on the stack connected to librdkafka's mock cluster, with the same binaries and settings: the local \
         broker (tansu 0.6, SQLite storage) is the limit below these rates. Above about 1,000 events/s it falls \
         behind (the e2e figures at 1000/s on tansu above), and a 30,000-event backlog produced at 2,000/s left it \
         answering no fetch at all (the previous run of this bench, with these phases on tansu).\n"
    );
    if let Some(c) = &r.capacity {
        let _ = writeln!(
            o,
            "Backlog of {} `crm.customer.upserted` events (each a new customer) produced with the bridge stopped at {} \
             events/s; a plain consumer with the bridge's settings read the topic at {} events/s; the bridge, started \
             again, drained it at {} events/s (10% to 90% of the backlog).\n",
            c.backlog,
            num(Some(c.produce_per_second)),
            num(Some(c.raw_consume_per_second)),
            num(Some(c.bridge_drain_per_second))
        );
    }
    let _ = writeln!(
        o,
        "| offered events/s | produced/s | applied/s | lag mean first 10 s | lag mean last 10 s | lag max | window s | flat |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    for s in &r.sustained {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            num(Some(s.rate)),
            num(Some(s.produced_per_second)),
            num(Some(s.applied_per_second)),
            num(Some(s.lag_first_10s_mean)),
            num(Some(s.lag_last_10s_mean)),
            s.lag_max,
            s.window_seconds,
            if s.flat { "yes" } else { "no" }
        );
    }
    let _ = writeln!(
        o,
        "\nLag = events the broker acknowledged minus customers the ERP holds (sampled every second). Flat: it grew by \
         less than half a second of traffic over the window and the injector kept up. The first rate tried is 85% of the \
         drain rate; a failed attempt is retried once at 75% of it."
    );

    let _ = writeln!(
        o,
        "\n## Recovery\n\nOn the mock cluster, like the bridge throughput.\n"
    );
    if let Some(rec) = &r.recovery {
        let _ = writeln!(
            o,
            "Events injected at {} /s ({} /s acknowledged by the broker); steady lag before the outage mean {} (max {}); the bridge stopped with SIGTERM in \
             {} s, stayed down {} s, answered /readyz {} s after its restart; peak lag {}; lag back under {} (1.5x the \
             steady max, at least 0.1 s of traffic) for three samples in a row **{} s after the restart**.",
            num(Some(rec.rate)),
            num(Some(rec.produced_per_second)),
            num(Some(rec.steady_lag_mean)),
            rec.steady_lag_max,
            num(Some(rec.stop_seconds)),
            num(Some(rec.outage_seconds)),
            num(Some(rec.restart_ready_seconds)),
            rec.peak_lag,
            num(Some(rec.threshold)),
            rec.recovered_seconds
                .map(|s| format!("{s:.2}"))
                .unwrap_or_else(|| "not within the run".into()),
        );
    } else {
        let _ = writeln!(o, "n/a (see Errors)");
    }

    let _ = writeln!(o, "\n## Resources\n");
    let _ = writeln!(
        o,
        "CPU in % of one core (mean over the window), RSS in MiB (peak / end). PostgreSQL is the whole shared cluster, summed over its processes (shared memory counted per process).\n"
    );
    let _ = writeln!(
        o,
        "| process | idle CPU % | idle RSS | CPU % at 1000/s e2e | RSS at 1000/s e2e | CPU % sustained | RSS sustained |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    let mut names: Vec<&String> = r.usage_idle.keys().chain(r.usage_load.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let cell = |map: &BTreeMap<String, Usage>| -> (String, String) {
            map.get(name)
                .map(|u| {
                    (
                        num(Some(u.cpu_percent)),
                        format!(
                            "{} / {}",
                            num(Some(u.rss_peak_mib)),
                            num(Some(u.rss_end_mib))
                        ),
                    )
                })
                .unwrap_or_default()
        };
        let (ic, ir) = cell(&r.usage_idle);
        let (lc, lr) = cell(&r.usage_load);
        let (sc, sr) = cell(&r.usage_sustained);
        let _ = writeln!(o, "| {name} | {ic} | {ir} | {lc} | {lr} | {sc} | {sr} |");
    }
    let _ = writeln!(
        o,
        "\nStart to ready (spawn -> /readyz 200, migrations already applied, 3 restarts each):\n"
    );
    let _ = writeln!(o, "| process | runs ms | median ms | max ms |");
    let _ = writeln!(o, "|---|---|---|---|");
    for (name, t) in &r.ready_ms {
        let runs: Vec<String> = t.runs_ms.iter().map(|v| format!("{v:.0}")).collect();
        let _ = writeln!(
            o,
            "| {name} | {} | {} | {} |",
            runs.join(", "),
            num(Some(t.median_ms)),
            num(Some(t.max_ms))
        );
    }
    if let Some(s) = r.stack_start_seconds {
        let _ = writeln!(
            o,
            "\nWhole stack, fresh databases (migrations run), private broker: ready after {s:.2} s."
        );
    }

    let _ = writeln!(o, "\n## Method\n");
    let _ = writeln!(o, "{METHOD}");
    let _ = writeln!(o, "\n## Optimisations\n");
    let _ = writeln!(o, "{OPTIMISATIONS}");
    let _ = writeln!(o, "\n## Next optimisations\n");
    let _ = writeln!(o, "{NEXT}");
    if !r.errors.is_empty() {
        let _ = writeln!(o, "\n## Errors\n");
        for e in &r.errors {
            let _ = writeln!(o, "- {e}");
        }
    }
    o
}

const METHOD: &str = "\
- One run, one machine: `make bench` provisions PostgreSQL and the broker binary like `make test`, builds the \
release binaries, then `cargo run --release -p tandem-bench` starts the real stack through the test kit (a private \
tansu broker on a free loopback port, two fresh databases, the three release binaries with their default settings).
- Load generator: Rust, tonic clients, HDR histograms (1 µs resolution). Closed loop for RPC throughput (8 clients, \
one HTTP/2 connection each, 1 s warm-up excluded); open loop at a fixed arrival rate for everything else (latency \
counted from the scheduled start, so a stall is not hidden by the generator waiting).
- Baselines in the same run: tonic's hello-world Greeter served in-process on a 2-thread runtime of its own; \
pgbench (`-M prepared`, 8 clients, 2 threads) running CreateCustomer's SQL (customer row and the outbox row with a \
real-sized envelope, in one transaction) and, separately, GetCustomer's two queries, on a throw-away database with \
the CRM's migrations; a raw produce -> consume hop with the outbox relay's producer settings (acks=all, one request in flight, linger 2 ms) \
and the bridge's consumer settings (fetch.wait.max.ms 10 on tansu, the bridge's default; 1 on the mock cluster, which \
also holds an empty fetch for the whole wait, so 1 ms approximates a Kafka broker answering when data arrives), ~600-byte \
payloads, on the same broker at the same rate; \
the same hop and the same e2e figures against librdkafka's in-process mock cluster (`rdkafka::mocking`), to which the \
three services connect over loopback.
- Bridge throughput and recovery load the bridge alone: valid `crm.customer.upserted` events (each a new customer) are \
produced straight into `crm.customers`, as the CRM's relay would publish them.
- Resources from /proc/PID/stat (utime + stime) and /proc/PID/status (VmRSS), sampled every 500 ms.
- `BENCH_QUICK=1` (or `BENCH_SCALE=0.2`) shortens every phase for a smoke run; the report then says so.";

const OPTIMISATIONS: &str = "\
Profiled first (`BENCH_ONLY=rpc make bench`-style runs with `perf record -g -p <crm pid>` and `perf record -a`, \
release binaries with line tables), then changed, each keeping every guarantee (the whole `make test`, chaos and \
crash-point suites included):
1. Bridge apply path, the sustained-throughput limit: `crm.customers` events were applied one \
`ErpSync.ApplyCustomer` call and one ERP transaction at a time per partition. Now a partition's waiting events go \
in one `ErpSync.ApplyCustomers` call (one transaction, the newest version of each customer once, each row still \
version-gated), like stock levels to the CRM already were.
2. CRM reads: GetCustomer made four queries (customer, contacts, addresses, finance); the profile showed the CRM \
mostly waiting and switching tasks per round trip. Now two: the row, then the lists as JSON arrays and the finance \
view joined in one query (also for ListCustomers and updates).
3. CRM writes: CreateCustomer deleted the (never existing) contacts and addresses of a new customer; now it does not: \
insert, outbox insert, commit. pgbench's script was changed alike, so the baseline is still the same SQL.
4. Telemetry: the OpenTelemetry layer received every span and event of every level (sqlx, h2, hyper at TRACE \
included), about a tenth of the CRM's CPU in the profile; it now sees only what the log filter selects.
5. The bench itself: the backlog for the bridge's drain rate is produced with the bridge stopped at 2,000/s (an \
open-loop 5,000/s burst made the local broker stop answering), and the bench's bridge takes its partitions itself \
(`consumer.assignment = all`), so its restarts involve no group coordination. On the mock cluster the bridge and \
the hop's consumer now use fetch.wait.max.ms 1 (10 before): the mock holds an empty fetch for the whole wait, so \
its floor fell from 7.4 to 3.3 ms; compare the mock figures by their ratio to the hop, not in ms. The bridge's \
throughput and recovery moved to the mock cluster (tansu stopped answering under their load).";

const NEXT: &str = "\
In order of expected gain:
1. Outbox relay: one cycle is select unpublished rows, produce them and wait for every ack (linger 2 ms plus the \
broker's write), then one `UPDATE ... WHERE id = ANY($1)`; a commit that lands during a cycle waits for the next. \
Pipelining cycles (select the next batch while the previous one awaits its acks, marking in order) would take the \
ack wait off the latency of later commits.
2. Broker floor on local runs: tansu holds every fetch for fetch.wait.max.ms (10 ms by default), which is most of \
the local p50, and its idle fetches cost it a quarter of a core (seen in `perf record -a` while only reads ran); \
production Kafka answers as soon as data arrives, as the mock-cluster figures show.
3. Per-call overhead of the services: in the CRM's profile under load, a third of its CPU is the kernel switching \
tasks and waking sockets (one wake-up per PostgreSQL round trip and per HTTP/2 frame), then allocation and tracing. \
Fewer round trips (a single statement for GetCustomer, the customer and outbox inserts as one CTE) and a \
current-thread runtime per core are the next steps.";

/// `a / b` with two decimals, or "n/a".
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_owned(),
    }
}

/// Each figure of this report beside the same figure of the report it replaced; ratios to
/// the same-run baselines are what compare across runs on a shared machine.
fn before_and_after(o: &mut String, figures: &[Figure], previous: &Previous) {
    let _ = writeln!(
        o,
        "\n## Before and after\n\nThe same figures in the report this one replaced (run of {}); the \
         optimisations between the two are listed under \"Optimisations\" below. Compare the ratios: the \
         machine's load differs between runs.\n",
        previous.started_at
    );
    let _ = writeln!(
        o,
        "| figure | before | before ratio | after | after ratio |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|");
    for f in figures {
        let Some(before) = previous.figures.iter().find(|b| b.name == f.name) else {
            continue;
        };
        let ratio = |r: Option<f64>| r.map(|r| format!("{r:.2}")).unwrap_or_default();
        let _ = writeln!(
            o,
            "| {} | {} {} | {} | {} {} | {} |",
            f.name,
            num(before.value),
            before.unit,
            ratio(before.ratio),
            num(f.value),
            f.unit,
            ratio(f.ratio),
        );
    }
}
