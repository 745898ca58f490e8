//! `make bench`: measures Tandem on the real stack against baselines taken in the same run,
//! then writes `BENCHMARKS.md` and `bench-results.json` (issue 7).
//!
//! Environment: `BENCH_SCALE` (default 1.0) multiplies every phase's duration except the
//! 60 s sustained-throughput window; `BENCH_QUICK=1` is `BENCH_SCALE=0.2` with a 15 s window,
//! for a smoke run (its report says so). `BENCH_SKIP_MOCK=1` skips the mock-cluster stack.
//! `BENCH_OUT` is the directory for the report (default: the workspace root).
//! `BENCH_RENDER=path/to/bench-results.json` only renders the report again from saved results.
//! `BENCH_ONLY=rpc` runs only the baselines and the CRM RPC phases (20 s each, printing the
//! services' pids) and writes no report: for profiling with `perf record -p`.
//! `BENCH_ONLY=bridge` runs only the bridge phases on the mock cluster (capacity, sustained,
//! recovery), prints them and writes no report; it fails if any phase does. `BENCH_BACKLOG`
//! sets the capacity phase's backlog (default 24,000; more than the mock cluster's retention
//! holds makes the phase fail, naming the events the broker deleted unread).
//! `BENCH_ONLY=mock` runs only the raw hops and the e2e phases on the mock cluster, with what
//! each e2e figure is made of, prints them and writes no report.
//! `BENCH_ONLY=scale` (`make bench-scale`) runs the scale phases (see `scale`): the RPC and
//! e2e figures, the snapshot and reconcile on databases grown to `BENCH_SCALE_SIZES`.

mod baselines;
mod bridge;
mod load;
mod procstat;
mod report;
mod scale;
mod stats;
mod system;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use rdkafka::{mocking::MockCluster, producer::DefaultProducerContext};
use tandem_proto::events::{erp, integration, topics};
use tandem_tests::{BrokerOptions, TestBroker};

use crate::{
    baselines::PgScript,
    report::{Machine, ReadyTimes, Results, RunConfig},
    system::{System, Which},
};

const CLIENTS: usize = 8;
/// `fetch.wait.max.ms` of the bridge and of the hop's consumer on tansu: the bridge's default.
/// tansu holds every fetch this long, so it is most of the local latency floor.
const TANSU_FETCH_WAIT_MS: u32 = 10;
/// The same on the mock cluster, which also holds a fetch for the whole wait when no data is
/// there (its hop p50 was 7.4 ms at 10 ms); Apache Kafka answers as soon as data arrives, which
/// 1 ms approximates.
const MOCK_FETCH_WAIT_MS: u32 = 1;

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

struct Plan {
    scale: f64,
    quick: bool,
    window: Duration,
    skip_mock: bool,
}

impl Plan {
    fn from_env() -> Self {
        let quick = env_flag("BENCH_QUICK");
        let scale = std::env::var("BENCH_SCALE")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(if quick { 0.2 } else { 1.0 });
        Self {
            scale,
            quick,
            window: Duration::from_secs(if quick { 15 } else { 60 }),
            skip_mock: env_flag("BENCH_SKIP_MOCK"),
        }
    }

    /// A phase's duration: `seconds` scaled, at least 3 s.
    fn secs(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64((seconds * self.scale).max(3.0))
    }
}

