//! The summary figures: each measurement with its same-run baseline, the ratio, the target
//! and, where a target is missed, why.

use serde::{Deserialize, Serialize};

use super::Results;
use crate::{baselines::Hop, system::E2e};

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

/// The headline e2e figures are the first poll that saw the change (an upper bound, and what
/// every report before the window's midpoint showed), so runs compare like for like.
fn seen(e: &E2e) -> crate::stats::Summary {
    if e.seen.count > 0 { e.seen } else { e.latency }
}
fn p50(e: Option<&E2e>) -> Option<f64> {
    e.filter(|e| e.visible > 0).map(|e| seen(e).p50_ms)
}
fn p99(e: Option<&E2e>) -> Option<f64> {
    e.filter(|e| e.visible > 0).map(|e| seen(e).p99_ms)
}
/// The excess of the window's midpoint over the raw hop, at `quantile` 0.5 or 0.99 (none for
/// a run that recorded no window).
fn excess(e: Option<&E2e>, h: Option<&Hop>, quantile: f64) -> Option<f64> {
    let e = e.filter(|e| e.visible > 0 && e.seen.count > 0)?;
    let h = h.filter(|h| h.received > 0)?;
    Some(if quantile < 0.9 {
        e.latency.p50_ms - h.latency.p50_ms
    } else {
        e.latency.p99_ms - h.latency.p99_ms
    })
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
                 excess of the sync path over its broker floor (the window's midpoint) is p50 {} / p99 {} ms; {}",
                f1(hop50(h.as_ref())),
                f1(hop99(h.as_ref())),
                f1(excess(e.as_ref(), h.as_ref(), 0.5)),
                f1(excess(e.as_ref(), h.as_ref(), 0.99)),
                if broker == "tansu" {
                    "tansu answers a fetch only after fetch.wait.max.ms (10 ms), which sets most of that floor"
                } else {
                    "the excess is the relay's wake-up and read of the outbox and the bridge's apply (a gRPC \
                     call and a transaction); \"What an event's trip is made of\" shows each stage's mean"
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
    // What resting costs the first event after a quiet spell.
    let rest = r.e2e_after_rest.as_ref();
    b.add(
        "e2e CRM -> ERP of a lone customer while the bridge rests (median of 5)",
        rest.map(|s| s.p50_ms),
        "ms",
        Some(("e2e CRM -> ERP p50 at 200/s (tansu)", p50(r.e2e_customers_200.as_ref()))),
        None,
        Some(format!(
            "max {} ms; a resting bridge reads the partitions' ends every consumer.rest_check_ms (500 ms) and \
             fetches once one moved, so the first event after a quiet spell waits for that check",
            f1(rest.map(|s| s.max_ms))
        )),
    );
    // The sync path's own cost: the excess over the raw hop on the mock cluster.
    for (flow, rate, e, h, (t50, t99)) in [
        (
            "CRM -> ERP",
            200,
            &r.mock_e2e_customers_200,
            &r.hop_mock_200,
            (1.0, 3.0),
        ),
        (
            "ERP stock -> CRM",
            200,
            &r.mock_e2e_stock_200,
            &r.hop_mock_200,
            (1.0, 3.0),
        ),
        (
            "CRM -> ERP",
            1000,
            &r.mock_e2e_customers_1000,
            &r.hop_mock_1000,
            (2.0, 6.0),
        ),
        (
            "ERP stock -> CRM",
            1000,
            &r.mock_e2e_stock_1000,
            &r.hop_mock_1000,
            (2.0, 6.0),
        ),
    ] {
        let stages = e.as_ref().and_then(|e| e.stages);
        let why = format!(
            "stage means over the phase: relay (commit -> acked and marked) {} ms, bridge (occurred -> applied) {} ms, \
             apply call {} ms, the writer's own RPC {} ms; see \"What an event's trip is made of\"",
            f1(stages.map(|s| s.relay_ms)),
            f1(stages.map(|s| s.occurred_to_applied_ms)),
            f1(stages.map(|s| s.apply_call_ms)),
            f1(e.as_ref().map(|e| e.writes.latency.mean_ms)),
        );
        for (q, target) in [(0.5, t50), (0.99, t99)] {
            let value = excess(e.as_ref(), h.as_ref(), q);
            let (name, at) = if q < 0.9 {
                ("p50", "p50")
            } else {
                ("p99", "p99")
            };
            b.add(
                &format!("e2e {flow} excess over the raw hop {name} at {rate}/s (mock cluster)"),
                value,
                "ms",
                Some((
                    &format!("raw broker hop {at}"),
                    if q < 0.9 {
                        hop50(h.as_ref())
                    } else {
                        hop99(h.as_ref())
                    },
                )),
                Some((&format!("<= {target} ms"), le(value, target))),
                Some(why.clone()),
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
        Some((
            ">= 15000 events/s and >= 0.7x the raw read rate",
            ge(best, 15_000.0)
                && best
                    .zip(capacity.map(|c| c.raw_consume_per_second))
                    .is_some_and(|(b, raw)| raw > 0.0 && b / raw >= 0.7),
        )),
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
            "CreateCustomer p50 {} ms vs pgbench p50 {} ms for the same SQL (one statement: the customer, its lists \
             and its outbox row): the service adds TLS, the bearer token's signature check, gRPC decoding, \
             validation and the envelope's JSON; and every create is then read and marked by the relay, carried by \
             the broker and applied in the ERP by the bridge (a gRPC call and a transaction), on the same two cores: \
             CPU that pgbench had to itself",
            f1(r.rpc_write.as_ref().map(|t| t.latency.p50_ms)),
            f1(r.pgbench.as_ref().map(|p| p.latency.p50_ms)),
        )),
    );
    let read = r.rpc_read.as_ref().map(|t| t.per_second);
    let hello = r.hello.as_ref().map(|t| t.per_second);
    let pg_read = r.pgbench_read.as_ref().map(|p| p.tps);
    b.add(
        "CRM read RPC (GetCustomer), 8 clients",
        read,
        "calls/s",
        Some(("pgbench, GetCustomer's SQL, 8 clients (tps)", pg_read)),
        Some(("ratio >= 0.50", read.zip(pg_read).is_some_and(|(v, p)| p > 0.0 && v / p >= 0.5))),
        Some(format!(
            "GetCustomer p50 {} ms vs pgbench p50 {} ms for its SQL (and tonic hello-world p50 {} ms, {} calls/s, \
             pgbench reaching {} of it): the service adds TLS, the bearer token's signature check, HTTP/2 framing \
             and two round trips through sqlx, each a task wake-up",
            f1(r.rpc_read.as_ref().map(|t| t.latency.p50_ms)),
            f1(r.pgbench_read.as_ref().map(|p| p.latency.p50_ms)),
            f1(r.hello.as_ref().map(|t| t.latency.p50_ms)),
            f1(hello),
            ratio(pg_read, hello),
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
    // The whole stack at rest: everything `make run` runs (the load generator aside).
    let stack: Vec<(&String, f64)> = r
        .usage_idle
        .iter()
        .filter(|(name, _)| !name.starts_with("bench"))
        .map(|(name, u)| (name, u.cpu_percent))
        .collect();
    let stack_idle = (!stack.is_empty()).then(|| stack.iter().map(|(_, cpu)| cpu).sum::<f64>());
    b.add(
        "whole stack idle CPU (broker, services, bridge, PostgreSQL)",
        stack_idle,
        "% of a core",
        None,
        Some(("<= 5 % of one core", le(stack_idle, 5.0))),
        Some(
            stack
                .iter()
                .map(|(name, cpu)| format!("{name} {cpu:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    );
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

/// `a / b` with two decimals, or "n/a".
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_owned(),
    }
}
