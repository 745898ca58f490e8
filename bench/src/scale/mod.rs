//! `make bench-scale` (`BENCH_ONLY=scale`): the same RPC and end-to-end phases on a small
//! database and then on databases grown to each size of `BENCH_SCALE_SIZES` (default 10,000,
//! 100,000 and 1,000,000 customers, one shipped order each), plus what only grows with the
//! data: `tandemctl snapshot` (the initial load: the time until the ERP holds every customer)
//! and `tandemctl reconcile` (entities compared per second). Writes `bench-scale-results.json`
//! and renders `BENCHMARKS.md` again with its section.

mod load;

use std::{
    path::Path,
    process::Output,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use rdkafka::mocking::MockCluster;
use serde::{Deserialize, Serialize};
use tandem_proto::events::{erp, topics};
use tandem_tests::TestBroker;

use crate::{
    CLIENTS, Plan,
    load::Throughput,
    phase,
    report::Machine,
    system::{E2e, System},
};

/// The file the scale run writes beside `bench-results.json`.
pub const RESULTS_FILE: &str = "bench-scale-results.json";

/// The topics a snapshot fills with an event per customer or order.
const SNAPSHOT_TOPICS: [&str; 3] = [
    topics::CRM_CUSTOMERS,
    topics::CRM_ORDERS,
    erp::topics::ERP_ORDERS,
];
/// `fetch.wait.max.ms` of the bridge: its default (the mock cluster holds an empty fetch that
/// long, and 1 ms over ~100 partitions would busy the bench's own process).
const FETCH_WAIT_MS: u32 = 10;

/// Ids the reads pick from (spread over the whole table).
const READ_SAMPLE: i64 = 100_000;
/// Longest wait for a snapshot's customers to reach the ERP.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(900);
/// Longest wait for everything else a snapshot sent (orders, statuses) to be applied.
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(1200);

/// What one size measured; `None` where a phase failed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Step {
    pub customers: i64,
    pub orders: i64,
    pub crm_mib: f64,
    pub erp_mib: f64,
    /// Seconds the bulk load of this step took (0 for the small database).
    pub load_seconds: f64,
    pub snapshot: Option<Snapshot>,
    pub reconcile: Option<Reconcile>,
    pub rpc_read: Option<Throughput>,
    pub rpc_write: Option<Throughput>,
    pub e2e_customers_200: Option<E2e>,
    pub e2e_stock_200: Option<E2e>,
}

/// `tandemctl snapshot` on this step's data.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Customers the ERP lacked when it began.
    pub customers_missing: i64,
    /// From the command's start until the ERP held every customer of the CRM.
    pub customers_seconds: f64,
    /// Customers of the CRM per second of `customers_seconds`.
    pub customers_per_second: f64,
    /// From the start until both outboxes were empty and the bridge had no lag (`None`: not
    /// within the settle timeout; the phases after it then run on a backlog).
    pub settled_seconds: Option<f64>,
}

/// `tandemctl reconcile` on this step's data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reconcile {
    pub seconds: f64,
    /// Entities compared over all kinds (customers, finance, products, stock, orders,
    /// submissions), from the command's own report.
    pub entities: u64,
    pub per_second: f64,
    /// Drift reported (0 expected: the loaded rows agree).
    pub drift: u64,
    /// The command's peak resident memory (`VmHWM`, sampled every 100 ms; `None` in results
    /// from before it was measured).
    #[serde(default)]
    pub peak_mib: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScaleResults {
    pub machine: Machine,
    pub started_at: String,
    pub duration_seconds: f64,
    /// The small database first, then each grown size.
    pub steps: Vec<Step>,
    pub errors: Vec<String>,
}

/// The sizes to grow to, from `BENCH_SCALE_SIZES` (comma-separated customer counts).
fn sizes() -> Vec<i64> {
    std::env::var("BENCH_SCALE_SIZES")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|s| s.trim().replace('_', "").parse().ok())
                .filter(|n| *n > 0)
                .collect::<Vec<i64>>()
        })
        .filter(|sizes| !sizes.is_empty())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000])
}