/// Runs one phase; a failure is recorded and the run goes on.
async fn phase<T>(
    errors: &mut Vec<String>,
    name: &str,
    run: impl Future<Output = Result<T>>,
) -> Option<T> {
    eprintln!("[bench] {name}");
    let started = Instant::now();
    match run.await {
        Ok(value) => {
            eprintln!("[bench]   done in {:.1} s", started.elapsed().as_secs_f64());
            Some(value)
        }
        Err(error) => {
            eprintln!("[bench]   FAILED: {error:#}");
            errors.push(format!("{name}: {error:#}"));
            None
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // Ctrl-C or SIGTERM drops the run, and with it every process and broker it started.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = run() => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; stopped everything this run started"),
        _ = terminate.recv() => anyhow::bail!("terminated; stopped everything this run started"),
    }
}

async fn run() -> Result<()> {
    let out = std::env::var_os("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    if let Some(json) = std::env::var_os("BENCH_RENDER") {
        return report::rerender(std::path::Path::new(&json), &out);
    }
    let plan = Plan::from_env();
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "bridge") {
        return bridge_only(&plan).await;
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "mock") {
        return mock_only(&plan).await;
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "scale") {
        return scale::run(&plan, &out).await;
    }
    let run_started = Instant::now();
    let mut results = Results {
        machine: Machine::detect(),
        config: RunConfig {
            scale: plan.scale,
            quick: plan.quick,
            clients: CLIENTS,
            sustained_window_seconds: plan.window.as_secs_f64(),
            started_at: tandem_common_now(),
        },
        ..Results::default()
    };
    let mut errors = Vec::new();

    // ---- Baselines that need no stack.
    let warmup = Duration::from_secs(1);
    results.hello = phase(
        &mut errors,
        "baseline: tonic hello-world, 8 clients",
        baselines::hello_world(CLIENTS, warmup, plan.secs(10.0)),
    )
    .await;
    let pgbench_db = phase(&mut errors, "baseline: pgbench database", async {
        let db = tandem_tests::TestDatabase::create("bench_pgbench").await?;
        baselines::apply_crm_schema(&db.url).await?;
        baselines::seed_customers(&db.url).await?;
        Ok(db)
    })
    .await;
    if let Some(db) = &pgbench_db {
        results.pgbench = phase(
            &mut errors,
            "baseline: pgbench customer write, 8 clients",
            baselines::pgbench(&db.url, PgScript::CustomerWrite, CLIENTS, plan.secs(10.0)),
        )
        .await;
        results.pgbench_read = phase(
            &mut errors,
            "baseline: pgbench customer read, 8 clients",
            baselines::pgbench(&db.url, PgScript::CustomerRead, CLIENTS, plan.secs(10.0)),
        )
        .await;
    }

    // ---- The stack on a private tansu broker, plaintext and stored in SQLite as under `make run`.
    let started = Instant::now();
    let Some((mut system, ready)) = phase(
        &mut errors,
        "start the stack (private tansu broker, SQLite storage, fresh databases)",
        async {
            // Plaintext, as under `make run` (the kit's default adds a TLS front).
            let broker = TestBroker::start_with(BrokerOptions {
                tls: false,
                ..BrokerOptions::default()
            })
            .await?;
            System::start(Some(broker), "bench", true, TANSU_FETCH_WAIT_MS).await
        },
    )
    .await
    else {
        results.errors = errors;
        report::write(&out, &results)?;
        anyhow::bail!("the stack did not start; see the report");
    };
    results.stack_start_seconds = Some(ready.as_secs_f64());
    let brokers = system.stack.broker.brokers.clone();
    if phase(
        &mut errors,
        "prepare: warehouse, 500 products, 200 customers",
        system.prepare(500, 200),
    )
    .await
    .is_none()
    {
        results.errors = errors;
        report::write(&out, &results)?;
        anyhow::bail!("preparing the stack failed; see the report");
    }

    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "rpc") {
        // For profiling: only the RPC phases, long enough to attach `perf` to the CRM.
        eprintln!("[bench] hello-world: {:?}", results.hello);
        eprintln!("[bench] pgbench write: {:?}", results.pgbench);
        eprintln!("[bench] pgbench read: {:?}", results.pgbench_read);
        eprintln!(
            "[bench] BENCH_ONLY=rpc: crm-service pid {:?}, erp-service pid {:?}",
            system.stack.crm.pid(),
            system.stack.erp.pid()
        );
        let read = system.rpc_read(CLIENTS, warmup, plan.secs(20.0)).await?;
        eprintln!("[bench] GetCustomer: {read:?}");
        let write = system.rpc_write(CLIENTS, warmup, plan.secs(20.0)).await?;
        eprintln!("[bench] CreateCustomer: {write:?}");
        let settling = Instant::now();
        system.wait_settled(0, Duration::from_secs(60)).await?;
        eprintln!(
            "[bench] the ERP holds {} customers, {:.1} s after the writes",
            system.erp_customers().await?,
            settling.elapsed().as_secs_f64()
        );
        return Ok(());
    }

    let mut ready_times: BTreeMap<String, ReadyTimes> = BTreeMap::new();
    for (which, name) in [
        (Which::Crm, "crm-service"),
        (Which::Erp, "erp-service"),
        (Which::Bridge, "sync-bridge"),
    ] {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let measured = if which == Which::Bridge {
                phase(
                    &mut errors,
                    "start to ready: sync-bridge (own group)",
                    system.bridge_start_to_ready(),
                )
                .await
            } else {
                phase(
                    &mut errors,
                    &format!("start to ready: {name}"),
                    system.restart_to_ready(which),
                )
                .await
            };
            if let Some(d) = measured {
                runs.push(d.as_secs_f64() * 1000.0);
            }
        }
        ready_times.insert(name.to_owned(), ReadyTimes::from_runs(runs));
    }
    results.ready_ms = ready_times;
    // Idle is the state the stack settles in: the bridge rests after a quiet spell.
    phase(
        &mut errors,
        "idle: the bridge resting",
        system.wait_bridge_resting(Duration::from_secs(20)),
    )
    .await;
    results.usage_idle = procstat::sample(&system.targets(), plan.secs(5.0)).await;
    results.e2e_after_rest = phase(
        &mut errors,
        "e2e CRM -> ERP of a lone customer while the bridge rests, 5 times",
        system.e2e_after_rest(5),
    )
    .await;

    results.hop_tansu_200 = phase(
        &mut errors,
        "baseline: raw hop via tansu at 200/s",
        baselines::kafka_hop(&brokers, None, 200.0, plan.secs(10.0), TANSU_FETCH_WAIT_MS),
    )
    .await;
    results.hop_tansu_1000 = phase(
        &mut errors,
        "baseline: raw hop via tansu at 1000/s",
        baselines::kafka_hop(&brokers, None, 1000.0, plan.secs(10.0), TANSU_FETCH_WAIT_MS),
    )
    .await;

    results.rpc_read = phase(
        &mut errors,
        "CRM GetCustomer, 8 clients",
        system.rpc_read(CLIENTS, warmup, plan.secs(10.0)),
    )
    .await;
    results.rpc_write = phase(
        &mut errors,
        "CRM CreateCustomer, 8 clients",
        system.rpc_write(CLIENTS, warmup, plan.secs(10.0)),
    )
    .await;
    let _ = phase(
        &mut errors,
        "settle",
        system.wait_settled(0, Duration::from_secs(120)),
    )
    .await;

    results.e2e_customers_200 = phase(
        &mut errors,
        "e2e CRM -> ERP at 200/s",
        system.e2e_customers(200.0, plan.secs(15.0)),
    )
    .await;
    results.e2e_stock_200 = phase(
        &mut errors,
        "e2e ERP stock -> CRM at 200/s",
        system.e2e_stock(200.0, plan.secs(15.0)),
    )
    .await;
    {
        let targets = system.targets();
        let window = plan.secs(15.0);
        let (e2e, usage) = tokio::join!(
            phase(
                &mut errors,
                "e2e CRM -> ERP at 1000/s (and resources under load)",
                system.e2e_customers(1000.0, window)
            ),
            procstat::sample(&targets, window),
        );
        results.e2e_customers_1000 = e2e;
        results.usage_load = usage;
    }
    results.e2e_stock_1000 = phase(
        &mut errors,
        "e2e ERP stock -> CRM at 1000/s",
        system.e2e_stock(1000.0, plan.secs(15.0)),
    )
    .await;
    let _ = phase(
        &mut errors,
        "settle",
        system.wait_settled(0, Duration::from_secs(120)),
    )
    .await;

    drop(system);
    eprintln!(
        "[bench] tansu stack done after {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // ---- librdkafka's in-process mock cluster: the same latency figures with a ~ms floor.
    if !plan.skip_mock {
        mock_phases(&plan, &mut results, &mut errors, true).await?;
    }

    results.duration_seconds = run_started.elapsed().as_secs_f64();
    results.errors = errors;
    report::write(&out, &results).context("writing the report")?;
    eprintln!(
        "[bench] wrote {} and {} in {:.0} s",
        out.join("BENCHMARKS.md").display(),
        out.join("bench-results.json").display(),
        results.duration_seconds
    );
    Ok(())
}

