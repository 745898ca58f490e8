//! The guarantees under faults, Jepsen-style: a seeded workload drives the real services and
//! the integrator topics while processes are killed with SIGKILL (bridge, CRM, ERP, broker),
//! PostgreSQL is crashed and restarted, each service aborts at its crash points, and (where
//! the machine allows network namespaces) the network between them is cut: the CRM, the ERP
//! and the bridge each run in a namespace of their own, and a partition drops one link both
//! ways with nftables (bridge-broker, bridge-ERP, bridge-CRM, CRM-PostgreSQL, ERP-PostgreSQL,
//! CRM-broker, ERP-broker) for 2-8 s while every process keeps running.
//!
//! Every call of the workload records what its caller was told (acknowledged, refused,
//! unknown; see `tandem_tests::outcomes`). When the workload stops and the system settles,
//! both systems' state is checked against those sets (`chaos/checks.rs`): every acknowledged
//! effect present exactly once on both sides with its final version, nothing present that no
//! client asked for, unknown outcomes resolved, stock and money equal to the sums of what the
//! clients were told. The run must also have done its work: a minimum of acknowledged
//! operations of each kind, at least one fault of each kind, in the long run every crash
//! point hit; and every process exit the run did not cause fails it.
//!
//! `make test` runs a short version; `make chaos` the long one (`CHAOS_OPS`, `CHAOS_KILLS`,
//! `CHAOS_SEED`, `CHAOS_CONTINUOUS`, `CHAOS_FAULT_GAP_MS` set the size, the faults and the
//! seed; a failing run repeats with its seed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use tandem_proto::events::topics;
use tandem_tests::{
    BrokerOptions, Stack, StackHosts, StackOptions, TestBroker, TestDatabase, TestProducer, netns,
    outcomes::{Category, Findings, Tally, tally_table},
    postgres::TestPostgres,
    read_topic,
};

mod support;

#[path = "chaos/checks.rs"]
mod checks;
#[path = "chaos/watch.rs"]
mod watch;
#[path = "chaos/workload.rs"]
mod workload;

use support::*;
use watch::Watch;
use workload::{COUNT_SKU, INITIAL_STOCK, PRICE, SKUS, WorkLedger, Worker};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const WORKERS: usize = 3;
/// The bridge's consumer group (set by the kit's `Stack`).
const BRIDGE_GROUP: &str = "e2e-bridge";
/// The fault kinds; `partition` only where the run has a network of its own (see [`Network`]).
const FAULT_KINDS: [&str; 6] = ["bridge", "crm", "erp", "broker", "postgres", "partition"];

/// The links a partition cuts: (process, the other end).
const LINKS: [(&str, &str); 7] = [
    ("bridge", "broker"),
    ("bridge", "erp"),
    ("bridge", "crm"),
    ("crm", "postgres"),
    ("erp", "postgres"),
    ("crm", "broker"),
    ("erp", "broker"),
];

/// The run's network when it has one: the CRM, the ERP and the bridge each in a network
/// namespace of its own, PostgreSQL and the broker on the lab's gateway, so a partition cuts
/// one link while every other keeps working (`CHAOS_PARTITIONS`: `1` requires it, `0` turns
/// it off, unset uses it where the machine allows: root, `ip`, `nft`).
struct Network {
    lab: netns::Lab,
    hosts: StackHosts,
}

impl Network {
    fn create() -> Option<Network> {
        let wanted = std::env::var("CHAOS_PARTITIONS").unwrap_or_default();
        if wanted == "0" {
            println!("chaos: partitions off (CHAOS_PARTITIONS=0)");
            return None;
        }
        let made = netns::Lab::create().and_then(|lab| {
            let hosts = StackHosts {
                crm: lab.host("crm")?,
                erp: lab.host("erp")?,
                bridge: lab.host("bridge")?,
            };
            Ok(Network { lab, hosts })
        });
        match made {
            Ok(network) => Some(network),
            Err(error) if wanted != "1" => {
                println!("chaos: no partitions on this machine ({error:#}); kills only");
                None
            }
            Err(error) => panic!("CHAOS_PARTITIONS=1 but no network: {error:#}"),
        }
    }

