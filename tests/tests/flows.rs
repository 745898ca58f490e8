//! Every flow on the real stack: the ERP's catalogue and stock reach the CRM; an order goes
//! from the sales desk through reservation, shipping and invoicing with its status and the
//! customer's finance mirrored back; a cancellation releases the reservation; an order whose
//! customer the ERP lacks is healed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tandem_proto::{crm::v1 as crm, erp::v1 as erp};
use tandem_tests::{
    Stack, eventually,
    evidence::{read_until_markers, settled},
};

mod support;

use support::*;

#[tokio::test]
async fn an_order_travels_from_the_sales_desk_to_the_invoice_and_back() {
    let stack = Stack::start().await.unwrap();
    let (mut crm, mut erp) = clients(&stack).await;

    // ERP products and stock -> the CRM's catalogue.
    stock_product(&mut erp, "WIDGET-1", 1_250, 10).await;
    crm_available(&crm, "WIDGET-1", 10).await;
    // Products and stock travel on different topics: wait for the product itself.
    let widget = eventually(WAIT, "the product in the CRM catalogue", || {
        let mut crm = crm.clone();
        async move {
            let products = crm
                .list_products(crm::ListProductsRequest::default())
                .await
                .ok()?
                .into_inner()
                .products;
            products
                .into_iter()
                .find(|p| p.sku == "WIDGET-1" && p.product_version > 0)
        }
    })
    .await
    .unwrap();
    assert_eq!(widget.unit_price.as_ref().unwrap().amount_minor, 1_250);
    assert_eq!(widget.name, "Product WIDGET-1");

    // Customer -> ERP; credit terms -> back to the CRM's finance view.
    let customer_id = customer_with_credit(&mut crm, &mut erp, "Grace").await;
    eventually(WAIT, "credit limit in the CRM", || {
        let mut crm = crm.clone();
        let id = customer_id.clone();
        async move {
            let customer = crm
                .get_customer(crm::GetCustomerRequest { id })
                .await
                .ok()?
                .into_inner();
            let limit = customer.finance?.credit_limit?.amount_minor;
            (limit == 1_000_000).then_some(())
        }
    })
    .await
    .unwrap();

    // Submit -> reserved in the ERP -> RESERVED in the CRM; availability follows.
    let order = submit_order(&mut crm, &customer_id, "WIDGET-1", 4).await;
    assert_eq!(order.total.as_ref().unwrap().amount_minor, 5_000);
    crm_fulfilment(&crm, &order.id, crm::FulfilmentStatus::Reserved).await;
    crm_available(&crm, "WIDGET-1", 6).await;

    // Ship and invoice in the ERP -> INVOICED with the invoice in the CRM, balance raised.
    let sales_order = erp_order(&mut erp, &order.id).await;
    assert_eq!(sales_order.status(), erp::SalesOrderStatus::Reserved);
    erp.ship_order(erp::ShipOrderRequest {
        request_id: String::new(),
        id: sales_order.id.clone(),
    })
    .await
    .unwrap();
    crm_fulfilment(&crm, &order.id, crm::FulfilmentStatus::Shipped).await;
    let invoiced = erp
        .invoice_order(erp::InvoiceOrderRequest {
            request_id: String::new(),
            id: sales_order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let invoice_number = invoiced.invoice.unwrap().invoice_number;
    let mirrored = crm_fulfilment(&crm, &order.id, crm::FulfilmentStatus::Invoiced).await;
    let fulfilment = mirrored.fulfilment.unwrap();
    assert_eq!(fulfilment.invoice_number, invoice_number);
    assert_eq!(fulfilment.invoice_amount.unwrap().amount_minor, 5_000);
    eventually(WAIT, "open balance in the CRM", || {
        let mut crm = crm.clone();
        let id = customer_id.clone();
        async move {
            let customer = crm
                .get_customer(crm::GetCustomerRequest { id })
                .await
                .ok()?
                .into_inner();
            (customer.finance?.open_balance?.amount_minor == 5_000).then_some(())
        }
    })
    .await
    .unwrap();
    // Shipping lowered on hand; available stays 6. Waiting for 6 would pass at once (it was 6
    // before shipping): first let every event, the shipment's stock change included, reach
    // the CRM, then look once.
    settled(&stack, WAIT).await.unwrap();
    let availability = crm
        .get_availability(crm::GetAvailabilityRequest {
            skus: vec!["WIDGET-1".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .availability;
    assert_eq!(availability.len(), 1, "{availability:?}");
    assert_eq!(availability[0].available, 6, "{availability:?}");
}

#[tokio::test]
async fn a_cancellation_releases_the_reservation_on_both_sides() {
    let stack = Stack::start().await.unwrap();
    let (mut crm, mut erp) = clients(&stack).await;
    stock_product(&mut erp, "GADGET-2", 900, 5).await;
    crm_available(&crm, "GADGET-2", 5).await;
    let customer_id = customer_with_credit(&mut crm, &mut erp, "Alan").await;

    let order = submit_order(&mut crm, &customer_id, "GADGET-2", 5).await;
    crm_fulfilment(&crm, &order.id, crm::FulfilmentStatus::Reserved).await;
    crm_available(&crm, "GADGET-2", 0).await;

    let requested = crm
        .request_order_cancellation(crm::RequestOrderCancellationRequest {
            id: order.id.clone(),
            version: order.version,
            reason: "customer changed their mind".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(requested.status(), crm::OrderStatus::CancelRequested);
    let cancelled = crm_fulfilment(&crm, &order.id, crm::FulfilmentStatus::Cancelled).await;
    assert_eq!(cancelled.status(), crm::OrderStatus::Cancelled);
    assert_eq!(
        erp_order(&mut erp, &order.id).await.status(),
        erp::SalesOrderStatus::Cancelled
    );
    crm_available(&crm, "GADGET-2", 5).await;
}

#[tokio::test]
async fn an_order_whose_customer_the_erp_lacks_is_healed_from_the_crm() {
    let stack = Stack::start().await.unwrap();
    let (crm, mut erp) = clients(&stack).await;
    stock_product(&mut erp, "BOLT-3", 100, 50).await;
    crm_available(&crm, "BOLT-3", 50).await;

    // A customer the CRM has but whose event never reached the ERP (written behind the outbox).
    let customer_id = uuid::Uuid::now_v7();
    let mut crm_db = stack.crm_db.connect().await.unwrap();
    sqlx::query(
        "INSERT INTO customers (id, display_name, email, status, version) \
         VALUES ($1, 'Edsger', 'edsger@example.com', 'ACTIVE', 3)",
    )
    .bind(customer_id)
    .execute(&mut crm_db)
    .await
    .unwrap();
    // An order for that customer arrives in the ERP's inbox first.
    let order_id = uuid::Uuid::now_v7().to_string();
    let event = serde_json::json!({
        "id": uuid::Uuid::now_v7(), "type": "crm.order.submitted", "schema_version": 1,
        "source": "crm", "aggregate_type": "order", "aggregate_id": order_id,
        "aggregate_version": 2, "occurred_at": "2026-11-26T10:00:00.000000Z",
        "data": {"order_id": order_id, "customer_id": customer_id.to_string(), "status": "SUBMITTED",
                 "currency": "EUR", "lines": [{"line_number": 1, "sku": "BOLT-3", "quantity": 3,
                 "unit_price_minor": 100, "line_total_minor": 300}], "total_minor": 300,
                 "submitted_at": "2026-11-26T10:00:00Z", "cancellation_reason": null}
    });
    tandem_tests::produce(
        &stack.broker.brokers,
        tandem_proto::events::topics::CRM_ORDERS,
        Some(&order_id),
        event.to_string().as_bytes(),
        &[],
    )
    .await
    .unwrap();

    // The bridge heals the customer from the CRM, then the ERP accepts the order.
    let accepted = eventually(WAIT, "the order in the ERP", || {
        let mut erp = erp.clone();
        let order_id = order_id.clone();
        async move {
            let list = erp
                .list_sales_orders(erp::ListSalesOrdersRequest {
                    crm_order_id: order_id,
                    ..erp::ListSalesOrdersRequest::default()
                })
                .await
                .ok()?
                .into_inner();
            list.orders.into_iter().next()
        }
    })
    .await
    .unwrap();
    assert_eq!(accepted.customer_id, customer_id.to_string());
    let healed = erp
        .get_customer(erp::GetCustomerRequest {
            id: customer_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(healed.profile.unwrap().display_name, "Edsger");
    assert_eq!(healed.profile_version, 3);

    // Its status cannot apply to the CRM (which never had the order): after the retries it is
    // dead-lettered as a missing dependency, and nothing else is. Evidence that nothing else
    // is: both outboxes published and the bridge committed the end of every source topic
    // (so it finished every event, dead letters acknowledged), then markers bound the
    // dead-letter topic.
    settled(&stack, WAIT).await.unwrap();
    let dead = read_until_markers(
        &stack.broker.brokers,
        tandem_proto::events::topics::DEAD_LETTER,
    )
    .await
    .unwrap();
    assert_eq!(dead.len(), 1, "exactly one dead letter: {dead:#?}");
    assert_eq!(dead[0].header("dlq.reason"), Some("missing_dependency"));
    assert_eq!(dead[0].header("dlq.source_topic"), Some("erp.orders"));
}

/// A commit that writes events wakes its service's relay by itself: with the relays' fallback
/// poll set to ten minutes, a customer still reaches the ERP, and stock the CRM, within
/// seconds (each only through the wake on commit; the poll would take ten minutes).
#[tokio::test]
async fn a_commit_wakes_the_relay_without_waiting_for_its_poll() {
    let ten_minutes = "600000".to_owned();
    let stack = Stack::start_with(tandem_tests::StackOptions {
        crm_env: vec![("CRM__OUTBOX__POLL_INTERVAL_MS".into(), ten_minutes.clone())],
        erp_env: vec![("ERP__OUTBOX__POLL_INTERVAL_MS".into(), ten_minutes)],
        ..Default::default()
    })
    .await
    .unwrap();
    let (mut crm, mut erp) = clients(&stack).await;
    // The relays polled once at start; everything from here on travels only if woken.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    customer_with_credit(&mut crm, &mut erp, "woken-relay").await;
    stock_product(&mut erp, "WAKE-1", 990, 7).await;
    crm_available(&crm, "WAKE-1", 7).await;
    println!(
        "customer to the ERP and stock to the CRM in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
