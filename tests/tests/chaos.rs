//! The guarantees under faults, Jepsen-style: a seeded workload drives the real services and
//! the integrator topics while processes are killed with SIGKILL (bridge, CRM, ERP, broker)
//! and PostgreSQL is crashed and restarted. When the workload stops and the system settles,
//! the invariants of DESIGN.md are checked on the databases and the topics, and the figures
//! are printed: operations, kills, restarts, lost, duplicated, seconds to converge.
//!
//! `make test` runs a short version; `make chaos` the long one (`CHAOS_OPS`, `CHAOS_KILLS`,
//! `CHAOS_SEED`, `CHAOS_CONTINUOUS`, `CHAOS_FAULT_GAP_MS` set the size, the faults and the
//! seed; a failing run repeats with its seed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1::{self as erp, erp_service_client::ErpServiceClient},
    events::topics,
};
use tandem_tests::{
    Stack, StackOptions, TestDatabase, TestProducer, postgres::TestPostgres, read_topic,
};
use tonic::transport::Channel;

mod support;

use support::*;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SKUS: [&str; 4] = ["CH-A", "CH-B", "CH-C", "CH-D"];
const WORKERS: usize = 3;

/// Retries `op` through faults; `None` when it kept failing (an ambiguous outcome is fine:
/// the checks look at state, not at what the client believes).
async fn retry<T, F, Fut>(mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    for attempt in 0..40u64 {
        match op().await {
            Ok(value) => return Some(value),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::Unknown
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                        | tonic::Code::Internal
                ) =>
            {
                tokio::time::sleep(Duration::from_millis(50 + 25 * attempt.min(20))).await;
            }
            Err(status) => {
                eprintln!("chaos: operation refused: {status}");
                return None;
            }
        }
    }
    None
}

/// Crash points armed in each process (see `tandem_common::failpoint`): each fires once after
/// a seeded number of passes, so a process also dies at the dangerous instants themselves
/// (after the broker's ack before the outbox mark, after the effect before the offset, in the
/// middle of a stock batch), not only wherever a SIGKILL happens to land.
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

/// Restarts, with fresh crash points, every process that aborted at one; returns their names.
fn revive_crashed(stack: &mut Stack, rng: &mut StdRng) -> Vec<String> {
    let mut revived = Vec::new();
    for process in [&mut stack.crm, &mut stack.erp, &mut stack.bridge] {
        if process.wait_exit(Duration::ZERO).unwrap().is_some() {
            process.set_env("FAILPOINTS", Some(&crash_points(&process.name, rng)));
            process.start().unwrap();
            revived.push(process.name.clone());
        }
    }
    revived
}

struct Counters {
    operations: AtomicUsize,
    bad_published: AtomicUsize,
}