    /// `link`'s process, the other end, and the port it connects to there.
    fn ends(
        &self,
        link: (&str, &str),
        stack: &Stack,
        pg: &TestPostgres,
        broker_port: u16,
    ) -> (&netns::Host, netns::Peer, std::net::Ipv4Addr, u16) {
        let host = match link.0 {
            "bridge" => &self.hosts.bridge,
            "crm" => &self.hosts.crm,
            _ => &self.hosts.erp,
        };
        let gateway = self.lab.gateway;
        match link.1 {
            "broker" => (
                host,
                netns::Peer::Gateway(broker_port),
                gateway,
                broker_port,
            ),
            "postgres" => (host, netns::Peer::Gateway(pg.port), gateway, pg.port),
            "crm" => {
                let ip = self.hosts.crm.ip;
                (host, netns::Peer::Host(ip), ip, stack.crm_sync.port())
            }
            _ => {
                let ip = self.hosts.erp.ip;
                (host, netns::Peer::Host(ip), ip, stack.erp_sync.port())
            }
        }
    }

    /// Cuts `link` (see [`LINKS`]) and proves it holds: no connection opens across it.
    fn cut(
        &self,
        link: (&str, &str),
        stack: &Stack,
        pg: &TestPostgres,
        broker_port: u16,
        findings: &mut Findings,
    ) -> netns::Cut {
        let (host, peer, ip, port) = self.ends(link, stack, pg, broker_port);
        let cut = self.lab.cut(host, peer).unwrap();
        findings.check(
            !self.lab.reaches(host, ip, port),
            Category::Workload,
            || {
                format!(
                    "the cut {}-{} did not hold: {ip}:{port} still answered",
                    link.0, link.1
                )
            },
        );
        cut
    }

    /// Heals `cut` and proves the link carries connections again (the other end may be
    /// down for a fault of its own only if it is a process the run restarts: it is not, here,
    /// since faults come one at a time).
    fn heal(
        &self,
        cut: netns::Cut,
        link: (&str, &str),
        stack: &Stack,
        pg: &TestPostgres,
        broker_port: u16,
        findings: &mut Findings,
    ) {
        self.lab.heal(cut).unwrap();
        let (host, _, ip, port) = self.ends(link, stack, pg, broker_port);
        let healed = (0..10).any(|_| {
            self.lab.reaches(host, ip, port) || {
                std::thread::sleep(Duration::from_millis(200));
                false
            }
        });
        findings.check(healed, Category::Workload, || {
            format!(
                "after healing {}-{}, {ip}:{port} did not answer",
                link.0, link.1
            )
        });
    }
}

/// The least acknowledged calls of each kind per 1,000 workload steps (about a quarter of
/// what a run gets): a run that did not do its work fails.
const MINIMUM_PER_1000: [(&str, usize); 12] = [
    ("create_customer", 35),
    ("set_credit", 35),
    ("update_email", 35),
    ("create_order", 70),
    ("submit_order", 70),
    ("cancel_order", 10),
    ("ship_order", 15),
    ("invoice_order", 8),
    ("receive_stock", 25),
    ("count_stock", 12),
    ("bad_message", 4),
    ("record_payment", 6),
];

/// The crash points each process has (see `tandem_common::failpoint`); the long run must hit
/// every one.
const CRASH_POINTS: [(&str, &str); 4] = [
    ("crm-service", "relay-after-ack-before-mark"),
    ("crm-service", "crm-stock-mid-batch"),
    ("erp-service", "relay-after-ack-before-mark"),
    ("sync-bridge", "bridge-after-apply-before-offset"),
];

