//! Integrators and operators on the real stack: a web shop's customer and order published to
//! `integration.*` reach both sides and are applied once; a WMS count adjusts stock once; bad
//! integrator messages are dead-lettered; drift written straight into the databases is found
//! by `tandemctl reconcile` and repaired; `status` and `snapshot` answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tandem_proto::{
    crm::v1 as crm,
    erp::v1 as erp,
    events::{topics, types},
};
use tandem_tests::security::Authed;
use tandem_tests::{
    Record, Stack, eventually,
    evidence::{read_until_markers, settled},
    produce,
};

mod support;

use support::*;

fn integration_event(event_type: &str, id: &str, version: i64, data: Value) -> Value {
    json!({
        "id": uuid::Uuid::now_v7(),
        "type": event_type,
        "schema_version": 1,
        "source": "webshop",
        "aggregate_type": "integration",
        "aggregate_id": id,
        "aggregate_version": version,
        "occurred_at": "2026-11-26T10:00:00.000000Z",
        "data": data,
    })
}

/// Publishes `event` keyed by its aggregate id; returns its partition and offset.
async fn publish(stack: &Stack, topic: &str, event: &Value) -> (i32, i64) {
    let key = event["aggregate_id"].as_str().unwrap().to_owned();
    produce(
        &stack.broker.brokers,
        topic,
        Some(&key),
        event.to_string().as_bytes(),
        &[],
    )
    .await
    .unwrap()
}

/// Where a record came from: topic, partition, offset.
type Source = (String, i32, i64);

