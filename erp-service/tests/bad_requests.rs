//! Every ERP RPC that reads user input, fed bad requests from one table: each must answer
//! INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the offending field, and the whole
//! table together must write nothing (every table of the database, found from the catalogue,
//! holds the same rows before and after).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tandem_proto::erp::v1 as pb;
use tandem_tests::{
    bad_requests::{assert_all_refused_writing_nothing, too_long, with},
    row,
};
use uuid::Uuid;

mod support;

use support::{Erp, mask};

fn money(currency: &str, amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: currency.into(),
        amount_minor,
    })
}

fn product(edit: fn(&mut pb::Product)) -> pb::Product {
    let product = pb::Product {
        sku: "NEW-1".into(),
        display_name: "New".into(),
        unit_price: money("EUR", 100),
        ..pb::Product::default()
    };
    with(product, edit)
}

fn create_product(edit: fn(&mut pb::Product)) -> pb::CreateProductRequest {
    pb::CreateProductRequest {
        request_id: String::new(),
        product: Some(product(edit)),
        inactive: false,
    }
}

/// An update of the seeded product W-1, selected by its sku.
fn update_product(paths: &[&str], edit: fn(&mut pb::Product)) -> pb::UpdateProductRequest {
    let product = pb::Product {
        sku: "W-1".into(),
        ..product(|_| {})
    };
    pb::UpdateProductRequest {
        product: Some(with(product, edit)),
        update_mask: mask(paths),
    }
}

fn warehouse(edit: fn(&mut pb::Warehouse)) -> pb::CreateWarehouseRequest {
    let warehouse = pb::Warehouse {
        code: "NEW".into(),
        display_name: "New".into(),
        create_time: None,
    };
    pb::CreateWarehouseRequest {
        request_id: String::new(),
        warehouse: Some(with(warehouse, edit)),
    }
}

fn receive(edit: fn(&mut pb::ReceiveStockRequest)) -> pb::ReceiveStockRequest {
    let request = pb::ReceiveStockRequest {
        request_id: String::new(),
        sku: "W-1".into(),
        warehouse: "AMS".into(),
        quantity: 1,
        reference: "DN-2".into(),
    };
    with(request, edit)
}

fn adjust(edit: fn(&mut pb::AdjustStockRequest)) -> pb::AdjustStockRequest {
    let request = pb::AdjustStockRequest {
        request_id: String::new(),
        sku: "W-1".into(),
        warehouse: "AMS".into(),
        quantity_delta: -1,
        reason: pb::AdjustmentReason::Damaged as i32,
        reference: String::new(),
    };
    with(request, edit)
}

fn transfer(edit: fn(&mut pb::TransferStockRequest)) -> pb::TransferStockRequest {
    let request = pb::TransferStockRequest {
        request_id: String::new(),
        sku: "W-1".into(),
        from_warehouse: "AMS".into(),
        to_warehouse: "BER".into(),
        quantity: 1,
        reference: String::new(),
    };
    with(request, edit)
}

fn stock_level(sku: &str, warehouse: &str) -> pb::GetStockLevelRequest {
    pb::GetStockLevelRequest {
        sku: sku.into(),
        warehouse: warehouse.into(),
    }
}

fn floor(key: &str, mirror_version: i64) -> pb::VersionFloor {
    pb::VersionFloor {
        key: key.into(),
        mirror_version,
    }
}

/// A valid `RecoverProducts` of one product, edited by `edit`.
fn recover_product(edit: fn(&mut pb::MirroredProduct)) -> pb::RecoverProductsRequest {
    let mut product = pb::MirroredProduct {
        sku: "W-1".into(),
        display_name: "Widget".into(),
        unit_price: Some(pb::Money {
            currency_code: "EUR".into(),
            amount_minor: 100,
        }),
        active: true,
        mirror_version: 3,
    };
    edit(&mut product);
    pb::RecoverProductsRequest {
        products: vec![product],
    }
}

fn count(edit: fn(&mut pb::CountStockRequest)) -> pb::CountStockRequest {
    let request = pb::CountStockRequest {
        sku: "W-1".into(),
        warehouse: "AMS".into(),
        counted_quantity: 12,
        event_id: "wms-1".into(),
        source: "wms".into(),
    };
    with(request, edit)
}

fn address(kind: i32) -> pb::Address {
    pb::Address {
        kind,
        line1: "1 Main St".into(),
        city: "Berlin".into(),
        country_code: "DE".into(),
        ..pb::Address::default()
    }
}

/// A proto3 enum value this build does not know.
const UNKNOWN_ENUM: i32 = 99;

