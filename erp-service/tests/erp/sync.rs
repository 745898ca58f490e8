//! What the sync bridge and the operator CLI use beyond orders: ListCustomers, ApplyCustomer
//! with repair and addresses, CountStock and Republish.

use std::collections::HashSet;

use super::*;

fn profile(id: &str, name: &str, addresses: Vec<pb::Address>) -> pb::CustomerProfile {
    pb::CustomerProfile {
        id: id.into(),
        display_name: name.into(),
        email: "ada@example.com".into(),
        status: pb::CustomerStatus::Active as i32,
        addresses,
        ..Default::default()
    }
}

fn address(kind: pb::AddressKind, line1: &str) -> pb::Address {
    pb::Address {
        kind: kind as i32,
        line1: line1.into(),
        line2: "2nd floor".into(),
        city: "Berlin".into(),
        postal_code: "10115".into(),
        region: String::new(),
        country_code: "DE".into(),
    }
}

fn count_request(
    sku: &str,
    warehouse: &str,
    counted: i64,
    event_id: &str,
) -> pb::CountStockRequest {
    pb::CountStockRequest {
        sku: sku.into(),
        warehouse: warehouse.into(),
        counted_quantity: counted,
        event_id: event_id.into(),
        source: "wms".into(),
    }
}

impl Erp {
    async fn apply(
        &mut self,
        profile: pb::CustomerProfile,
        version: i64,
        repair: bool,
    ) -> Result<pb::ApplyCustomerResponse, Status> {
        self.sync
            .apply_customer(pb::ApplyCustomerRequest {
                customer: Some(profile),
                source_version: version,
                event_id: Uuid::now_v7().to_string(),
                repair,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    async fn get_customer(&mut self, id: &str) -> pb::Customer {
        self.api
            .get_customer(pb::GetCustomerRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
    }

    async fn count(
        &mut self,
        sku: &str,
        warehouse: &str,
        counted: i64,
        event_id: &str,
    ) -> Result<pb::CountStockResponse, Status> {
        self.sync
            .count_stock(count_request(sku, warehouse, counted, event_id))
            .await
            .map(tonic::Response::into_inner)
    }
}

#[tokio::test]
async fn list_customers_pages_in_id_order_with_profile_and_finance() {
    let mut erp = Erp::start().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(erp.customer(0).await);
    }
    // One with addresses and finance set.
    let rich = ids[2].clone();
    erp.apply(
        profile(
            &rich,
            "Grace",
            vec![address(pb::AddressKind::Billing, "Main St 1")],
        ),
        2,
        false,
    )
    .await
    .unwrap();
    erp.terms(&rich, 5_000, 21).await;
    ids.sort();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = erp
            .api
            .list_customers(pb::ListCustomersRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.customers.len() <= 2);
        for customer in &page.customers {
            let profile = customer.profile.as_ref().unwrap();
            let finance = customer.finance.as_ref().unwrap();
            assert_eq!(finance.customer_id, profile.id);
            if profile.id == rich {
                assert_eq!(profile.display_name, "Grace");
                assert_eq!(profile.addresses.len(), 1);
                assert_eq!(customer.profile_version, 2);
                assert_eq!(finance.credit_limit.as_ref().unwrap().amount_minor, 5_000);
                assert_eq!(finance.payment_terms_days, 21);
                assert_eq!(finance.version, 1);
            } else {
                assert_eq!(finance.version, 0, "defaults for a customer without terms");
                assert_eq!(finance.payment_terms_days, 30);
            }
            seen.push(profile.id.clone());
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every customer once, in id order");

    let bad = erp
        .api
        .list_customers(pb::ListCustomersRequest {
            page_size: 2,
            page_token: "zz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    erp.stop().await;
}

#[tokio::test]
async fn apply_customer_mirrors_addresses_and_repairs_only_when_asked() {
    let mut erp = Erp::start().await;
    let id = Uuid::now_v7().to_string();
    let outbox = erp.scalar("SELECT count(*) FROM outbox").await;

    // Addresses round-trip, replaced as a set by each applied version.
    let two = vec![
        address(pb::AddressKind::Billing, "Main St 1"),
        address(pb::AddressKind::Shipping, "Dock 7"),
    ];
    let applied = erp
        .apply(profile(&id, "Ada", two.clone()), 3, false)
        .await
        .unwrap();
    assert!(applied.applied);
    assert_eq!(applied.current_version, 3);
    let got = erp.get_customer(&id).await;
    assert_eq!(got.profile.as_ref().unwrap().addresses, two);

    // An equal version without repair changes nothing, even with drifted data.
    let drifted = profile(
        &id,
        "Ada Lovelace",
        vec![address(pb::AddressKind::Shipping, "Dock 9")],
    );
    let plain = erp.apply(drifted.clone(), 3, false).await.unwrap();
    assert!(!plain.applied);
    assert_eq!(plain.current_version, 3);
    let got = erp.get_customer(&id).await;
    assert_eq!(got.profile.as_ref().unwrap().display_name, "Ada");
    assert_eq!(got.profile.as_ref().unwrap().addresses, two);

    // With repair, the equal version applies (addresses replaced too) ...
    let repaired = erp.apply(drifted.clone(), 3, true).await.unwrap();
    assert!(repaired.applied);
    assert_eq!(repaired.current_version, 3);
    let got = erp.get_customer(&id).await;
    assert_eq!(got.profile_version, 3);
    assert_eq!(got.profile, Some(drifted.clone()));
    // ... once: the same data again is no change.
    assert!(!erp.apply(drifted.clone(), 3, true).await.unwrap().applied);
    // An older version changes nothing, repair or not.
    let older = profile(&id, "Old", Vec::new());
    let stale = erp.apply(older, 2, true).await.unwrap();
    assert!(!stale.applied);
    assert_eq!(stale.current_version, 3);
    assert_eq!(erp.get_customer(&id).await.profile, Some(drifted));

    // A newer version with no addresses clears them.
    erp.apply(profile(&id, "Ada", Vec::new()), 4, false)
        .await
        .unwrap();
    assert!(
        erp.get_customer(&id)
            .await
            .profile
            .unwrap()
            .addresses
            .is_empty()
    );

    // An address without a kind is refused, naming the field.
    let mut bad = address(pb::AddressKind::Billing, "x");
    bad.kind = pb::AddressKind::Unspecified as i32;
    let refused = erp
        .apply(profile(&id, "Ada", vec![bad]), 5, false)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let violations = refused.get_error_details();
    let fields: Vec<&str> = violations
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["customer.addresses[0].kind"]);

    assert_eq!(
        erp.scalar("SELECT count(*) FROM outbox").await,
        outbox,
        "ApplyCustomer never emits events"
    );
    erp.stop().await;
}

#[tokio::test]
async fn apply_customers_applies_each_customers_versions_in_batch_order() {
    let mut erp = Erp::start().await;
    let (a, b, c) = (
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
    );
    erp.apply(profile(&b, "Bea", Vec::new()), 5, false)
        .await
        .unwrap();
    let drifted_b = profile(
        &b,
        "Bea Drift",
        vec![address(pb::AddressKind::Billing, "Elm 2")],
    );
    let entry =
        |profile: pb::CustomerProfile, version: i64, repair: bool| pb::ApplyCustomerRequest {
            customer: Some(profile),
            source_version: version,
            event_id: Uuid::now_v7().to_string(),
            repair,
        };
    let batch = vec![
        entry(profile(&a, "Ada 1", Vec::new()), 1, false),
        entry(profile(&a, "Ada 3", Vec::new()), 3, false),
        entry(profile(&a, "Ada 2", Vec::new()), 2, false),
        entry(drifted_b.clone(), 5, true),
        entry(drifted_b.clone(), 5, true),
        entry(profile(&c, "Cy", Vec::new()), 7, false),
        entry(profile(&a, "Ada 3 again", Vec::new()), 3, false),
        entry(profile(&b, "Bea 4", Vec::new()), 4, false),
    ];
    let results = erp
        .sync
        .apply_customers(pb::ApplyCustomersRequest { customers: batch })
        .await
        .unwrap()
        .into_inner()
        .results;
    let outcomes: Vec<(bool, i64)> = results
        .iter()
        .map(|r| (r.applied, r.current_version))
        .collect();
    assert_eq!(
        outcomes,
        [
            (true, 1),  // a: new
            (true, 3),  // a: newer
            (false, 3), // a: older than what the batch already wrote
            (true, 5),  // b: a repair of drift at the stored version
            (false, 5), // b: the same repair again is no change
            (true, 7),  // c: new
            (false, 3), // a: an equal version without repair
            (false, 5), // b: older
        ]
    );
    let name = |customer: pb::Customer| customer.profile.unwrap().display_name;
    assert_eq!(name(erp.get_customer(&a).await), "Ada 3");
    assert_eq!(erp.get_customer(&b).await.profile, Some(drifted_b));
    assert_eq!(name(erp.get_customer(&c).await), "Cy");
    erp.stop().await;
}

#[tokio::test]
async fn count_stock_sets_on_hand_once_per_event_and_reserves_backorders() {
    let mut erp = Erp::start().await;
    erp.product("C-1", 10).await;
    erp.warehouse("AMS").await;
    erp.receive("C-1", "AMS", 10).await;
    let customer = erp.customer(1_000_000).await;
    let count_entries = "SELECT count(*) FROM stock_ledger WHERE adjustment_reason = 'COUNT'";

    // Down from 10 to 7: one COUNT entry of -3, referencing the event id.
    let counted = erp.count("C-1", "AMS", 7, "wms-1").await.unwrap();
    assert!(counted.applied);
    let level = counted.level.unwrap();
    assert_eq!((level.on_hand, level.reserved, level.available), (7, 0, 7));
    assert_eq!(erp.scalar(count_entries).await, 1);
    let movements = erp
        .api
        .list_stock_movements(pb::ListStockMovementsRequest {
            sku: "C-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .movements;
    let entry = movements.last().unwrap();
    assert_eq!(entry.reason(), pb::MovementReason::Adjustment);
    assert_eq!(entry.adjustment_reason(), pb::AdjustmentReason::Count);
    assert_eq!(entry.on_hand_delta, -3);
    assert_eq!(entry.reference, "wms-1");

    // A repeat changes nothing, even with another quantity.
    let ledger = erp.scalar("SELECT count(*) FROM stock_ledger").await;
    let outbox = erp.scalar("SELECT count(*) FROM outbox").await;
    for quantity in [7, 50] {
        let again = erp.count("C-1", "AMS", quantity, "wms-1").await.unwrap();
        assert!(!again.applied);
        assert_eq!(again.level.unwrap().on_hand, 7);
    }
    assert_eq!(
        erp.scalar("SELECT count(*) FROM stock_ledger").await,
        ledger
    );
    assert_eq!(erp.scalar("SELECT count(*) FROM outbox").await, outbox);

    // A count equal to on hand applies but writes no entry and no event.
    let same = erp.count("C-1", "AMS", 7, "wms-2").await.unwrap();
    assert!(same.applied);
    assert_eq!(
        erp.scalar("SELECT count(*) FROM stock_ledger").await,
        ledger
    );
    assert_eq!(erp.scalar("SELECT count(*) FROM outbox").await, outbox);

    // Below what is reserved: refused, nothing changed, the event id stays unused.
    let reserved = erp.accepted("cs-a", &customer, &[("C-1", 5, 10)]).await;
    assert_eq!(reserved.status(), S::Reserved);
    let ledger = erp.scalar("SELECT count(*) FROM stock_ledger").await;
    let below = erp.count("C-1", "AMS", 4, "wms-3").await.unwrap_err();
    assert_eq!(below.code(), Code::FailedPrecondition);
    let details = below.get_error_details();
    let info = details.error_info().unwrap();
    assert_eq!(info.reason, "COUNT_BELOW_RESERVED");
    assert_eq!(info.domain, "tandem.erp");
    assert_eq!(info.metadata.get("reserved").map(String::as_str), Some("5"));
    assert_eq!(erp.level("C-1", "AMS").await, (7, 5, 2));
    assert_eq!(
        erp.scalar("SELECT count(*) FROM stock_ledger").await,
        ledger
    );

    // Up: the backorder waiting for the sku is reserved in the same call.
    let backorder = erp.accepted("cs-b", &customer, &[("C-1", 10, 10)]).await;
    assert_eq!(backorder.status(), S::Backordered);
    let up = erp.count("C-1", "AMS", 20, "wms-3").await.unwrap();
    assert!(up.applied);
    let level = up.level.unwrap();
    assert_eq!(
        (level.on_hand, level.reserved, level.available),
        (20, 15, 5)
    );
    assert_eq!(erp.order(&backorder.id).await.status(), S::Reserved);
    assert_eq!(erp.scalar(count_entries).await, 2);

    // Unknown sku or warehouse, a negative count, no event id.
    let unknown_sku = erp.count("NOPE", "AMS", 1, "wms-4").await.unwrap_err();
    assert_eq!(unknown_sku.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&unknown_sku), "UNKNOWN_SKU");
    let unknown_wh = erp.count("C-1", "NOWHERE", 1, "wms-5").await.unwrap_err();
    assert_eq!(unknown_wh.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&unknown_wh), "UNKNOWN_WAREHOUSE");
    let negative = erp.count("C-1", "AMS", -1, "wms-6").await.unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument);
    let no_id = erp.count("C-1", "AMS", 1, "").await.unwrap_err();
    assert_eq!(no_id.code(), Code::InvalidArgument);
    assert_eq!(erp.scalar("SELECT count(*) FROM stock_counts").await, 3);

    // COUNT is CountStock's own reason: AdjustStock refuses it.
    let manual = erp
        .api
        .adjust_stock(pb::AdjustStockRequest {
            sku: "C-1".into(),
            warehouse: "AMS".into(),
            quantity_delta: 1,
            reason: pb::AdjustmentReason::Count as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(manual.code(), Code::InvalidArgument);

    // Stock events: receipt, count down, reservation of cs-a, count up (with cs-b's
    // reservation in the same transaction): valid, versions 1..=4, the last one current.
    let events = erp.events(topics::ERP_STOCK, 4).await;
    assert_eq!(versions(&events, "C-1"), [1, 2, 3, 4]);
    let counted_down = &events[1].payload;
    assert_eq!(counted_down["type"], "erp.stock.changed");
    assert_eq!(counted_down["data"]["on_hand"], 7);
    let last = &events[3].payload["data"];
    assert_eq!(
        (last["on_hand"].as_i64(), last["reserved"].as_i64()),
        (Some(20), Some(15))
    );
    erp.assert_invariants().await;
    erp.stop().await;
}

#[tokio::test]
async fn republish_emits_one_event_per_entity_at_its_current_version() {
    let mut erp = Erp::start().await;
    erp.warehouse("AMS").await;
    erp.product("R-1", 10).await;
    erp.product("R-2", 10).await;
    erp.product("R-3", 10).await;
    erp.api
        .update_product(pb::UpdateProductRequest {
            product: Some(pb::Product {
                sku: "R-3".into(),
                display_name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
        })
        .await
        .unwrap();
    // 600 more products straight in the table, so products span two batches of 500.
    sqlx::query(
        "INSERT INTO products (id, sku, display_name, unit_price_minor, currency, version) \
         SELECT gen_random_uuid(), 'BULK-' || lpad(n::text, 4, '0'), 'Bulk', 1, 'EUR', 1 \
         FROM generate_series(1, 600) AS n",
    )
    .execute(&erp.pool)
    .await
    .unwrap();
    erp.receive("R-1", "AMS", 10).await;
    erp.receive("R-1", "AMS", 5).await;
    erp.receive("R-2", "AMS", 3).await;
    let with_terms = erp.customer(100_000).await;
    let without_terms = erp.customer(0).await;
    erp.accepted("rp-1", &with_terms, &[("R-1", 2, 10)]).await;
    erp.accepted("rp-2", &with_terms, &[("R-2", 1, 10)]).await;
    erp.sync
        .cancel_order(pb::CancelOrderRequest {
            crm_order_id: "rp-2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Gets a finance row at version 0 (defaults, never changed): not republished.
    let held = erp
        .accepted("rp-3", &without_terms, &[("R-2", 1, 10)])
        .await;
    assert_eq!(held.status(), S::CreditHold);

    // What each topic holds before: products 3 + 1 update; stock R-1 x2, R-2 x1, rp-1's and
    // rp-2's reservations, rp-2's release; orders rp-1, rp-2 x2, rp-3; finance: the terms.
    let before = [
        (topics::ERP_PRODUCTS, 4),
        (topics::ERP_STOCK, 6),
        (topics::ERP_ORDERS, 4),
        (topics::ERP_CUSTOMERS, 1),
    ];
    let mut seen: HashSet<String> = HashSet::new();
    for (topic, count) in before {
        for record in erp.events(topic, count).await {
            seen.insert(record.payload["id"].as_str().unwrap().to_owned());
        }
    }
    // The records of several partitions interleave: new ones are told apart by event id.
    let fresh = |records: Vec<Record>| -> Vec<Record> {
        records
            .into_iter()
            .filter(|r| !seen.contains(r.payload["id"].as_str().unwrap()))
            .collect()
    };

    let done = erp
        .sync
        .republish(pb::RepublishRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            done.products,
            done.stock_levels,
            done.orders,
            done.customers
        ),
        (603, 2, 3, 1)
    );

    let current = |sql: &str| {
        let pool = erp.pool.clone();
        let sql = sql.to_owned();
        async move {
            sqlx::query_as::<_, (String, i64)>(&sql)
                .fetch_all(&pool)
                .await
                .unwrap()
                .into_iter()
                .collect::<HashMap<String, i64>>()
        }
    };
    let expected = [
        (
            topics::ERP_PRODUCTS,
            4,
            current("SELECT sku, version FROM products").await,
        ),
        (
            topics::ERP_STOCK,
            6,
            current("SELECT sku, stock_version FROM products WHERE stock_version > 0").await,
        ),
        (
            topics::ERP_ORDERS,
            4,
            current("SELECT crm_order_id, version FROM sales_orders").await,
        ),
        (
            topics::ERP_CUSTOMERS,
            1,
            current("SELECT customer_id::text, version FROM customer_finance WHERE version > 0")
                .await,
        ),
    ];
    assert_eq!(expected[1].2.len(), 2);
    assert_eq!(expected[1].2["R-1"], 3, "two receipts and a reservation");
    assert_eq!(expected[2].2["rp-2"], 2);
    for (topic, before, versions) in expected {
        let records = fresh(erp.events(topic, before + versions.len()).await);
        assert_eq!(
            records.len(),
            versions.len(),
            "{topic}: one event per entity"
        );
        let mut republished: HashMap<String, i64> = HashMap::new();
        for record in &records {
            let key = record.key.clone().unwrap();
            let version = record.payload["aggregate_version"].as_i64().unwrap();
            assert!(
                republished.insert(key.clone(), version).is_none(),
                "{topic}: {key} twice"
            );
            assert_eq!(
                versions.get(&key),
                Some(&version),
                "{topic}: {key} at its current version"
            );
        }
    }
    // The republished stock carries the current levels.
    let stock = fresh(erp.events(topics::ERP_STOCK, 8).await);
    let r1 = stock
        .iter()
        .find(|r| r.key.as_deref() == Some("R-1"))
        .unwrap();
    assert_eq!(r1.payload["data"]["on_hand"], 15);
    assert_eq!(r1.payload["data"]["reserved"], 2);
    // Nothing changed state.
    assert_eq!(erp.level("R-1", "AMS").await, (15, 2, 13));
    erp.stop().await;
}