/// Crash points armed in each process: each fires once after a seeded number of passes, so
/// a process also dies at the dangerous instants themselves (after the broker's ack before the
/// outbox mark, after the effect before the offset, in the middle of a stock batch), not only
/// wherever a SIGKILL happens to land.
fn crash_points(process: &str, rng: &mut StdRng) -> String {
    let mut once = |name: &str, passes: std::ops::Range<u32>| {
        format!("{name}={}*off->1*return", rng.random_range(passes))
    };
    match process {
        "crm-service" => format!(
            "{};{}",
            once("relay-after-ack-before-mark", 100..600),
            once("crm-stock-mid-batch", 20..200)
        ),
        "erp-service" => once("relay-after-ack-before-mark", 100..600),
        _ => once("bridge-after-apply-before-offset", 200..1_500),
    }
}

/// The CRM, ERP and bridge processes with their watches, and what their exits showed.
struct Processes {
    watches: [Watch; 3],
    restarts: usize,
    aborts: usize,
}

impl Processes {
    fn new(stack: &Stack) -> Self {
        Self {
            watches: [
                Watch::new(&stack.crm),
                Watch::new(&stack.erp),
                Watch::new(&stack.bridge),
            ],
            restarts: 0,
            aborts: 0,
        }
    }

    fn process(stack: &mut Stack, at: usize) -> &mut tandem_tests::ServiceProcess {
        match at {
            0 => &mut stack.crm,
            1 => &mut stack.erp,
            _ => &mut stack.bridge,
        }
    }

    /// Checks whether process `at` exited by itself; if so records why and, with `arming`,
    /// restarts it with fresh crash points. Returns whether it had exited.
    fn reap(
        &mut self,
        stack: &mut Stack,
        at: usize,
        arming: Option<&mut StdRng>,
        findings: &mut Findings,
    ) -> bool {
        let process = Self::process(stack, at);
        let Some(status) = process.wait_exit(Duration::ZERO).unwrap() else {
            return false;
        };
        match self.watches[at].exited(process, status) {
            Ok(_) => self.aborts += 1,
            Err(report) => {
                eprintln!("chaos: {report}");
                findings.add(Category::Process, report);
            }
        }
        if let Some(arming) = arming {
            let points = crash_points(&process.name, arming);
            process.set_env("FAILPOINTS", Some(&points));
            process.start().unwrap();
            self.watches[at].started(process);
            self.restarts += 1;
        }
        true
    }

    /// Restarts every process that exited by itself (crash points re-armed).
    fn revive(&mut self, stack: &mut Stack, arming: &mut StdRng, findings: &mut Findings) {
        for at in 0..3 {
            self.reap(stack, at, Some(&mut *arming), findings);
        }
        for panic in watch::panics(&stack.broker.log()) {
            findings.add(Category::Process, format!("broker: {panic}"));
        }
        if watch::exited(stack.broker.pid()) {
            self.broker_died(stack, findings);
        }
    }

    fn broker_died(&mut self, stack: &mut Stack, findings: &mut Findings) {
        let log = stack.broker.log();
        findings.add(
            Category::Process,
            format!(
                "the broker exited by itself; its log:\n{}",
                watch::tail(&log, 100)
            ),
        );
        stack.broker.restart().unwrap();
        self.restarts += 1;
    }

    /// Kills process `at` with SIGKILL (after looking whether it exited by itself first, so
    /// an exit of its own is not mistaken for the kill).
    fn kill(&mut self, stack: &mut Stack, at: usize, findings: &mut Findings) {
        if !self.reap(stack, at, None, findings) {
            Self::process(stack, at).kill();
        }
    }

    /// Starts process `at` again (with the crash points it has armed, if any).
    fn start(&mut self, stack: &mut Stack, at: usize) {
        let process = Self::process(stack, at);
        process.start().unwrap();
        self.watches[at].started(process);
        self.restarts += 1;
    }
}

