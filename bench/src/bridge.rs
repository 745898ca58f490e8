//! Bridge capacity, sustained throughput with flat lag, and recovery after an outage. Load is
//! injected straight into `crm.customers` (valid events, each a new customer), so the bridge
//! and the ERP's apply path are measured without the CRM's write path in front.
//!
//! Lag = events acknowledged by the broker - customers the ERP holds beyond the start count.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use rdkafka::{Offset, TopicPartitionList, consumer::Consumer};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tandem_common::metrics_names::BRIDGE_OFFSET_RESETS;
use tandem_proto::events::topics;

use crate::{
    baselines::bridge_like_consumer,
    system::{Injector, System, ready_after},
};

/// Samples the lag every `period` until stopped; returns (seconds since start, lag).
struct LagSampler {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Vec<(f64, i64)>>,
}

impl LagSampler {
    fn start(
        db: PgPool,
        base: i64,
        acked: Arc<AtomicU64>,
        acked_base: u64,
        period: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let start = Instant::now();
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let count: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM customers")
                    .fetch_one(&db)
                    .await;
                if let Ok(count) = count {
                    let produced = acked.load(Ordering::Relaxed).saturating_sub(acked_base) as i64;
                    samples.push((start.elapsed().as_secs_f64(), produced - (count - base)));
                }
                tokio::time::sleep(period).await;
            }
            samples
        });
        Self { stop, handle }
    }

    async fn finish(self) -> Vec<(f64, i64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.unwrap_or_default()
    }
}

