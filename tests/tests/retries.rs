//! Retries on the real stack: a frontend that sends a call again after losing its answer (a
//! timeout, a dropped connection) must not book stock, a payment or a customer twice.
//!
//! Every creating or stock- or money-moving RPC takes a `request_id` (AIP-155). For each one:
//! the same request sent twice has one effect (levels, ledger, balances, records, events) and
//! gets the same answer; the same id with another request is refused with ALREADY_EXISTS
//! naming `request_id`; concurrent duplicates have one effect. Credit terms carry a version:
//! a clerk working from a stale one is refused and the other clerk's values stand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1::{self as erp, erp_service_client::ErpServiceClient},
};
use tandem_tests::{Record, Stack, StackOptions, eventually, read_topic, security};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

mod support;

use support::*;

fn new_id() -> String {
    Uuid::now_v7().to_string()
}

/// The refusal of a request id reused for another request: ALREADY_EXISTS naming the field.
#[track_caller]
fn assert_reused(result: Result<impl std::fmt::Debug, Status>) {
    let status = result.expect_err("a reused request id must be refused");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert!(status.message().contains("request_id"), "{status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo detail");
    assert_eq!(info.reason, "REQUEST_ID_REUSED");
    let bad = details.bad_request().expect("BadRequest detail");
    assert!(
        bad.field_violations.iter().any(|v| v.field == "request_id"),
        "{bad:?}"
    );
}

/// The records of `topic` (read to its end) whose key is `key`.
async fn events(stack: &Stack, topic: &str, expected_at_least: usize, key: &str) -> Vec<Record> {
    read_topic(
        &stack.broker.brokers,
        topic,
        expected_at_least,
        Duration::from_secs(2),
    )
    .await
    .unwrap()
    .into_iter()
    .filter(|record| record.key.as_deref() == Some(key))
    .collect()
}

