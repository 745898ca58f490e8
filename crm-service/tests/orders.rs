//! Sales orders over real gRPC, a real database and a real broker: quoting from the catalogue
//! mirror, the DRAFT -> SUBMITTED -> CANCEL_REQUESTED lifecycle, the ERP's fulfilment status,
//! and the events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Crm, customer, mask, money, violated_fields};
use tandem_proto::{
    crm::v1::{
        ApplyOrderStatusRequest, ArchiveCustomerRequest, CreateOrderRequest, FulfilmentStatus,
        GetOrderRequest, ListOrdersRequest, Order, OrderLine, OrderStatus,
        RequestOrderCancellationRequest, SubmitOrderRequest, UpdateOrderRequest,
    },
    events::topics,
};
use tonic::Code;

fn line(sku: &str, quantity: i64) -> OrderLine {
    OrderLine {
        sku: sku.into(),
        quantity,
        ..OrderLine::default()
    }
}

fn draft(customer_id: &str, lines: Vec<OrderLine>) -> CreateOrderRequest {
    CreateOrderRequest {
        request_id: String::new(),
        order: Some(Order {
            customer_id: customer_id.into(),
            lines,
            ..Order::default()
        }),
    }
}

/// A CRM with products A (19.99 EUR), B (2.50 EUR), U (5.00 USD), OLD (inactive) and a customer.
async fn stocked() -> (Crm, String) {
    let mut crm = Crm::start().await;
    crm.product("A", 1_999, "EUR", true, 1).await;
    crm.product("B", 250, "EUR", true, 1).await;
    crm.product("U", 500, "USD", true, 1).await;
    crm.product("OLD", 100, "EUR", false, 1).await;
    let customer = crm.create_customer(customer("Ada Lovelace")).await;
    (crm, customer.id)
}

fn status_request(
    order_id: &str,
    status: FulfilmentStatus,
    version: i64,
) -> ApplyOrderStatusRequest {
    ApplyOrderStatusRequest {
        order_id: order_id.into(),
        status: status as i32,
        source_version: version,
        event_id: uuid::Uuid::now_v7().to_string(),
        ..ApplyOrderStatusRequest::default()
    }
}

