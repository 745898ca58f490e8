//! The catalogue mirror over real gRPC: written only by CrmSync (version-gated, no echo),
//! read by the sales desk through ListProducts and GetAvailability.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Crm, money, violated_fields};
use tandem_proto::crm::v1::{
    ApplyProductRequest, ApplyStockLevelsRequest, GetAvailabilityRequest, ListProductsRequest,
    ProductData, StockLevel,
};
use tonic::Code;

fn product(sku: &str, name: &str, price: i64, active: bool, version: i64) -> ApplyProductRequest {
    ApplyProductRequest {
        product: Some(ProductData {
            sku: sku.into(),
            name: name.into(),
            unit_price: Some(money("EUR", price)),
            active,
        }),
        source_version: version,
        event_id: uuid::Uuid::now_v7().to_string(),
        repair: false,
    }
}

fn level(sku: &str, available: i64, version: i64) -> StockLevel {
    StockLevel {
        sku: sku.into(),
        available,
        source_version: version,
    }
}

#[tokio::test]
async fn products_are_applied_once_per_version_and_listed_in_pages() {
    let mut crm = Crm::start().await;
    let created = crm
        .sync
        .apply_product(product("W-1", "Widget", 1_999, true, 5))
        .await
        .unwrap()
        .into_inner();
    assert!(created.applied);
    assert_eq!(created.current_version, 5);
    for (stale_version, name) in [(5, "Duplicate"), (4, "Stale")] {
        let response = crm
            .sync
            .apply_product(product("W-1", name, 1, false, stale_version))
            .await
            .unwrap()
            .into_inner();
        assert!(!response.applied, "v{stale_version} applied over 5");
        assert_eq!(response.current_version, 5);
    }
    let newer = crm
        .sync
        .apply_product(product("W-1", "Widget Mk II", 2_499, true, 6))
        .await
        .unwrap()
        .into_inner();
    assert!(newer.applied);

    for (i, sku) in ["A-1", "B-1", "C-1", "D-1"].iter().enumerate() {
        crm.product(sku, 100 * (i as i64 + 1), "EUR", true, 1).await;
    }
    crm.product("Z-OLD", 5, "EUR", false, 1).await;

    let mut skus = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = crm
            .client
            .list_products(ListProductsRequest {
                page_size: 2,
                page_token: token,
                include_inactive: false,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        skus.extend(page.products.into_iter().map(|p| p.sku));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(skus, ["A-1", "B-1", "C-1", "D-1", "W-1"]);
    assert_eq!(pages, 3);
    let everything = crm
        .client
        .list_products(ListProductsRequest {
            page_size: 100,
            page_token: String::new(),
            include_inactive: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(everything.products.len(), 6);
    assert!(everything.next_page_token.is_empty());
    let widget = everything.products.iter().find(|p| p.sku == "W-1").unwrap();
    assert_eq!(widget.name, "Widget Mk II");
    assert_eq!(widget.unit_price, Some(money("EUR", 2_499)));
    assert_eq!(widget.product_version, 6);
    assert!(
        !everything
            .products
            .iter()
            .find(|p| p.sku == "Z-OLD")
            .unwrap()
            .active
    );

    let refused = crm
        .sync
        .apply_product(ApplyProductRequest {
            product: Some(ProductData {
                sku: "bad sku".into(),
                name: String::new(),
                unit_price: Some(money("EURO", -1)),
                active: true,
            }),
            source_version: 0,
            event_id: String::new(),
            repair: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        [
            "product.sku",
            "product.name",
            "product.unit_price.amount_minor",
            "product.unit_price.currency_code"
        ]
    );
    let no_version = crm
        .sync
        .apply_product(product("W-1", "Widget", 1, true, 0))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_version), ["source_version"]);
    let no_product = crm
        .sync
        .apply_product(ApplyProductRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_product), ["product"]);
    assert_eq!(crm.count("catalogue").await, 6);
    assert_eq!(crm.count("outbox").await, 0, "mirrors never publish");
    crm.stop().await;
}

#[tokio::test]
async fn stock_levels_are_gated_per_sku_and_shown_as_availability() {
    let mut crm = Crm::start().await;
    crm.product("W-1", 1_999, "EUR", true, 1).await;
    let first = crm
        .sync
        .apply_stock_levels(ApplyStockLevelsRequest {
            levels: vec![level("W-1", 40, 3), level("NEW-1", 7, 1)],
            event_id: String::new(),
            repair: false,
        })
        .await
        .unwrap()
        .into_inner();
    let outcome: Vec<(String, bool, i64)> = first
        .results
        .iter()
        .map(|r| (r.sku.clone(), r.applied, r.current_version))
        .collect();
    assert_eq!(
        outcome,
        [("W-1".to_owned(), true, 3), ("NEW-1".to_owned(), true, 1)]
    );

    // One stale and one newer level in the same batch: each gated on its own.
    let mixed = crm
        .sync
        .apply_stock_levels(ApplyStockLevelsRequest {
            levels: vec![level("W-1", 0, 2), level("NEW-1", 9, 2)],
            event_id: String::new(),
            repair: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!mixed.results[0].applied);
    assert_eq!(mixed.results[0].current_version, 3);
    assert!(mixed.results[1].applied);
    let duplicate = crm.stock("W-1", 1, 3).await;
    assert!(!duplicate.applied);

    let availability = crm
        .client
        .get_availability(GetAvailabilityRequest {
            skus: vec!["NEW-1".into(), "W-1".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .availability;
    let seen: Vec<(String, i64, i64)> = availability
        .iter()
        .map(|a| (a.sku.clone(), a.available, a.source_version))
        .collect();
    assert_eq!(
        seen,
        [("NEW-1".to_owned(), 9, 2), ("W-1".to_owned(), 40, 3)]
    );

    // A stock level does not touch the product data, and vice versa.
    crm.product("W-1", 2_000, "EUR", true, 2).await;
    let products = crm
        .client
        .list_products(ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(
        products.len(),
        1,
        "a sku known only from stock is not listed yet"
    );
    assert_eq!(products[0].available, 40);
    assert_eq!(products[0].stock_version, 3);
    assert_eq!(products[0].unit_price, Some(money("EUR", 2_000)));

    let unknown = crm
        .client
        .get_availability(GetAvailabilityRequest {
            skus: vec!["W-1".into(), "GHOST".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("GHOST"));
    let empty = crm
        .client
        .get_availability(GetAvailabilityRequest { skus: Vec::new() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&empty), ["skus"]);
    let refused = crm
        .sync
        .apply_stock_levels(ApplyStockLevelsRequest {
            levels: vec![level("W-1", -1, 9), level("W-1", 1, 9), level("X", 1, 0)],
            event_id: String::new(),
            repair: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        [
            "levels[0].available",
            "levels[1].sku",
            "levels[2].source_version"
        ]
    );
    let nothing = crm
        .sync
        .apply_stock_levels(ApplyStockLevelsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&nothing), ["levels"]);
    let unchanged = crm
        .client
        .get_availability(GetAvailabilityRequest {
            skus: vec!["W-1".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unchanged.availability[0].available, 40,
        "a refused batch changes nothing"
    );
    assert_eq!(crm.count("outbox").await, 0, "mirrors never publish");
    crm.stop().await;
}