#[tokio::test]
async fn every_bad_request_names_its_field_and_writes_nothing() {
    let mut erp = Erp::start().await;

    // A little valid data, so requests about existing things fail only for the bad field: two
    // warehouses, a product with stock, a customer with credit and an accepted order.
    for code in ["AMS", "BER"] {
        let warehouse = pb::Warehouse {
            code: code.into(),
            display_name: format!("Warehouse {code}"),
            create_time: None,
        };
        erp.api
            .create_warehouse(pb::CreateWarehouseRequest {
                request_id: String::new(),
                warehouse: Some(warehouse),
            })
            .await
            .unwrap();
    }
    erp.api
        .create_product(create_product(|p| p.sku = "W-1".into()))
        .await
        .unwrap();
    erp.api
        .receive_stock(receive(|r| r.quantity = 10))
        .await
        .unwrap();
    let customer = Uuid::now_v7().to_string();
    let profile = pb::CustomerProfile {
        id: customer.clone(),
        display_name: "Ada".into(),
        email: "ada@example.com".into(),
        status: pb::CustomerStatus::Active as i32,
        ..pb::CustomerProfile::default()
    };
    let apply_customer = |edit: fn(&mut pb::CustomerProfile)| pb::ApplyCustomerRequest {
        customer: Some(with(profile.clone(), edit)),
        source_version: 2,
        event_id: Uuid::now_v7().to_string(),
        repair: false,
    };
    erp.sync
        .apply_customer(with(apply_customer(|_| {}), |r| r.source_version = 1))
        .await
        .unwrap();
    let terms = |paths: &[&str], edit: fn(&mut pb::SetCreditTermsRequest)| {
        let request = pb::SetCreditTermsRequest {
            version: None,
            customer_id: customer.clone(),
            credit_limit: money("EUR", 100_000),
            payment_terms_days: 30,
            credit_hold: false,
            update_mask: mask(paths),
        };
        with(request, edit)
    };
    erp.api.set_credit_terms(terms(&[], |_| {})).await.unwrap();
    let accept = |edit: fn(&mut pb::AcceptOrderRequest)| {
        let request = pb::AcceptOrderRequest {
            crm_order_id: "crm-1".into(),
            customer_id: customer.clone(),
            currency_code: "EUR".into(),
            lines: vec![pb::AcceptOrderLine {
                sku: "W-1".into(),
                quantity: 2,
                unit_price_minor: 100,
            }],
            final_attempt: false,
            event_id: Uuid::now_v7().to_string(),
        };
        with(request, edit)
    };
    let order = erp
        .sync
        .accept_order(accept(|_| {}))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.status(), pb::SalesOrderStatus::Reserved);

    let api = erp.api.clone();
    let sync = erp.sync.clone();
    let payment = |edit: fn(&mut pb::RecordPaymentRequest)| {
        let request = pb::RecordPaymentRequest {
            request_id: String::new(),
            customer_id: customer.clone(),
            amount: money("EUR", 100),
            reference: "PAY-1".into(),
        };
        with(request, edit)
    };
    let cancel = |crm_order_id: &str, reason: String| pb::CancelOrderRequest {
        crm_order_id: crm_order_id.into(),
        reason,
        event_id: Uuid::now_v7().to_string(),
    };
    // ApplyCustomers: a batch of the seeded customer's next version made bad in one place, and
    // valid profiles of customers the ERP does not have yet (written only if a batch with a
    // bad entry were partly applied).
    let bad_one = |edit: fn(&mut pb::CustomerProfile)| pb::ApplyCustomersRequest {
        customers: vec![apply_customer(edit)],
    };
    let newcomer = |n: usize| pb::ApplyCustomerRequest {
        customer: Some(pb::CustomerProfile {
            id: Uuid::now_v7().to_string(),
            display_name: format!("Newcomer {n}"),
            email: format!("newcomer{n}@example.com"),
            status: pb::CustomerStatus::Active as i32,
            ..pb::CustomerProfile::default()
        }),
        source_version: 1,
        event_id: Uuid::now_v7().to_string(),
        repair: false,
    };
    let batch = |customers: Vec<pb::ApplyCustomerRequest>| pb::ApplyCustomersRequest { customers };

    let order_id = order.id.clone();
    let rows = vec![
        // ---- request_id, on every creating or stock- or money-moving RPC
        row!(
            "CreateProduct with a request id that is not a UUID",
            "request_id",
            api.create_product(with(create_product(|p| p.sku = "W-9".into()), |r| {
                r.request_id = "retry-1".into()
            })),
        ),
        row!(
            "CreateWarehouse with the nil UUID as request id",
            "request_id",
            api.create_warehouse(with(warehouse(|w| w.code = "NEW".into()), |r| {
                r.request_id = Uuid::nil().to_string()
            })),
        ),
        row!(
            "ReceiveStock with a request id without hyphens",
            "request_id",
            api.receive_stock(with(receive(|r| r.quantity = 1), |r| {
                r.request_id = Uuid::now_v7().simple().to_string()
            })),
        ),
        row!(
            "AdjustStock with a request id in braces",
            "request_id",
            api.adjust_stock(with(adjust(|a| a.quantity_delta = 1), |r| {
                r.request_id = format!("{{{}}}", Uuid::now_v7())
            })),
        ),
        row!(
            "TransferStock with a request id of 37 characters",
            "request_id",
            api.transfer_stock(with(transfer(|t| t.quantity = 1), |r| {
                r.request_id = format!("{}0", Uuid::now_v7())
            })),
        ),
        row!(
            "RecordPayment with a request id that is not a UUID",
            "request_id",
            api.record_payment(payment(|r| {
                r.reference = "PAY-9".into();
                r.request_id = "pay-9".into();
            })),
        ),
        row!(
            "ReleaseCreditHold with a request id that is not a UUID",
            "request_id",
            api.release_credit_hold(pb::ReleaseCreditHoldRequest {
                id: order_id.clone(),
                request_id: "x".into(),
            }),
        ),
        row!(
            "ShipOrder with a request id that is not a UUID",
            "request_id",
            api.ship_order(pb::ShipOrderRequest {
                id: order_id.clone(),
                request_id: "\0".into(),
            }),
        ),
        row!(
            "InvoiceOrder with a request id that is not a UUID",
            "request_id",
            api.invoice_order(pb::InvoiceOrderRequest {
                id: order_id.clone(),
                request_id: " ".into(),
            }),
        ),
        // ---- SetCreditTerms' version
        row!(
            "SetCreditTerms with a negative version",
            "version",
            api.set_credit_terms(terms(&[], |r| r.version = Some(-1))),
        ),
        // ---- ErpService.CreateProduct
        row!(
            "CreateProduct without a product",
            "product",
            api.create_product(pb::CreateProductRequest::default()),
        ),
        row!(
            "CreateProduct without a sku",
            "product.sku",
            api.create_product(create_product(|p| p.sku.clear())),
        ),
        row!(
            "CreateProduct with a malformed sku",
            "product.sku",
            api.create_product(create_product(|p| p.sku = "-W 1".into())),
        ),
        row!(
            "CreateProduct with a sku of 65 characters",
            "product.sku",
            api.create_product(create_product(|p| p.sku = too_long(65))),
        ),
        row!(
            "CreateProduct without a display name",
            "product.display_name",
            api.create_product(create_product(|p| p.display_name = "  ".into())),
        ),
        row!(
            "CreateProduct with a display name of 201 characters",
            "product.display_name",
            api.create_product(create_product(|p| p.display_name = too_long(201))),
        ),
        row!(
            "CreateProduct with a NUL character in the display name",
            "product.display_name",
            api.create_product(create_product(|p| p.display_name = "Wid\0get".into())),
        ),
        row!(
            "CreateProduct with a description of 2001 characters",
            "product.description",
            api.create_product(create_product(|p| p.description = too_long(2001))),
        ),
        row!(
            "CreateProduct with a NUL character in the description",
            "product.description",
            api.create_product(create_product(|p| p.description = "\0".into())),
        ),
        row!(
            "CreateProduct without a price",
            "product.unit_price",
            api.create_product(create_product(|p| p.unit_price = None)),
        ),
        row!(
            "CreateProduct with a negative price",
            "product.unit_price.amount_minor",
            api.create_product(create_product(|p| p.unit_price = money("EUR", -1))),
        ),
        row!(
            "CreateProduct with a malformed currency",
            "product.unit_price.currency_code",
            api.create_product(create_product(|p| p.unit_price = money("eur", 1))),
        ),
        // One currency rule for both services (ISO 4217 with minor units, not withdrawn).
        row!(
            "CreateProduct in a well-formed but unknown currency",
            "product.unit_price.currency_code",
            api.create_product(create_product(|p| p.unit_price = money("ABC", 1))),
        ),
        row!(
            "CreateProduct in a currency withdrawn from ISO 4217",
            "product.unit_price.currency_code",
            api.create_product(create_product(|p| p.unit_price = money("HRK", 1))),
        ),
        // ---- ErpService.GetProduct
        row!(
            "GetProduct without an id",
            "id",
            api.get_product(pb::GetProductRequest { id: String::new() }),
        ),
        row!(
            "GetProduct with an id that is neither a UUID nor a sku",
            "id",
            api.get_product(pb::GetProductRequest {
                id: "W 1; DROP".into(),
            }),
        ),
        // ---- ErpService.ListProducts
        row!(
            "ListProducts with a negative page size",
            "page_size",
            api.list_products(pb::ListProductsRequest {
                page_size: -1,
                ..pb::ListProductsRequest::default()
            }),
        ),
        row!(
            "ListProducts with a made-up page token",
            "page_token",
            api.list_products(pb::ListProductsRequest {
                page_token: "nonsense".into(),
                ..pb::ListProductsRequest::default()
            }),
        ),
        row!(
            "ListProducts by a sku prefix with a NUL character",
            "sku_prefix",
            api.list_products(pb::ListProductsRequest {
                sku_prefix: "W\0".into(),
                ..pb::ListProductsRequest::default()
            }),
        ),
        // ---- ErpService.UpdateProduct
        row!(
            "UpdateProduct without a product",
            "product",
            api.update_product(pb::UpdateProductRequest {
                product: None,
                update_mask: mask(&["display_name"]),
            }),
        ),
        row!(
            "UpdateProduct without an id or a sku",
            "product.id",
            api.update_product(update_product(&["display_name"], |p| p.sku.clear())),
        ),
        row!(
            "UpdateProduct with an id that is neither a UUID nor a sku",
            "product.id",
            api.update_product(update_product(&["display_name"], |p| p.id = "#1".into())),
        ),
        row!(
            "UpdateProduct with a malformed sku",
            "product.sku",
            api.update_product(update_product(&["display_name"], |p| p.sku = "W 1".into())),
        ),
        row!(
            "UpdateProduct of the immutable sku",
            "update_mask",
            api.update_product(update_product(&["sku"], |_| {})),
        ),
        row!(
            "UpdateProduct with an unknown mask path",
            "update_mask",
            api.update_product(update_product(&["colour"], |_| {})),
        ),
        row!(
            "UpdateProduct of the price without a price",
            "product.unit_price",
            api.update_product(update_product(&["unit_price"], |p| p.unit_price = None)),
        ),
        row!(
            "UpdateProduct to an empty display name",
            "product.display_name",
            api.update_product(update_product(&["display_name"], |p| {
                p.display_name.clear();
            })),
        ),
        row!(
            "UpdateProduct to a NUL character in the display name",
            "product.display_name",
            api.update_product(update_product(&["display_name"], |p| {
                p.display_name = "Wid\0get".into();
            })),
        ),
        row!(
            "UpdateProduct to a negative price (empty mask: every field)",
            "product.unit_price.amount_minor",
            api.update_product(update_product(&[], |p| p.unit_price = money("EUR", -5))),
        ),
        row!(
            "UpdateProduct to a malformed currency",
            "product.unit_price.currency_code",
            api.update_product(update_product(&["unit_price"], |p| {
                p.unit_price = money("EURO", 5);
            })),
        ),
        // ---- ErpService.CreateWarehouse
        row!(
            "CreateWarehouse without a warehouse",
            "warehouse",
            api.create_warehouse(pb::CreateWarehouseRequest {
                request_id: String::new(),
                warehouse: None
            }),
        ),
        row!(
            "CreateWarehouse without a code",
            "warehouse.code",
            api.create_warehouse(warehouse(|w| w.code.clear())),
        ),
        row!(
            "CreateWarehouse with a lower-case code",
            "warehouse.code",
            api.create_warehouse(warehouse(|w| w.code = "ams-2".into())),
        ),
        row!(
            "CreateWarehouse with a code of 33 characters",
            "warehouse.code",
            api.create_warehouse(warehouse(|w| w.code = "A".repeat(33))),
        ),
        row!(
            "CreateWarehouse without a display name",
            "warehouse.display_name",
            api.create_warehouse(warehouse(|w| w.display_name = " ".into())),
        ),
        row!(
            "CreateWarehouse with a NUL character in the display name",
            "warehouse.display_name",
            api.create_warehouse(warehouse(|w| w.display_name = "New\0".into())),
        ),
        // ---- ErpService.ListWarehouses
        row!(
            "ListWarehouses with a negative page size",
            "page_size",
            api.list_warehouses(pb::ListWarehousesRequest {
                page_size: -1,
                page_token: String::new(),
            }),
        ),
        row!(
            "ListWarehouses with a made-up page token",
            "page_token",
            api.list_warehouses(pb::ListWarehousesRequest {
                page_size: 0,
                page_token: "abcd".into(),
            }),
        ),
        // ---- ErpService.ReceiveStock
        row!(
            "ReceiveStock without a sku",
            "sku",
            api.receive_stock(receive(|r| r.sku.clear())),
        ),
        row!(
            "ReceiveStock with a malformed sku",
            "sku",
            api.receive_stock(receive(|r| r.sku = "W 1".into())),
        ),
        row!(
            "ReceiveStock without a warehouse",
            "warehouse",
            api.receive_stock(receive(|r| r.warehouse.clear())),
        ),
        row!(
            "ReceiveStock with a malformed warehouse code",
            "warehouse",
            api.receive_stock(receive(|r| r.warehouse = "ams".into())),
        ),
        row!(
            "ReceiveStock of nothing",
            "quantity",
            api.receive_stock(receive(|r| r.quantity = 0)),
        ),
        row!(
            "ReceiveStock of a negative quantity",
            "quantity",
            api.receive_stock(receive(|r| r.quantity = -4)),
        ),
        row!(
            "ReceiveStock with a reference of 201 characters",
            "reference",
            api.receive_stock(receive(|r| r.reference = too_long(201))),
        ),
        row!(
            "ReceiveStock with a NUL character in the reference",
            "reference",
            api.receive_stock(receive(|r| r.reference = "DN\0".into())),
        ),
        // ---- ErpService.AdjustStock
        row!(
            "AdjustStock without a sku",
            "sku",
            api.adjust_stock(adjust(|r| r.sku.clear())),
        ),
        row!(
            "AdjustStock without a warehouse",
            "warehouse",
            api.adjust_stock(adjust(|r| r.warehouse.clear())),
        ),
        row!(
            "AdjustStock with a malformed warehouse code",
            "warehouse",
            api.adjust_stock(adjust(|r| r.warehouse = "A M S".into())),
        ),
        row!(
            "AdjustStock by zero",
            "quantity_delta",
            api.adjust_stock(adjust(|r| r.quantity_delta = 0)),
        ),
        row!(
            "AdjustStock without a reason",
            "reason",
            api.adjust_stock(adjust(|r| {
                r.reason = pb::AdjustmentReason::Unspecified as i32;
            })),
        ),
        row!(
            "AdjustStock with an unknown reason value",
            "reason",
            api.adjust_stock(adjust(|r| r.reason = UNKNOWN_ENUM)),
        ),
        row!(
            "AdjustStock with CountStock's own reason",
            "reason",
            api.adjust_stock(adjust(|r| r.reason = pb::AdjustmentReason::Count as i32)),
        ),
        row!(
            "AdjustStock with a reference of 201 characters",
            "reference",
            api.adjust_stock(adjust(|r| r.reference = too_long(201))),
        ),
        row!(
            "AdjustStock with a NUL character in the reference",
            "reference",
            api.adjust_stock(adjust(|r| r.reference = "\0".into())),
        ),
        // ---- ErpService.TransferStock
        row!(
            "TransferStock with a malformed sku",
            "sku",
            api.transfer_stock(transfer(|r| r.sku = "W/1".into())),
        ),
        row!(
            "TransferStock without a source warehouse",
            "from_warehouse",
            api.transfer_stock(transfer(|r| r.from_warehouse.clear())),
        ),
        row!(
            "TransferStock from a malformed warehouse code",
            "from_warehouse",
            api.transfer_stock(transfer(|r| r.from_warehouse = "ams".into())),
        ),
        row!(
            "TransferStock without a target warehouse",
            "to_warehouse",
            api.transfer_stock(transfer(|r| r.to_warehouse.clear())),
        ),
        row!(
            "TransferStock to a malformed warehouse code",
            "to_warehouse",
            api.transfer_stock(transfer(|r| r.to_warehouse = "ber".into())),
        ),
        row!(
            "TransferStock to the same warehouse",
            "to_warehouse",
            api.transfer_stock(transfer(|r| r.to_warehouse = "AMS".into())),
        ),
        row!(
            "TransferStock of nothing",
            "quantity",
            api.transfer_stock(transfer(|r| r.quantity = 0)),
        ),
        row!(
            "TransferStock with a NUL character in the reference",
            "reference",
            api.transfer_stock(transfer(|r| r.reference = "T\0".into())),
        ),
        // ---- ErpService.GetStockLevel
        row!(
            "GetStockLevel without a sku",
            "sku",
            api.get_stock_level(stock_level("", "AMS")),
        ),
        row!(
            "GetStockLevel with a malformed sku",
            "sku",
            api.get_stock_level(stock_level("W 1", "AMS")),
        ),
        row!(
            "GetStockLevel without a warehouse",
            "warehouse",
            api.get_stock_level(stock_level("W-1", "")),
        ),
        row!(
            "GetStockLevel with a malformed warehouse code",
            "warehouse",
            api.get_stock_level(stock_level("W-1", "ams")),
        ),
        // ---- ErpService.ListStockLevels
        row!(
            "ListStockLevels with a negative page size",
            "page_size",
            api.list_stock_levels(pb::ListStockLevelsRequest {
                page_size: -1,
                ..pb::ListStockLevelsRequest::default()
            }),
        ),
        row!(
            "ListStockLevels with a made-up page token",
            "page_token",
            api.list_stock_levels(pb::ListStockLevelsRequest {
                page_token: "0000000000000000".into(),
                ..pb::ListStockLevelsRequest::default()
            }),
        ),
        row!(
            "ListStockLevels by a sku with a NUL character",
            "sku",
            api.list_stock_levels(pb::ListStockLevelsRequest {
                sku: "W-1\0".into(),
                ..pb::ListStockLevelsRequest::default()
            }),
        ),
        row!(
            "ListStockLevels in a warehouse with a NUL character",
            "warehouse",
            api.list_stock_levels(pb::ListStockLevelsRequest {
                warehouse: "\0".into(),
                ..pb::ListStockLevelsRequest::default()
            }),
        ),
        // ---- ErpService.ListStockMovements
        row!(
            "ListStockMovements with a malformed order id",
            "order_id",
            api.list_stock_movements(pb::ListStockMovementsRequest {
                order_id: "crm-1".into(),
                ..pb::ListStockMovementsRequest::default()
            }),
        ),
        row!(
            "ListStockMovements with a negative page size",
            "page_size",
            api.list_stock_movements(pb::ListStockMovementsRequest {
                page_size: i32::MIN,
                ..pb::ListStockMovementsRequest::default()
            }),
        ),
        row!(
            "ListStockMovements with a made-up page token",
            "page_token",
            api.list_stock_movements(pb::ListStockMovementsRequest {
                page_token: "x".repeat(5000),
                ..pb::ListStockMovementsRequest::default()
            }),
        ),
        row!(
            "ListStockMovements by a sku with a NUL character",
            "sku",
            api.list_stock_movements(pb::ListStockMovementsRequest {
                sku: "\0".into(),
                ..pb::ListStockMovementsRequest::default()
            }),
        ),
        row!(
            "ListStockMovements in a warehouse with a NUL character",
            "warehouse",
            api.list_stock_movements(pb::ListStockMovementsRequest {
                warehouse: "AMS\0".into(),
                ..pb::ListStockMovementsRequest::default()
            }),
        ),
        // ---- ErpService.GetCustomer
        row!(
            "GetCustomer without an id",
            "id",
            api.get_customer(pb::GetCustomerRequest { id: String::new() }),
        ),
        row!(
            "GetCustomer with a malformed id",
            "id",
            api.get_customer(pb::GetCustomerRequest { id: "ada".into() }),
        ),
        // ---- ErpService.ListCustomers
        row!(
            "ListCustomers with a negative page size",
            "page_size",
            api.list_customers(pb::ListCustomersRequest {
                page_size: -1,
                page_token: String::new(),
            }),
        ),
        row!(
            "ListCustomers with a made-up page token",
            "page_token",
            api.list_customers(pb::ListCustomersRequest {
                page_size: 10,
                page_token: "ffffffffffffffff7b7d".into(),
            }),
        ),
        // ---- ErpService.SetCreditTerms
        row!(
            "SetCreditTerms without a customer id",
            "customer_id",
            api.set_credit_terms(terms(&[], |r| r.customer_id.clear())),
        ),
        row!(
            "SetCreditTerms with a malformed customer id",
            "customer_id",
            api.set_credit_terms(terms(&[], |r| r.customer_id = "ada".into())),
        ),
        row!(
            "SetCreditTerms with an unknown mask path",
            "update_mask",
            api.set_credit_terms(terms(&["open_balance"], |_| {})),
        ),
        row!(
            "SetCreditTerms of the credit limit without one",
            "credit_limit",
            api.set_credit_terms(terms(&["credit_limit"], |r| r.credit_limit = None)),
        ),
        row!(
            "SetCreditTerms to a negative credit limit",
            "credit_limit.amount_minor",
            api.set_credit_terms(terms(&["credit_limit"], |r| {
                r.credit_limit = money("EUR", -1);
            })),
        ),
        row!(
            "SetCreditTerms to a malformed currency",
            "credit_limit.currency_code",
            api.set_credit_terms(terms(&[], |r| r.credit_limit = money("E", 1))),
        ),
        row!(
            "SetCreditTerms in the ISO 4217 test code",
            "credit_limit.currency_code",
            api.set_credit_terms(terms(&[], |r| r.credit_limit = money("XTS", 1))),
        ),
        row!(
            "SetCreditTerms to 366 days",
            "payment_terms_days",
            api.set_credit_terms(terms(&["payment_terms_days"], |r| {
                r.payment_terms_days = 366;
            })),
        ),
        row!(
            "SetCreditTerms to negative days",
            "payment_terms_days",
            api.set_credit_terms(terms(&[], |r| r.payment_terms_days = -1)),
        ),
        // ---- ErpService.RecordPayment
        row!(
            "RecordPayment without a customer id",
            "customer_id",
            api.record_payment(payment(|r| r.customer_id.clear())),
        ),
        row!(
            "RecordPayment in a well-formed but unknown currency",
            "amount.currency_code",
            api.record_payment(payment(|r| r.amount = money("ABC", 100))),
        ),
        row!(
            "RecordPayment with a malformed customer id",
            "customer_id",
            api.record_payment(payment(|r| r.customer_id = "ada".into())),
        ),
        row!(
            "RecordPayment without an amount",
            "amount",
            api.record_payment(payment(|r| r.amount = None)),
        ),
        row!(
            "RecordPayment of nothing",
            "amount.amount_minor",
            api.record_payment(payment(|r| r.amount = money("EUR", 0))),
        ),
        row!(
            "RecordPayment of a negative amount",
            "amount.amount_minor",
            api.record_payment(payment(|r| r.amount = money("EUR", -100))),
        ),
        row!(
            "RecordPayment in a malformed currency",
            "amount.currency_code",
            api.record_payment(payment(|r| r.amount = money("Eur", 100))),
        ),
        row!(
            "RecordPayment without a reference",
            "reference",
            api.record_payment(payment(|r| r.reference.clear())),
        ),
        row!(
            "RecordPayment with a reference of 201 characters",
            "reference",
            api.record_payment(payment(|r| r.reference = too_long(201))),
        ),
        row!(
            "RecordPayment with a NUL character in the reference",
            "reference",
            api.record_payment(payment(|r| r.reference = "PAY\0".into())),
        ),
        // ---- ErpService.GetSalesOrder, ReleaseCreditHold, ShipOrder, InvoiceOrder
        row!(
            "GetSalesOrder without an id",
            "id",
            api.get_sales_order(pb::GetSalesOrderRequest { id: String::new() }),
        ),
        row!(
            "GetSalesOrder with the CRM order id instead of the ERP id",
            "id",
            api.get_sales_order(pb::GetSalesOrderRequest { id: "crm-1".into() }),
        ),
        row!(
            "ReleaseCreditHold without an id",
            "id",
            api.release_credit_hold(pb::ReleaseCreditHoldRequest {
                request_id: String::new(),
                id: String::new()
            }),
        ),
        row!(
            "ReleaseCreditHold with a malformed id",
            "id",
            api.release_credit_hold(pb::ReleaseCreditHoldRequest {
                request_id: String::new(),
                id: "1".into()
            }),
        ),
        row!(
            "ShipOrder without an id",
            "id",
            api.ship_order(pb::ShipOrderRequest {
                request_id: String::new(),
                id: String::new()
            }),
        ),
        row!(
            "ShipOrder with a malformed id",
            "id",
            api.ship_order(pb::ShipOrderRequest {
                request_id: String::new(),
                id: format!("{}0", order.id),
            }),
        ),
        row!(
            "InvoiceOrder without an id",
            "id",
            api.invoice_order(pb::InvoiceOrderRequest {
                request_id: String::new(),
                id: String::new()
            }),
        ),
        row!(
            "InvoiceOrder with a malformed id",
            "id",
            api.invoice_order(pb::InvoiceOrderRequest {
                request_id: String::new(),
                id: "crm-1".into()
            }),
        ),
        // ---- ErpService.ListSalesOrders
        row!(
            "ListSalesOrders with a malformed customer id",
            "customer_id",
            api.list_sales_orders(pb::ListSalesOrdersRequest {
                customer_id: "ada".into(),
                ..pb::ListSalesOrdersRequest::default()
            }),
        ),
        row!(
            "ListSalesOrders with an unknown status value",
            "status",
            api.list_sales_orders(pb::ListSalesOrdersRequest {
                status: UNKNOWN_ENUM,
                ..pb::ListSalesOrdersRequest::default()
            }),
        ),
        row!(
            "ListSalesOrders with a negative page size",
            "page_size",
            api.list_sales_orders(pb::ListSalesOrdersRequest {
                page_size: -1,
                ..pb::ListSalesOrdersRequest::default()
            }),
        ),
        row!(
            "ListSalesOrders with a made-up page token",
            "page_token",
            api.list_sales_orders(pb::ListSalesOrdersRequest {
                page_token: "nonsense".into(),
                ..pb::ListSalesOrdersRequest::default()
            }),
        ),
        row!(
            "ListSalesOrders by a CRM order id with a NUL character",
            "crm_order_id",
            api.list_sales_orders(pb::ListSalesOrdersRequest {
                crm_order_id: "crm-1\0".into(),
                ..pb::ListSalesOrdersRequest::default()
            }),
        ),
        // ---- ErpSync.Republish
        row!(
            "Republish with a token of another operation",
            "page_token",
            sync.republish(pb::RepublishRequest {
                page_token: "not-a-token".into(),
            }),
        ),
        // ---- ErpSync.ApplyCustomer
        row!(
            "ApplyCustomer without a customer",
            "customer",
            sync.apply_customer(with(apply_customer(|_| {}), |r| r.customer = None)),
        ),
        row!(
            "ApplyCustomer without an id",
            "customer.id",
            sync.apply_customer(apply_customer(|c| c.id.clear())),
        ),
        row!(
            "ApplyCustomer with a malformed id",
            "customer.id",
            sync.apply_customer(apply_customer(|c| c.id = "ada".into())),
        ),
        row!(
            "ApplyCustomer without a display name",
            "customer.display_name",
            sync.apply_customer(apply_customer(|c| c.display_name = " ".into())),
        ),
        row!(
            "ApplyCustomer without an e-mail address",
            "customer.email",
            sync.apply_customer(apply_customer(|c| c.email.clear())),
        ),
        row!(
            "ApplyCustomer with a NUL character in the display name",
            "customer.display_name",
            sync.apply_customer(apply_customer(|c| c.display_name = "A\0da".into())),
        ),
        row!(
            "ApplyCustomer with a NUL character in the e-mail address",
            "customer.email",
            sync.apply_customer(apply_customer(|c| c.email = "ada@example.com\0".into())),
        ),
        row!(
            "ApplyCustomer with a NUL character in an address",
            "customer.addresses[0].line1",
            sync.apply_customer(apply_customer(|c| {
                c.addresses = vec![pb::Address {
                    line1: "1 Main\0St".into(),
                    ..address(1)
                }];
            })),
        ),
        row!(
            "ApplyCustomer without a status",
            "customer.status",
            sync.apply_customer(apply_customer(|c| {
                c.status = pb::CustomerStatus::Unspecified as i32;
            })),
        ),
        row!(
            "ApplyCustomer with an unknown status value",
            "customer.status",
            sync.apply_customer(apply_customer(|c| c.status = UNKNOWN_ENUM)),
        ),
        row!(
            "ApplyCustomer with an address of no kind",
            "customer.addresses[0].kind",
            sync.apply_customer(apply_customer(|c| c.addresses = vec![address(0)])),
        ),
        row!(
            "ApplyCustomer with an address of an unknown kind value",
            "customer.addresses[1].kind",
            sync.apply_customer(apply_customer(|c| {
                c.addresses = vec![address(1), address(UNKNOWN_ENUM)];
            })),
        ),
        row!(
            "ApplyCustomer with 101 addresses",
            "customer.addresses",
            sync.apply_customer(apply_customer(|c| c.addresses = vec![address(2); 101])),
        ),
        row!(
            "ApplyCustomer with a zero source version",
            "source_version",
            sync.apply_customer(with(apply_customer(|_| {}), |r| r.source_version = 0)),
        ),
        row!(
            "ApplyCustomer with a NUL character in the phone number",
            "customer.phone",
            sync.apply_customer(apply_customer(|c| c.phone = "+49\0".into())),
        ),
        row!(
            "ApplyCustomer with a NUL character in the tax id",
            "customer.tax_id",
            sync.apply_customer(apply_customer(|c| c.tax_id = "DE\0 1".into())),
        ),
        row!(
            "ApplyCustomer with a NUL character in the external ref",
            "customer.external_ref",
            sync.apply_customer(apply_customer(|c| c.external_ref = "web:\0".into())),
        ),
        // ---- ErpSync.ApplyCustomers (the bridge's batch of crm.customers events)
        row!(
            "ApplyCustomers without customers",
            "customers",
            sync.apply_customers(pb::ApplyCustomersRequest::default()),
        ),
        row!(
            "ApplyCustomers with 1001 customers",
            "customers",
            sync.apply_customers(batch((0..1001).map(newcomer).collect())),
        ),
        row!(
            "ApplyCustomers with an entry without a customer",
            "customers[0].customer",
            sync.apply_customers(batch(vec![with(apply_customer(|_| {}), |r| {
                r.customer = None;
            })])),
        ),
        row!(
            "ApplyCustomers with a customer without an id",
            "customers[0].customer.id",
            sync.apply_customers(bad_one(|c| c.id.clear())),
        ),
        row!(
            "ApplyCustomers with a malformed id after a valid newcomer",
            "customers[1].customer.id",
            sync.apply_customers(batch(vec![
                newcomer(1),
                apply_customer(|c| c.id = "ada".into()),
            ])),
        ),
        row!(
            "ApplyCustomers with a customer without a display name",
            "customers[0].customer.display_name",
            sync.apply_customers(bad_one(|c| c.display_name = " ".into())),
        ),
        row!(
            "ApplyCustomers with a customer without an e-mail address",
            "customers[0].customer.email",
            sync.apply_customers(bad_one(|c| c.email.clear())),
        ),
        row!(
            "ApplyCustomers with a NUL character in a display name",
            "customers[0].customer.display_name",
            sync.apply_customers(bad_one(|c| c.display_name = "A\0da".into())),
        ),
        row!(
            "ApplyCustomers with a NUL character in an e-mail address",
            "customers[0].customer.email",
            sync.apply_customers(bad_one(|c| c.email = "\0@example.com".into())),
        ),
        row!(
            "ApplyCustomers with a NUL character in a phone number",
            "customers[0].customer.phone",
            sync.apply_customers(bad_one(|c| c.phone = "\0".into())),
        ),
        row!(
            "ApplyCustomers with a NUL character in a tax id",
            "customers[0].customer.tax_id",
            sync.apply_customers(bad_one(|c| c.tax_id = "DE\0".into())),
        ),
        row!(
            "ApplyCustomers with a NUL character in an external ref",
            "customers[0].customer.external_ref",
            sync.apply_customers(bad_one(|c| c.external_ref = "\0".into())),
        ),
        row!(
            "ApplyCustomers with a NUL character in an address's city",
            "customers[0].customer.addresses[0].city",
            sync.apply_customers(bad_one(|c| {
                c.addresses = vec![pb::Address {
                    city: "Ber\0lin".into(),
                    ..address(1)
                }];
            })),
        ),
        row!(
            "ApplyCustomers with a customer without a status",
            "customers[0].customer.status",
            sync.apply_customers(bad_one(|c| {
                c.status = pb::CustomerStatus::Unspecified as i32;
            })),
        ),
        row!(
            "ApplyCustomers with an unknown status value",
            "customers[0].customer.status",
            sync.apply_customers(bad_one(|c| c.status = UNKNOWN_ENUM)),
        ),
        row!(
            "ApplyCustomers with an address of no kind",
            "customers[0].customer.addresses[0].kind",
            sync.apply_customers(bad_one(|c| c.addresses = vec![address(0)])),
        ),
        row!(
            "ApplyCustomers with an address of an unknown kind value",
            "customers[0].customer.addresses[1].kind",
            sync.apply_customers(bad_one(|c| {
                c.addresses = vec![address(2), address(UNKNOWN_ENUM)];
            })),
        ),
        row!(
            "ApplyCustomers with a customer of 101 addresses",
            "customers[0].customer.addresses",
            sync.apply_customers(bad_one(|c| c.addresses = vec![address(1); 101])),
        ),
        row!(
            "ApplyCustomers with a zero source version",
            "customers[0].source_version",
            sync.apply_customers(batch(vec![with(apply_customer(|_| {}), |r| {
                r.source_version = 0;
            })])),
        ),
        row!(
            "ApplyCustomers with a negative source version after two valid customers",
            "customers[2].source_version",
            sync.apply_customers(batch(vec![
                newcomer(2),
                apply_customer(|_| {}),
                with(newcomer(3), |r| r.source_version = -1),
            ])),
        ),
        row!(
            "ApplyCustomers with a zero source version after a customer without an e-mail",
            "customers[1].source_version",
            sync.apply_customers(batch(vec![
                apply_customer(|c| c.email.clear()),
                with(newcomer(4), |r| r.source_version = 0),
            ])),
        ),
        row!(
            "ApplyCustomers with three bad customers, the last one named too",
            "customers[2].customer.display_name",
            sync.apply_customers(batch(vec![
                apply_customer(|c| c.id.clear()),
                with(newcomer(5), |r| r.customer = None),
                with(newcomer(6), |r| {
                    if let Some(c) = r.customer.as_mut() {
                        c.display_name.clear();
                    }
                }),
            ])),
        ),
        // ---- ErpSync.AcceptOrders (the bridge's batch of crm.order.submitted events): a
        // valid new order before the bad one would be accepted if a bad batch were partly
        // applied.
        row!(
            "AcceptOrders without orders",
            "orders",
            sync.accept_orders(pb::AcceptOrdersRequest::default()),
        ),
        row!(
            "AcceptOrders with 1001 orders",
            "orders",
            sync.accept_orders(pb::AcceptOrdersRequest {
                orders: vec![accept(|_| {}); 1001],
            }),
        ),
        row!(
            "AcceptOrders with a malformed customer id after a valid new order",
            "orders[1].customer_id",
            sync.accept_orders(pb::AcceptOrdersRequest {
                orders: vec![
                    accept(|r| r.crm_order_id = "crm-b1".into()),
                    accept(|r| r.customer_id = "ada".into()),
                ],
            }),
        ),
        row!(
            "AcceptOrders with a zero quantity after a valid new order",
            "orders[1].lines[0].quantity",
            sync.accept_orders(pb::AcceptOrdersRequest {
                orders: vec![
                    accept(|r| r.crm_order_id = "crm-b2".into()),
                    accept(|r| {
                        r.crm_order_id = "crm-b3".into();
                        r.lines[0].quantity = 0;
                    }),
                ],
            }),
        ),
        // ---- ErpSync.AcceptOrder
        row!(
            "AcceptOrder without a CRM order id",
            "crm_order_id",
            sync.accept_order(accept(|r| r.crm_order_id.clear())),
        ),
        row!(
            "AcceptOrder with a CRM order id of 129 characters",
            "crm_order_id",
            sync.accept_order(accept(|r| r.crm_order_id = too_long(129))),
        ),
        row!(
            "AcceptOrder with a NUL character in the CRM order id",
            "crm_order_id",
            sync.accept_order(accept(|r| r.crm_order_id = "crm\0".into())),
        ),
        row!(
            "AcceptOrder without a customer id",
            "customer_id",
            sync.accept_order(accept(|r| r.customer_id.clear())),
        ),
        row!(
            "AcceptOrder in a well-formed but unknown currency",
            "currency_code",
            sync.accept_order(accept(|r| {
                r.crm_order_id = "crm-9".into();
                r.currency_code = "ABC".into();
            })),
        ),
        row!(
            "AcceptOrder with a malformed customer id",
            "customer_id",
            sync.accept_order(accept(|r| r.customer_id = "ada".into())),
        ),
        row!(
            "AcceptOrder with a malformed currency",
            "currency_code",
            sync.accept_order(accept(|r| {
                r.crm_order_id = "crm-2".into();
                r.currency_code = "euro".into();
            })),
        ),
        row!(
            "AcceptOrder without lines",
            "lines",
            sync.accept_order(accept(|r| {
                r.crm_order_id = "crm-2".into();
                r.lines.clear();
            })),
        ),
        row!(
            "AcceptOrder with 501 lines",
            "lines",
            sync.accept_order(accept(|r| {
                r.crm_order_id = "crm-2".into();
                r.lines = vec![r.lines[0].clone(); 501];
            })),
        ),
        row!(
            "AcceptOrder with a malformed sku",
            "lines[0].sku",
            sync.accept_order(accept(|r| {
                r.crm_order_id = "crm-2".into();
                r.lines[0].sku = "W 1".into();
            })),
        ),
        row!(
            "AcceptOrder with a zero quantity",
            "lines[0].quantity",
            sync.accept_order(accept(|r| {
                r.crm_order_id = "crm-2".into();
                r.lines[0].quantity = 0;
            })),
        ),
        row!(
            "AcceptOrder with a negative unit price",
            "lines[0].unit_price_minor",
            sync.accept_order(accept(|r| {
                r.crm_order_id = "crm-2".into();
                r.lines[0].unit_price_minor = -1;
            })),
        ),
        row!(
            "AcceptOrder with a total beyond 64 bits",
            "lines",
            sync.accept_order(accept(|r| {
                r.crm_order_id = "crm-2".into();
                r.lines[0].quantity = i64::MAX / 2;
                r.lines[0].unit_price_minor = 3;
            })),
        ),
        // ---- ErpSync.CancelOrder
        row!(
            "CancelOrder without a CRM order id",
            "crm_order_id",
            sync.cancel_order(cancel("", String::new())),
        ),
        row!(
            "CancelOrder with a reason of 501 characters",
            "reason",
            sync.cancel_order(cancel("crm-1", too_long(501))),
        ),
        row!(
            "CancelOrder with a NUL character in the CRM order id",
            "crm_order_id",
            sync.cancel_order(cancel("crm-1\0", String::new())),
        ),
        row!(
            "CancelOrder with a NUL character in the reason",
            "reason",
            sync.cancel_order(cancel("crm-1", "too\0late".into())),
        ),
        // ---- ErpSync.CountStock
        row!(
            "CountStock without a sku",
            "sku",
            sync.count_stock(count(|r| r.sku.clear())),
        ),
        row!(
            "CountStock with a malformed sku",
            "sku",
            sync.count_stock(count(|r| r.sku = "W 1".into())),
        ),
        row!(
            "CountStock without a warehouse",
            "warehouse",
            sync.count_stock(count(|r| r.warehouse.clear())),
        ),
        row!(
            "CountStock with a malformed warehouse code",
            "warehouse",
            sync.count_stock(count(|r| r.warehouse = "ams".into())),
        ),
        row!(
            "CountStock of a negative quantity",
            "counted_quantity",
            sync.count_stock(count(|r| r.counted_quantity = -1)),
        ),
        row!(
            "CountStock without an event id",
            "event_id",
            sync.count_stock(count(|r| r.event_id.clear())),
        ),
        row!(
            "CountStock with an event id of 201 characters",
            "event_id",
            sync.count_stock(count(|r| r.event_id = too_long(201))),
        ),
        row!(
            "CountStock with a source of 101 characters",
            "source",
            sync.count_stock(count(|r| r.source = too_long(101))),
        ),
        row!(
            "CountStock with a NUL character in the event id",
            "event_id",
            sync.count_stock(count(|r| r.event_id = "wms\0".into())),
        ),
        row!(
            "CountStock with a NUL character in the source",
            "source",
            sync.count_stock(count(|r| r.source = "w\0ms".into())),
        ),
        // ---- ErpSync.LiftVersions
        row!(
            "LiftVersions without floors",
            "products",
            sync.lift_versions(pb::LiftVersionsRequest::default()),
        ),
        row!(
            "LiftVersions with a zero mirror version",
            "orders[0].mirror_version",
            sync.lift_versions(pb::LiftVersionsRequest {
                orders: vec![floor("crm-1", 0)],
                ..pb::LiftVersionsRequest::default()
            }),
        ),
        row!(
            "LiftVersions without a key",
            "stock[0].key",
            sync.lift_versions(pb::LiftVersionsRequest {
                stock: vec![floor("", 3)],
                ..pb::LiftVersionsRequest::default()
            }),
        ),
        row!(
            "LiftVersions with a negative invoice number floor",
            "invoice_number_floor",
            sync.lift_versions(pb::LiftVersionsRequest {
                stock: vec![floor("W-1", 3)],
                invoice_number_floor: -1,
                ..pb::LiftVersionsRequest::default()
            }),
        ),
        row!(
            "LiftVersions with 501 floors",
            "products",
            sync.lift_versions(pb::LiftVersionsRequest {
                finance: vec![floor("c", 1); 501],
                ..pb::LiftVersionsRequest::default()
            }),
        ),
        // ---- ErpSync.RecoverProducts
        row!(
            "RecoverProducts without products",
            "products",
            sync.recover_products(pb::RecoverProductsRequest::default()),
        ),
        row!(
            "RecoverProducts with a malformed sku",
            "products[0].sku",
            sync.recover_products(recover_product(|p| p.sku = "W 1".into())),
        ),
        row!(
            "RecoverProducts without a name",
            "products[0].display_name",
            sync.recover_products(recover_product(|p| p.display_name.clear())),
        ),
        row!(
            "RecoverProducts with a zero mirror version",
            "products[0].mirror_version",
            sync.recover_products(recover_product(|p| p.mirror_version = 0)),
        ),
    ];

    assert_all_refused_writing_nothing(
        &erp.pool,
        &[
            "customers",
            "products",
            "stock_levels",
            "stock_ledger",
            "sales_orders",
            "outbox",
        ],
        include_str!("../../proto/tandem/erp/v1/erp.proto"),
        rows,
    )
    .await;
    erp.stop().await;
}