/// Waits until the ERP holds `count` customers; after `timeout` the phase fails, naming the
/// shortfall (every acknowledged event must be applied: a shortfall is a finding, not noise).
async fn wait_applied(system: &System, count: i64, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = system.erp_customers().await?;
        if now >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the ERP holds {now} of {count} customers {timeout:?} after the load: {} \
                 acknowledged events not applied",
                count - now
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The bridge's `tandem_bridge_offset_resets_total`, summed over partitions (0 if unreadable).
fn offset_resets(system: &System) -> f64 {
    let Ok((200, body)) = tandem_tests::http_get(system.stack.bridge_http, "/metrics") else {
        return 0.0;
    };
    body.lines()
        .filter(|line| line.starts_with(BRIDGE_OFFSET_RESETS))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The first and the next offset of each partition of `topic` (low and high watermarks).
async fn log_bounds(brokers: &str, topic: &'static str) -> Result<Vec<(i64, i64)>> {
    let consumer = bridge_like_consumer(brokers, "bench-log-bounds", 10)?;
    tokio::task::spawn_blocking(move || -> Result<Vec<(i64, i64)>> {
        let timeout = Duration::from_secs(10);
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let partitions = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect::<Vec<_>>();
        partitions
            .into_iter()
            .map(|p| Ok(consumer.fetch_watermarks(topic, p, timeout)?))
            .collect()
    })
    .await?
}

fn mean(values: impl Iterator<Item = i64>) -> f64 {
    let (sum, n) = values.fold((0i64, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum as f64 / n as f64 }
}

/// How fast the bridge drains a backlog, and how fast a plain consumer reads the same backlog.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Capacity {
    pub backlog: u64,
    /// Events applied per second between 10% and 90% of the backlog drained.
    pub bridge_drain_per_second: f64,
    /// A consumer with the bridge's settings reading the same topic, applying nothing.
    pub raw_consume_per_second: f64,
    /// Events per second the injector got acknowledged while building the backlog.
    pub produce_per_second: f64,
}

pub async fn capacity(system: &mut System, backlog: u64) -> Result<Capacity> {
    // The backlog is built while the bridge is stopped, at a rate the local broker takes (an
    // open-loop burst of 5,000/s made tansu stop answering), then the bridge is started and
    // drains it. The bridge runs with `consumer.assignment = all`, so its restart involves no
    // group coordination.
    const INGEST_RATE: f64 = 2_000.0;
    let brokers = &system.stack.broker.brokers.clone();
    let injector = Injector::new(brokers)?;
    let base = system.erp_customers().await?;
    system
        .stack
        .bridge
        .terminate(Duration::from_secs(20))
        .context("stopping the bridge")?;
    let before = log_bounds(brokers, topics::CRM_CUSTOMERS).await?;
    let offered = injector
        .run(
            INGEST_RATE,
            Duration::from_secs_f64(backlog as f64 / INGEST_RATE),
        )
        .await;
    let produce_per_second = offered.ok as f64 / offered.seconds.max(0.001);
    let produced = injector.acked.load(Ordering::Relaxed);
    // A broker deletes the oldest records once a partition outgrows its retention (the mock
    // cluster keeps 5 MiB per partition); backlog records deleted before the bridge read them
    // can never be applied, so the phase would measure the broker, not the bridge.
    let after = log_bounds(brokers, topics::CRM_CUSTOMERS).await?;
    let deleted: i64 = before
        .iter()
        .zip(&after)
        .map(|((_, high_before), (low_after, _))| (low_after - high_before).max(0))
        .sum();
    let target = produced as f64;
    let restarted = Instant::now();
    system.stack.bridge.start()?;
    if deleted > 0 {
        // The bridge must notice too (it skips to the oldest record the broker holds).
        let noticed = Instant::now() + Duration::from_secs(20);
        while offset_resets(system) == 0.0 && Instant::now() < noticed {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::bail!(
            "the broker's retention deleted {deleted} of the {produced} backlog events before the \
             bridge could read them (log bounds per partition before {before:?}, after {after:?}; \
             the bridge counted {} offset resets): the backlog does not fit the broker's retention",
            offset_resets(system)
        );
    }
    let (mut t10, mut t90) = (None, None);
    let deadline = restarted + Duration::from_secs(120);
    while Instant::now() < deadline {
        let applied = (system.erp_customers().await? - base) as f64;
        let now = restarted.elapsed().as_secs_f64();
        if t10.is_none() && applied >= 0.1 * target {
            t10 = Some((now, applied));
        }
        if applied >= 0.9 * target {
            t90 = Some((now, applied));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bridge_drain_per_second = match (t10, t90) {
        (Some((a, na)), Some((b, nb))) if b > a => (nb - na) / (b - a),
        _ => 0.0,
    };
    wait_applied(system, base + produced as i64, Duration::from_secs(30)).await?;
    let resets = offset_resets(system);
    anyhow::ensure!(
        resets == 0.0,
        "the bridge skipped events the broker no longer held ({resets} offset resets)"
    );

    // Baseline: read the whole topic (this backlog and what came before) with a consumer of
    // the bridge's settings, assigned its partitions directly (no group join), applying nothing.
    let consumer = bridge_like_consumer(
        &system.stack.broker.brokers,
        &format!("bench-raw-{}", uuid::Uuid::now_v7().simple()),
        10,
    )?;
    let mut partitions = TopicPartitionList::new();
    for partition in 0..3 {
        partitions.add_partition_offset(topics::CRM_CUSTOMERS, partition, Offset::Beginning)?;
    }
    consumer.assign(&partitions)?;
    let (first, mut last, mut count) = (Some(Instant::now()), Instant::now(), 0u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(1500), consumer.recv()).await {
            Ok(Ok(_)) => {
                last = Instant::now();
                count += 1;
            }
            Ok(Err(error)) => eprintln!("  raw consumer: {error} (continuing)"),
            Err(_) => break,
        }
    }
    drop(consumer);
    let raw_consume_per_second = first
        .map(|f| count as f64 / (last - f).as_secs_f64().max(0.001))
        .unwrap_or(0.0);
    Ok(Capacity {
        backlog: produced,
        bridge_drain_per_second,
        raw_consume_per_second,
        produce_per_second,
    })
}

/// One attempt at a fixed rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sustained {
    pub rate: f64,
    pub window_seconds: f64,
    pub produced_per_second: f64,
    pub applied_per_second: f64,
    pub lag_first_10s_mean: f64,
    pub lag_last_10s_mean: f64,
    pub lag_max: i64,
    /// Lag growth over the window at most half a second of traffic, and the injector kept up.
    pub flat: bool,
    /// (seconds, lag) every second.
    pub samples: Vec<(f64, i64)>,
}

pub async fn sustained(system: &System, rate: f64, window: Duration) -> Result<Sustained> {
    let warmup = Duration::from_secs(5);
    // A producer of its own per attempt: an earlier overload cannot leak into this one.
    let injector = &Injector::new(&system.stack.broker.brokers)?;
    let base = system.erp_customers().await?;
    let acked_base = injector.acked.load(Ordering::Relaxed);
    let sampler = LagSampler::start(
        system.erp_db.clone(),
        base,
        injector.acked.clone(),
        acked_base,
        Duration::from_secs(1),
    );
    let started = Instant::now();
    let offered = injector.run(rate, warmup + window).await;
    let elapsed = started.elapsed().as_secs_f64();
    let samples = sampler.finish().await;
    let applied = (system.erp_customers().await? - base) as f64;
    wait_applied(system, base + offered.ok as i64, Duration::from_secs(45)).await?;
    let from = warmup.as_secs_f64();
    let to = from + window.as_secs_f64();
    let in_window: Vec<(f64, i64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= from && *t <= to)
        .collect();
    let first = mean(
        in_window
            .iter()
            .filter(|(t, _)| *t < from + 10.0)
            .map(|(_, l)| *l),
    );
    let last = mean(
        in_window
            .iter()
            .filter(|(t, _)| *t > to - 10.0)
            .map(|(_, l)| *l),
    );
    let lag_max = in_window.iter().map(|(_, l)| *l).max().unwrap_or(0);
    let produced_per_second = offered.ok as f64 / elapsed;
    let flat = last - first <= 0.5 * rate && produced_per_second >= 0.97 * rate;
    Ok(Sustained {
        rate,
        window_seconds: window.as_secs_f64(),
        produced_per_second,
        applied_per_second: applied / elapsed,
        lag_first_10s_mean: first,
        lag_last_10s_mean: last,
        lag_max,
        flat,
        samples,
    })
}

/// Bridge stopped for `outage` while events keep coming at `rate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Recovery {
    pub rate: f64,
    pub outage_seconds: f64,
    pub steady_lag_mean: f64,
    pub steady_lag_max: i64,
    /// Lag at or under this counts as steady again.
    pub threshold: f64,
    pub peak_lag: i64,
    /// SIGTERM -> exit of the bridge.
    pub stop_seconds: f64,
    /// Restart -> `/readyz` of the bridge.
    pub restart_ready_seconds: f64,
    /// Restart -> lag back at or under the threshold (three samples in a row); `None` when
    /// it was not within the run.
    pub recovered_seconds: Option<f64>,
    /// Events per second the broker acknowledged; under 97% of `rate` the figure is void
    /// (the injector or the broker, not the bridge, was the limit).
    pub produced_per_second: f64,
    /// (seconds, lag) every 250 ms.
    pub samples: Vec<(f64, i64)>,
}

pub async fn recovery(
    system: &mut System,
    rate: f64,
    outage: Duration,
    steady: Duration,
) -> Result<Recovery> {
    let base = system.erp_customers().await?;
    let total = steady + outage + Duration::from_secs(30);
    // An injector of its own, so its counter starts at zero.
    let injector = Injector::new(&system.stack.broker.brokers)?;
    let acked = injector.acked.clone();
    let producing = tokio::spawn(async move { injector.run(rate, total).await });
    let sampler = LagSampler::start(
        system.erp_db.clone(),
        base,
        acked.clone(),
        0,
        Duration::from_millis(250),
    );
    let clock = Instant::now();
    tokio::time::sleep(steady).await;
    let stopping = Instant::now();
    system
        .stack
        .bridge
        .terminate(Duration::from_secs(20))
        .context("stopping the bridge")?;
    let stop_seconds = stopping.elapsed().as_secs_f64();
    tokio::time::sleep(outage).await;
    let restart = Instant::now();
    system.stack.bridge.start()?;
    let restart_at = clock.elapsed().as_secs_f64();
    let restart_ready_seconds =
        ready_after(system.stack.bridge_http, restart, Duration::from_secs(30))
            .await
            .map(|d| d.as_secs_f64())
            .unwrap_or(f64::NAN);
    let offered = producing.await.unwrap_or_default();
    let produced_per_second = offered.ok as f64 / total.as_secs_f64();
    let samples = sampler.finish().await;
    let steady_from = (steady.as_secs_f64() - 5.0).max(1.0);
    let steady_samples: Vec<i64> = samples
        .iter()
        .filter(|(t, _)| *t >= steady_from && *t < steady.as_secs_f64())
        .map(|(_, l)| *l)
        .collect();
    let steady_lag_mean = mean(steady_samples.iter().copied());
    let steady_lag_max = steady_samples.iter().copied().max().unwrap_or(0);
    let threshold = (steady_lag_max as f64 * 1.5).max(0.1 * rate);
    let after: Vec<(f64, i64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= restart_at)
        .collect();
    let peak_lag = samples.iter().map(|(_, l)| *l).max().unwrap_or(0);
    let mut recovered_seconds = None;
    let valid = produced_per_second >= 0.97 * rate;
    for window in after.windows(3).filter(|_| valid) {
        if window.iter().all(|(_, l)| (*l as f64) <= threshold) {
            recovered_seconds = Some(window[0].0 - restart_at);
            break;
        }
    }
    wait_applied(
        system,
        base + acked.load(Ordering::Relaxed) as i64,
        Duration::from_secs(60),
    )
    .await?;
    Ok(Recovery {
        rate,
        outage_seconds: outage.as_secs_f64(),
        steady_lag_mean,
        steady_lag_max,
        threshold,
        peak_lag,
        stop_seconds,
        restart_ready_seconds,
        recovered_seconds,
        produced_per_second,
        samples,
    })
}