/// Dead letters by the record they came from (their `dlq.source_*` headers), each with its
/// reason, key and payload, in the order read: a record dead-lettered twice has two entries.
fn dead_letters_by_source(dead: &[Record]) -> BTreeMap<Source, Vec<(String, String, String)>> {
    let mut by_source: BTreeMap<Source, Vec<(String, String, String)>> = BTreeMap::new();
    for record in dead {
        let number = |name: &str| {
            record
                .header(name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(-1)
        };
        let source = (
            record.header("dlq.source_topic").unwrap_or("?").to_owned(),
            i32::try_from(number("dlq.source_partition")).unwrap_or(-1),
            number("dlq.source_offset"),
        );
        by_source.entry(source).or_default().push((
            record.header("dlq.reason").unwrap_or("?").to_owned(),
            record.key.clone().unwrap_or_default(),
            String::from_utf8_lossy(&record.raw).into_owned(),
        ));
    }
    by_source
}

async fn crm_customer_by_ref(
    crm: &crm::crm_service_client::CrmServiceClient<Authed>,
    external_ref: &str,
    name: &str,
) -> crm::Customer {
    eventually(
        WAIT,
        &format!("customer {external_ref} named {name} in the CRM"),
        || {
            let mut crm = crm.clone();
            let external_ref = external_ref.to_owned();
            let name = name.to_owned();
            async move {
                let list = crm
                    .list_customers(crm::ListCustomersRequest {
                        external_ref,
                        ..crm::ListCustomersRequest::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                list.customers.into_iter().find(|c| c.display_name == name)
            }
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_web_shop_order_is_reserved_in_the_erp_and_its_status_shows_in_the_crm() {
    let stack = Stack::start().await.unwrap();
    let (mut crm, mut erp) = clients(&stack).await;
    stock_product(&mut erp, "SHOP-1", 2_000, 8).await;
    crm_available(&crm, "SHOP-1", 8).await;

    // The shop's customer: v2 then a stale v1, then the order.
    let v2 = integration_event(
        types::INTEGRATION_CUSTOMER_UPSERTED,
        "shop:42",
        2,
        json!({"external_ref": "shop:42", "display_name": "Lin Ma", "email": "lin@shop.example",
               "addresses": [{"kind": "SHIPPING", "line1": "9 Quay", "city": "Bergen", "country_code": "NO"}]}),
    );
    let v1 = integration_event(
        types::INTEGRATION_CUSTOMER_UPSERTED,
        "shop:42",
        1,
        json!({"external_ref": "shop:42", "display_name": "Old Name", "email": "old@shop.example"}),
    );
    publish(&stack, topics::INTEGRATION_CUSTOMERS, &v2).await;
    publish(&stack, topics::INTEGRATION_CUSTOMERS, &v1).await;
    let customer = crm_customer_by_ref(&crm, "shop:42", "Lin Ma").await;
    erp_has_customer(&erp, &customer.id).await;
    let mirrored = erp
        .get_customer(erp::GetCustomerRequest {
            id: customer.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let profile = mirrored.profile.unwrap();
    assert_eq!(profile.addresses.len(), 1, "addresses reach the ERP");
    assert_eq!(profile.addresses[0].city, "Bergen");
    set_credit(&mut erp, &customer.id).await;

    let order = integration_event(
        types::INTEGRATION_ORDER_PLACED,
        "web-1001",
        1,
        json!({"order_ref": "web-1001", "customer_external_ref": "shop:42", "currency": "EUR",
               "lines": [{"sku": "SHOP-1", "quantity": 3}]}),
    );
    publish(&stack, topics::INTEGRATION_ORDERS, &order).await;
    publish(&stack, topics::INTEGRATION_ORDERS, &order).await; // delivered twice
    let orders = eventually(WAIT, "the web-shop order in the CRM", || {
        let mut crm = crm.clone();
        let id = customer.id.clone();
        async move {
            let list = crm
                .list_orders(crm::ListOrdersRequest {
                    customer_id: id,
                    ..crm::ListOrdersRequest::default()
                })
                .await
                .ok()?
                .into_inner();
            (!list.orders.is_empty()).then_some(list.orders)
        }
    })
    .await
    .unwrap();
    let placed = &orders[0];
    assert_eq!(placed.external_ref, "web-1001");
    assert_eq!(
        placed.total.as_ref().unwrap().amount_minor,
        6_000,
        "priced from the catalogue"
    );
    let reserved = crm_fulfilment(&crm, &placed.id, crm::FulfilmentStatus::Reserved).await;
    assert_eq!(reserved.status(), crm::OrderStatus::Submitted);
    assert_eq!(
        erp_order(&mut erp, &placed.id).await.status(),
        erp::SalesOrderStatus::Reserved
    );
    crm_available(&crm, "SHOP-1", 5).await;

    // Still one order on each side after the duplicate and the stale customer version. Both
    // copies of the order and the stale v1 may still be in flight when the first copy shows:
    // wait until the bridge committed the end of every source topic (each of them handled),
    // then look once.
    settled(&stack, WAIT).await.unwrap();
    let all = crm
        .list_orders(crm::ListOrdersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.orders.len(), 1);
    let sales = erp
        .list_sales_orders(erp::ListSalesOrdersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sales.orders.len(), 1);
    let again = crm
        .get_customer(crm::GetCustomerRequest {
            id: customer.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.display_name, "Lin Ma",
        "the stale integrator version changed nothing"
    );
}

#[tokio::test]
async fn a_wms_count_adjusts_stock_once_and_bad_integrator_messages_are_dead_lettered() {
    let stack = Stack::start().await.unwrap();
    let (crm, mut erp) = clients(&stack).await;
    stock_product(&mut erp, "COUNT-1", 500, 10).await;
    crm_available(&crm, "COUNT-1", 10).await;

    let count = integration_event(
        types::INTEGRATION_STOCK_COUNTED,
        "COUNT-1",
        1,
        json!({"sku": "COUNT-1", "warehouse": "MAIN", "counted_quantity": 42}),
    );
    publish(&stack, topics::INTEGRATION_STOCK, &count).await;
    publish(&stack, topics::INTEGRATION_STOCK, &count).await; // the same event again
    // Bad ones: negative quantity, SQL-looking reference, a CRM event on an integration topic.
    let negative = integration_event(
        types::INTEGRATION_STOCK_COUNTED,
        "COUNT-1",
        2,
        json!({"sku": "COUNT-1", "warehouse": "MAIN", "counted_quantity": -5}),
    );
    let sql = integration_event(
        types::INTEGRATION_ORDER_PLACED,
        "x",
        1,
        json!({"order_ref": "1'; DROP TABLE orders;--", "customer_external_ref": "c", "currency": "EUR",
               "lines": [{"sku": "COUNT-1", "quantity": 1}]}),
    );
    let mut foreign = integration_event(types::CRM_CUSTOMER_UPSERTED, "c-1", 1, json!({}));
    foreign["source"] = json!("crm");
    let bad = [
        (
            topics::INTEGRATION_STOCK,
            &negative,
            publish(&stack, topics::INTEGRATION_STOCK, &negative).await,
            "schema_invalid",
        ),
        (
            topics::INTEGRATION_ORDERS,
            &sql,
            publish(&stack, topics::INTEGRATION_ORDERS, &sql).await,
            "schema_invalid",
        ),
        (
            topics::INTEGRATION_CUSTOMERS,
            &foreign,
            publish(&stack, topics::INTEGRATION_CUSTOMERS, &foreign).await,
            "unknown_type",
        ),
    ];

    crm_available(&crm, "COUNT-1", 42).await;
    // The second copy of the count may still be in flight when the first one shows: wait until
    // the bridge committed the end of every source topic (so it handled both copies and every
    // bad message, each dead letter acknowledged), then look once.
    settled(&stack, WAIT).await.unwrap();
    let movements = erp
        .list_stock_movements(erp::ListStockMovementsRequest {
            sku: "COUNT-1".into(),
            ..erp::ListStockMovementsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let counts = movements
        .movements
        .iter()
        .filter(|m| m.adjustment_reason() == erp::AdjustmentReason::Count)
        .count();
    assert_eq!(
        counts, 1,
        "one ledger entry for the count, however often it arrives"
    );

    // Markers bound the dead-letter topic: what precedes them is all it holds. Exactly one
    // dead letter per bad message, each with its own reason, key and payload as published,
    // and nothing else (a record dead-lettered twice shows as two entries of its source).
    let dead = read_until_markers(&stack.broker.brokers, topics::DEAD_LETTER)
        .await
        .unwrap();
    let expected: BTreeMap<Source, Vec<(String, String, String)>> = bad
        .iter()
        .map(|(topic, event, (partition, offset), reason)| {
            (
                ((*topic).to_owned(), *partition, *offset),
                vec![(
                    (*reason).to_owned(),
                    event["aggregate_id"].as_str().unwrap().to_owned(),
                    event.to_string(),
                )],
            )
        })
        .collect();
    let got = dead_letters_by_source(&dead);
    assert_eq!(
        got, expected,
        "dead letters by source (topic, partition, offset): reason, key, payload"
    );
    assert_eq!(dead.len(), bad.len(), "{got:#?}");
}

#[tokio::test]
async fn reconcile_finds_drift_written_behind_the_bridge_and_repairs_it() {
    let stack = Stack::start().await.unwrap();
    let (mut crm, mut erp) = clients(&stack).await;
    stock_product(&mut erp, "DRIFT-1", 700, 9).await;
    crm_available(&crm, "DRIFT-1", 9).await;
    let customer_id = customer_with_credit(&mut crm, &mut erp, "Barbara").await;
    let order = submit_order(&mut crm, &customer_id, "DRIFT-1", 2).await;
    crm_fulfilment(&crm, &order.id, crm::FulfilmentStatus::Reserved).await;
    crm_available(&crm, "DRIFT-1", 7).await;

    let clean = tandemctl(&stack, &["reconcile", "--quiet"]);
    assert!(clean.contains("total drift: 0"), "{clean}");

    // Drift, written straight into the databases (no versions, no events).
    let uuid: uuid::Uuid = customer_id.parse().unwrap();
    let mut erp_db = stack.erp_db.connect().await.unwrap();
    sqlx::query("UPDATE customers SET email = 'tampered@example.com' WHERE id = $1")
        .bind(uuid)
        .execute(&mut erp_db)
        .await
        .unwrap();
    let mut crm_db = stack.crm_db.connect().await.unwrap();
    sqlx::query("UPDATE catalogue SET unit_price_minor = 1 WHERE sku = 'DRIFT-1'")
        .execute(&mut crm_db)
        .await
        .unwrap();
    sqlx::query("UPDATE orders SET fulfilment_status = 'BACKORDERED' WHERE id::text = $1")
        .bind(&order.id)
        .execute(&mut crm_db)
        .await
        .unwrap();
    // A submission the ERP never heard of (its event lost): a draft marked submitted behind
    // the CRM's back, so no event is written.
    let lost = draft_order(&mut crm, &customer_id, "DRIFT-1", 3).await;
    sqlx::query("UPDATE orders SET status = 'SUBMITTED', submit_time = now() WHERE id::text = $1")
        .bind(&lost.id)
        .execute(&mut crm_db)
        .await
        .unwrap();

    let found = tandemctl_status(&stack, &["reconcile", "--quiet"], false);
    assert!(found.contains("total drift: 4"), "{found}");
    assert!(
        found.contains("tampered@example.com"),
        "examples name the field: {found}"
    );
    assert!(
        found.contains(&format!("order_submission {}", lost.id)),
        "the lost submission is named: {found}"
    );
    let repaired = tandemctl(&stack, &["reconcile", "--repair", "--quiet"]);
    assert!(
        repaired.contains("repaired: 4, repair failures: 0"),
        "{repaired}"
    );
    // The ERP now holds the lost order: it reserved its stock and told the CRM.
    crm_fulfilment(&crm, &lost.id, crm::FulfilmentStatus::Reserved).await;
    crm_available(&crm, "DRIFT-1", 4).await;
    let after = tandemctl(&stack, &["reconcile", "--quiet"]);
    assert!(after.contains("total drift: 0"), "{after}");

    let status = tandemctl(&stack, &["status", "customer", &customer_id]);
    assert!(
        status.contains("profile versions pending     0"),
        "{status}"
    );
    assert!(
        status.contains("dead-lettered events         0"),
        "{status}"
    );
    let snapshot = tandemctl(&stack, &["snapshot"]);
    assert!(
        snapshot.starts_with("CRM re-published 1 customers and 2 orders"),
        "{snapshot}"
    );
}
