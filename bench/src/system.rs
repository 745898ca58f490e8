//! The real stack under load: RPC throughput, end-to-end sync latency, bridge throughput and
//! recovery, start-up time and resource use.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tandem_proto::events::Envelope;
use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1::{self as erp, erp_service_client::ErpServiceClient},
    events::{CustomerStatus, crm::CustomerUpsertedV1, topics},
};
use tandem_tests::{
    ServiceProcess, Stack, StackOptions, TestBroker, http_get,
    security::{self, Authed},
};

use crate::{
    load::{Offered, Throughput, closed_loop, open_loop},
    procstat::Target,
    stats::{Latencies, Summary},
};

pub const WAREHOUSE: &str = "BENCH-1";

/// One running stack plus the clients and database pools the measurements use.
pub struct System {
    pub stack: Stack,
    pub crm: CrmServiceClient<Authed>,
    pub erp: ErpServiceClient<Authed>,
    pub crm_db: PgPool,
    pub erp_db: PgPool,
    pub skus: Arc<Vec<String>>,
    /// Units received so far per sku (only the bench moves stock).
    pub stock: Arc<Vec<AtomicI64>>,
    pub customer_ids: Vec<String>,
}

async fn pool(url: &str, size: u32) -> Result<PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(size)
        .connect(url)
        .await
        .context("connecting to a stack database")
}

impl System {
    /// Starts the stack (on `broker`, or a private tansu) with the product's default
    /// settings; returns it and the time until all three answered `/readyz`.
    /// `create_topics` false: the topics exist already (the mock cluster has no CreateTopics).
    pub async fn start(
        broker: Option<TestBroker>,
        label: &str,
        create_topics: bool,
        fetch_wait_max_ms: u32,
    ) -> Result<(Self, Duration)> {
        let started = Instant::now();
        let flag = |prefix: &str| -> Vec<(String, String)> {
            if create_topics {
                Vec::new()
            } else {
                vec![(
                    format!("{prefix}__KAFKA__CREATE_TOPICS"),
                    "false".to_owned(),
                )]
            }
        };
        let stack = Stack::start_with(StackOptions {
            broker,
            label: Some(label.to_owned()),
            crm_env: flag("CRM"),
            erp_env: flag("ERP"),
            // One bridge that takes every partition itself: the bench stops and restarts it,
            // and the local broker's group coordination would add seconds to each restart.
            bridge_env: [
                flag("BRIDGE"),
                vec![
                    ("BRIDGE__CONSUMER__ASSIGNMENT".to_owned(), "all".to_owned()),
                    (
                        "BRIDGE__CONSUMER__FETCH_WAIT_MAX_MS".to_owned(),
                        fetch_wait_max_ms.to_string(),
                    ),
                ],
            ]
            .concat(),
            ..StackOptions::default()
        })
        .await
        .context("starting the stack")?;
        let ready = started.elapsed();
        let crm = stack.crm_client().await?;
        let erp = stack.erp_client().await?;
        let crm_db = pool(&stack.crm_db.url, 2).await?;
        let erp_db = pool(&stack.erp_db.url, 2).await?;
        Ok((
            Self {
                stack,
                crm,
                erp,
                crm_db,
                erp_db,
                skus: Arc::new(Vec::new()),
                stock: Arc::new(Vec::new()),
                customer_ids: Vec::new(),
            },
            ready,
        ))
    }