pub async fn run(plan: &Plan, out: &Path) -> Result<()> {
    let run_started = Instant::now();
    let mut results = ScaleResults {
        machine: Machine::detect(),
        started_at: crate::tandem_common_now(),
        ..ScaleResults::default()
    };
    let mut errors = Vec::new();
    // The mock cluster, like the bridge throughput phases: tansu (SQLite) moves about a
    // thousand events/s, a snapshot of a million would measure only it. The mock keeps 5 MiB
    // per partition and deletes the oldest beyond that, read or not, so the topics a snapshot
    // fills get enough partitions to hold a large backlog.
    let cluster = MockCluster::new(1).context("starting the mock cluster")?;
    for topic in crate::mock_topics() {
        let partitions = if SNAPSHOT_TOPICS.contains(&topic) {
            32
        } else {
            3
        };
        cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("creating {topic} on the mock cluster"))?;
    }
    let broker = TestBroker::external(&cluster.bootstrap_servers())?;
    let (mut system, _) = System::start(Some(broker), "benchscale", false, FETCH_WAIT_MS)
        .await
        .context("starting the stack")?;
    system.prepare(500, 200).await?;

    let mut loaded = 0;
    let mut targets = vec![0];
    targets.extend(sizes());
    for size in targets {
        let mut step = Step::default();
        if size > loaded {
            let started = Instant::now();
            let grown = phase(
                &mut errors,
                &format!("scale: load customers and orders {loaded}..{size}"),
                load::grow(&system.crm_db, &system.erp_db, loaded, size),
            )
            .await;
            if grown.is_none() {
                break;
            }
            step.load_seconds = started.elapsed().as_secs_f64();
            loaded = size;
        }
        measure(&mut system, plan, &mut step, &mut errors).await;
        eprintln!("[bench] scale step: {step:?}");
        results.steps.push(step);
        save(out, &results, &errors, run_started)?;
    }
    save(out, &results, &errors, run_started)?;
    if !errors.is_empty() {
        bail!("{} phase(s) failed: {errors:#?}", errors.len());
    }
    Ok(())
}

fn save(out: &Path, results: &ScaleResults, errors: &[String], run_started: Instant) -> Result<()> {
    let mut results = results.clone();
    results.errors = errors.to_vec();
    results.duration_seconds = run_started.elapsed().as_secs_f64();
    std::fs::write(
        out.join(RESULTS_FILE),
        serde_json::to_string_pretty(&results)? + "\n",
    )
    .with_context(|| format!("writing {RESULTS_FILE}"))?;
    let report = out.join("bench-results.json");
    if !report.exists() {
        return Ok(());
    }
    crate::report::rerender(&report, out)
        .context("rendering BENCHMARKS.md again with the scale section")
}

