//! Crashes at the three dangerous instants, placed exactly with the crash points of
//! `tandem_common::failpoint` (the test build has the `failpoints` feature; release builds
//! leave it out): the process aborts there, like a SIGKILL, is restarted without the point
//! armed, and every effect must have happened exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tandem_proto::{crm::v1 as crm, erp::v1 as erp, events::topics};
use tandem_tests::{
    ServiceProcess, Stack, StackOptions,
    evidence::{check_order_per_partition, key_and_version, read_until_markers, settled},
    wait_ready,
};

mod support;

use support::*;

const FAILPOINTS: &str = "FAILPOINTS";

/// The tests of this file run one at a time: each aborts and restarts processes of its own
/// stack, and three stacks starting and crashing at once on 2 cores made a start miss its
/// readiness deadline now and then.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for `process` to abort at its crash point; fails if it is still running.
fn crashed(process: &mut ServiceProcess) {
    let status = process.wait_exit(WAIT).unwrap();
    let status = status.unwrap_or_else(|| panic!("{} did not reach its crash point", process.name));
    assert!(!status.success(), "{} aborted: {status}", process.name);
    assert!(
        process.output().contains("aborting the process"),
        "{} aborted at the crash point, not elsewhere",
        process.name
    );
}

/// Restarts `process` with no crash point armed and waits until it is ready.
fn restart_disarmed(process: &mut ServiceProcess, http: std::net::SocketAddr) {
    process.set_env(FAILPOINTS, None);
    process.start().unwrap();
    wait_ready(http, WAIT).unwrap();
}

fn handled(stack: &Stack, event_type: &str, outcome: &str) -> f64 {
    Stack::metric(
        stack.bridge_http,
        &format!(
            "tandem_bridge_events_applied_total{{type=\"{event_type}\",outcome=\"{outcome}\"}}"
        ),
    )
}

