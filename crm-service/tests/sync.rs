//! The integration and operator RPCs of `CrmSync` over real gRPC, a real database and a real
//! broker: customers upserted by external_ref, external orders placed once, the republished
//! snapshot, and `repair` on the mirrors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};

use support::{Crm, customer, money, violated_fields};
use tandem_proto::{
    crm::v1::{
        ApplyCustomerFinanceRequest, ApplyOrderStatusRequest, ApplyOrderStatusesRequest,
        ApplyProductRequest, ApplyStockLevelsRequest, ArchiveCustomerRequest, CreateOrderRequest,
        Customer, CustomerStatus, ExternalOrderLine, FulfilmentStatus, GetOrderRequest,
        ListCustomersRequest, ListProductsRequest, Order, OrderLine, OrderStatus,
        PlaceExternalOrderRequest, ProductData, RepublishRequest, RequestOrderCancellationRequest,
        StockLevel, SubmitOrderRequest, UpdateCustomerRequest, UpsertCustomerByExternalRefRequest,
    },
    events::topics,
};
use tandem_tests::Record;
use tonic::{Code, Status};
use tonic_types::StatusExt;

fn web_customer(external_ref: &str, email: &str) -> Customer {
    Customer {
        display_name: "Grace Hopper".into(),
        email: email.into(),
        external_ref: external_ref.into(),
        ..Customer::default()
    }
}

fn upsert(customer: Customer, version: i64) -> UpsertCustomerByExternalRefRequest {
    UpsertCustomerByExternalRefRequest {
        customer: Some(customer),
        source: "webshop".into(),
        source_version: version,
        event_id: uuid::Uuid::now_v7().to_string(),
    }
}

fn external_order(
    external_ref: &str,
    customer_ref: &str,
    lines: &[(&str, i64)],
) -> PlaceExternalOrderRequest {
    PlaceExternalOrderRequest {
        external_ref: external_ref.into(),
        customer_external_ref: customer_ref.into(),
        currency_code: "EUR".into(),
        lines: lines
            .iter()
            .map(|(sku, quantity)| ExternalOrderLine {
                sku: (*sku).into(),
                quantity: *quantity,
            })
            .collect(),
        source: "webshop".into(),
        event_id: uuid::Uuid::now_v7().to_string(),
    }
}

/// The reason of a FAILED_PRECONDITION's `google.rpc.ErrorInfo`, checking its domain.
fn error_reason(status: &Status) -> String {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo details");
    assert_eq!(info.domain, "tandem.crm");
    info.reason.clone()
}