    /// A warehouse, `skus` products mirrored into the CRM, and `customers` customers mirrored
    /// into the ERP.
    pub async fn prepare(&mut self, skus: usize, customers: usize) -> Result<()> {
        let mut erp = self.erp.clone();
        erp.create_warehouse(erp::CreateWarehouseRequest {
            request_id: String::new(),
            warehouse: Some(erp::Warehouse {
                code: WAREHOUSE.into(),
                display_name: "Bench warehouse".into(),
                create_time: None,
            }),
        })
        .await
        .context("creating the bench warehouse")?;
        let names: Vec<String> = (0..skus).map(|i| format!("BENCH-{i:05}")).collect();
        for sku in &names {
            erp.create_product(erp::CreateProductRequest {
                request_id: String::new(),
                product: Some(erp::Product {
                    sku: sku.clone(),
                    display_name: format!("Bench product {sku}"),
                    unit_price: Some(erp::Money {
                        currency_code: "EUR".into(),
                        amount_minor: 1999,
                    }),
                    active: true,
                    ..Default::default()
                }),
                inactive: false,
            })
            .await
            .with_context(|| format!("creating product {sku}"))?;
        }
        let mut crm = self.crm.clone();
        for i in 0..customers {
            let created = crm
                .create_customer(new_customer(&format!("prep-{i}")))
                .await
                .context("creating a customer")?;
            self.customer_ids.push(created.into_inner().id);
        }
        self.skus = Arc::new(names);
        self.stock = Arc::new((0..skus).map(|_| AtomicI64::new(0)).collect());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mirrored: i64 =
                sqlx::query_scalar("SELECT count(*) FROM catalogue WHERE product_version > 0")
                    .fetch_one(&self.crm_db)
                    .await?;
            let customers_in_erp = self.erp_customers().await?;
            if mirrored >= skus as i64 && customers_in_erp >= customers as i64 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "after 60 s only {mirrored}/{skus} products reached the CRM and {customers_in_erp}/{customers} customers the ERP"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn erp_customers(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM customers")
            .fetch_one(&self.erp_db)
            .await?)
    }