/// The hops, the e2e phases and (with `bridge`) the bridge phases on librdkafka's in-process
/// mock cluster, a broker with a ~ms floor.
async fn mock_phases(
    plan: &Plan,
    results: &mut Results,
    errors: &mut Vec<String>,
    bridge: bool,
) -> Result<()> {
    match MockCluster::new(1) {
        Ok(cluster) => {
            let bootstrap = cluster.bootstrap_servers();
            if let Err(error) = create_mock_topics(&cluster) {
                errors.push(error);
            }
            results.hop_mock_200 = phase(
                errors,
                "baseline: raw hop via mock cluster at 200/s",
                baselines::kafka_hop(
                    &bootstrap,
                    Some("bench.hop.200"),
                    200.0,
                    plan.secs(10.0),
                    MOCK_FETCH_WAIT_MS,
                ),
            )
            .await;
            results.hop_mock_1000 = phase(
                errors,
                "baseline: raw hop via mock cluster at 1000/s",
                baselines::kafka_hop(
                    &bootstrap,
                    Some("bench.hop.1000"),
                    1000.0,
                    plan.secs(10.0),
                    MOCK_FETCH_WAIT_MS,
                ),
            )
            .await;
            let broker = TestBroker::external(&bootstrap)?;
            if let Some((mut mock, _)) = phase(
                errors,
                "start the stack on the mock cluster",
                System::start(Some(broker), "benchmock", false, MOCK_FETCH_WAIT_MS),
            )
            .await
                && phase(errors, "prepare (mock)", mock.prepare(500, 50))
                    .await
                    .is_some()
            {
                results.mock_e2e_customers_200 = phase(
                    errors,
                    "mock: e2e CRM -> ERP at 200/s",
                    mock.e2e_customers(200.0, plan.secs(10.0)),
                )
                .await;
                results.mock_e2e_stock_200 = phase(
                    errors,
                    "mock: e2e ERP stock -> CRM at 200/s",
                    mock.e2e_stock(200.0, plan.secs(10.0)),
                )
                .await;
                results.mock_e2e_customers_1000 = phase(
                    errors,
                    "mock: e2e CRM -> ERP at 1000/s",
                    mock.e2e_customers(1000.0, plan.secs(10.0)),
                )
                .await;
                results.mock_e2e_stock_1000 = phase(
                    errors,
                    "mock: e2e ERP stock -> CRM at 1000/s",
                    mock.e2e_stock(1000.0, plan.secs(10.0)),
                )
                .await;
                let _ = phase(
                    errors,
                    "settle (mock)",
                    mock.wait_settled(0, Duration::from_secs(120)),
                )
                .await;
                if bridge {
                    bridge_phases(&mut mock, plan, results, errors).await;
                }
            }
            drop(cluster);
        }
        Err(error) => errors.push(format!("mock cluster: {error}")),
    }
    Ok(())
}