/// The phases of one size, in the order an operator meets them: the initial load into the
/// ERP, a reconcile, then the RPC and end-to-end figures of the main bench.
async fn measure(system: &mut System, plan: &Plan, step: &mut Step, errors: &mut Vec<String>) {
    let count = |sql: &'static str, db: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&db)
            .await
            .context("counting rows")
    };
    step.customers = count("SELECT count(*) FROM customers", system.crm_db.clone())
        .await
        .unwrap_or(0);
    step.orders = count("SELECT count(*) FROM orders", system.crm_db.clone())
        .await
        .unwrap_or(0);
    let size = step.customers;
    step.snapshot = phase(
        errors,
        &format!("scale {size}: tandemctl snapshot"),
        snapshot(system),
    )
    .await;
    step.reconcile = phase(
        errors,
        &format!("scale {size}: tandemctl reconcile"),
        reconcile(system),
    )
    .await;
    step.crm_mib = load::size_mib(&system.crm_db).await.unwrap_or(0.0);
    step.erp_mib = load::size_mib(&system.erp_db).await.unwrap_or(0.0);
    match load::sample_ids(&system.crm_db, READ_SAMPLE).await {
        Ok(ids) => system.customer_ids = ids,
        Err(error) => errors.push(format!("scale {size}: {error:#}")),
    }
    let warmup = Duration::from_secs(1);
    step.rpc_read = phase(
        errors,
        &format!("scale {size}: CRM GetCustomer, 8 clients"),
        system.rpc_read(CLIENTS, warmup, plan.secs(10.0)),
    )
    .await;
    step.rpc_write = phase(
        errors,
        &format!("scale {size}: CRM CreateCustomer, 8 clients"),
        system.rpc_write(CLIENTS, warmup, plan.secs(10.0)),
    )
    .await;
    let _ = phase(
        errors,
        "settle",
        system.wait_settled(0, Duration::from_secs(120)),
    )
    .await;
    step.e2e_customers_200 = phase(
        errors,
        &format!("scale {size}: e2e CRM -> ERP at 200/s"),
        system.e2e_customers(200.0, plan.secs(10.0)),
    )
    .await;
    step.e2e_stock_200 = phase(
        errors,
        &format!("scale {size}: e2e ERP stock -> CRM at 200/s"),
        system.e2e_stock(200.0, plan.secs(10.0)),
    )
    .await;
}

/// Runs `tandemctl` with `args` to its end.
async fn tandemctl(system: &System, args: &[&str]) -> Result<Output> {
    let mut command = system.stack.tandemctl();
    command.args(args);
    let what = format!("tandemctl {}", args.join(" "));
    tokio::task::spawn_blocking(move || command.output())
        .await?
        .with_context(|| format!("running {what}"))
}