#[tokio::test]
async fn customers_are_upserted_by_external_ref_once_per_source_version() {
    let mut crm = Crm::start().await;
    let created = crm
        .sync
        .upsert_customer_by_external_ref(upsert(web_customer("web:grace", "grace@example.com"), 5))
        .await
        .unwrap()
        .into_inner();
    assert!(created.applied);
    let first = created.customer.unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.status(), CustomerStatus::Active);
    assert_eq!(first.external_ref, "web:grace");

    // An equal or older source version changes nothing.
    for stale in [5, 3] {
        let ignored = crm
            .sync
            .upsert_customer_by_external_ref(upsert(
                web_customer("web:grace", "stale@example.com"),
                stale,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!ignored.applied, "version {stale}");
        assert_eq!(ignored.customer.as_ref(), Some(&first));
    }

    // A newer one replaces the profile of the same customer.
    let updated = crm
        .sync
        .upsert_customer_by_external_ref(upsert(
            Customer {
                phone: "+1 555 0100".into(),
                ..web_customer("web:grace", "grace@navy.example.com")
            },
            6,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(updated.applied);
    let second = updated.customer.unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.version, 2);
    assert_eq!(second.email, "grace@navy.example.com");
    assert_eq!(second.phone, "+1 555 0100");
    let fetched = crm.customer(&first.id).await;
    assert_eq!(fetched, second);

    // A newer version with the same profile records the version but publishes nothing.
    let same = crm
        .sync
        .upsert_customer_by_external_ref(upsert(
            Customer {
                phone: "+1 555 0100".into(),
                ..web_customer("web:grace", "grace@navy.example.com")
            },
            7,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(same.applied);
    assert_eq!(same.customer.unwrap().version, 2);
    let stale_after_same = crm
        .sync
        .upsert_customer_by_external_ref(upsert(web_customer("web:grace", "grace@example.com"), 7))
        .await
        .unwrap()
        .into_inner();
    assert!(!stale_after_same.applied);

    // A customer made at the sales desk is found by its external_ref too.
    let desk = crm
        .create_customer(Customer {
            external_ref: "web:ada".into(),
            ..customer("Ada Lovelace")
        })
        .await;
    let adopted = crm
        .sync
        .upsert_customer_by_external_ref(upsert(
            Customer {
                display_name: "Ada King".into(),
                ..web_customer("web:ada", "ada@example.com")
            },
            1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(adopted.applied);
    let adopted = adopted.customer.unwrap();
    assert_eq!(
        (adopted.id.as_str(), adopted.version),
        (desk.id.as_str(), 2)
    );
    assert_eq!(adopted.display_name, "Ada King");

    // The external_ref filter finds exactly one.
    let listed = crm
        .client
        .list_customers(ListCustomersRequest {
            external_ref: "web:grace".into(),
            ..ListCustomersRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.customers, std::slice::from_ref(&second));

    let records = crm.events(topics::CRM_CUSTOMERS, 4).await;
    let grace: Vec<_> = records
        .iter()
        .filter(|r| r.key.as_deref() == Some(first.id.as_str()))
        .collect();
    assert_eq!(
        grace.len(),
        2,
        "one event per change, none for stale or same"
    );
    for (record, version) in grace.iter().zip([1, 2]) {
        let event = &record.payload;
        assert_eq!(event["type"], "crm.customer.upserted");
        assert_eq!(event["source"], "crm");
        assert_eq!(event["aggregate_id"], first.id.as_str());
        assert_eq!(event["aggregate_version"], version);
        assert_eq!(event["data"]["external_ref"], "web:grace");
    }
    assert_eq!(grace[1].payload["data"]["email"], "grace@navy.example.com");
    assert_eq!(records.len(), 4, "two for grace, two for ada");
    crm.stop().await;
}

#[tokio::test]
async fn bad_upserts_name_every_field_and_write_nothing() {
    let mut crm = Crm::start().await;
    let status = crm
        .sync
        .upsert_customer_by_external_ref(upsert(web_customer("", "not-an-email"), 0))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["customer.email", "customer.external_ref", "source_version"]
    );
    let no_customer = crm
        .sync
        .upsert_customer_by_external_ref(UpsertCustomerByExternalRefRequest {
            source_version: 1,
            ..UpsertCustomerByExternalRefRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_customer), ["customer"]);
    let bad_version = crm
        .sync
        .upsert_customer_by_external_ref(upsert(web_customer("web:1", "a@b.example"), -1))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_version), ["source_version"]);
    assert_eq!(crm.count("customers").await, 0);
    assert_eq!(crm.count("outbox").await, 0);
    crm.stop().await;
}

/// A CRM with products A (19.99 EUR), B (2.50 EUR), U (5.00 USD), OLD (inactive) and the
/// customer `web:ada`.
async fn shop() -> (Crm, String) {
    let mut crm = Crm::start().await;
    crm.product("A", 1_999, "EUR", true, 1).await;
    crm.product("B", 250, "EUR", true, 1).await;
    crm.product("U", 500, "USD", true, 1).await;
    crm.product("OLD", 100, "EUR", false, 1).await;
    let ada = crm
        .sync
        .upsert_customer_by_external_ref(upsert(web_customer("web:ada", "ada@example.com"), 1))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    (crm, ada.id)
}

#[tokio::test]
async fn an_external_order_is_placed_submitted_and_published_once() {
    let (mut crm, customer_id) = shop().await;
    let placed = crm
        .sync
        .place_external_order(external_order(
            "shop-1001",
            "web:ada",
            &[("A", 2), ("B", 4)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(placed.applied);
    let order = placed.order.unwrap();
    assert_eq!(order.status(), OrderStatus::Submitted);
    assert_eq!(order.version, 1);
    assert_eq!(order.customer_id, customer_id);
    assert_eq!(order.external_ref, "shop-1001");
    assert_eq!(order.currency_code, "EUR");
    assert_eq!(order.lines.len(), 2);
    assert_eq!(order.lines[0].unit_price, Some(money("EUR", 1_999)));
    assert_eq!(order.lines[0].product_name, "Product A");
    assert_eq!(order.lines[1].line_total, Some(money("EUR", 1_000)));
    assert_eq!(order.total, Some(money("EUR", 4_998)));
    assert!(order.submit_time.is_some());
    let fetched = crm
        .client
        .get_order(GetOrderRequest {
            id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, order);

    // A repeat (even with other lines, even after a price change) returns the order as it is.
    crm.product("A", 2_500, "EUR", true, 2).await;
    let repeat = crm
        .sync
        .place_external_order(external_order("shop-1001", "web:ada", &[("B", 1)]))
        .await
        .unwrap()
        .into_inner();
    assert!(!repeat.applied);
    assert_eq!(repeat.order.as_ref(), Some(&order));

    // Orders made at the sales desk have no external_ref.
    let desk = crm
        .client
        .create_order(CreateOrderRequest {
            request_id: String::new(),
            order: Some(Order {
                customer_id: customer_id.clone(),
                lines: vec![OrderLine {
                    sku: "B".into(),
                    quantity: 1,
                    ..OrderLine::default()
                }],
                ..Order::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(desk.external_ref, "");

    let records = crm.events(topics::CRM_ORDERS, 1).await;
    assert_eq!(records.len(), 1, "the repeat published nothing");
    let event = &records[0].payload;
    assert_eq!(records[0].key.as_deref(), Some(order.id.as_str()));
    assert_eq!(event["type"], "crm.order.submitted");
    assert_eq!(event["aggregate_type"], "order");
    assert_eq!(event["aggregate_version"], 1);
    assert_eq!(event["data"]["customer_id"], customer_id.as_str());
    assert_eq!(event["data"]["status"], "SUBMITTED");
    assert_eq!(event["data"]["total_minor"], 4_998);
    assert_eq!(event["data"]["lines"][0]["unit_price_minor"], 1_999);
    assert_eq!(event["data"]["lines"][1]["quantity"], 4);
    crm.stop().await;
}

#[tokio::test]
async fn external_orders_for_unknown_customers_or_skus_or_bad_input_are_refused() {
    let (mut crm, _) = shop().await;
    let outbox_before = crm.count("outbox").await;
    let unknown_customer = crm
        .sync
        .place_external_order(external_order("shop-1", "web:nobody", &[("A", 1)]))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&unknown_customer), "UNKNOWN_CUSTOMER");
    let details = unknown_customer.get_error_details();
    assert_eq!(
        details
            .error_info()
            .unwrap()
            .metadata
            .get("customer_external_ref"),
        Some(&"web:nobody".to_owned())
    );

    for skus in [&[("A", 1), ("NOPE", 1)][..], &[("OLD", 1)]] {
        let unknown_sku = crm
            .sync
            .place_external_order(external_order("shop-2", "web:ada", skus))
            .await
            .unwrap_err();
        assert_eq!(error_reason(&unknown_sku), "UNKNOWN_SKU", "{skus:?}");
    }

    let wrong_currency = crm
        .sync
        .place_external_order(external_order("shop-3", "web:ada", &[("A", 1), ("U", 1)]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&wrong_currency), ["lines[1].sku"]);

    let bad = crm
        .sync
        .place_external_order(PlaceExternalOrderRequest {
            currency_code: "eur".into(),
            ..external_order("", "", &[])
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&bad),
        [
            "external_ref",
            "customer_external_ref",
            "currency_code",
            "lines"
        ]
    );
    let bad_lines = crm
        .sync
        .place_external_order(external_order(
            "shop-4",
            "web:ada",
            &[("A", 0), ("B", 1), ("B", 2)],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&bad_lines),
        ["lines[0].quantity", "lines[2].sku"]
    );

    // An archived customer cannot order.
    let ada = crm
        .client
        .list_customers(ListCustomersRequest {
            external_ref: "web:ada".into(),
            ..ListCustomersRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .customers
        .remove(0);
    crm.client
        .archive_customer(ArchiveCustomerRequest {
            id: ada.id,
            version: 0,
        })
        .await
        .unwrap();
    let archived = crm
        .sync
        .place_external_order(external_order("shop-5", "web:ada", &[("A", 1)]))
        .await
        .unwrap_err();
    assert_eq!(error_reason(&archived), "CUSTOMER_ARCHIVED");

    assert_eq!(crm.count("orders").await, 0);
    assert_eq!(
        crm.count("outbox").await,
        outbox_before + 1,
        "only the archive wrote an event"
    );
    crm.stop().await;
}

#[tokio::test]
async fn republish_emits_each_customer_and_known_order_once_at_its_current_version() {
    let (mut crm, ada_id) = shop().await;
    // Customers: ada (version 1), bob (updated: 2), eve (archived: 2).
    let bob = crm.create_customer(customer("Bob Jones")).await;
    crm.client
        .update_customer(UpdateCustomerRequest {
            customer: Some(Customer {
                id: bob.id.clone(),
                phone: "+49 30 1234567".into(),
                ..Customer::default()
            }),
            update_mask: support::mask(&["phone"]),
        })
        .await
        .unwrap();
    let eve = crm.create_customer(customer("Eve Smith")).await;
    crm.client
        .archive_customer(ArchiveCustomerRequest {
            id: eve.id.clone(),
            version: 1,
        })
        .await
        .unwrap();

    // Orders: a draft and a cancelled draft (never published), a submitted one (version 2), one
    // with a cancellation pending (version 3), and an external one (version 1).
    let draft = |lines: Vec<(&str, i64)>| CreateOrderRequest {
        request_id: String::new(),
        order: Some(Order {
            customer_id: ada_id.clone(),
            lines: lines
                .into_iter()
                .map(|(sku, quantity)| OrderLine {
                    sku: sku.into(),
                    quantity,
                    ..OrderLine::default()
                })
                .collect(),
            ..Order::default()
        }),
    };
    crm.client
        .create_order(draft(vec![("A", 1)]))
        .await
        .unwrap();
    let dropped = crm
        .client
        .create_order(draft(vec![("A", 2)]))
        .await
        .unwrap()
        .into_inner();
    crm.client
        .request_order_cancellation(RequestOrderCancellationRequest {
            id: dropped.id.clone(),
            ..RequestOrderCancellationRequest::default()
        })
        .await
        .unwrap();
    let submitted = crm
        .client
        .create_order(draft(vec![("B", 3)]))
        .await
        .unwrap()
        .into_inner();
    crm.client
        .submit_order(SubmitOrderRequest {
            request_id: String::new(),
            id: submitted.id.clone(),
            version: 0,
        })
        .await
        .unwrap();
    let pending = crm
        .client
        .create_order(draft(vec![("A", 1), ("B", 1)]))
        .await
        .unwrap()
        .into_inner();
    crm.client
        .submit_order(SubmitOrderRequest {
            request_id: String::new(),
            id: pending.id.clone(),
            version: 0,
        })
        .await
        .unwrap();
    crm.client
        .request_order_cancellation(RequestOrderCancellationRequest {
            id: pending.id.clone(),
            version: 0,
            reason: "too late".into(),
        })
        .await
        .unwrap();
    // Cancelled after a request, the ERP confirming (version 3; the ERP's status bumps no CRM
    // version): the ERP knows it, so it is republished.
    let cancelled = crm
        .client
        .create_order(draft(vec![("B", 2)]))
        .await
        .unwrap()
        .into_inner();
    crm.client
        .submit_order(SubmitOrderRequest {
            id: cancelled.id.clone(),
            version: 0,
            request_id: String::new(),
        })
        .await
        .unwrap();
    crm.client
        .request_order_cancellation(RequestOrderCancellationRequest {
            id: cancelled.id.clone(),
            version: 0,
            reason: "customer changed their mind".into(),
        })
        .await
        .unwrap();
    crm.sync
        .apply_order_status(ApplyOrderStatusRequest {
            order_id: cancelled.id.clone(),
            status: FulfilmentStatus::Cancelled as i32,
            source_version: 2,
            event_id: uuid::Uuid::now_v7().to_string(),
            ..ApplyOrderStatusRequest::default()
        })
        .await
        .unwrap();
    let status = crm
        .client
        .get_order(GetOrderRequest {
            id: cancelled.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, OrderStatus::Cancelled);
    let external = crm
        .sync
        .place_external_order(external_order("shop-7", "web:ada", &[("A", 5)]))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();

    // Before: 5 customer events (ada, bob x2, eve x2), 6 order events.
    // (Records come per partition, so new ones are told apart by their event ids.)
    let before: HashSet<String> = [
        crm.events(topics::CRM_CUSTOMERS, 5).await,
        crm.events(topics::CRM_ORDERS, 6).await,
    ]
    .iter()
    .flatten()
    .map(|r| r.payload["id"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(before.len(), 11);
    let new = |records: &[Record]| -> Vec<Record> {
        records
            .iter()
            .filter(|r| !before.contains(r.payload["id"].as_str().unwrap()))
            .cloned()
            .collect()
    };

    let counts = crm
        .sync
        .republish(RepublishRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((counts.customers, counts.orders), (3, 4));

    let customer_events = crm.events(topics::CRM_CUSTOMERS, 8).await;
    assert_eq!(customer_events.len(), 8);
    let new_customer_events = new(&customer_events);
    assert_eq!(new_customer_events.len(), 3);
    let republished: HashMap<String, (String, i64)> = new_customer_events
        .iter()
        .map(|r| {
            let event = &r.payload;
            assert_eq!(r.key.as_deref(), event["aggregate_id"].as_str());
            (
                event["aggregate_id"].as_str().unwrap().to_owned(),
                (
                    event["type"].as_str().unwrap().to_owned(),
                    event["aggregate_version"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        republished,
        HashMap::from([
            (ada_id.clone(), ("crm.customer.upserted".to_owned(), 1)),
            (bob.id.clone(), ("crm.customer.upserted".to_owned(), 2)),
            (eve.id.clone(), ("crm.customer.archived".to_owned(), 2)),
        ])
    );
    assert_eq!(
        new_customer_events
            .iter()
            .find(|r| r.key.as_deref() == Some(bob.id.as_str()))
            .unwrap()
            .payload["data"]["phone"],
        "+49 30 1234567"
    );

    let order_events = crm.events(topics::CRM_ORDERS, 10).await;
    assert_eq!(order_events.len(), 10);
    let new_order_events = new(&order_events);
    assert_eq!(new_order_events.len(), 4);
    let republished: HashMap<String, (String, i64)> = new_order_events
        .iter()
        .map(|r| {
            let event = &r.payload;
            (
                event["aggregate_id"].as_str().unwrap().to_owned(),
                (
                    event["type"].as_str().unwrap().to_owned(),
                    event["aggregate_version"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        republished,
        HashMap::from([
            (submitted.id.clone(), ("crm.order.submitted".to_owned(), 2)),
            (
                pending.id.clone(),
                ("crm.order.cancel_requested".to_owned(), 3)
            ),
            (
                cancelled.id.clone(),
                ("crm.order.cancel_requested".to_owned(), 3)
            ),
            (external.id.clone(), ("crm.order.submitted".to_owned(), 1)),
        ])
    );
    // Each republished event carries the same state as the last one first published.
    for id in [&submitted.id, &pending.id, &cancelled.id, &external.id] {
        let per_order: Vec<_> = order_events
            .iter()
            .filter(|r| r.key.as_deref() == Some(id.as_str()))
            .map(|r| {
                (
                    r.payload["aggregate_version"].clone(),
                    r.payload["data"].clone(),
                )
            })
            .collect();
        let n = per_order.len();
        assert_eq!(per_order[n - 1], per_order[n - 2], "{id}");
    }
    crm.stop().await;
}

#[tokio::test]
async fn republish_writes_batches_that_cover_every_row() {
    let crm = Crm::start().await;
    // More rows than one batch holds, written straight to the table (no events of their own).
    sqlx::query(
        "INSERT INTO customers (id, display_name, email, status, version) \
         SELECT gen_random_uuid(), 'Customer ' || n, 'c' || n || '@example.com', 'ACTIVE', n % 3 + 1 \
         FROM generate_series(1, 1234) AS n",
    )
    .execute(&crm.pool)
    .await
    .unwrap();
    let mut sync = crm.sync.clone();
    let counts = sync
        .republish(RepublishRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((counts.customers, counts.orders), (1234, 0));
    assert_eq!(
        counts.next_page_token, "",
        "1,234 rows fit in one call's budget"
    );
    let (rows, distinct, matching): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT o.kafka_key), \
                count(*) FILTER (WHERE (o.payload->>'aggregate_version')::bigint = c.version) \
         FROM outbox o JOIN customers c ON c.id::text = o.kafka_key",
    )
    .fetch_one(&crm.pool)
    .await
    .unwrap();
    assert_eq!((rows, distinct, matching), (1234, 1234, 1234));
    crm.stop().await;
}

#[tokio::test]
async fn a_batch_of_statuses_applies_in_order_and_is_refused_whole() {
    let (mut crm, _) = shop().await;
    let place = |external_ref: &'static str| {
        let mut sync = crm.sync.clone();
        async move {
            sync.place_external_order(external_order(external_ref, "web:ada", &[("B", 1)]))
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap()
                .id
        }
    };
    let (first, second) = (place("shop-b1").await, place("shop-b2").await);
    let status = |id: &str, status: FulfilmentStatus, version: i64| ApplyOrderStatusRequest {
        order_id: id.to_owned(),
        status: status as i32,
        source_version: version,
        ..ApplyOrderStatusRequest::default()
    };
    let fulfilment = |crm: &Crm, id: &str| {
        let mut client = crm.client.clone();
        let id = id.to_owned();
        async move {
            let order = client
                .get_order(GetOrderRequest { id })
                .await
                .unwrap()
                .into_inner();
            let status = order.status();
            let fulfilment = order.fulfilment.unwrap_or_default();
            (fulfilment.status(), fulfilment.source_version, status)
        }
    };

    // One order twice (the later version wins), a replay, another order cancelled.
    let results = crm
        .sync
        .apply_order_statuses(ApplyOrderStatusesRequest {
            statuses: vec![
                status(&first, FulfilmentStatus::Reserved, 1),
                status(&first, FulfilmentStatus::Shipped, 2),
                status(&first, FulfilmentStatus::Reserved, 1),
                status(&second, FulfilmentStatus::Cancelled, 1),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let answers: Vec<(bool, i64)> = results
        .iter()
        .map(|r| (r.applied, r.current_version))
        .collect();
    assert_eq!(answers, [(true, 1), (true, 2), (false, 2), (true, 1)]);
    assert_eq!(
        fulfilment(&crm, &first).await,
        (FulfilmentStatus::Shipped, 2, OrderStatus::Submitted)
    );
    assert_eq!(
        fulfilment(&crm, &second).await,
        (FulfilmentStatus::Cancelled, 1, OrderStatus::Cancelled),
        "CANCELLED ends the CRM order, as a single status does"
    );

    // An unknown order refuses the whole batch: the status before it is not applied either.
    let unknown = "0193a0c4-0000-7000-8000-00000000dead";
    let refused = crm
        .sync
        .apply_order_statuses(ApplyOrderStatusesRequest {
            statuses: vec![
                status(&first, FulfilmentStatus::Backordered, 3),
                status(unknown, FulfilmentStatus::Reserved, 1),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert!(refused.message().contains(unknown), "{refused:?}");
    assert_eq!(
        fulfilment(&crm, &first).await,
        (FulfilmentStatus::Shipped, 2, OrderStatus::Submitted)
    );
}

#[tokio::test]
async fn repair_applies_an_equal_version_and_an_older_one_never() {
    let (mut crm, ada_id) = shop().await;
    let outbox_before = crm.count("outbox").await;

    // Products.
    let product = |price: i64, version: i64, repair: bool| ApplyProductRequest {
        product: Some(ProductData {
            sku: "A".into(),
            name: "Product A".into(),
            unit_price: Some(money("EUR", price)),
            active: true,
        }),
        source_version: version,
        event_id: String::new(),
        repair,
    };
    let price_of_a = |crm: &mut Crm| {
        let mut client = crm.client.clone();
        async move {
            client
                .list_products(ListProductsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .products
                .into_iter()
                .find(|p| p.sku == "A")
                .unwrap()
                .unit_price
                .unwrap()
                .amount_minor
        }
    };
    crm.sync
        .apply_product(product(1_000, 3, false))
        .await
        .unwrap();
    let plain = crm
        .sync
        .apply_product(product(1_100, 3, false))
        .await
        .unwrap();
    assert!(!plain.into_inner().applied);
    assert_eq!(price_of_a(&mut crm).await, 1_000);
    let repaired = crm
        .sync
        .apply_product(product(1_100, 3, true))
        .await
        .unwrap()
        .into_inner();
    assert!(repaired.applied);
    assert_eq!(repaired.current_version, 3);
    assert_eq!(price_of_a(&mut crm).await, 1_100);
    let older = crm
        .sync
        .apply_product(product(1_200, 2, true))
        .await
        .unwrap()
        .into_inner();
    assert!(!older.applied);
    assert_eq!(price_of_a(&mut crm).await, 1_100);

    // Stock levels.
    let stock = |available: i64, version: i64, repair: bool| ApplyStockLevelsRequest {
        levels: vec![StockLevel {
            sku: "A".into(),
            available,
            source_version: version,
        }],
        event_id: String::new(),
        repair,
    };
    crm.sync
        .apply_stock_levels(stock(10, 4, false))
        .await
        .unwrap();
    for (available, version, repair, applied) in [
        (7, 4, false, false),
        (7, 4, true, true),
        (3, 3, true, false),
    ] {
        let result = crm
            .sync
            .apply_stock_levels(stock(available, version, repair))
            .await
            .unwrap()
            .into_inner()
            .results
            .remove(0);
        assert_eq!(result.applied, applied, "{available} at {version}");
        assert_eq!(result.current_version, 4);
    }
    let listed = crm
        .client
        .list_products(ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .products
            .iter()
            .find(|p| p.sku == "A")
            .unwrap()
            .available,
        7
    );

    // Order status.
    let order = crm
        .sync
        .place_external_order(external_order("shop-9", "web:ada", &[("B", 1)]))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let outbox_with_order = crm.count("outbox").await;
    let status = |status: FulfilmentStatus, version: i64, repair: bool| ApplyOrderStatusRequest {
        order_id: order.id.clone(),
        status: status as i32,
        source_version: version,
        repair,
        ..ApplyOrderStatusRequest::default()
    };
    crm.sync
        .apply_order_status(status(FulfilmentStatus::Reserved, 2, false))
        .await
        .unwrap();
    for (fulfilment, version, repair, applied) in [
        (FulfilmentStatus::Backordered, 2, false, false),
        (FulfilmentStatus::Backordered, 2, true, true),
        (FulfilmentStatus::Shipped, 1, true, false),
    ] {
        let response = crm
            .sync
            .apply_order_status(status(fulfilment, version, repair))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.applied, applied, "{fulfilment:?} at {version}");
        assert_eq!(response.current_version, 2);
    }
    let fetched = crm
        .client
        .get_order(GetOrderRequest {
            id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fetched.fulfilment.unwrap().status(),
        FulfilmentStatus::Backordered
    );
    assert_eq!(fetched.version, 1, "the mirror is not a CRM change");

    // Customer finance.
    let finance = |limit: i64, version: i64, repair: bool| ApplyCustomerFinanceRequest {
        customer_id: ada_id.clone(),
        credit_limit: Some(money("EUR", limit)),
        open_balance: Some(money("EUR", 0)),
        source_version: version,
        repair,
        ..ApplyCustomerFinanceRequest::default()
    };
    crm.sync
        .apply_customer_finance(finance(100_000, 2, false))
        .await
        .unwrap();
    for (limit, version, repair, applied) in [
        (200_000, 2, false, false),
        (200_000, 2, true, true),
        (300_000, 1, true, false),
    ] {
        let response = crm
            .sync
            .apply_customer_finance(finance(limit, version, repair))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.applied, applied, "{limit} at {version}");
        assert_eq!(response.current_version, 2);
    }
    let ada = crm.customer(&ada_id).await;
    assert_eq!(
        ada.finance.unwrap().credit_limit,
        Some(money("EUR", 200_000))
    );

    // Mirrors never publish, repaired or not.
    assert_eq!(outbox_with_order, outbox_before + 1);
    assert_eq!(crm.count("outbox").await, outbox_with_order);
    crm.stop().await;
}
