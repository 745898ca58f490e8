//! The measurement sections of `BENCHMARKS.md`, each a table with its explanation.

use std::{collections::BTreeMap, fmt::Write as _};

use super::{Results, markdown::num};
use crate::{baselines::Hop, procstat::Usage, stats::Summary, system::E2e};

fn e2e_row(out: &mut String, name: &str, e: &Option<E2e>, hop: &Option<Hop>) {
    let Some(e) = e else {
        let _ = writeln!(out, "| {name} | n/a | | | | | | | |");
        return;
    };
    // Nothing seen: no latency to show (a zero would read as instant).
    let l = (e.latency.count > 0).then_some(e.latency);
    let h = hop.as_ref().map(|h| h.latency);
    let seen = (e.seen.count > 0).then_some(e.seen);
    let excess = |of: fn(&Summary) -> f64| Some(of(&l?) - of(&h?));
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} / {} | {} | {} / {} | {} | {} of {} ({} missing, {} failed, {} shed) |",
        num(l.map(|l| l.p50_ms)),
        num(l.map(|l| l.p99_ms)),
        num(l.map(|l| l.max_ms)),
        num(seen.map(|s| s.p50_ms)),
        num(seen.map(|s| s.p99_ms)),
        num(h.map(|h| h.p50_ms)),
        num(excess(|s| s.p50_ms)),
        num(excess(|s| s.p99_ms)),
        num(Some(e.writes.latency.p99_ms)),
        e.visible,
        e.writes.sent,
        e.missing,
        e.writes.errors,
        e.writes.shed,
    );
}

/// Every e2e phase: its name, its figures and the raw hop at the same rate on the same broker.
fn e2e_phases(r: &Results) -> [(&'static str, &Option<E2e>, &Option<Hop>); 8] {
    [
        (
            "CRM -> ERP, 200/s, tansu",
            &r.e2e_customers_200,
            &r.hop_tansu_200,
        ),
        (
            "CRM -> ERP, 1000/s, tansu",
            &r.e2e_customers_1000,
            &r.hop_tansu_1000,
        ),
        (
            "ERP stock -> CRM, 200/s, tansu",
            &r.e2e_stock_200,
            &r.hop_tansu_200,
        ),
        (
            "ERP stock -> CRM, 1000/s, tansu",
            &r.e2e_stock_1000,
            &r.hop_tansu_1000,
        ),
        (
            "CRM -> ERP, 200/s, mock cluster",
            &r.mock_e2e_customers_200,
            &r.hop_mock_200,
        ),
        (
            "CRM -> ERP, 1000/s, mock cluster",
            &r.mock_e2e_customers_1000,
            &r.hop_mock_1000,
        ),
        (
            "ERP stock -> CRM, 200/s, mock cluster",
            &r.mock_e2e_stock_200,
            &r.hop_mock_200,
        ),
        (
            "ERP stock -> CRM, 1000/s, mock cluster",
            &r.mock_e2e_stock_1000,
            &r.hop_mock_1000,
        ),
    ]
}

/// "End-to-end sync latency": each flow at each rate on each broker, beside the broker hop.
pub(super) fn e2e_latency(o: &mut String, r: &Results) {
    let _ = writeln!(o, "\n## End-to-end sync latency\n");
    let _ = writeln!(
        o,
        "From the moment the writer got the commit acknowledged (CreateCustomer in the CRM, ReceiveStock in the ERP) to \
         the moment the change is readable in the other side's database, at a fixed arrival rate. The bench polls the \
         other side every 2 ms (one indexed query for all pending keys), so it knows only a window: the change became \
         readable after the last poll that missed it began (or after the acknowledgement, if later) and before the first \
         poll that saw it answered. The latency is that window's midpoint; the window's end, an upper bound that adds up \
         to a poll interval and a query, is shown beside it. \"Excess\" subtracts the raw broker hop (whose consumer \
         timestamps each record as it arrives) measured at the same rate with the relay's producer settings and the \
         bridge's consumer settings.\n"
    );
    let _ = writeln!(
        o,
        "| flow, rate, broker | p50 ms | p99 ms | max ms | first poll that saw it p50 / p99 ms | broker hop p50 ms | excess p50 / p99 ms | write RPC p99 ms | seen |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    for (name, e, hop) in e2e_phases(r) {
        e2e_row(o, name, e, hop);
    }
    let failed: Vec<_> = e2e_phases(r)
        .into_iter()
        .filter_map(|(name, e, _)| {
            let w = &e.as_ref()?.writes;
            Some((name, w.errors, w.first_error.as_deref()?))
        })
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(
            o,
            "\nWrites that failed are not in the latencies (a client would retry them later, with its \
             request id). The first error of each phase that had any:\n"
        );
        for (name, errors, first) in failed {
            let _ = writeln!(o, "- {name}: {errors} failed, first: `{first}`");
        }
    }
}

/// "What an event's trip is made of": the stage means of each e2e phase.
pub(super) fn e2e_stages(o: &mut String, r: &Results) {
    let _ = writeln!(o, "\n## What an event's trip is made of\n");
    let _ = writeln!(
        o,
        "Means over each e2e phase, from the services' own histograms on `/metrics` (their change over the phase). \
         The relay's stage runs from the outbox row's commit (the transaction's start) until the broker acknowledged the \
         row and the relay marked it published; the bridge's from the event's `occurred_at` (set inside the writer's \
         transaction) until the target applied it, which contains the relay's stage, the fetch and the apply call. The \
         apply call is the target's `Apply*` RPC as its server timed it. The e2e mean runs from the writer's \
         acknowledgement, so it starts after the other two do; the write RPC's own mean is beside it.\n"
    );
    let _ = writeln!(
        o,
        "| flow, rate, broker | e2e mean ms | write RPC mean ms | relay: commit -> acked and marked ms | bridge: occurred -> applied ms | apply call ms |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for (name, e, _) in e2e_phases(r) {
        let Some(e) = e else {
            continue;
        };
        let stages = e.stages;
        let _ = writeln!(
            o,
            "| {name} | {} | {} | {} | {} | {} |",
            num(Some(e.latency.mean_ms)),
            num(Some(e.writes.latency.mean_ms)),
            num(stages.map(|s| s.relay_ms)),
            num(stages.map(|s| s.occurred_to_applied_ms)),
            num(stages.map(|s| s.apply_call_ms)),
        );
    }
}

/// "Broker floor": the raw produce -> consume hop.
pub(super) fn broker_floor(o: &mut String, r: &Results) {
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
}

/// "RPC throughput": the CRM's RPCs beside tonic's hello-world and pgbench.
pub(super) fn rpc_throughput(o: &mut String, r: &Results) {
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
}

/// "Bridge throughput": the backlog drain and the sustained rates.
pub(super) fn bridge_throughput(o: &mut String, r: &Results) {
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
         drain rate; while the lag stays flat the next is a quarter higher, while it does not a quarter lower, until a \
         flat rate and a failed one above it bracket the ceiling (at most five attempts)."
    );
}

/// "Recovery": a bridge outage under load.
pub(super) fn recovery(o: &mut String, r: &Results) {
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
}

/// "Resources": CPU and memory of each process, and start to ready.
pub(super) fn resources(o: &mut String, r: &Results) {
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
}