async fn snapshot(system: &System) -> Result<Snapshot> {
    let count = |db: &sqlx::PgPool| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM customers")
                .fetch_one(&db)
                .await
                .context("counting customers")
        }
    };
    let crm = count(&system.crm_db).await?;
    let before = count(&system.erp_db).await?;
    // Counting a million rows takes a tenth of a second of both cores: polled every 250 ms it
    // would slow what it measures. The bridge's count of customer events it has finished says
    // when every customer may be in; one count of the ERP's rows then confirms it (and a slow
    // count every 5 s covers a customer event counted otherwise).
    let events_before = customer_events(system).await?;
    let started = Instant::now();
    let command = tandemctl(system, &["snapshot", "--quiet"]);
    tokio::pin!(command);
    let mut output = None;
    let mut customers_seconds = None;
    let mut counted_at = Instant::now();
    while customers_seconds.is_none() || output.is_none() {
        if customers_seconds.is_none() && started.elapsed() > SNAPSHOT_TIMEOUT {
            bail!(
                "after {SNAPSHOT_TIMEOUT:?} the ERP holds {} of {crm} customers",
                count(&system.erp_db).await?
            );
        }
        if let Some(seconds) = customers_seconds
            && started.elapsed() > SETTLE_TIMEOUT
        {
            // The customers are in; the command is still republishing (orders, statuses).
            eprintln!("[bench]   tandemctl snapshot still running after {SETTLE_TIMEOUT:?}");
            return Ok(Snapshot {
                customers_missing: crm - before,
                customers_seconds: seconds,
                customers_per_second: crm as f64 / seconds.max(1e-3),
                settled_seconds: None,
            });
        }
        if output.is_none() {
            tokio::select! {
                done = &mut command => {
                    let done = done?;
                    if !done.status.success() {
                        bail!(
                            "tandemctl snapshot failed after {:.1} s: {}",
                            started.elapsed().as_secs_f64(),
                            String::from_utf8_lossy(&done.stderr).trim()
                        );
                    }
                    output = Some(done);
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        } else {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if customers_seconds.is_none() {
            let seen = started.elapsed().as_secs_f64();
            let applied = customer_events(system).await? - events_before;
            if applied >= crm as f64 || counted_at.elapsed() >= Duration::from_secs(5) {
                counted_at = Instant::now();
                if count(&system.erp_db).await? >= crm {
                    customers_seconds = Some(seen);
                }
            }
        }
    }
    let settled = match settle(system, started).await {
        Ok(()) => Some(started.elapsed().as_secs_f64()),
        Err(error) => {
            eprintln!("[bench]   {error:#}");
            None
        }
    };
    let customers_seconds = customers_seconds.unwrap_or_default();
    Ok(Snapshot {
        customers_missing: crm - before,
        customers_seconds,
        customers_per_second: crm as f64 / customers_seconds.max(1e-3),
        settled_seconds: settled,
    })
}

/// Waits until neither outbox holds an unpublished row and the bridge reports no lag on two
/// readings of its statistics (refreshed every 5 s).
async fn settle(system: &System, started: Instant) -> Result<()> {
    let mut quiet_readings = 0;
    while quiet_readings < 2 {
        if started.elapsed() > SETTLE_TIMEOUT {
            bail!("not settled after {SETTLE_TIMEOUT:?}");
        }
        let mut pending = 0;
        for db in [&system.crm_db, &system.erp_db] {
            pending += sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
            )
            .fetch_one(db)
            .await?;
        }
        let lag = bridge_lag(system).await?;
        if pending == 0 && lag == 0.0 {
            quiet_readings += 1;
            tokio::time::sleep(Duration::from_millis(5_500)).await;
        } else {
            quiet_readings = 0;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// The `crm.customer.*` events the bridge has finished (applied or found current), from its
/// `/metrics`.
async fn customer_events(system: &System) -> Result<f64> {
    Ok(system
        .bridge_metric(tandem_common::metrics_names::BRIDGE_EVENTS_APPLIED)
        .await?
        .into_iter()
        .filter(|(labels, _)| labels.contains("type=\"crm.customer."))
        .map(|(_, value)| value)
        .sum())
}

/// The bridge's consumer lag over every partition, from its `/metrics`.
async fn bridge_lag(system: &System) -> Result<f64> {
    let lag = tandem_common::metrics_names::BRIDGE_CONSUMER_LAG;
    Ok(system
        .bridge_metric(lag)
        .await?
        .into_iter()
        .map(|(_, value)| value)
        .sum())
}

/// Every series of the bridge's metric `name`: its labels and its value.
async fn reconcile(system: &System) -> Result<Reconcile> {
    let mut command = system.stack.tandemctl();
    command
        .args(["reconcile", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let started = Instant::now();
    let child = command.spawn().context("running tandemctl reconcile")?;
    let pid = child.id();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output());
    tokio::pin!(output);
    let mut peak_kib = None;
    let output = loop {
        tokio::select! {
            done = &mut output => break done?.context("running tandemctl reconcile")?,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                peak_kib = crate::procstat::peak_rss_kib(pid).or(peak_kib);
            }
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&output.stdout);
    let entities = compared(&text);
    let drift = text
        .lines()
        .find_map(|l| l.strip_prefix("total drift: "))
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .with_context(|| {
            format!(
                "tandemctl reconcile printed no total: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    Ok(Reconcile {
        seconds,
        entities,
        per_second: entities as f64 / seconds.max(1e-3),
        drift,
        peak_mib: peak_kib.map(|kib| kib as f64 / 1024.0),
    })
}

/// The sum of the `compared N` counts of reconcile's report.
fn compared(report: &str) -> u64 {
    report
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(" compared ")?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compared_sums_every_kind_of_the_report() {
        let report = "customer_profile   compared 1000000  drift     0\n\
                      product            compared     500  drift     2\n  product x: y\n\
                      total drift: 2";
        assert_eq!(compared(report), 1_000_500);
    }
}