async fn level(erp: &mut ErpServiceClient<security::Authed>, sku: &str, wh: &str) -> (i64, i64) {
    let level = erp
        .get_stock_level(erp::GetStockLevelRequest {
            sku: sku.into(),
            warehouse: wh.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (level.on_hand, level.reserved)
}

async fn movements(erp: &mut ErpServiceClient<security::Authed>, sku: &str) -> usize {
    erp.list_stock_movements(erp::ListStockMovementsRequest {
        sku: sku.into(),
        page_size: 500,
        ..erp::ListStockMovementsRequest::default()
    })
    .await
    .unwrap()
    .into_inner()
    .movements
    .len()
}

async fn finance(erp: &mut ErpServiceClient<security::Authed>, id: &str) -> erp::CustomerFinance {
    erp.get_customer(erp::GetCustomerRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .finance
        .unwrap()
}

fn warehouse(code: &str, request_id: &str) -> erp::CreateWarehouseRequest {
    erp::CreateWarehouseRequest {
        warehouse: Some(erp::Warehouse {
            code: code.into(),
            display_name: format!("Warehouse {code}"),
            create_time: None,
        }),
        request_id: request_id.into(),
    }
}

fn product(sku: &str, request_id: &str) -> erp::CreateProductRequest {
    erp::CreateProductRequest {
        product: Some(erp::Product {
            sku: sku.into(),
            display_name: format!("Product {sku}"),
            unit_price: eur(500),
            ..erp::Product::default()
        }),
        inactive: false,
        request_id: request_id.into(),
    }
}

fn receive(sku: &str, quantity: i64, request_id: &str) -> erp::ReceiveStockRequest {
    erp::ReceiveStockRequest {
        sku: sku.into(),
        warehouse: "RT-A".into(),
        quantity,
        reference: "delivery note 7".into(),
        request_id: request_id.into(),
    }
}

#[tokio::test]
async fn erp_stock_and_catalogue_calls_sent_twice_act_once() {
    let stack = Stack::start().await.unwrap();
    let mut erp = stack.erp_client().await.unwrap();

    // CreateWarehouse: the retry returns the warehouse instead of ALREADY_EXISTS.
    let id = new_id();
    let first = erp.create_warehouse(warehouse("RT-A", &id)).await.unwrap();
    let again = erp.create_warehouse(warehouse("RT-A", &id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_reused(erp.create_warehouse(warehouse("RT-C", &id)).await);
    erp.create_warehouse(warehouse("RT-B", &new_id()))
        .await
        .unwrap();
    let warehouses = erp
        .list_warehouses(erp::ListWarehousesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .warehouses;
    let codes: Vec<&str> = warehouses.iter().map(|w| w.code.as_str()).collect();
    assert_eq!(
        codes,
        ["RT-A", "RT-B"],
        "the refused request created nothing"
    );

    // CreateProduct: the retry returns the same product (id, version), not ALREADY_EXISTS.
    let id = new_id();
    let first = erp.create_product(product("RT-1", &id)).await.unwrap();
    let again = erp.create_product(product("RT-1", &id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_reused(erp.create_product(product("RT-2", &id)).await);
    let listed = erp
        .list_products(erp::ListProductsRequest {
            sku_prefix: "RT-".into(),
            ..erp::ListProductsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(listed.len(), 1, "{listed:?}");

    // ReceiveStock: one receipt, the same answer (levels, ledger entry ids).
    let id = new_id();
    let first = erp.receive_stock(receive("RT-1", 10, &id)).await.unwrap();
    let again = erp.receive_stock(receive("RT-1", 10, &id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_eq!(first.get_ref().movements.len(), 1);
    assert_reused(erp.receive_stock(receive("RT-1", 11, &id)).await);
    // The id of a receipt on another method is another request too.
    assert_reused(
        erp.adjust_stock(erp::AdjustStockRequest {
            sku: "RT-1".into(),
            warehouse: "RT-A".into(),
            quantity_delta: 10,
            reason: erp::AdjustmentReason::Found as i32,
            reference: String::new(),
            request_id: id.clone(),
        })
        .await,
    );
    assert_eq!(level(&mut erp, "RT-1", "RT-A").await, (10, 0));
    assert_eq!(movements(&mut erp, "RT-1").await, 1);

    // AdjustStock.
    let adjust = |delta: i64, request_id: &str| erp::AdjustStockRequest {
        sku: "RT-1".into(),
        warehouse: "RT-A".into(),
        quantity_delta: delta,
        reason: erp::AdjustmentReason::Damaged as i32,
        reference: "broken on the shelf".into(),
        request_id: request_id.into(),
    };
    let id = new_id();
    let first = erp.adjust_stock(adjust(-2, &id)).await.unwrap();
    let again = erp.adjust_stock(adjust(-2, &id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_reused(erp.adjust_stock(adjust(-3, &id)).await);
    assert_eq!(level(&mut erp, "RT-1", "RT-A").await, (8, 0));
    assert_eq!(movements(&mut erp, "RT-1").await, 2);

    // TransferStock.
    let transfer = |quantity: i64, request_id: &str| erp::TransferStockRequest {
        sku: "RT-1".into(),
        from_warehouse: "RT-A".into(),
        to_warehouse: "RT-B".into(),
        quantity,
        reference: String::new(),
        request_id: request_id.into(),
    };
    let id = new_id();
    let first = erp.transfer_stock(transfer(3, &id)).await.unwrap();
    let again = erp.transfer_stock(transfer(3, &id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_reused(erp.transfer_stock(transfer(4, &id)).await);
    assert_eq!(level(&mut erp, "RT-1", "RT-A").await, (5, 0));
    assert_eq!(level(&mut erp, "RT-1", "RT-B").await, (3, 0));
    assert_eq!(movements(&mut erp, "RT-1").await, 4);

    // Another caller (subject) with the same id is another request: ids are per caller.
    let mut other = ErpServiceClient::new(
        stack
            .security
            .authed(stack.erp_grpc, "another-clerk", security::ALL_ROLES)
            .await
            .unwrap(),
    );
    let theirs = other.transfer_stock(transfer(1, &id)).await.unwrap();
    assert_ne!(theirs.get_ref(), first.get_ref());
    assert_eq!(level(&mut erp, "RT-1", "RT-B").await, (4, 0));

    // Published once each: one product event; one stock event per movement that acted
    // (receipt, adjustment, transfer, the other caller's transfer).
    let upserted = events(&stack, "erp.products", 1, "RT-1").await;
    assert_eq!(upserted.len(), 1, "{upserted:?}");
    let stock = events(&stack, "erp.stock", 4, "RT-1").await;
    let on_hand: Vec<i64> = stock
        .iter()
        .map(|r| r.payload["data"]["on_hand"].as_i64().unwrap())
        .collect();
    assert_eq!(on_hand, [10, 8, 8, 8], "{stock:?}");
    let versions: Vec<i64> = stock
        .iter()
        .map(|r| r.payload["aggregate_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
}

#[tokio::test]
async fn erp_order_and_money_calls_sent_twice_act_once() {
    let stack = Stack::start().await.unwrap();
    let (mut crm, mut erp) = clients(&stack).await;
    stock_product(&mut erp, "RT-9", 1_000, 10).await;
    crm_available(&crm, "RT-9", 10).await;
    let customer = customer_with_credit(&mut crm, &mut erp, "Retry").await;

    // RecordPayment: the request id guards even a second reference (a frontend that builds
    // its reference per attempt).
    let pay = |reference: &str, request_id: &str| erp::RecordPaymentRequest {
        customer_id: customer.clone(),
        amount: eur(2_500),
        reference: reference.into(),
        request_id: request_id.into(),
    };
    let before = finance(&mut erp, &customer).await;
    let id = new_id();
    let first = erp.record_payment(pay("PAY-1", &id)).await.unwrap();
    let again = erp.record_payment(pay("PAY-1", &id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_reused(erp.record_payment(pay("PAY-2", &id)).await);
    let after = finance(&mut erp, &customer).await;
    assert_eq!(after.open_balance.unwrap().amount_minor, -2_500);
    assert_eq!(after.version, before.version + 1);

    // An order in CREDIT_HOLD: released, shipped and invoiced, each call sent twice.
    erp.set_credit_terms(erp::SetCreditTermsRequest {
        customer_id: customer.clone(),
        credit_hold: true,
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["credit_hold".into()],
        }),
        ..erp::SetCreditTermsRequest::default()
    })
    .await
    .unwrap();
    let crm_order = submit_order(&mut crm, &customer, "RT-9", 4).await;
    let held = eventually(WAIT, "the order held in the ERP", || {
        let mut erp = erp.clone();
        let crm_order_id = crm_order.id.clone();
        async move {
            let order = erp
                .list_sales_orders(erp::ListSalesOrdersRequest {
                    crm_order_id,
                    ..erp::ListSalesOrdersRequest::default()
                })
                .await
                .ok()?
                .into_inner()
                .orders
                .pop()?;
            (order.status() == erp::SalesOrderStatus::CreditHold).then_some(order)
        }
    })
    .await
    .unwrap();

    let id = new_id();
    let release = |request_id: &str| erp::ReleaseCreditHoldRequest {
        id: held.id.clone(),
        request_id: request_id.into(),
    };
    let first = erp.release_credit_hold(release(&id)).await.unwrap();
    let again = erp.release_credit_hold(release(&id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_eq!(first.get_ref().status(), erp::SalesOrderStatus::Reserved);
    assert_eq!(level(&mut erp, "RT-9", "MAIN").await, (10, 4));

    let id = new_id();
    let ship = |request_id: &str| erp::ShipOrderRequest {
        id: held.id.clone(),
        request_id: request_id.into(),
    };
    let first = erp.ship_order(ship(&id)).await.unwrap();
    let again = erp.ship_order(ship(&id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_eq!(first.get_ref().status(), erp::SalesOrderStatus::Shipped);
    assert_eq!(level(&mut erp, "RT-9", "MAIN").await, (6, 0));
    // A retry's id on another order's call: refused, not replayed.
    assert_reused(
        erp.ship_order(erp::ShipOrderRequest {
            id: new_id(),
            request_id: id.clone(),
        })
        .await,
    );

    let id = new_id();
    let invoice = |request_id: &str| erp::InvoiceOrderRequest {
        id: held.id.clone(),
        request_id: request_id.into(),
    };
    let first = erp.invoice_order(invoice(&id)).await.unwrap();
    let again = erp.invoice_order(invoice(&id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    let invoiced = first.into_inner();
    assert_eq!(invoiced.status(), erp::SalesOrderStatus::Invoiced);
    let balance = finance(&mut erp, &customer).await.open_balance.unwrap();
    assert_eq!(balance.amount_minor, -2_500 + 4_000, "invoiced once");

    // Every status change published once: held, released, shipped, invoiced (keyed by the
    // CRM order id).
    let statuses: Vec<String> = events(&stack, "erp.orders", 4, &crm_order.id)
        .await
        .iter()
        .map(|r| r.payload["data"]["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["CREDIT_HOLD", "RESERVED", "SHIPPED", "INVOICED"],
        "{statuses:?}"
    );
    // Finance: terms, payment, hold, invoice; the retried payment is not among them.
    let finance_events = events(&stack, "erp.customers", 4, &customer).await;
    let balances: Vec<i64> = finance_events
        .iter()
        .map(|r| r.payload["data"]["open_balance_minor"].as_i64().unwrap())
        .collect();
    assert_eq!(balances, [0, -2_500, -2_500, 1_500], "{finance_events:?}");
}

fn new_customer(name: &str, request_id: &str) -> crm::CreateCustomerRequest {
    crm::CreateCustomerRequest {
        customer: Some(crm::Customer {
            display_name: name.into(),
            email: format!("{}@example.com", name.to_lowercase()),
            ..crm::Customer::default()
        }),
        request_id: request_id.into(),
    }
}

async fn customers_named(crm: &mut CrmServiceClient<security::Authed>, email: &str) -> usize {
    crm.list_customers(crm::ListCustomersRequest {
        email: email.into(),
        ..crm::ListCustomersRequest::default()
    })
    .await
    .unwrap()
    .into_inner()
    .customers
    .len()
}

#[tokio::test]
async fn crm_calls_sent_twice_act_once() {
    let stack = Stack::start().await.unwrap();
    let (mut crm, mut erp) = clients(&stack).await;
    stock_product(&mut erp, "RT-5", 700, 10).await;
    crm_available(&crm, "RT-5", 10).await;

    // CreateCustomer: one customer, the same id and version.
    let id = new_id();
    let first = crm
        .create_customer(new_customer("Twice", &id))
        .await
        .unwrap();
    let again = crm
        .create_customer(new_customer("Twice", &id))
        .await
        .unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_reused(crm.create_customer(new_customer("Thrice", &id)).await);
    assert_eq!(customers_named(&mut crm, "twice@example.com").await, 1);
    assert_eq!(customers_named(&mut crm, "thrice@example.com").await, 0);
    let customer = first.into_inner().id;

    // CreateOrder: one draft.
    let order = |quantity: i64, request_id: &str| crm::CreateOrderRequest {
        order: Some(crm::Order {
            customer_id: customer.clone(),
            lines: vec![crm::OrderLine {
                sku: "RT-5".into(),
                quantity,
                ..crm::OrderLine::default()
            }],
            ..crm::Order::default()
        }),
        request_id: request_id.into(),
    };
    let id = new_id();
    let first = crm.create_order(order(2, &id)).await.unwrap();
    let again = crm.create_order(order(2, &id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_reused(crm.create_order(order(3, &id)).await);
    let orders = crm
        .list_orders(crm::ListOrdersRequest {
            customer_id: customer.clone(),
            ..crm::ListOrdersRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(orders.len(), 1, "{orders:?}");
    let draft = first.into_inner();

    // SubmitOrder: the retry gets the submitted order, not FAILED_PRECONDITION.
    let submit = |request_id: &str| crm::SubmitOrderRequest {
        id: draft.id.clone(),
        version: draft.version,
        request_id: request_id.into(),
    };
    let id = new_id();
    let first = crm.submit_order(submit(&id)).await.unwrap();
    let again = crm.submit_order(submit(&id)).await.unwrap();
    assert_eq!(first.get_ref(), again.get_ref());
    assert_eq!(first.get_ref().status(), crm::OrderStatus::Submitted);

    // Published once: the customer's upsert and the order's submission.
    let upserts = events(&stack, "crm.customers", 1, &customer).await;
    assert_eq!(upserts.len(), 1, "{upserts:?}");
    let submitted = events(&stack, "crm.orders", 1, &draft.id).await;
    assert_eq!(submitted.len(), 1, "{submitted:?}");
    // And the ERP has it once (in CREDIT_HOLD: this customer has the default credit).
    let accepted = eventually(WAIT, "the order in the ERP", || {
        let mut erp = erp.clone();
        let crm_order_id = draft.id.clone();
        async move {
            let orders = erp
                .list_sales_orders(erp::ListSalesOrdersRequest {
                    crm_order_id,
                    ..erp::ListSalesOrdersRequest::default()
                })
                .await
                .ok()?
                .into_inner()
                .orders;
            (!orders.is_empty()).then_some(orders)
        }
    })
    .await
    .unwrap();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
}

#[tokio::test]
async fn concurrent_duplicates_act_once() {
    let stack = Stack::start().await.unwrap();
    let (crm, mut erp) = clients(&stack).await;
    erp.create_warehouse(warehouse("RT-A", "")).await.unwrap();
    erp.create_product(product("RT-7", "")).await.unwrap();

    // Eight copies of one receipt at once: one takes effect, the others wait for it and get
    // its answer.
    let id = new_id();
    let calls = (0..8).map(|_| {
        let mut erp = erp.clone();
        let request = receive("RT-7", 5, &id);
        tokio::spawn(async move { erp.receive_stock(request).await.map(|r| r.into_inner()) })
    });
    let answers: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    assert!(answers.iter().all(|answer| answer == &answers[0]));
    assert_eq!(level(&mut erp, "RT-7", "RT-A").await, (5, 0));
    assert_eq!(movements(&mut erp, "RT-7").await, 1);

    // Eight copies of one CreateCustomer at once: one customer.
    let id = new_id();
    let calls = (0..8).map(|_| {
        let mut crm = crm.clone();
        let request = new_customer("Racer", &id);
        tokio::spawn(async move { crm.create_customer(request).await.map(|r| r.into_inner()) })
    });
    let answers: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    assert!(answers.iter().all(|answer| answer == &answers[0]));
    let mut crm = crm.clone();
    assert_eq!(customers_named(&mut crm, "racer@example.com").await, 1);
    let upserts = events(&stack, "crm.customers", 1, &answers[0].id).await;
    assert_eq!(upserts.len(), 1, "{upserts:?}");
}

#[tokio::test]
async fn credit_terms_from_a_stale_version_are_aborted_and_request_ids_expire() {
    // Request ids kept for 0 hours and pruned every second: a retry after that acts again.
    let stack = Stack::start_with(StackOptions {
        erp_env: vec![
            ("ERP__IDEMPOTENCY__RETENTION_HOURS".into(), "0".into()),
            ("ERP__IDEMPOTENCY__PRUNE_INTERVAL_S".into(), "1".into()),
        ],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (mut crm, mut erp) = clients(&stack).await;
    let customer = crm
        .create_customer(new_customer("Clerks", ""))
        .await
        .unwrap()
        .into_inner()
        .id;
    erp_has_customer(&erp, &customer).await;

    // Two finance clerks read the never-changed terms (version 0)...
    let read = finance(&mut erp, &customer).await;
    assert_eq!(read.version, 0);
    let terms = |limit: i64, days: i32, version: i64| erp::SetCreditTermsRequest {
        customer_id: customer.clone(),
        credit_limit: eur(limit),
        payment_terms_days: days,
        credit_hold: false,
        update_mask: None,
        version: Some(version),
    };
    // ...the first one saves...
    let saved = erp
        .set_credit_terms(terms(500_000, 14, read.version))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.version, 1);
    // ...the second one's save, from the same read, is refused.
    let stale = erp
        .set_credit_terms(terms(900_000, 60, read.version))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    assert!(stale.message().contains("version"), "{stale:?}");
    let now = finance(&mut erp, &customer).await;
    assert_eq!(now.credit_limit.unwrap().amount_minor, 500_000);
    assert_eq!(now.payment_terms_days, 14);
    assert_eq!(now.version, 1);
    // Reading again and saving with the current version works.
    let resaved = erp
        .set_credit_terms(terms(900_000, 60, now.version))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resaved.version, 2);
    // Without a version there is no check (as on every update).
    let mut unconditional = terms(800_000, 60, 0);
    unconditional.version = None;
    erp.set_credit_terms(unconditional).await.unwrap();
    let published = events(&stack, "erp.customers", 3, &customer).await;
    let limits: Vec<i64> = published
        .iter()
        .map(|r| r.payload["data"]["credit_limit_minor"].as_i64().unwrap())
        .collect();
    assert_eq!(
        limits,
        [500_000, 900_000, 800_000],
        "the refused save published nothing"
    );

    // Expired request ids are pruned; the same id then names a new request.
    erp.create_warehouse(warehouse("RT-A", "")).await.unwrap();
    erp.create_product(product("RT-3", "")).await.unwrap();
    let id = new_id();
    erp.receive_stock(receive("RT-3", 5, &id)).await.unwrap();
    eventually(
        WAIT,
        "the pruner deleting the expired request id",
        || async {
            (Stack::metric(stack.erp_http, "tandem_idempotency_pruned_total") >= 1.0).then_some(())
        },
    )
    .await
    .unwrap();
    erp.receive_stock(receive("RT-3", 5, &id)).await.unwrap();
    assert_eq!(level(&mut erp, "RT-3", "RT-A").await, (10, 0));
}
