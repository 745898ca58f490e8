//! Load shapes: a closed loop (N clients, each sends its next call when the last answered) and
//! an open loop (a fixed arrival rate, independent of how fast calls answer).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::stats::{Latencies, Summary};

/// Result of a closed-loop run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Throughput {
    pub clients: usize,
    pub seconds: f64,
    pub calls: u64,
    pub errors: u64,
    /// Successful calls per second after the warm-up.
    pub per_second: f64,
    pub latency: Summary,
}

/// Runs `clients` loops of `call` for `warmup + duration`; only calls that start after the
/// warm-up count. Each client gets its own `C` (e.g. a gRPC client on its own connection).
pub async fn closed_loop<C, F, Fut>(
    clients: Vec<C>,
    warmup: Duration,
    duration: Duration,
    call: F,
) -> Throughput
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let count = clients.len();
    let start = Instant::now();
    let measure_from = start + warmup;
    let deadline = measure_from + duration;
    let mut tasks = Vec::with_capacity(count);
    for (index, client) in clients.into_iter().enumerate() {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::new();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut seq = (index as u64) << 40;
            let mut last_error = None;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let result = call(client.clone(), seq).await;
                seq += 1;
                if sent < measure_from {
                    continue;
                }
                match result {
                    Ok(()) => {
                        ok += 1;
                        latencies.record(sent.elapsed());
                    }
                    Err(error) => {
                        errors += 1;
                        last_error = Some(error);
                    }
                }
            }
            (latencies, ok, errors, last_error)
        }));
    }
    let mut latencies = Latencies::new();
    let (mut calls, mut errors) = (0, 0);
    for task in tasks {
        if let Ok((l, ok, err, last_error)) = task.await {
            latencies.merge(&l);
            calls += ok;
            errors += err;
            if let Some(error) = last_error {
                eprintln!("  a client's last error: {error:#}");
            }
        }
    }
    let seconds = duration.as_secs_f64();
    Throughput {
        clients: count,
        seconds,
        calls,
        errors,
        per_second: calls as f64 / seconds,
        latency: latencies.summary(),
    }
}

/// Result of an open-loop run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Offered {
    pub rate: f64,
    pub seconds: f64,
    /// Operations started on schedule.
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// Operations dropped because `max_in_flight` were already outstanding.
    pub shed: u64,
    /// The first error an operation returned, if any did.
    #[serde(default)]
    pub first_error: Option<String>,
    /// Latency of the operation itself, from its scheduled start (no coordinated omission).
    pub latency: Summary,
}

/// Starts `op(seq)` at `rate` per second for `duration`, each on its own task, at most
/// `max_in_flight` at once. Waits for the started operations (at most 30 s more).
pub async fn open_loop<F, Fut>(
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    op: F,
) -> Offered
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Latencies::new()));
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let start = Instant::now();
    let (mut sent, mut shed) = (0u64, 0u64);
    let mut first_error = None;
    let (error_tx, mut error_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for seq in 0..total {
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shed += 1;
            continue;
        };
        sent += 1;
        let (op, ok, errors, latencies, error_tx) = (
            op.clone(),
            ok.clone(),
            errors.clone(),
            latencies.clone(),
            error_tx.clone(),
        );
        tokio::spawn(async move {
            let result = op(seq).await;
            let took = due.elapsed();
            drop(permit);
            match result {
                Ok(()) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = latencies.lock() {
                        l.record(took);
                    }
                }
                Err(error) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    let _ = error_tx.send(format!("{error:#}"));
                }
            }
        });
        if first_error.is_none()
            && let Ok(error) = error_rx.try_recv()
        {
            eprintln!("  first error: {error}");
            first_error = Some(error);
        }
    }
    // Wait for what is still in flight.
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while permits.available_permits() < max_in_flight && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if first_error.is_none()
        && let Ok(error) = error_rx.try_recv()
    {
        eprintln!("  first error: {error}");
        first_error = Some(error);
    }
    let summary = latencies.lock().map(|l| l.summary()).unwrap_or_default();
    Offered {
        rate,
        seconds: duration.as_secs_f64(),
        sent,
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        shed,
        first_error,
        latency: summary,
    }
}