/// The broker acknowledged the event, the CRM crashed before marking its outbox row: after
/// restart the row is published again, and the duplicate changes nothing in the ERP.
#[tokio::test]
async fn relay_crash_after_the_ack_before_the_mark_publishes_again_and_applies_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut stack = Stack::start_with(StackOptions {
        crm_env: vec![(
            FAILPOINTS.into(),
            "relay-after-ack-before-mark=return(crm.customers)".into(),
        )],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (mut crm, erp) = clients(&stack).await;
    let customer = crm
        .create_customer(crm::CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(crm::Customer {
                display_name: "Twice Sent".into(),
                email: "twice@example.com".into(),
                ..crm::Customer::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    crashed(&mut stack.crm);
    let unmarked = "SELECT count(*) FROM outbox WHERE published_at IS NULL";
    assert_eq!(
        count(&stack.crm_db, unmarked).await,
        1,
        "acked but not marked"
    );

    restart_disarmed(&mut stack.crm, stack.crm_http);
    erp_has_customer(&erp, &customer.id).await;
    // Both outboxes published (the unmarked row went again) and the bridge committed the end
    // of every source topic, so it handled every copy there is.
    settled(&stack, WAIT).await.unwrap();
    assert_eq!(
        count(&stack.crm_db, unmarked).await,
        0,
        "the outbox drained"
    );
    // Markers bound the topic: what precedes them is all it holds.
    let records = read_until_markers(&stack.broker.brokers, topics::CRM_CUSTOMERS)
        .await
        .unwrap();
    let duplicates = check_order_per_partition(&records, &[(customer.id.clone(), 1)]).unwrap();
    assert_eq!(
        (records.len(), duplicates),
        (2, 1),
        "published before the crash and once again after, nothing else: {:?}",
        records
            .iter()
            .map(|r| (r.partition, r.offset, key_and_version(r)))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        String::from_utf8_lossy(&records[0].raw),
        String::from_utf8_lossy(&records[1].raw),
        "the same outbox row sent again as it was"
    );
    // The counters are final since the stack settled (the bridge dead-letters the markers as
    // unparseable: no event type, so not counted here).
    let event = "crm.customer.upserted";
    assert_eq!(
        (
            handled(&stack, event, "applied"),
            handled(&stack, event, "unchanged")
        ),
        (1.0, 1.0),
        "the first copy applied, the second changed nothing"
    );
    let mut erp = erp;
    let mirrored = erp
        .get_customer(erp::GetCustomerRequest {
            id: customer.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mirrored.profile_version, 1);
}

/// The broker took a customer's two versions, sent in two batches, but the relay takes the
/// first as refused (a lost ack): nothing after it is marked published, the second batch
/// included, so both go again in order and the topic ends on the version the client was told
/// last.
#[tokio::test]
async fn a_refused_row_sends_again_every_row_after_it_even_in_later_batches() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start_with(StackOptions {
        crm_env: vec![(
            FAILPOINTS.into(),
            "relay-ack-delayed=1*return(crm.customers);relay-delivery-refused=1*return(crm.customers)"
                .into(),
        )],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (mut crm, mut erp) = clients(&stack).await;
    // Back to back: the rename commits while the creation's batch awaits its ack (held back
    // 300 ms), so it goes in a batch of its own while the first is in flight.
    let created = crm
        .create_customer(crm::CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(crm::Customer {
                display_name: "Refused Once".into(),
                email: "refused@example.com".into(),
                ..crm::Customer::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let renamed = crm
        .update_customer(crm::UpdateCustomerRequest {
            customer: Some(crm::Customer {
                id: created.id.clone(),
                display_name: "Refused Once, Renamed".into(),
                ..crm::Customer::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.version, 2);
    settled(&stack, WAIT).await.unwrap();
    let records = read_until_markers(&stack.broker.brokers, topics::CRM_CUSTOMERS)
        .await
        .unwrap();
    let versions: Vec<i64> = records
        .iter()
        .map(key_and_version)
        .filter(|(key, _)| *key == created.id)
        .map(|(_, version)| version)
        .collect();
    assert_eq!(
        versions.last(),
        Some(&2),
        "the topic ends on the version the client was told last: {versions:?}"
    );
    assert_eq!(
        versions,
        [1, 2, 1, 2],
        "v2 sent while v1 was in flight, then both again after v1 was refused"
    );
    check_order_per_partition(
        &records,
        &[(created.id.clone(), 1), (created.id.clone(), 2)],
    )
    .unwrap();
    println!("published versions, in order: {versions:?}");
    let mirrored = erp
        .get_customer(erp::GetCustomerRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mirrored.profile_version, 2);
}

/// The ERP committed the order's reservation, the bridge crashed before storing the offset:
/// the order event comes again after restart and reserves nothing more.
#[tokio::test]
async fn bridge_crash_after_the_effect_before_the_offset_reserves_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut stack = Stack::start_with(StackOptions {
        bridge_env: vec![
            ("BRIDGE__CONSUMER__ASSIGNMENT".into(), "all".into()),
            (
                FAILPOINTS.into(),
                "bridge-after-apply-before-offset=return(crm.orders)".into(),
            ),
        ],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (mut crm, mut erp) = clients(&stack).await;
    stock_product(&mut erp, "FP-1", 1_000, 10).await;
    crm_available(&crm, "FP-1", 10).await;
    let customer = customer_with_credit(&mut crm, &mut erp, "Once").await;
    let order = submit_order(&mut crm, &customer, "FP-1", 3).await;
    crashed(&mut stack.bridge);
    let accepted = erp_order(&mut erp, &order.id).await;
    assert_eq!(accepted.status(), erp::SalesOrderStatus::Reserved);

    restart_disarmed(&mut stack.bridge, stack.bridge_http);
    crm_fulfilment(&crm, &order.id, crm::FulfilmentStatus::Reserved).await;
    // The restarted bridge committed the end of every source topic: it handled the order event
    // again, exactly once, and found nothing to do (its first application died with the
    // crashed process, counters and all).
    settled(&stack, WAIT).await.unwrap();
    let event = "crm.order.submitted";
    assert_eq!(
        (
            handled(&stack, event, "applied"),
            handled(&stack, event, "unchanged")
        ),
        (0.0, 1.0),
        "the order event handled again once, unchanged"
    );
    let orders = erp
        .list_sales_orders(erp::ListSalesOrdersRequest {
            crm_order_id: order.id.clone(),
            ..erp::ListSalesOrdersRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(orders.len(), 1, "one sales order per CRM order");
    let level = erp
        .get_stock_level(erp::GetStockLevelRequest {
            sku: "FP-1".into(),
            warehouse: "MAIN".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((level.on_hand, level.reserved), (10, 3), "reserved once");
    assert_eq!(
        count(
            &stack.erp_db,
            "SELECT count(*) FROM reservations WHERE state = 'HELD'"
        )
        .await,
        1
    );
    crm_available(&crm, "FP-1", 7).await;
}

/// The CRM crashed in the middle of a batch of stock levels, after the first level was
/// written and before the commit: none of the batch stays, and the batch sent again (as the
/// bridge does after a transient failure) applies whole; through the bridge likewise.
#[tokio::test]
async fn crm_crash_in_the_middle_of_a_stock_batch_keeps_none_of_it_then_applies_it_all() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut stack = Stack::start().await.unwrap();
    let (crm, mut erp) = clients(&stack).await;
    let skus = ["MB-1", "MB-2", "MB-3"];
    for sku in skus {
        stock_product(&mut erp, sku, 500, 5).await;
    }
    for sku in skus {
        crm_available(&crm, sku, 5).await;
    }
    let arm = |stack: &mut Stack| {
        stack.crm.kill();
        stack
            .crm
            .set_env(FAILPOINTS, Some("crm-stock-mid-batch=return"));
        stack.crm.start().unwrap();
        wait_ready(stack.crm_http, WAIT).unwrap();
    };

    // The bridge's own call, made directly so the batch holds all three levels.
    arm(&mut stack);
    let batch = crm::ApplyStockLevelsRequest {
        levels: skus
            .iter()
            .map(|sku| crm::StockLevel {
                sku: (*sku).into(),
                available: 42,
                // The ERP's version of these levels (one receipt each); a repair applies an
                // equal version, so the receipts below (version 2) still apply after it.
                source_version: 1,
            })
            .collect(),
        event_id: uuid::Uuid::now_v7().to_string(),
        repair: true,
    };
    let mut sync = stack.crm_sync_client().await.unwrap();
    assert!(sync.apply_stock_levels(batch.clone()).await.is_err());
    crashed(&mut stack.crm);
    restart_disarmed(&mut stack.crm, stack.crm_http);
    for sku in skus {
        crm_available(&crm, sku, 5).await;
    }
    let mut sync = stack.crm_sync_client().await.unwrap();
    let results = sync.apply_stock_levels(batch).await.unwrap().into_inner();
    assert!(results.results.iter().all(|r| r.applied), "{results:?}");
    for sku in skus {
        crm_available(&crm, sku, 42).await;
    }

    // Through the bridge: stock received in the ERP while the CRM crashes applying it.
    arm(&mut stack);
    for sku in skus {
        erp.receive_stock(erp::ReceiveStockRequest {
            request_id: String::new(),
            sku: sku.into(),
            warehouse: "MAIN".into(),
            quantity: 10,
            reference: "after the crash".into(),
        })
        .await
        .unwrap();
    }
    crashed(&mut stack.crm);
    restart_disarmed(&mut stack.crm, stack.crm_http);
    for sku in skus {
        crm_available(&crm, sku, 15).await;
    }
    // Every event the bridge will see so far handled: the counter below is final.
    settled(&stack, WAIT).await.unwrap();
    assert_eq!(
        Stack::metric(
            stack.bridge_http,
            "tandem_bridge_events_dead_lettered_total"
        ),
        0.0
    );
}