#[tokio::test]
async fn an_order_is_quoted_edited_submitted_and_cancelled_with_its_events() {
    let (mut crm, customer_id) = stocked().await;
    let created = crm
        .client
        .create_order(draft(&customer_id, vec![line("A", 3), line("B", 4)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.status(), OrderStatus::Draft);
    assert_eq!(created.version, 1);
    assert_eq!(created.currency_code, "EUR");
    assert_eq!(created.lines[0].line_number, 1);
    assert_eq!(created.lines[0].product_name, "Product A");
    assert_eq!(created.lines[0].unit_price, Some(money("EUR", 1_999)));
    assert_eq!(created.lines[0].line_total, Some(money("EUR", 5_997)));
    assert_eq!(created.total, Some(money("EUR", 6_997)));
    assert_eq!(created.fulfilment, None);
    assert_eq!(crm.count("outbox").await, 1, "a draft publishes nothing");

    // Editing re-quotes at the current catalogue price; a stale version is refused.
    crm.product("A", 2_100, "EUR", true, 2).await;
    let edited = crm
        .client
        .update_order(UpdateOrderRequest {
            order: Some(Order {
                id: created.id.clone(),
                lines: vec![line("A", 2)],
                version: 1,
                ..Order::default()
            }),
            update_mask: mask(&["lines"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.version, 2);
    assert_eq!(edited.lines.len(), 1);
    assert_eq!(edited.total, Some(money("EUR", 4_200)));
    let stale = crm
        .client
        .update_order(UpdateOrderRequest {
            order: Some(Order {
                id: created.id.clone(),
                lines: vec![line("B", 1)],
                version: 1,
                ..Order::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let read_only = crm
        .client
        .update_order(UpdateOrderRequest {
            order: Some(Order {
                id: created.id.clone(),
                ..Order::default()
            }),
            update_mask: mask(&["customer_id"]),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&read_only), ["update_mask"]);

    let submitted = crm
        .client
        .submit_order(SubmitOrderRequest {
            request_id: String::new(),
            id: created.id.clone(),
            version: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(submitted.status(), OrderStatus::Submitted);
    assert_eq!(submitted.version, 3);
    assert!(submitted.submit_time.is_some());
    let fetched = crm
        .client
        .get_order(GetOrderRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, submitted);

    // Illegal transitions.
    let again = crm
        .client
        .submit_order(SubmitOrderRequest {
            request_id: String::new(),
            id: created.id.clone(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let edit_submitted = crm
        .client
        .update_order(UpdateOrderRequest {
            order: Some(Order {
                id: created.id.clone(),
                lines: vec![line("B", 1)],
                ..Order::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(edit_submitted.code(), Code::FailedPrecondition);

    let cancel_requested = crm
        .client
        .request_order_cancellation(RequestOrderCancellationRequest {
            id: created.id.clone(),
            version: 3,
            reason: "customer changed their mind".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancel_requested.status(), OrderStatus::CancelRequested);
    assert_eq!(cancel_requested.version, 4);
    assert_eq!(
        cancel_requested.cancellation_reason,
        "customer changed their mind"
    );
    // Asking again while it is pending changes nothing.
    let repeated = crm
        .client
        .request_order_cancellation(RequestOrderCancellationRequest {
            id: created.id.clone(),
            version: 0,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(repeated, cancel_requested);

    // The ERP confirms: the order is cancelled, and nothing is published back.
    let confirmed = crm
        .sync
        .apply_order_status(status_request(&created.id, FulfilmentStatus::Cancelled, 7))
        .await
        .unwrap()
        .into_inner();
    assert!(confirmed.applied);
    assert_eq!(confirmed.current_version, 7);
    let cancelled = crm
        .client
        .get_order(GetOrderRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(
        cancelled.fulfilment.as_ref().unwrap().status(),
        FulfilmentStatus::Cancelled
    );
    assert_eq!(cancelled.version, 4, "the mirror is not a CRM change");
    let cancel_cancelled = crm
        .client
        .request_order_cancellation(RequestOrderCancellationRequest {
            id: created.id.clone(),
            version: 0,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(cancel_cancelled.code(), Code::FailedPrecondition);

    let records = crm.events(topics::CRM_ORDERS, 2).await;
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r.key.as_deref() == Some(created.id.as_str()))
    );
    let submitted_event = &records[0].payload;
    assert_eq!(submitted_event["type"], "crm.order.submitted");
    assert_eq!(submitted_event["aggregate_type"], "order");
    assert_eq!(submitted_event["aggregate_version"], 3);
    let data = &submitted_event["data"];
    assert_eq!(data["customer_id"], customer_id.as_str());
    assert_eq!(data["status"], "SUBMITTED");
    assert_eq!(data["currency"], "EUR");
    assert_eq!(data["total_minor"], 4_200);
    assert_eq!(data["lines"][0]["sku"], "A");
    assert_eq!(data["lines"][0]["quantity"], 2);
    assert_eq!(data["lines"][0]["unit_price_minor"], 2_100);
    assert_eq!(data["lines"][0]["line_total_minor"], 4_200);
    let cancel_event = &records[1].payload;
    assert_eq!(cancel_event["type"], "crm.order.cancel_requested");
    assert_eq!(cancel_event["aggregate_version"], 4);
    assert_eq!(cancel_event["data"]["status"], "CANCEL_REQUESTED");
    assert_eq!(
        cancel_event["data"]["cancellation_reason"],
        "customer changed their mind"
    );
    assert_eq!(cancel_event["data"]["lines"], data["lines"]);
    crm.stop().await;
}

#[tokio::test]
async fn bad_orders_are_refused_with_their_fields_and_write_nothing() {
    let (mut crm, customer_id) = stocked().await;
    let lines = crm
        .client
        .create_order(draft(
            &customer_id,
            vec![
                line("A", 1),
                line("NOPE", 1),
                line("OLD", 1),
                line("U", 1),
                line("B", 0),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&lines), ["order.lines[4].quantity"]);
    let catalogue = crm
        .client
        .create_order(draft(
            &customer_id,
            vec![line("A", 1), line("NOPE", 1), line("OLD", 1), line("U", 1)],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&catalogue),
        [
            "order.lines[1].sku",
            "order.lines[2].sku",
            "order.lines[3].sku"
        ]
    );
    assert!(catalogue.message().contains("order.lines[3].sku"));
    let duplicate = crm
        .client
        .create_order(draft(&customer_id, vec![line("A", 1), line("A", 2)]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&duplicate), ["order.lines[1].sku"]);
    let bad_customer = crm
        .client
        .create_order(draft("42", vec![line("A", 1)]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_customer), ["order.customer_id"]);
    let no_order = crm
        .client
        .create_order(CreateOrderRequest {
            request_id: String::new(),
            order: None,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_order), ["order"]);
    let unknown_customer = crm
        .client
        .create_order(draft(&uuid::Uuid::now_v7().to_string(), vec![line("A", 1)]))
        .await
        .unwrap_err();
    assert_eq!(unknown_customer.code(), Code::NotFound);
    for unknown in [
        crm.client
            .get_order(GetOrderRequest {
                id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .unwrap_err(),
        crm.client
            .submit_order(SubmitOrderRequest {
                request_id: String::new(),
                id: uuid::Uuid::now_v7().to_string(),
                version: 0,
            })
            .await
            .unwrap_err(),
        crm.client
            .request_order_cancellation(RequestOrderCancellationRequest {
                id: uuid::Uuid::now_v7().to_string(),
                ..RequestOrderCancellationRequest::default()
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(unknown.code(), Code::NotFound);
    }
    let long_reason = crm
        .client
        .request_order_cancellation(RequestOrderCancellationRequest {
            id: uuid::Uuid::now_v7().to_string(),
            version: 0,
            reason: "x".repeat(501),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&long_reason), ["reason"]);

    // An empty draft is allowed but cannot be submitted; a draft is cancelled at once.
    let empty = crm
        .client
        .create_order(draft(&customer_id, Vec::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(empty.currency_code, "");
    assert_eq!(empty.total, Some(money("", 0)));
    let submit_empty = crm
        .client
        .submit_order(SubmitOrderRequest {
            request_id: String::new(),
            id: empty.id.clone(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(submit_empty.code(), Code::FailedPrecondition);
    let dropped = crm
        .client
        .request_order_cancellation(RequestOrderCancellationRequest {
            id: empty.id.clone(),
            version: 1,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dropped.status(), OrderStatus::Cancelled);
    assert_eq!(dropped.version, 2);

    // An archived customer cannot order, nor have a draft submitted.
    let pending = crm
        .client
        .create_order(draft(&customer_id, vec![line("A", 1)]))
        .await
        .unwrap()
        .into_inner();
    crm.client
        .archive_customer(ArchiveCustomerRequest {
            id: customer_id.clone(),
            version: 0,
        })
        .await
        .unwrap();
    let archived = crm
        .client
        .create_order(draft(&customer_id, vec![line("A", 1)]))
        .await
        .unwrap_err();
    assert_eq!(archived.code(), Code::FailedPrecondition);
    let submit_archived = crm
        .client
        .submit_order(SubmitOrderRequest {
            request_id: String::new(),
            id: pending.id.clone(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(submit_archived.code(), Code::FailedPrecondition);

    assert_eq!(
        crm.count("orders").await,
        2,
        "only the empty draft and the pending one"
    );
    assert_eq!(crm.count("order_lines").await, 1);
    assert_eq!(
        crm.count("outbox WHERE topic = 'crm.orders'").await,
        0,
        "no order was submitted"
    );
    crm.stop().await;
}

#[tokio::test]
async fn the_fulfilment_status_is_mirrored_version_gated_and_never_published() {
    let (mut crm, customer_id) = stocked().await;
    let order = crm
        .client
        .create_order(draft(&customer_id, vec![line("A", 2)]))
        .await
        .unwrap()
        .into_inner();
    let on_draft = crm
        .sync
        .apply_order_status(status_request(&order.id, FulfilmentStatus::Reserved, 1))
        .await
        .unwrap_err();
    assert_eq!(on_draft.code(), Code::FailedPrecondition);
    crm.client
        .submit_order(SubmitOrderRequest {
            request_id: String::new(),
            id: order.id.clone(),
            version: 0,
        })
        .await
        .unwrap();

    let reserved = crm
        .sync
        .apply_order_status(status_request(&order.id, FulfilmentStatus::Reserved, 2))
        .await
        .unwrap()
        .into_inner();
    assert!(reserved.applied);
    for (stale_status, stale_version) in [
        (FulfilmentStatus::Shipped, 2),
        (FulfilmentStatus::Backordered, 1),
    ] {
        let response = crm
            .sync
            .apply_order_status(status_request(&order.id, stale_status, stale_version))
            .await
            .unwrap()
            .into_inner();
        assert!(
            !response.applied,
            "{stale_status:?} v{stale_version} applied over 2"
        );
        assert_eq!(response.current_version, 2);
    }
    let get = |crm: &Crm| {
        let mut client = crm.client.clone();
        let id = order.id.clone();
        async move {
            client
                .get_order(GetOrderRequest { id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let current = get(&crm).await;
    let fulfilment = current.fulfilment.clone().unwrap();
    assert_eq!(fulfilment.status(), FulfilmentStatus::Reserved);
    assert_eq!(fulfilment.source_version, 2);
    assert_eq!(current.status(), OrderStatus::Submitted);

    // A cancellation requested, then the ERP ships anyway: too late, the request ends.
    crm.client
        .request_order_cancellation(RequestOrderCancellationRequest {
            id: order.id.clone(),
            ..RequestOrderCancellationRequest::default()
        })
        .await
        .unwrap();
    crm.sync
        .apply_order_status(status_request(&order.id, FulfilmentStatus::Shipped, 3))
        .await
        .unwrap();
    let shipped = get(&crm).await;
    assert_eq!(shipped.status(), OrderStatus::Submitted);
    assert_eq!(
        shipped.fulfilment.unwrap().status(),
        FulfilmentStatus::Shipped
    );
    let too_late = crm
        .client
        .request_order_cancellation(RequestOrderCancellationRequest {
            id: order.id.clone(),
            ..RequestOrderCancellationRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_late.code(), Code::FailedPrecondition);

    // Invoiced: the invoice must be complete and in the order's currency.
    let incomplete = crm
        .sync
        .apply_order_status(status_request(&order.id, FulfilmentStatus::Invoiced, 4))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&incomplete),
        ["invoice_number", "invoice_amount"]
    );
    let wrong_currency = crm
        .sync
        .apply_order_status(ApplyOrderStatusRequest {
            invoice_number: "INV-1".into(),
            invoice_amount: Some(money("USD", 3_998)),
            ..status_request(&order.id, FulfilmentStatus::Invoiced, 4)
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&wrong_currency),
        ["invoice_amount.currency_code"]
    );
    let invoiced = crm
        .sync
        .apply_order_status(ApplyOrderStatusRequest {
            invoice_number: "INV-1".into(),
            invoice_amount: Some(money("EUR", 3_998)),
            ..status_request(&order.id, FulfilmentStatus::Invoiced, 4)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(invoiced.applied);
    let fulfilment = get(&crm).await.fulfilment.unwrap();
    assert_eq!(fulfilment.status(), FulfilmentStatus::Invoiced);
    assert_eq!(fulfilment.invoice_number, "INV-1");
    assert_eq!(fulfilment.invoice_amount, Some(money("EUR", 3_998)));
    assert_eq!(fulfilment.source_version, 4);

    // Rejections need a reason; unknown orders are NOT_FOUND (the bridge retries); garbage is
    // refused with its field.
    let rejected = crm
        .sync
        .apply_order_status(status_request(&order.id, FulfilmentStatus::Rejected, 9))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&rejected), ["rejection_reason"]);
    let unknown = crm
        .sync
        .apply_order_status(status_request(
            &uuid::Uuid::now_v7().to_string(),
            FulfilmentStatus::Reserved,
            1,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let unspecified = crm
        .sync
        .apply_order_status(status_request(&order.id, FulfilmentStatus::Unspecified, 10))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unspecified), ["status"]);
    let no_version = crm
        .sync
        .apply_order_status(status_request(&order.id, FulfilmentStatus::Reserved, 0))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_version), ["source_version"]);

    // Only the CRM's own changes were published: the submit and the cancellation request.
    let records = crm.events(topics::CRM_ORDERS, 2).await;
    let types: Vec<&str> = records
        .iter()
        .map(|r| r.payload["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["crm.order.submitted", "crm.order.cancel_requested"]);
    assert_eq!(crm.count("outbox WHERE topic = 'crm.orders'").await, 2);
    crm.stop().await;
}

#[tokio::test]
async fn orders_list_by_customer_and_status_over_several_pages() {
    let (mut crm, ada) = stocked().await;
    let grace = crm.create_customer(customer("Grace Hopper")).await.id;
    let mut ada_orders = Vec::new();
    for i in 0..5 {
        let order = crm
            .client
            .create_order(draft(&ada, vec![line("A", i + 1)]))
            .await
            .unwrap()
            .into_inner();
        ada_orders.push(order.id);
    }
    let grace_order = crm
        .client
        .create_order(draft(&grace, vec![line("B", 1)]))
        .await
        .unwrap()
        .into_inner();
    for id in [&ada_orders[1], &ada_orders[3], &grace_order.id] {
        crm.client
            .submit_order(SubmitOrderRequest {
                request_id: String::new(),
                id: id.clone(),
                version: 0,
            })
            .await
            .unwrap();
    }

    let all = |request: ListOrdersRequest| {
        let mut client = crm.client.clone();
        async move {
            let mut ids = Vec::new();
            let mut pages = 0;
            let mut token = String::new();
            loop {
                let page = client
                    .list_orders(ListOrdersRequest {
                        page_token: token,
                        ..request.clone()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                pages += 1;
                ids.extend(page.orders.into_iter().map(|o| o.id));
                if page.next_page_token.is_empty() {
                    return (ids, pages);
                }
                token = page.next_page_token;
            }
        }
    };
    let (ids, pages) = all(ListOrdersRequest {
        page_size: 2,
        customer_id: ada.clone(),
        ..ListOrdersRequest::default()
    })
    .await;
    assert_eq!(ids, ada_orders);
    assert_eq!(pages, 3);
    let (submitted, _) = all(ListOrdersRequest {
        page_size: 1,
        status: OrderStatus::Submitted as i32,
        ..ListOrdersRequest::default()
    })
    .await;
    assert_eq!(
        submitted,
        [
            ada_orders[1].clone(),
            ada_orders[3].clone(),
            grace_order.id.clone()
        ]
    );
    let (ada_drafts, _) = all(ListOrdersRequest {
        customer_id: ada.clone(),
        status: OrderStatus::Draft as i32,
        ..ListOrdersRequest::default()
    })
    .await;
    assert_eq!(
        ada_drafts,
        [
            ada_orders[0].clone(),
            ada_orders[2].clone(),
            ada_orders[4].clone()
        ]
    );
    let (everything, _) = all(ListOrdersRequest::default()).await;
    assert_eq!(everything.len(), 6);
    let page = crm
        .client
        .list_orders(ListOrdersRequest {
            page_size: 1,
            ..ListOrdersRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.orders[0].lines.len(),
        1,
        "listed orders carry their lines"
    );
    let bad_filter = crm
        .client
        .list_orders(ListOrdersRequest {
            customer_id: "nope".into(),
            ..ListOrdersRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_filter), ["customer_id"]);
    crm.stop().await;
}

#[tokio::test]
async fn of_concurrent_submits_exactly_one_wins_and_publishes() {
    let (mut crm, customer_id) = stocked().await;
    let order = crm
        .client
        .create_order(draft(&customer_id, vec![line("A", 1)]))
        .await
        .unwrap()
        .into_inner();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let mut client = crm.client.clone();
            let id = order.id.clone();
            tokio::spawn(async move {
                client
                    .submit_order(SubmitOrderRequest {
                        request_id: String::new(),
                        id,
                        version: 0,
                    })
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for handle in handles {
        match handle.await.unwrap() {
            Ok(response) => {
                ok += 1;
                assert_eq!(response.into_inner().version, 2);
            }
            Err(status) if status.code() == Code::FailedPrecondition => refused += 1,
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
    assert_eq!((ok, refused), (1, 7));
    let records = crm.events(topics::CRM_ORDERS, 1).await;
    assert_eq!(records.len(), 1, "one submit, one event");
    crm.stop().await;
}

#[tokio::test]
async fn a_submit_whose_event_cannot_be_written_changes_nothing() {
    let (mut crm, customer_id) = stocked().await;
    let order = crm
        .client
        .create_order(draft(&customer_id, vec![line("A", 1)]))
        .await
        .unwrap()
        .into_inner();
    // The outbox insert is the last write of the submit transaction; make it fail.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_orders() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.topic = 'crm.orders' THEN RAISE EXCEPTION 'outbox refused'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER refuse_orders BEFORE INSERT ON outbox \
           FOR EACH ROW EXECUTE FUNCTION refuse_orders();",
    )
    .execute(&crm.pool)
    .await
    .unwrap();
    let failed = crm
        .client
        .submit_order(SubmitOrderRequest {
            request_id: String::new(),
            id: order.id.clone(),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Internal);
    let after = crm
        .client
        .get_order(GetOrderRequest {
            id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, order, "still the same DRAFT at version 1");
    assert_eq!(crm.count("outbox WHERE topic = 'crm.orders'").await, 0);

    // Once the outbox accepts rows again the same submit goes through, with its event.
    sqlx::raw_sql("DROP TRIGGER refuse_orders ON outbox")
        .execute(&crm.pool)
        .await
        .unwrap();
    let submitted = crm
        .client
        .submit_order(SubmitOrderRequest {
            request_id: String::new(),
            id: order.id.clone(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(submitted.version, 2);
    let records = crm.events(topics::CRM_ORDERS, 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].payload["aggregate_version"], 2);
    crm.stop().await;
}