/// One client's share of the workload.
async fn worker(
    seed: u64,
    ops: usize,
    crm: CrmServiceClient<Channel>,
    erp: ErpServiceClient<Channel>,
    producer: Arc<TestProducer>,
    counters: Arc<Counters>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut customers: Vec<String> = Vec::new();
    let mut orders: Vec<(String, i64)> = Vec::new();
    for n in 0..ops {
        let roll = rng.random_range(0..100);
        let done = match roll {
            0..15 => {
                let name = format!("Chaos {seed}-{n}");
                let request = crm::CreateCustomerRequest {
                    customer: Some(crm::Customer {
                        display_name: name,
                        email: format!("c{seed}x{n}@example.com"),
                        ..crm::Customer::default()
                    }),
                };
                let created = retry(|| {
                    let mut crm = crm.clone();
                    let request = request.clone();
                    async move { crm.create_customer(request).await }
                })
                .await;
                if let Some(created) = created {
                    let id = created.into_inner().id;
                    let mut erp = erp.clone();
                    // Credit terms need the customer in the ERP: wait for the bridge.
                    for _ in 0..200 {
                        let request = erp::GetCustomerRequest { id: id.clone() };
                        if erp.get_customer(request).await.is_ok() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let credit = erp::SetCreditTermsRequest {
                        customer_id: id.clone(),
                        credit_limit: eur(100_000_000),
                        payment_terms_days: 30,
                        credit_hold: false,
                        update_mask: None,
                    };
                    let _ = erp.set_credit_terms(credit).await;
                    customers.push(id);
                }
                true
            }
            15..30 if !customers.is_empty() => {
                let id = customers[rng.random_range(0..customers.len())].clone();
                let request = crm::UpdateCustomerRequest {
                    customer: Some(crm::Customer {
                        id,
                        email: format!("u{seed}x{n}@example.com"),
                        ..crm::Customer::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["email".into()],
                    }),
                };
                retry(|| {
                    let mut crm = crm.clone();
                    let request = request.clone();
                    async move { crm.update_customer(request).await }
                })
                .await
                .is_some()
            }
            30..60 if !customers.is_empty() => {
                let customer_id = customers[rng.random_range(0..customers.len())].clone();
                let sku = SKUS[rng.random_range(0..SKUS.len())];
                let request = crm::CreateOrderRequest {
                    order: Some(crm::Order {
                        customer_id,
                        currency_code: "EUR".into(),
                        lines: vec![crm::OrderLine {
                            sku: sku.into(),
                            quantity: rng.random_range(1..4),
                            ..crm::OrderLine::default()
                        }],
                        ..crm::Order::default()
                    }),
                };
                let draft = retry(|| {
                    let mut crm = crm.clone();
                    let request = request.clone();
                    async move { crm.create_order(request).await }
                })
                .await;
                if let Some(draft) = draft.map(tonic::Response::into_inner) {
                    let submit = crm::SubmitOrderRequest {
                        id: draft.id.clone(),
                        version: draft.version,
                    };
                    if let Some(order) = retry(|| {
                        let mut crm = crm.clone();
                        let submit = submit.clone();
                        async move { crm.submit_order(submit).await }
                    })
                    .await
                    {
                        let order = order.into_inner();
                        orders.push((order.id, order.version));
                    }
                }
                true
            }
            60..65 if !orders.is_empty() => {
                let (id, version) = orders.swap_remove(rng.random_range(0..orders.len()));
                let request = crm::RequestOrderCancellationRequest {
                    id,
                    version,
                    reason: "chaos".into(),
                };
                let mut crm = crm.clone();
                crm.request_order_cancellation(request).await.is_ok()
            }
            65..80 => {
                // The warehouse ships and finance invoices whatever is ready.
                let mut erp = erp.clone();
                let status = if rng.random_bool(0.5) {
                    erp::SalesOrderStatus::Reserved
                } else {
                    erp::SalesOrderStatus::Shipped
                };
                let list = erp
                    .list_sales_orders(erp::ListSalesOrdersRequest {
                        status: status as i32,
                        page_size: 5,
                        ..erp::ListSalesOrdersRequest::default()
                    })
                    .await;
                if let Ok(list) = list {
                    for order in list.into_inner().orders {
                        let _ = match status {
                            erp::SalesOrderStatus::Reserved => erp
                                .ship_order(erp::ShipOrderRequest { id: order.id })
                                .await
                                .map(|_| ()),
                            _ => erp
                                .invoice_order(erp::InvoiceOrderRequest { id: order.id })
                                .await
                                .map(|_| ()),
                        };
                    }
                }
                true
            }
            80..90 => {
                let erp = erp.clone();
                let request = erp::ReceiveStockRequest {
                    sku: SKUS[rng.random_range(0..SKUS.len())].into(),
                    warehouse: "MAIN".into(),
                    quantity: rng.random_range(1..10),
                    reference: format!("po-{seed}-{n}"),
                };
                retry(|| {
                    let mut erp = erp.clone();
                    let request = request.clone();
                    async move { erp.receive_stock(request).await }
                })
                .await
                .is_some()
            }
            90..95 => {
                // A WMS count through the integration topic.
                let sku = SKUS[rng.random_range(0..SKUS.len())];
                let event = json!({
                    "id": uuid::Uuid::now_v7(), "type": "integration.stock.counted",
                    "schema_version": 1, "source": "wms", "aggregate_type": "stock",
                    "aggregate_id": sku, "aggregate_version": 1,
                    "occurred_at": "2026-11-26T10:00:00Z",
                    "data": {"sku": sku, "warehouse": "MAIN",
                             "counted_quantity": rng.random_range(20..80)}
                });
                producer
                    .send(
                        topics::INTEGRATION_STOCK,
                        Some(sku),
                        event.to_string().as_bytes(),
                        &[],
                    )
                    .await
                    .is_ok()
            }
            95..97 => {
                // A bad integrator message, on purpose: it must end in the dead-letter topic.
                let sent = producer
                    .send(topics::INTEGRATION_ORDERS, Some("bad"), b"{not json", &[])
                    .await
                    .is_ok();
                if sent {
                    counters.bad_published.fetch_add(1, Ordering::SeqCst);
                }
                sent
            }
            _ => {
                if !customers.is_empty() {
                    let mut erp = erp.clone();
                    let payment = erp::RecordPaymentRequest {
                        customer_id: customers[rng.random_range(0..customers.len())].clone(),
                        amount: eur(rng.random_range(1..500)),
                        reference: format!("pay-{seed}-{n}"),
                    };
                    let _ = erp.record_payment(payment).await;
                }
                true
            }
        };
        if done {
            counters.operations.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// `tandemctl reconcile`: whether it found no drift, and its report.
fn reconcile(stack: &Stack) -> (bool, String) {
    let output = std::process::Command::new(tandem_tests::binary("tandemctl"))
        .args(["--brokers", &stack.broker.brokers])
        .args(["--crm", &format!("http://{}", stack.crm_grpc)])
        .args(["--erp", &format!("http://{}", stack.erp_grpc)])
        .args(["reconcile", "--quiet"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    (
        output.status.success() && report.contains("total drift: 0"),
        report,
    )
}

#[tokio::test]
async fn the_guarantees_hold_through_kills_and_restarts() {
    let seed = env_number("CHAOS_SEED", 42) as u64;
    let ops = env_number("CHAOS_OPS", 1_500);
    let kills = env_number("CHAOS_KILLS", 8);
    println!("chaos: seed {seed}, {ops} operations, {kills} faults");

    let pg = TestPostgres::start().unwrap();
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
    let mut stack = Stack::start_with(StackOptions {
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
    let (crm, mut erp) = clients(&stack).await;
    for sku in SKUS {
        stock_product(&mut erp, sku, 1_000, 200).await;
    }
    for sku in SKUS {
        crm_available(&crm, sku, 200).await;
    }

    let producer = Arc::new(TestProducer::new(&stack.broker.brokers).unwrap());
    let counters = Arc::new(Counters {
        operations: AtomicUsize::new(0),
        bad_published: AtomicUsize::new(0),
    });
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            tokio::spawn(worker(
                seed * 100 + w as u64,
                ops / WORKERS,
                crm.clone(),
                erp.clone(),
                producer.clone(),
                counters.clone(),
            ))
        })
        .collect();

    // The fault schedule: kill one part at a time with SIGKILL, then bring it back. At least
    // `kills` faults; with CHAOS_CONTINUOUS=1 faults go on until the workload ends.
    let continuous = std::env::var("CHAOS_CONTINUOUS").is_ok_and(|v| v == "1");
    // Milliseconds between one fault's end and the next; the long run spaces them out so the
    // workload makes progress between faults (`CHAOS_FAULT_GAP_MS`, default 300..1500).
    let gap_from = env_number("CHAOS_FAULT_GAP_MS", 300) as u64;
    let gap = gap_from..gap_from * 5;
    let mut restarts = 0;
    let mut faults = Vec::new();
    let mut crash_point_aborts: Vec<String> = Vec::new();
    // Crash points are re-armed from a generator of their own, so the fault schedule depends
    // on the seed alone.
    let mut arming = StdRng::seed_from_u64(seed.wrapping_add(1));
    while faults.len() < kills || (continuous && workers.iter().any(|w| !w.is_finished())) {
        let next_fault = Instant::now() + Duration::from_millis(rng.random_range(gap.clone()));
        while Instant::now() < next_fault {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let revived = revive_crashed(&mut stack, &mut arming);
            restarts += revived.len();
            crash_point_aborts.extend(revived);
        }
        let target = rng.random_range(0..5);
        let down = Duration::from_millis(rng.random_range(200..1_500));
        match target {
            0 => stack.bridge.kill(),
            1 => stack.crm.kill(),
            2 => stack.erp.kill(),
            3 => stack.broker.kill(),
            _ => pg.stop().unwrap(),
        }
        tokio::time::sleep(down).await;
        match target {
            0 => stack.bridge.start().unwrap(),
            1 => stack.crm.start().unwrap(),
            2 => stack.erp.start().unwrap(),
            3 => stack.broker.restart().unwrap(),
            _ => pg.resume().unwrap(),
        }
        restarts += 1;
        faults.push(["bridge", "crm", "erp", "broker", "postgres"][target]);
    }
    // The SIGKILLs are over; crash points still fire until the workload ends.
    while workers.iter().any(|w| !w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let revived = revive_crashed(&mut stack, &mut arming);
        restarts += revived.len();
        crash_point_aborts.extend(revived);
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let workload = started.elapsed();
    // Settling happens without crash points (one last SIGKILL each to disarm them).
    for process in [&mut stack.crm, &mut stack.erp, &mut stack.bridge] {
        if process.wait_exit(Duration::ZERO).unwrap().is_some() {
            crash_point_aborts.push(process.name.clone());
        }
        process.kill();
        process.set_env("FAILPOINTS", None);
        process.start().unwrap();
        restarts += 1;
    }

    // Settle: every outbox drained and reconcile finds nothing.
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
        if pending > 0 {
            return None;
        }
        let (clean, report) = reconcile(&stack);
        clean.then_some(report)
    })
    .await;
    let seconds_to_converge = settling.elapsed().as_secs_f64();
    let report = converged.unwrap_or_else(|e| panic!("{e}\n{}", reconcile(&stack).1));

    // Exactly-once effects, on the ERP's books.
    let ledger_mismatch = count(
        &stack.erp_db,
        "SELECT count(*) FROM stock_levels l WHERE \
           l.on_hand <> COALESCE((SELECT sum(on_hand_delta) FROM stock_ledger g \
                                  WHERE g.sku = l.sku AND g.warehouse = l.warehouse), 0) \
           OR l.reserved <> COALESCE((SELECT sum(reserved_delta) FROM stock_ledger g \
                                      WHERE g.sku = l.sku AND g.warehouse = l.warehouse), 0)",
    )
    .await;
    let held_mismatch = count(
        &stack.erp_db,
        "SELECT count(*) FROM stock_levels l WHERE l.reserved <> COALESCE((SELECT sum(quantity) \
           FROM reservations r WHERE r.sku = l.sku AND r.warehouse = l.warehouse AND r.state = 'HELD'), 0)",
    )
    .await;
    let double_reserved = count(
        &stack.erp_db,
        "SELECT count(*) FROM sales_order_lines ol WHERE (SELECT COALESCE(sum(quantity), 0) \
           FROM reservations r WHERE r.order_id = ol.order_id AND r.line_number = ol.line_number \
           AND r.state IN ('HELD', 'SHIPPED')) NOT IN (0, ol.quantity)",
    )
    .await;
    let balance_mismatch = count(
        &stack.erp_db,
        "SELECT count(*) FROM customer_finance f WHERE f.open_balance_minor <> \
           COALESCE((SELECT sum(invoice_amount_minor) FROM sales_orders o \
                     WHERE o.customer_id = f.customer_id AND o.invoice_number IS NOT NULL), 0) \
           - COALESCE((SELECT sum(amount_minor) FROM payments p WHERE p.customer_id = f.customer_id), 0)",
    )
    .await;
    // Every order the CRM submitted was accepted by the ERP exactly once.
    let submitted = count(
        &stack.crm_db,
        "SELECT count(*) FROM orders WHERE submit_time IS NOT NULL",
    )
    .await;
    let accepted = count(&stack.erp_db, "SELECT count(*) FROM sales_orders").await;
    let lost = (submitted - accepted).max(0);
    let duplicated = (accepted - submitted).max(0) + double_reserved;

    // The dead-letter topic holds exactly the messages made bad on purpose.
    let bad = counters.bad_published.load(Ordering::SeqCst);
    let dead = read_topic(
        &stack.broker.brokers,
        topics::DEAD_LETTER,
        bad,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let unexpected: Vec<String> = dead
        .iter()
        .filter(|r| r.raw != b"{not json")
        // A random count below what is reserved is refused by the ERP, as it should be.
        .filter(|r| r.header("dlq.error_code") != Some("COUNT_BELOW_RESERVED"))
        .map(|r| format!("{:?} {:?}", r.header("dlq.reason"), r.header("dlq.detail")))
        .collect();

    // Every event that went through the broker: the services' change events and the
    // integrators' messages the bridge consumed.
    let events = tandem_tests::topic_records(&stack.broker.brokers, topics::CHANGE_EVENTS)
        .await
        .unwrap();
    println!(
        "chaos figures: operations {}, events {events}, faults {} ({}), crash-point aborts \
         {} ({}), restarts {restarts}, \
         workload {:.1}s, lost {lost}, duplicated {duplicated}, seconds to converge \
         {seconds_to_converge:.1}, orders {submitted}, dead letters {} (bad on purpose {bad})",
        counters.operations.load(Ordering::SeqCst),
        faults.len(),
        faults.join(" "),
        crash_point_aborts.len(),
        crash_point_aborts.join(" "),
        workload.as_secs_f64(),
        dead.len(),
    );
    println!("{report}");
    assert_eq!(ledger_mismatch, 0, "stock levels equal their ledger");
    assert_eq!(held_mismatch, 0, "reserved equals the held reservations");
    assert_eq!(
        balance_mismatch, 0,
        "open balances equal invoices minus payments"
    );
    assert_eq!(lost, 0, "every submitted order reached the ERP");
    assert_eq!(duplicated, 0, "no order or reservation applied twice");
    assert!(
        unexpected.is_empty(),
        "unexpected dead letters: {unexpected:#?}"
    );
    // A bridge killed between a dead-letter publish and its offset commit publishes that dead
    // letter again on restart (at-least-once, like every other effect of the bridge): what
    // counts is that every bad message is there.
    let bad_positions = dead
        .iter()
        .filter(|r| r.raw == b"{not json")
        .map(|r| {
            (
                r.header("dlq.source_partition"),
                r.header("dlq.source_offset"),
            )
        })
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(bad_positions.len(), bad, "every bad message dead-lettered");
}