/// Every topic the stack uses (the mock cluster has no CreateTopics).
fn mock_topics() -> impl Iterator<Item = &'static str> {
    [
        topics::CRM_CUSTOMERS,
        topics::CRM_ORDERS,
        topics::DEAD_LETTER,
    ]
    .into_iter()
    .chain(erp::TOPICS.iter().copied())
    .chain(integration::TOPICS.iter().copied())
}

/// The mock cluster has no CreateTopics: every topic is created up front.
fn create_mock_topics(cluster: &MockCluster<'_, DefaultProducerContext>) -> Result<(), String> {
    let mut created = Ok(());
    for topic in mock_topics().chain(["bench.hop.200", "bench.hop.1000"]) {
        if let Err(error) = cluster.create_topic(topic, 3, 1) {
            created = Err(format!("creating {topic} on the mock cluster: {error}"));
        }
    }
    created
}

/// `BENCH_ONLY=mock`: only the hops and e2e phases on the mock cluster, printed, no report
/// written. For finding out where an event's time goes.
async fn mock_only(plan: &Plan) -> Result<()> {
    let mut results = Results::default();
    let mut errors = Vec::new();
    mock_phases(plan, &mut results, &mut errors, false).await?;
    for (name, hop) in [
        ("200/s", &results.hop_mock_200),
        ("1000/s", &results.hop_mock_1000),
    ] {
        eprintln!(
            "[bench] raw hop {name}: {:?}",
            hop.as_ref().map(|h| h.latency)
        );
    }
    for (name, e2e) in [
        ("CRM -> ERP 200/s", &results.mock_e2e_customers_200),
        ("stock -> CRM 200/s", &results.mock_e2e_stock_200),
        ("CRM -> ERP 1000/s", &results.mock_e2e_customers_1000),
        ("stock -> CRM 1000/s", &results.mock_e2e_stock_1000),
    ] {
        eprintln!("[bench] {name}: {e2e:#?}");
    }
    for error in errors {
        eprintln!("[bench] error: {error}");
    }
    Ok(())
}