    /// Waits until the ERP holds every customer of the CRM plus `extra` injected ones (at most
    /// `timeout`, else an error: the report lists it).
    pub async fn wait_settled(&self, extra: i64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let crm: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
                .fetch_one(&self.crm_db)
                .await?;
            let erp = self.erp_customers().await?;
            if erp >= crm + extra {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "not settled after {timeout:?}: the ERP holds {erp} customers of the CRM's \
                     {crm} (+{extra} injected); the phases after this one start from a backlog"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The series of the bridge's metric `name` on its `/metrics`: labels and value.
    pub async fn bridge_metric(&self, name: &str) -> Result<Vec<(String, f64)>> {
        let addr = self.stack.bridge_http;
        let (status, body) =
            tokio::task::spawn_blocking(move || http_get(addr, "/metrics")).await??;
        if status != 200 {
            bail!("the bridge's /metrics answered {status}");
        }
        Ok(body
            .lines()
            .filter_map(|line| {
                let series = line.strip_prefix(name)?;
                let (labels, value) = series.rsplit_once(' ')?;
                (labels.is_empty() || labels.starts_with('{'))
                    .then(|| Some((labels.to_owned(), value.parse().ok()?)))?
            })
            .collect())
    }

    /// Waits (at most `timeout`) until the bridge rests after a quiet spell: the idle state.
    pub async fn wait_bridge_resting(&self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let resting = self
                .bridge_metric(tandem_common::metrics_names::BRIDGE_RESTING)
                .await?;
            if resting.iter().any(|(_, value)| *value == 1.0) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!("the bridge did not rest within {timeout:?} of quiet");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// CRM commit -> visible in the ERP for a lone customer created while the bridge rests
    /// (after a quiet spell), `samples` times: what resting costs the first event.
    pub async fn e2e_after_rest(&self, samples: usize) -> Result<Summary> {
        let mut latencies = Latencies::new();
        let mut crm = self.crm.clone();
        for n in 0..samples {
            self.wait_bridge_resting(Duration::from_secs(20)).await?;
            let created = crm
                .create_customer(new_customer(&format!("after-rest-{n}")))
                .await?
                .into_inner();
            let since = Instant::now();
            let id: uuid::Uuid = created.id.parse()?;
            loop {
                let seen: Option<i32> = sqlx::query_scalar("SELECT 1 FROM customers WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.erp_db)
                    .await?;
                if seen.is_some() {
                    break;
                }
                if since.elapsed() > Duration::from_secs(10) {
                    bail!("customer {id} not in the ERP 10 s after its commit");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            latencies.record(since.elapsed());
        }
        Ok(latencies.summary())
    }

    /// The processes to watch for CPU and RSS.
    pub fn targets(&self) -> Vec<(String, Target)> {
        let mut targets = Vec::new();
        for process in [&self.stack.crm, &self.stack.erp, &self.stack.bridge] {
            if let Some(pid) = process.pid() {
                targets.push((process.name.clone(), Target::Pid(pid)));
            }
        }
        if let Some(pid) = self.stack.broker.pid() {
            targets.push(("broker (tansu)".into(), Target::Pid(pid)));
        }
        targets.push((
            "postgres (whole shared cluster)".into(),
            Target::Named("postgres"),
        ));
        targets.push((
            "bench (load generator)".into(),
            Target::Pid(std::process::id()),
        ));
        targets
    }

    /// SIGTERM, restart, and the time from spawn to `/readyz` 200 (polled every 5 ms).
    pub async fn restart_to_ready(&mut self, which: Which) -> Result<Duration> {
        let (process, http) = self.process(which);
        process
            .terminate(Duration::from_secs(20))
            .with_context(|| format!("stopping {}", process.name))?;
        let started = Instant::now();
        process.start()?;
        let ready = ready_after(http, started, Duration::from_secs(30)).await?;
        // Reconnect the clients to the restarted service.
        match which {
            Which::Crm => {
                self.crm = self.stack.crm_client().await?;
            }
            Which::Erp => {
                self.erp = self.stack.erp_client().await?;
            }
            Which::Bridge => {}
        }
        Ok(ready)
    }

    /// Start to ready of a second bridge with a consumer group of its own (restarting the
    /// stack's bridge in quick succession would disturb its group), stopped right after.
    pub async fn bridge_start_to_ready(&self) -> Result<Duration> {
        let (grpc, http) = (free_addr(), free_addr());
        let env = vec![
            ("BRIDGE__GRPC__LISTEN".to_owned(), grpc.to_string()),
            ("BRIDGE__HTTP__LISTEN".to_owned(), http.to_string()),
            (
                "BRIDGE__ERP__URL".to_owned(),
                format!("https://{}", self.stack.erp_sync),
            ),
            (
                "BRIDGE__CRM__URL".to_owned(),
                format!("https://{}", self.stack.crm_sync),
            ),
            (
                "BRIDGE__CONSUMER__GROUP_ID".to_owned(),
                format!("bench-ready-{}", uuid::Uuid::now_v7().simple()),
            ),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ];
        let started = Instant::now();
        let env = env
            .into_iter()
            .chain(self.stack.broker.service_env("BRIDGE"))
            .chain(self.stack.security.caller_env(security::BRIDGE))
            .collect();
        let mut bridge = ServiceProcess::spawn("sync-bridge", env)?;
        let ready = ready_after(http, started, Duration::from_secs(30)).await;
        bridge.terminate(Duration::from_secs(20)).ok();
        ready
    }

    fn process(&mut self, which: Which) -> (&mut ServiceProcess, SocketAddr) {
        match which {
            Which::Crm => (&mut self.stack.crm, self.stack.crm_http),
            Which::Erp => (&mut self.stack.erp, self.stack.erp_http),
            Which::Bridge => (&mut self.stack.bridge, self.stack.bridge_http),
        }
    }

    /// `GetCustomer` throughput with `clients` clients, each on its own connection.
    pub async fn rpc_read(
        &self,
        clients: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Result<Throughput> {
        let pool = self.crm_clients(clients).await?;
        let ids = Arc::new(self.customer_ids.clone());
        if ids.is_empty() {
            bail!("no customers to read");
        }
        Ok(closed_loop(pool, warmup, duration, move |mut client, seq| {
            let id = ids[(seq as usize).wrapping_mul(7919) % ids.len()].clone();
            async move {
                client.get_customer(crm::GetCustomerRequest { id }).await?;
                Ok(())
            }
        })
        .await)
    }

    /// `CreateCustomer` throughput with `clients` clients.
    pub async fn rpc_write(
        &self,
        clients: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Result<Throughput> {
        let pool = self.crm_clients(clients).await?;
        Ok(
            closed_loop(pool, warmup, duration, |mut client, seq| async move {
                client
                    .create_customer(new_customer(&format!("w{seq}")))
                    .await?;
                Ok(())
            })
            .await,
        )
    }

    async fn crm_clients(&self, clients: usize) -> Result<Vec<CrmServiceClient<Authed>>> {
        let mut pool = Vec::with_capacity(clients);
        for _ in 0..clients {
            pool.push(self.stack.crm_client().await?);
        }
        Ok(pool)
    }

    /// CRM commit -> visible in the ERP: `CreateCustomer` at `rate`/s; a customer is visible
    /// once the ERP's database returns its row (polled every 2 ms).
    pub async fn e2e_customers(&self, rate: f64, duration: Duration) -> Result<E2e> {
        let before = self.stage_totals(Which::Crm).await;
        let tracker = Tracker::start(self.erp_db.clone(), Probe::ErpCustomers);
        let crm = self.crm.clone();
        let pending = tracker.clone();
        let writes = open_loop(rate, duration, 2000, move |seq| {
            let (mut crm, pending) = (crm.clone(), pending.clone());
            async move {
                let created = crm
                    .create_customer(new_customer(&format!("e2e-{seq}")))
                    .await?
                    .into_inner();
                pending.add(created.id, 1);
                Ok(())
            }
        })
        .await;
        let e2e = tracker.finish(rate, writes, Duration::from_secs(30)).await;
        Ok(self.with_stages(e2e, before, Which::Crm).await)
    }

    /// ERP stock change -> visible in the CRM: `ReceiveStock` of 1 unit at `rate`/s round
    /// robin over the skus; visible once the CRM's catalogue shows the new available quantity.
    pub async fn e2e_stock(&self, rate: f64, duration: Duration) -> Result<E2e> {
        let before = self.stage_totals(Which::Erp).await;
        let tracker = Tracker::start(self.crm_db.clone(), Probe::CrmStock);
        let (erp, skus, stock) = (self.erp.clone(), self.skus.clone(), self.stock.clone());
        if skus.is_empty() {
            bail!("no skus prepared");
        }
        let pending = tracker.clone();
        let writes = open_loop(rate, duration, 2000, move |seq| {
            let (mut erp, skus, stock, pending) =
                (erp.clone(), skus.clone(), stock.clone(), pending.clone());
            async move {
                let index = seq as usize % skus.len();
                erp.receive_stock(erp::ReceiveStockRequest {
                    request_id: String::new(),
                    sku: skus[index].clone(),
                    warehouse: WAREHOUSE.into(),
                    quantity: 1,
                    reference: String::new(),
                })
                .await?;
                let expected = stock[index].fetch_add(1, Ordering::SeqCst) + 1;
                pending.add(skus[index].clone(), expected);
                Ok(())
            }
        })
        .await;
        let e2e = tracker.finish(rate, writes, Duration::from_secs(30)).await;
        Ok(self.with_stages(e2e, before, Which::Erp).await)
    }

    /// The stage histograms' totals now, for events from `source` (the CRM or the ERP) to the
    /// other service; `None` when a `/metrics` page cannot be read (the figure is then left out).
    async fn stage_totals(&self, source: Which) -> Option<StageTotals> {
        let (source_http, target_http) = match source {
            Which::Erp => (self.stack.erp_http, self.stack.crm_http),
            _ => (self.stack.crm_http, self.stack.erp_http),
        };
        let bridge_http = self.stack.bridge_http;
        let pages = tokio::task::spawn_blocking(move || {
            [source_http, target_http, bridge_http].map(|addr| match http_get(addr, "/metrics") {
                Ok((200, body)) => Some(body),
                _ => None,
            })
        })
        .await
        .ok()?;
        let [Some(source), Some(target), Some(bridge)] = pages else {
            return None;
        };
        use tandem_common::metrics_names as names;
        Some(StageTotals {
            relay: histogram_totals(&source, names::OUTBOX_LAG_SECONDS, |_| true),
            apply_call: histogram_totals(&target, names::GRPC_SERVER_CALL_SECONDS, |labels| {
                labels.contains("/Apply")
            }),
            occurred_to_applied: histogram_totals(
                &bridge,
                names::BRIDGE_COMMIT_TO_APPLY_SECONDS,
                |_| true,
            ),
        })
    }

    async fn with_stages(&self, mut e2e: E2e, before: Option<StageTotals>, source: Which) -> E2e {
        let after = self.stage_totals(source).await;
        e2e.stages = before.zip(after).map(|(b, a)| b.until(&a));
        e2e
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Crm,
    Erp,
    Bridge,
}

/// Polls `/readyz` every 5 ms; returns the time since `started` when it answered 200.
pub async fn ready_after(
    http: SocketAddr,
    started: Instant,
    timeout: Duration,
) -> Result<Duration> {
    loop {
        let probe = tokio::task::spawn_blocking(move || http_get(http, "/readyz")).await?;
        if matches!(probe, Ok((200, _))) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("{http}/readyz not ready after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], tandem_tests::free_port()))
}

pub fn new_customer(tag: &str) -> crm::CreateCustomerRequest {
    crm::CreateCustomerRequest {
        request_id: String::new(),
        customer: Some(crm::Customer {
            display_name: format!("Bench Customer {tag}"),
            email: format!("bench-{tag}@example.com"),
            ..Default::default()
        }),
    }
}

/// End-to-end latency at one offered rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct E2e {
    pub rate: f64,
    /// The writes (their own RPC latency from the scheduled start).
    pub writes: Offered,
    /// Writes seen on the other side.
    pub visible: u64,
    /// Writes not seen within 30 s after the last write.
    pub missing: u64,
    /// Commit acknowledged -> visible on the other side: the midpoint of the window in which
    /// the change became visible (after the last poll that could not see it began, before the
    /// first poll that saw it answered).
    pub latency: Summary,
    /// Commit acknowledged -> the answer of the first poll that saw it: the window's end, an
    /// upper bound that adds up to a poll interval and a query to the change's own latency.
    #[serde(default)]
    pub seen: Summary,
    /// What the trip is made of, from the services' own histograms over the phase.
    #[serde(default)]
    pub stages: Option<Stages>,
}

/// Means over one phase of the stages an event passes, from the services' `/metrics`
/// histograms (deltas over the phase): where an e2e figure's time goes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Stages {
    /// The source's outbox: the row's commit -> the broker's ack (mean ms).
    pub relay_ms: f64,
    /// The target's `Apply*` calls from the bridge, as its server timed them (mean ms).
    pub apply_call_ms: f64,
    /// The bridge: the event's `occurred_at` -> applied in the target (mean ms).
    pub occurred_to_applied_ms: f64,
}

/// The sums and counts of some histograms on three `/metrics` pages at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct StageTotals {
    relay: (f64, f64),
    apply_call: (f64, f64),
    occurred_to_applied: (f64, f64),
}

impl StageTotals {
    /// The means between `self` (the start of a phase) and `end`, in ms.
    fn until(&self, end: &StageTotals) -> Stages {
        let mean = |(s0, c0): (f64, f64), (s1, c1): (f64, f64)| {
            if c1 > c0 {
                (s1 - s0) / (c1 - c0) * 1000.0
            } else {
                0.0
            }
        };
        Stages {
            relay_ms: mean(self.relay, end.relay),
            apply_call_ms: mean(self.apply_call, end.apply_call),
            occurred_to_applied_ms: mean(self.occurred_to_applied, end.occurred_to_applied),
        }
    }
}

/// The `_sum` and `_count` of histogram `name` on a `/metrics` page, added over the series
/// whose labels `keep` accepts.
fn histogram_totals(page: &str, name: &str, keep: impl Fn(&str) -> bool) -> (f64, f64) {
    let mut totals = (0.0, 0.0);
    for line in page.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (slot, series) = if let Some(series) = rest.strip_prefix("_sum") {
            (&mut totals.0, series)
        } else if let Some(series) = rest.strip_prefix("_count") {
            (&mut totals.1, series)
        } else {
            continue;
        };
        let Some((labels, value)) = series.rsplit_once(' ') else {
            continue;
        };
        if (labels.is_empty() || labels.starts_with('{'))
            && keep(labels)
            && let Ok(value) = value.parse::<f64>()
        {
            *slot += value;
        }
    }
    totals
}

#[derive(Clone, Copy)]
enum Probe {
    /// key: customer id; value: 1 when the ERP has the row.
    ErpCustomers,
    /// key: sku; value: the CRM's available quantity.
    CrmStock,
}

struct Pending {
    key: String,
    expected: i64,
    since: Instant,
}

/// The latency of a change acknowledged at `since` and first seen by a poll that answered at
/// `seen`: the midpoint of the window it became visible in, and the window's end. The window
/// opens at the later of `since` and the start of the last poll that missed it (`missed`).
fn visible_within(since: Instant, missed: Option<Instant>, seen: Instant) -> (Duration, Duration) {
    let opened = missed.map_or(since, |m| m.max(since));
    let midpoint = opened + seen.saturating_duration_since(opened) / 2;
    (
        midpoint.saturating_duration_since(since),
        seen.saturating_duration_since(since),
    )
}

/// Writers add (key, expected value); a poller watches the other side's database and records
/// the time from `add` until the value is reached.
#[derive(Clone)]
struct Tracker {
    pending: Arc<Mutex<Vec<Pending>>>,
    /// The window's midpoint, and its end (see [`E2e`]).
    latencies: Arc<Mutex<(Latencies, Latencies)>>,
    stop: Arc<AtomicBool>,
    poller: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Tracker {
    fn start(db: PgPool, probe: Probe) -> Self {
        let tracker = Self {
            pending: Arc::default(),
            latencies: Arc::new(Mutex::new((Latencies::new(), Latencies::new()))),
            stop: Arc::default(),
            poller: Arc::default(),
        };
        let worker = tracker.clone();
        let handle = tokio::spawn(async move { worker.poll(db, probe).await });
        if let Ok(mut slot) = tracker.poller.lock() {
            *slot = Some(handle);
        }
        tracker
    }

    fn add(&self, key: String, expected: i64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(Pending {
                key,
                expected,
                since: Instant::now(),
            });
        }
    }

    fn len(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    async fn poll(&self, db: PgPool, probe: Probe) {
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = false;
        // When the last poll that answered began: a change it did not see became visible after.
        let mut last_poll: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            tick.tick().await;
            // Taken before the keys are read: a key added later is not in this poll, and its
            // own acknowledgement then bounds its window.
            let began = Instant::now();
            let mut keys: Vec<String> = match self.pending.lock() {
                Ok(pending) => pending.iter().map(|p| p.key.clone()).collect(),
                Err(_) => return,
            };
            if keys.is_empty() {
                continue;
            }
            keys.sort();
            keys.dedup();
            let rows: Result<Vec<(String, i64)>, sqlx::Error> = match probe {
                Probe::ErpCustomers => {
                    let ids: Vec<uuid::Uuid> = keys.iter().filter_map(|k| k.parse().ok()).collect();
                    sqlx::query_as("SELECT id::text, 1::int8 FROM customers WHERE id = ANY($1)")
                        .bind(ids)
                        .fetch_all(&db)
                        .await
                }
                Probe::CrmStock => {
                    sqlx::query_as("SELECT sku, available FROM catalogue WHERE sku = ANY($1)")
                        .bind(&keys)
                        .fetch_all(&db)
                        .await
                }
            };
            let seen = Instant::now();
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    if !reported {
                        eprintln!("  visibility poll failed: {error} (continuing)");
                        reported = true;
                    }
                    continue;
                }
            };
            let missed_before = last_poll.replace(began);
            if rows.is_empty() {
                continue;
            }
            let values: std::collections::HashMap<String, i64> = rows.into_iter().collect();
            let mut done = Vec::new();
            if let Ok(mut pending) = self.pending.lock() {
                pending.retain(|p| match values.get(&p.key) {
                    Some(value) if *value >= p.expected => {
                        done.push(visible_within(p.since, missed_before, seen));
                        false
                    }
                    _ => true,
                });
            }
            if let Ok(mut latencies) = self.latencies.lock() {
                for (midpoint, seen) in done {
                    latencies.0.record(midpoint);
                    latencies.1.record(seen);
                }
            }
        }
    }

    async fn finish(self, rate: f64, writes: Offered, grace: Duration) -> E2e {
        let deadline = Instant::now() + grace;
        while self.len() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.poller.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        let (latency, seen) = self
            .latencies
            .lock()
            .map(|l| (l.0.summary(), l.1.summary()))
            .unwrap_or_default();
        E2e {
            rate,
            writes,
            visible: latency.count,
            missing: self.len() as u64,
            latency,
            seen,
            stages: None,
        }
    }
}

/// Publishes valid `crm.customer.upserted` events straight to `crm.customers` (as the CRM's
/// relay would), to load the bridge alone. Every event is a new customer.
#[derive(Clone)]
pub struct Injector {
    producer: Arc<FutureProducer>,
    pub acked: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
}

impl Injector {
    pub fn new(brokers: &str) -> Result<Self> {
        Ok(Self {
            producer: Arc::new(crate::baselines::relay_like_producer(brokers)?),
            acked: Arc::default(),
            failed: Arc::default(),
        })
    }

    fn event(seq: u64) -> Result<(String, Vec<u8>)> {
        let id = uuid::Uuid::now_v7().to_string();
        let data = CustomerUpsertedV1 {
            customer_id: id.clone(),
            display_name: format!("Injected Customer {seq}"),
            email: format!("injected-{seq}@example.com"),
            phone: None,
            tax_id: None,
            status: CustomerStatus::Active,
            external_ref: None,
            contacts: Vec::new(),
            addresses: Vec::new(),
        };
        let envelope = Envelope::of("crm", 1, &data)?;
        Ok((id, serde_json::to_vec(&envelope)?))
    }

    /// Produces at `rate`/s for `duration` (open loop); returns when all sends finished.
    pub async fn run(&self, rate: f64, duration: Duration) -> Offered {
        let (producer, acked, failed) = (
            self.producer.clone(),
            self.acked.clone(),
            self.failed.clone(),
        );
        open_loop(rate, duration, 50_000, move |seq| {
            let (producer, acked, failed) = (producer.clone(), acked.clone(), failed.clone());
            async move {
                let (key, payload) = Self::event(seq)?;
                let sent = producer
                    .send(
                        FutureRecord::to(topics::CRM_CUSTOMERS)
                            .key(&key)
                            .payload(&payload),
                        Duration::from_secs(10),
                    )
                    .await;
                match sent {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Err((error, _)) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        Err(error.into())
                    }
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_placed_in_the_middle_of_the_window_it_became_visible_in() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Acknowledged at 0; a poll began at 3 ms and missed it; the next answered at 7 ms.
        assert_eq!(
            visible_within(t0, Some(t0 + ms(3)), t0 + ms(7)),
            (ms(5), ms(7))
        );
        // A poll that began before the acknowledgement says nothing: the window opens at it.
        assert_eq!(
            visible_within(t0 + ms(2), Some(t0), t0 + ms(6)),
            (ms(2), ms(4))
        );
        // No poll before this one: the same.
        assert_eq!(visible_within(t0, None, t0 + ms(4)), (ms(2), ms(4)));
    }
}