/// `tandemctl reconcile`: whether it found no drift, and its report.
fn reconcile(stack: &Stack) -> (bool, String) {
    let output = stack
        .tandemctl()
        .args(["reconcile", "--quiet"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    (
        output.status.success() && report.contains("total drift: 0"),
        report,
    )
}

/// Whether the bridge's group committed every record of every source topic (its committed
/// offset is each partition's high watermark): nothing is left to apply.
async fn bridge_caught_up(brokers: &str) -> bool {
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        let consumer: BaseConsumer = tandem_tests::kafka_client_config(&brokers)
            .set("group.id", BRIDGE_GROUP)
            .set("enable.auto.commit", "false")
            .create()?;
        let timeout = Duration::from_secs(5);
        let mut list = TopicPartitionList::new();
        let mut high = BTreeMap::new();
        for topic in topics::CHANGE_EVENTS {
            let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
            for found in metadata.topics() {
                for partition in found.partitions() {
                    let (low, hwm) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
                    if hwm > low {
                        list.add_partition(topic, partition.id());
                        high.insert((topic.to_string(), partition.id()), hwm);
                    }
                }
            }
        }
        let committed = consumer.committed_offsets(list, timeout)?;
        Ok(committed.elements().iter().all(|e| {
            let hwm = high[&(e.topic().to_owned(), e.partition())];
            matches!(e.offset(), Offset::Offset(o) if o >= hwm)
        }))
    })
    .await
    .unwrap()
    .unwrap_or(false)
}

/// Every record of `topic`.
async fn read_all(brokers: &str, topic: &str) -> Vec<tandem_tests::Record> {
    let total = tandem_tests::topic_records(brokers, &[topic])
        .await
        .unwrap();
    if total == 0 {
        return Vec::new();
    }
    read_topic(brokers, topic, total as usize, Duration::from_secs(1))
        .await
        .unwrap()
}

/// Where a run stands, for the report when it misses its deadline.
type Status = Arc<std::sync::Mutex<String>>;

fn stand(status: &Status, now: String) {
    if let Ok(mut at) = status.lock() {
        *at = now;
    }
}

/// The run has an overall deadline (`CHAOS_DEADLINE_S`, default 900 s): a run that stops
/// moving (a broker that died, a workload stuck) fails and says where it stood, never hangs.
#[tokio::test]
async fn the_guarantees_hold_through_kills_and_restarts() {
    let deadline = Duration::from_secs(env_number("CHAOS_DEADLINE_S", 900) as u64);
    let status: Status = Arc::new(std::sync::Mutex::new("starting the stack".to_owned()));
    let started = Instant::now();
    if tokio::time::timeout(deadline, chaos_run(status.clone()))
        .await
        .is_err()
    {
        let at = status.lock().map(|s| s.clone()).unwrap_or_default();
        panic!(
            "chaos: no result within {deadline:?} (CHAOS_DEADLINE_S); after {:.0}s it stood at: {at}",
            started.elapsed().as_secs_f64()
        );
    }
}