/// `BENCH_ONLY=bridge`: only the bridge phases on the mock cluster (capacity, sustained,
/// recovery), printed, no report written. For finding out what the bridge does under a backlog.
async fn bridge_only(plan: &Plan) -> Result<()> {
    let cluster = MockCluster::new(1).context("starting the mock cluster")?;
    create_mock_topics(&cluster).map_err(anyhow::Error::msg)?;
    let broker = TestBroker::external(&cluster.bootstrap_servers())?;
    let (mut mock, _) = System::start(Some(broker), "benchmock", false, MOCK_FETCH_WAIT_MS).await?;
    mock.prepare(500, 50).await?;
    let (mut results, mut errors) = (Results::default(), Vec::new());
    bridge_phases(&mut mock, plan, &mut results, &mut errors).await;
    eprintln!("[bench] capacity: {:?}", results.capacity);
    for attempt in &results.sustained {
        eprintln!(
            "[bench] sustained at {}/s: applied {:.0}/s, flat {}",
            attempt.rate, attempt.applied_per_second, attempt.flat
        );
    }
    eprintln!("[bench] recovery: {:?}", results.recovery);
    anyhow::ensure!(
        errors.is_empty(),
        "{} phase(s) failed: {errors:#?}",
        errors.len()
    );
    Ok(())
}

/// Most attempts of the sustained-throughput ladder: enough to bracket the ceiling (a flat
/// rate and a failed one a quarter above it) from a start that is far off.
const SUSTAINED_ATTEMPTS: usize = 5;

/// Bridge throughput and recovery, with events injected into `crm.customers`. Run on the mock
/// cluster: the local broker (tansu, SQLite storage) stops answering under a few thousand
/// events/s, which would measure the broker instead of the bridge.
async fn bridge_phases(
    system: &mut System,
    plan: &Plan,
    results: &mut Results,
    errors: &mut Vec<String>,
) {
    {
        // The mock cluster keeps 5 MiB per partition (about 9,300 of these events) and deletes
        // the oldest beyond that, read or not: 30,000 over 3 partitions lost about 2,100 before
        // the bridge started (the capacity phase now checks the log bounds and fails if so).
        let backlog = std::env::var("BENCH_BACKLOG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if plan.quick { 5_000 } else { 24_000 });
        results.capacity = phase(
            errors,
            "bridge capacity (drain a backlog)",
            bridge::capacity(system, backlog),
        )
        .await;
        let capacity = results
            .capacity
            .map(|c| c.bridge_drain_per_second)
            .unwrap_or(1000.0);
        // The ladder: from 85% of the drain rate, up by a quarter while the lag stays flat,
        // down by a quarter while it does not, until the ceiling is bracketed (a flat rate
        // and a failed one above it) or five attempts were made.
        let round = |r: f64| (r / 100.0).floor().max(1.0) * 100.0;
        let mut rate = round(capacity * 0.85);
        let (mut best_flat, mut lowest_failed) = (None::<f64>, None::<f64>);
        for _ in 0..SUSTAINED_ATTEMPTS {
            let targets = system.targets();
            let name = format!("sustained bridge throughput at {rate}/s");
            let (attempt, usage) = tokio::join!(
                phase(errors, &name, bridge::sustained(system, rate, plan.window)),
                procstat::sample(&targets, plan.window),
            );
            let flat = attempt.as_ref().is_some_and(|a| a.flat);
            if let Some(attempt) = attempt {
                results.sustained.push(attempt);
            }
            if flat {
                results.usage_sustained = usage;
                best_flat = Some(rate);
            } else {
                lowest_failed = Some(rate);
            }
            rate = match (best_flat, lowest_failed) {
                (Some(_), Some(_)) => break,
                (Some(flat), None) => round(flat * 1.25),
                (None, _) => round(rate * 0.75),
            };
        }
    }
    results.recovery = phase(
        errors,
        "recovery: bridge stopped 5 s at 1000/s",
        bridge::recovery(system, 1000.0, Duration::from_secs(5), plan.secs(15.0)),
    )
    .await;
}

fn tandem_common_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{now}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| now.to_string())
}
