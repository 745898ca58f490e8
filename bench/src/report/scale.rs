//! "Scale": the figures by database size from `make bench-scale` (`bench-scale-results.json`),
//! with the scale targets of issue 16.

use std::fmt::Write as _;

use super::markdown::num;
use crate::scale::{ScaleResults, Step};

/// Reconcile must compare at least this many entities per second at the largest size.
const RECONCILE_TARGET: f64 = 20_000.0;
/// The snapshot must bring the ERP every customer within this many seconds.
const SNAPSHOT_TARGET_S: f64 = 120.0;
/// Every RPC and e2e figure within this fraction of the small database's.
const DRIFT_ALLOWED: f64 = 0.2;

fn verdict(pass: bool) -> &'static str {
    if pass { "pass" } else { "**FAIL**" }
}

pub(super) fn section(o: &mut String, s: &ScaleResults) {
    let _ = writeln!(o, "\n## Scale (`make bench-scale`)\n");
    let _ = writeln!(
        o,
        "Run on {} ({:.0} s; load average {} at the start), on its own stack (on librdkafka's mock cluster, like the bridge throughput). The databases are \
         grown in bulk to each size: customers with a billing address, one shipped order per customer with its line, \
         the ERP's sales order, reservation and three stock movements, and both outboxes' published history. The \
         ERP's customers come from `tandemctl snapshot`, the initial load measured here. At each size: the snapshot, \
         `tandemctl reconcile`, then the RPC phases (8 clients, reads spread over the whole table) and the e2e phases \
         at 200/s of the main run.\n",
        s.started_at, s.duration_seconds, s.machine.load_average_at_start
    );
    let _ = writeln!(
        o,
        "| customers | orders | CRM MiB | ERP MiB | load s | snapshot: ERP has all customers s (customers/s) | settled s | reconcile s (entities/s; peak MiB) | drift | GetCustomer/s | CreateCustomer/s | e2e CRM->ERP p50/p99 ms | e2e stock->CRM p50/p99 ms |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for step in &s.steps {
        let snapshot = step.snapshot.as_ref();
        let reconcile = step.reconcile.as_ref();
        let e2e = |e: &Option<crate::system::E2e>| {
            e.as_ref().map_or("n/a".to_owned(), |e| {
                format!(
                    "{} / {}",
                    num(Some(e.latency.p50_ms)),
                    num(Some(e.latency.p99_ms))
                )
            })
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            step.customers,
            step.orders,
            num(Some(step.crm_mib)),
            num(Some(step.erp_mib)),
            num(Some(step.load_seconds)),
            snapshot.map_or("n/a".to_owned(), |s| format!(
                "{} ({})",
                num(Some(s.customers_seconds)),
                num(Some(s.customers_per_second))
            )),
            snapshot.map_or("n/a".to_owned(), |s| s.settled_seconds.map_or(
                format!("not within {} s", crate::scale::SETTLE_TIMEOUT.as_secs()),
                |v| num(Some(v))
            )),
            reconcile.map_or("n/a".to_owned(), |r| format!(
                "{} ({}; {}){}",
                num(Some(r.seconds)),
                num(Some(r.per_second)),
                num(r.peak_mib),
                // The snapshot's events were still being applied: reconcile shared the CPU.
                if snapshot.and_then(|s| s.settled_seconds).is_none() {
                    ", before the snapshot settled"
                } else {
                    ""
                }
            )),
            reconcile.map_or("n/a".to_owned(), |r| r.drift.to_string()),
            num(step.rpc_read.map(|t| t.per_second)),
            num(step.rpc_write.map(|t| t.per_second)),
            e2e(&step.e2e_customers_200),
            e2e(&step.e2e_stock_200),
        );
    }
    targets(o, s);
    if !s.errors.is_empty() {
        let _ = writeln!(o, "\nErrors of the scale run:\n");
        for e in &s.errors {
            let _ = writeln!(o, "- {e}");
        }
    }
}

/// The targets, checked on the largest size against the small database of the same run.
fn targets(o: &mut String, s: &ScaleResults) {
    let (Some(small), Some(large)) = (s.steps.first(), s.steps.last()) else {
        return;
    };
    if s.steps.len() < 2 {
        return;
    }
    let _ = writeln!(
        o,
        "\nTargets at {} customers, each against the small database ({} customers) of this run:\n",
        large.customers, small.customers
    );
    let _ = writeln!(o, "| figure | small | large | ratio | target | result |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    // A figure of the large database against the small one's: throughput may fall to
    // 1 - DRIFT_ALLOWED of it, a latency rise to 1 + DRIFT_ALLOWED.
    let row =
        |name: &str, pick: fn(&Step) -> Option<f64>, higher_is_better: bool, o: &mut String| {
            let (a, b) = (pick(small), pick(large));
            let ratio = a.zip(b).map(|(a, b)| b / a.max(1e-9));
            let (sign, bound) = if higher_is_better {
                (">=", 1.0 - DRIFT_ALLOWED)
            } else {
                ("<=", 1.0 + DRIFT_ALLOWED)
            };
            let pass = ratio.is_some_and(|r| {
                if higher_is_better {
                    r >= bound
                } else {
                    r <= bound
                }
            });
            let _ = writeln!(
                o,
                "| {name} | {} | {} | {} | {sign} {bound:.1}x | {} |",
                num(a),
                num(b),
                ratio.map(|r| format!("{r:.2}x")).unwrap_or_default(),
                verdict(pass)
            );
        };
    row(
        "GetCustomer calls/s",
        |s| s.rpc_read.map(|t| t.per_second),
        true,
        o,
    );
    row(
        "CreateCustomer calls/s",
        |s| s.rpc_write.map(|t| t.per_second),
        true,
        o,
    );
    row(
        "e2e CRM -> ERP p50 ms",
        |s| s.e2e_customers_200.as_ref().map(|e| e.latency.p50_ms),
        false,
        o,
    );
    row(
        "e2e CRM -> ERP p99 ms",
        |s| s.e2e_customers_200.as_ref().map(|e| e.latency.p99_ms),
        false,
        o,
    );
    row(
        "e2e stock -> CRM p50 ms",
        |s| s.e2e_stock_200.as_ref().map(|e| e.latency.p50_ms),
        false,
        o,
    );
    row(
        "e2e stock -> CRM p99 ms",
        |s| s.e2e_stock_200.as_ref().map(|e| e.latency.p99_ms),
        false,
        o,
    );
    let reconcile = large.reconcile.as_ref().map(|r| r.per_second);
    let _ = writeln!(
        o,
        "| reconcile entities/s | | {} | | >= {RECONCILE_TARGET:.0} | {} |",
        num(reconcile),
        verdict(reconcile.is_some_and(|r| r >= RECONCILE_TARGET))
    );
    let snapshot = large.snapshot.as_ref().map(|s| s.customers_seconds);
    let _ = writeln!(
        o,
        "| snapshot: every customer in the ERP, s | | {} | | <= {SNAPSHOT_TARGET_S:.0} | {} |",
        num(snapshot),
        verdict(snapshot.is_some_and(|s| s <= SNAPSHOT_TARGET_S))
    );
}