async fn chaos_run(status: Status) {
    let seed = env_number("CHAOS_SEED", 42) as u64;
    let ops = env_number("CHAOS_OPS", 1_500);
    // The fault kinds of this run (partitions only with a network), at least one of each.
    let network = Network::create();
    let fault_kinds = if network.is_some() { 6 } else { 5 };
    let kills = env_number("CHAOS_KILLS", 8).max(fault_kinds);
    let continuous = std::env::var("CHAOS_CONTINUOUS").is_ok_and(|v| v == "1");
    println!("chaos: seed {seed}, {ops} operations, {kills} faults");

    let pg = match &network {
        Some(n) => TestPostgres::start_tls_at(n.lab.gateway, &n.lab.subnet).unwrap(),
        None => TestPostgres::start_tls().unwrap(),
    };
    pg.create_database("crm").await.unwrap();
    pg.create_database("erp").await.unwrap();
    let databases = (
        TestDatabase {
            name: "crm".into(),
            url: pg.url("crm"),
        },
        TestDatabase {
            name: "erp".into(),
            url: pg.url("erp"),
        },
    );
    let broker = TestBroker::start_with(BrokerOptions {
        host: network.as_ref().map(|n| n.lab.gateway),
        ..BrokerOptions::default()
    })
    .await
    .unwrap();
    // Where the broker's clients connect (the TLS front, or tansu itself).
    let broker_port: u16 = broker
        .brokers
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap();
    let mut stack = Stack::start_with(StackOptions {
        broker: Some(broker),
        hosts: network.as_ref().map(|n| n.hosts.clone()),
        databases: Some(databases),
        label: Some("chaos".into()),
        // One bridge that takes every partition itself: the local broker never expires a
        // group member killed with SIGKILL, which would keep its partitions (README,
        // consumer.assignment).
        bridge_env: vec![("BRIDGE__CONSUMER__ASSIGNMENT".into(), "all".into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    // The set-up above runs without crash points; the workload with them.
    let mut rng = StdRng::seed_from_u64(seed);
    for process in [&mut stack.crm, &mut stack.erp, &mut stack.bridge] {
        process.kill();
        process.set_env("FAILPOINTS", Some(&crash_points(&process.name, &mut rng)));
        process.start().unwrap();
    }
    for http in [stack.crm_http, stack.erp_http, stack.bridge_http] {
        tandem_tests::wait_ready(http, WAIT).unwrap();
    }
    let mut processes = Processes::new(&stack);
    let mut findings = Findings::default();
    let (crm, mut erp) = clients(&stack).await;
    for sku in SKUS.into_iter().chain([COUNT_SKU]) {
        stock_product(&mut erp, sku, PRICE, INITIAL_STOCK).await;
    }
    for sku in SKUS.into_iter().chain([COUNT_SKU]) {
        crm_available(&crm, sku, INITIAL_STOCK).await;
    }

    let producer = Arc::new(TestProducer::new(&stack.broker.brokers).unwrap());
    let ledger = Arc::new(WorkLedger::new());
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let worker = Worker::new(
                seed * 100 + w as u64,
                crm.clone(),
                erp.clone(),
                producer.clone(),
                ledger.clone(),
            );
            tokio::spawn(worker.run(ops / WORKERS))
        })
        .collect();

    // The fault schedule: one part at a time, killed with SIGKILL (PostgreSQL: stopped
    // `immediate`), then brought back. The first five faults are a seeded permutation of the
    // five kinds; then seeded kinds. At least `kills` faults; with CHAOS_CONTINUOUS=1 faults go
    // on until the workload ends.
    // Milliseconds between one fault's end and the next; the long run spaces them out so the
    // workload makes progress between faults (`CHAOS_FAULT_GAP_MS`, default 300..1500).
    let gap_from = env_number("CHAOS_FAULT_GAP_MS", 300) as u64;
    let gap = gap_from..gap_from * 5;
    let mut first_kinds: Vec<usize> = (0..fault_kinds).collect();
    first_kinds.shuffle(&mut rng);
    let mut faults: Vec<&str> = Vec::new();
    let mut partitions: Vec<String> = Vec::new();
    // Crash points are re-armed from a generator of their own, so the fault schedule depends
    // on the seed alone.
    let mut arming = StdRng::seed_from_u64(seed.wrapping_add(1));
    // Partitions cut the links in a seeded order, each once per round of seven; with a
    // network, every other fault after the first round of kinds is a partition, and the
    // schedule goes on until every link was cut at least once.
    let mut link_order = LINKS;
    link_order.shuffle(&mut rng);
    let links_left = |partitions: &Vec<String>| network.is_some() && partitions.len() < LINKS.len();
    while faults.len() < kills
        || links_left(&partitions)
        || (continuous && workers.iter().any(|w| !w.is_finished()))
    {
        let next_fault = Instant::now() + Duration::from_millis(rng.random_range(gap.clone()));
        while Instant::now() < next_fault {
            tokio::time::sleep(Duration::from_millis(100)).await;
            processes.revive(&mut stack, &mut arming, &mut findings);
        }
        let target = match first_kinds.get(faults.len()) {
            Some(kind) => *kind,
            None if network.is_some() && faults.len() % 2 == 1 => 5,
            None => rng.random_range(0..5),
        };
        if let (5, Some(network)) = (target, &network) {
            // A partition: one link cut both ways for 2-8 s (often longer than the bridge's 5 s call timeout), while every process runs.
            let link = link_order[partitions.len() % LINKS.len()];
            let down = Duration::from_millis(rng.random_range(2_000..8_000));
            let cut = network.cut(link, &stack, &pg, broker_port, &mut findings);
            let until = Instant::now() + down;
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
                processes.revive(&mut stack, &mut arming, &mut findings);
            }
            network.heal(cut, link, &stack, &pg, broker_port, &mut findings);
            partitions.push(format!("{}-{}", link.0, link.1));
            faults.push("partition");
            continue;
        }
        let down = Duration::from_millis(rng.random_range(200..1_500));
        let service = match target {
            0 => Some(2),
            1 => Some(0),
            2 => Some(1),
            _ => None,
        };
        match (service, target) {
            (Some(at), _) => processes.kill(&mut stack, at, &mut findings),
            (None, 3) => stack.broker.kill(),
            _ => pg.stop().unwrap(),
        }
        tokio::time::sleep(down).await;
        match (service, target) {
            (Some(at), _) => processes.start(&mut stack, at),
            (None, 3) => {
                stack.broker.restart().unwrap();
                processes.restarts += 1;
            }
            _ => {
                pg.resume().unwrap();
                processes.restarts += 1;
            }
        }
        faults.push(FAULT_KINDS[target]);
        stand(
            &status,
            format!(
                "workload after {:.0}s, {} faults ({}), {} calls recorded",
                started.elapsed().as_secs_f64(),
                faults.len(),
                faults.last().copied().unwrap_or_default(),
                ledger.entries().len()
            ),
        );
    }
    // The SIGKILLs are over; crash points still fire until the workload ends.
    while workers.iter().any(|w| !w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        processes.revive(&mut stack, &mut arming, &mut findings);
    }
    let mut steps = 0;
    for worker in workers {
        steps += worker.await.unwrap();
    }
    let workload = started.elapsed();
    // Settling happens without crash points (one last SIGKILL each to disarm them).
    for at in 0..3 {
        processes.kill(&mut stack, at, &mut findings);
        Processes::process(&mut stack, at).set_env("FAILPOINTS", None);
        processes.start(&mut stack, at);
    }

    // Settle: every outbox drained, the bridge's group committed everything, reconcile clean.
    let settling = Instant::now();
    let converged = tandem_tests::eventually(Duration::from_secs(120), "convergence", || async {
        let pending = count(
            &stack.crm_db,
            "SELECT count(*) FROM outbox WHERE published_at IS NULL",
        )
        .await
            + count(
                &stack.erp_db,
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
            )
            .await;
        let caught_up = bridge_caught_up(&stack.broker.brokers).await;
        stand(
            &status,
            format!(
                "settling after {:.0}s: {pending} outbox rows unpublished, bridge caught up: \
                 {caught_up}, broker panics so far: {}",
                settling.elapsed().as_secs_f64(),
                stack.broker.log().matches("panicked at").count()
            ),
        );
        if pending > 0 || !caught_up {
            return None;
        }
        let (clean, report) = reconcile(&stack);
        clean.then_some(report)
    })
    .await;
    let seconds_to_converge = settling.elapsed().as_secs_f64();
    let report = match converged {
        Ok(report) => report,
        Err(error) => {
            let report = reconcile(&stack).1;
            findings.add(
                Category::Mismatched,
                format!("{error}: the outboxes, the bridge or reconcile did not settle\n{report}"),
            );
            report
        }
    };
    // Every process still runs, and none panicked anywhere in its log.
    for at in 0..3 {
        processes.reap(&mut stack, at, None, &mut findings);
        let process = Processes::process(&mut stack, at);
        for panic in watch::panics(&process.output()) {
            findings.add(Category::Process, format!("{}: {panic}", process.name));
        }
    }
    for panic in watch::panics(&stack.broker.log()) {
        findings.add(Category::Process, format!("broker: {panic}"));
    }
    if watch::exited(stack.broker.pid()) {
        processes.broker_died(&mut stack, &mut findings);
    }

    // The checks against what the clients were told.
    stand(&status, "checking the end state".to_owned());
    let mut entries = ledger.entries();
    let state = checks::EndState::read(&stack.crm_db, &stack.erp_db).await;
    let brokers = stack.broker.brokers.clone();
    let topics = checks::Topics {
        counts: read_all(&brokers, topics::INTEGRATION_STOCK).await,
        integration_orders: read_all(&brokers, topics::INTEGRATION_ORDERS).await,
        dead_letters: read_all(&brokers, topics::DEAD_LETTER).await,
    };
    let figures = checks::check(&mut entries, &state, &topics, &mut findings);

    // The run did its work.
    let (kinds, total) = Tally::of(&entries);
    for (kind, per_1000) in MINIMUM_PER_1000 {
        let minimum = (ops * per_1000 / 1_000).max(1);
        let acknowledged = kinds.get(kind).map_or(0, |t| t.acknowledged);
        findings.check(acknowledged >= minimum, Category::Workload, || {
            format!("{kind}: {acknowledged} acknowledged, fewer than the {minimum} a run must do")
        });
    }
    if network.is_some() {
        for (from, to) in LINKS {
            let link = format!("{from}-{to}");
            findings.check(partitions.contains(&link), Category::Workload, || {
                format!("the link {link} was never cut")
            });
        }
    }
    for kind in &FAULT_KINDS[..fault_kinds] {
        findings.check(faults.contains(kind), Category::Workload, || {
            format!("no {kind} fault")
        });
    }
    let aborts: Vec<String> = processes
        .watches
        .iter()
        .flat_map(|w| {
            w.aborts
                .iter()
                .map(move |(p, n)| format!("{} {p} x{n}", w.name))
        })
        .collect();
    if continuous {
        for (process, point) in CRASH_POINTS {
            let hit = processes
                .watches
                .iter()
                .find(|w| w.name == process)
                .and_then(|w| w.aborts.get(point))
                .copied()
                .unwrap_or(0);
            findings.check(hit > 0, Category::Workload, || {
                format!("crash point {point} of {process} never hit")
            });
        }
    }

    // Every event that went through the broker: the services' change events and the
    // integrators' messages the bridge consumed.
    let events = tandem_tests::topic_records(&brokers, topics::CHANGE_EVENTS)
        .await
        .unwrap();
    let bad_acknowledged = kinds.get("bad_message").map_or(0, |t| t.acknowledged);
    let fault_list = if faults.len() <= 12 {
        faults.join(" ")
    } else {
        let by_kind: Vec<String> = FAULT_KINDS
            .iter()
            .map(|k| format!("{k} {}", faults.iter().filter(|f| *f == k).count()))
            .collect();
        format!("{}; first {}", by_kind.join(", "), faults[..5].join(" "))
    };
    println!(
        "chaos figures: operations {steps} ({} calls: {total}), events {events}, faults {} ({}), \
         crash-point aborts {} ({}), restarts {}, workload {:.1}s, lost {}, duplicated {}, \
         unasked {}, mismatched {}, process exits {}, seconds to converge \
         {seconds_to_converge:.1}, orders {}, dead letters {} (bad acknowledged \
         {bad_acknowledged}, sent twice {}, dead-lettered again {})",
        total.calls,
        faults.len(),
        fault_list,
        processes.aborts,
        aborts.join(", "),
        processes.restarts,
        workload.as_secs_f64(),
        findings.count(Category::Lost),
        findings.count(Category::Duplicated),
        findings.count(Category::Unasked),
        findings.count(Category::Mismatched),
        findings.count(Category::Process),
        figures.orders_submitted,
        figures.dead_letters,
        figures.sent_twice,
        figures.dead_lettered_again,
    );
    let mut cut_links: BTreeMap<&str, usize> = BTreeMap::new();
    for link in &partitions {
        *cut_links.entry(link.as_str()).or_default() += 1;
    }
    println!("partitions by link: {cut_links:?}");
    print!("{}", tally_table(&kinds));
    println!(
        "expected stock (on hand, reserved): {:?}",
        figures.expected_stock
    );
    println!("{report}");
    assert!(
        findings.is_empty(),
        "the chaos run broke its guarantees ({}):\n{}",
        findings.counts(),
        findings.report(25)
    );
}
