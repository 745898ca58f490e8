//! Every CRM RPC that reads user input, fed bad requests from one table: each must answer
//! INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the offending field, and the whole
//! table together must write nothing (every table of the database, found from the catalogue,
//! holds the same rows before and after).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Crm, customer, mask, money};
use tandem_proto::crm::v1 as pb;
use tandem_proto::crm::v1::{
    Address, AddressKind, ApplyCustomerFinanceRequest, ApplyOrderStatusRequest,
    ApplyOrderStatusesRequest, ApplyProductRequest, ApplyStockLevelsRequest,
    ArchiveCustomerRequest, Contact, CreateCustomerRequest, CreateOrderRequest, Customer,
    CustomerStatus, ExternalOrderLine, FulfilmentStatus, GetAvailabilityRequest,
    GetCustomerRequest, GetOrderRequest, ListCustomersRequest, ListOrdersRequest,
    ListProductsRequest, Order, OrderLine, PlaceExternalOrderRequest, ProductData,
    RequestOrderCancellationRequest, StockLevel, SubmitOrderRequest, UpdateCustomerRequest,
    UpdateOrderRequest, UpsertCustomerByExternalRefRequest,
};
use tandem_tests::bad_requests::{assert_all_refused_writing_nothing, too_long, with};
use tandem_tests::row;

fn lines(lines: &[(&str, i64)]) -> Vec<OrderLine> {
    lines
        .iter()
        .map(|(sku, quantity)| OrderLine {
            sku: (*sku).into(),
            quantity: *quantity,
            ..OrderLine::default()
        })
        .collect()
}

fn address(kind: AddressKind) -> Address {
    Address {
        kind: kind as i32,
        line1: "1 Main St".into(),
        city: "Berlin".into(),
        country_code: "DE".into(),
        ..Address::default()
    }
}

fn create(edit: fn(&mut Customer)) -> CreateCustomerRequest {
    CreateCustomerRequest {
        request_id: String::new(),
        customer: Some(with(customer("Nobody"), edit)),
    }
}

fn new_order(customer_id: &str, order_lines: &[(&str, i64)]) -> CreateOrderRequest {
    CreateOrderRequest {
        request_id: String::new(),
        order: Some(Order {
            customer_id: customer_id.into(),
            lines: lines(order_lines),
            ..Order::default()
        }),
    }
}

fn edit_order(id: &str, order_lines: &[(&str, i64)], paths: &[&str]) -> UpdateOrderRequest {
    UpdateOrderRequest {
        order: Some(Order {
            id: id.into(),
            lines: lines(order_lines),
            ..Order::default()
        }),
        update_mask: mask(paths),
    }
}

fn apply_product(edit: fn(&mut ProductData)) -> ApplyProductRequest {
    ApplyProductRequest {
        product: Some(with(
            ProductData {
                sku: "W-1".into(),
                name: "Widget".into(),
                unit_price: Some(money("EUR", 100)),
                active: true,
            },
            edit,
        )),
        source_version: 1,
        event_id: uuid::Uuid::now_v7().to_string(),
        repair: false,
    }
}

fn stock(levels: &[(&str, i64, i64)]) -> ApplyStockLevelsRequest {
    ApplyStockLevelsRequest {
        levels: levels
            .iter()
            .map(|(sku, available, source_version)| StockLevel {
                sku: (*sku).into(),
                available: *available,
                source_version: *source_version,
            })
            .collect(),
        ..ApplyStockLevelsRequest::default()
    }
}

fn upsert(edit: fn(&mut UpsertCustomerByExternalRefRequest)) -> UpsertCustomerByExternalRefRequest {
    let request = UpsertCustomerByExternalRefRequest {
        customer: Some(Customer {
            external_ref: "web:grace".into(),
            ..customer("Grace Hopper")
        }),
        source: "webshop".into(),
        source_version: 1,
        event_id: uuid::Uuid::now_v7().to_string(),
    };
    with(request, edit)
}

/// A valid `LiftCustomerVersions` of one customer, edited by `edit`.
fn lift(edit: fn(&mut pb::MirroredCustomer)) -> pb::LiftCustomerVersionsRequest {
    let mut mirrored = pb::MirroredCustomer {
        customer: Some(pb::Customer {
            id: uuid::Uuid::now_v7().to_string(),
            display_name: "Ada".into(),
            email: "ada@example.com".into(),
            ..pb::Customer::default()
        }),
        mirror_version: 3,
    };
    edit(&mut mirrored);
    pb::LiftCustomerVersionsRequest {
        customers: vec![mirrored],
        recover_from_mirror: true,
    }
}

/// A valid `RecoverOrders` of one order, edited by `edit`.
fn recover(edit: fn(&mut pb::MirroredOrder)) -> pb::RecoverOrdersRequest {
    let mut order = pb::MirroredOrder {
        id: uuid::Uuid::now_v7().to_string(),
        customer_id: uuid::Uuid::now_v7().to_string(),
        currency_code: "EUR".into(),
        lines: vec![pb::MirroredOrderLine {
            sku: "A".into(),
            quantity: 1,
            unit_price_minor: 100,
        }],
    };
    edit(&mut order);
    pb::RecoverOrdersRequest {
        orders: vec![order],
    }
}

fn place(edit: fn(&mut PlaceExternalOrderRequest)) -> PlaceExternalOrderRequest {
    let request = PlaceExternalOrderRequest {
        external_ref: "shop-1".into(),
        customer_external_ref: "web:ada".into(),
        currency_code: "EUR".into(),
        lines: vec![ExternalOrderLine {
            sku: "A".into(),
            quantity: 1,
        }],
        source: "webshop".into(),
        event_id: uuid::Uuid::now_v7().to_string(),
    };
    with(request, edit)
}

fn external_line(sku: &str, quantity: i64) -> ExternalOrderLine {
    ExternalOrderLine {
        sku: sku.into(),
        quantity,
    }
}

/// A proto3 enum value this build does not know.
const UNKNOWN_ENUM: i32 = 99;

#[tokio::test]
async fn every_bad_request_names_its_field_and_writes_nothing() {
    let mut crm = Crm::start().await;

    // A little valid data, so requests about existing things fail only for the bad field: two
    // products with stock, a customer, a DRAFT order and a SUBMITTED one.
    crm.product("A", 1_999, "EUR", true, 1).await;
    crm.product("B", 250, "EUR", true, 1).await;
    crm.stock("A", 5, 1).await;
    let ada = crm
        .create_customer(Customer {
            external_ref: "web:ada".into(),
            ..customer("Ada Lovelace")
        })
        .await
        .id;
    let mut draft_ids = Vec::new();
    for order_lines in [&[("A", 1)], &[("B", 2)]] {
        let order = crm.client.create_order(new_order(&ada, order_lines));
        draft_ids.push(order.await.unwrap().into_inner().id);
    }
    let [draft, submitted] = <[String; 2]>::try_from(draft_ids).unwrap();
    crm.client
        .submit_order(SubmitOrderRequest {
            request_id: String::new(),
            id: submitted.clone(),
            version: 0,
        })
        .await
        .unwrap();

    let api = crm.client.clone();
    let sync = crm.sync.clone();
    let update = |paths: &[&str], edit: fn(&mut Customer)| UpdateCustomerRequest {
        customer: Some(with(
            Customer {
                id: ada.clone(),
                ..customer("Ada Lovelace")
            },
            edit,
        )),
        update_mask: mask(paths),
    };
    let cancel = |id: &str, reason: &str| RequestOrderCancellationRequest {
        id: id.into(),
        version: 0,
        reason: reason.into(),
    };
    let order_status = |edit: fn(&mut ApplyOrderStatusRequest)| {
        let request = ApplyOrderStatusRequest {
            order_id: submitted.clone(),
            status: FulfilmentStatus::Reserved as i32,
            source_version: 1,
            event_id: uuid::Uuid::now_v7().to_string(),
            ..ApplyOrderStatusRequest::default()
        };
        with(request, edit)
    };
    let invoiced = |number: &str, amount: Option<(&str, i64)>| ApplyOrderStatusRequest {
        status: FulfilmentStatus::Invoiced as i32,
        invoice_number: number.into(),
        invoice_amount: amount.map(|(currency, minor)| money(currency, minor)),
        ..order_status(|_| {})
    };
    let finance = |edit: fn(&mut ApplyCustomerFinanceRequest)| {
        let request = ApplyCustomerFinanceRequest {
            customer_id: ada.clone(),
            credit_limit: Some(money("EUR", 10_000)),
            payment_terms: "NET30".into(),
            open_balance: Some(money("EUR", 0)),
            credit_hold: false,
            source_version: 1,
            event_id: uuid::Uuid::now_v7().to_string(),
            repair: false,
        };
        with(request, edit)
    };

    let rows = vec![
        // ---- request_id, on every creating RPC
        row!(
            "CreateCustomer with a request id that is not a UUID",
            "request_id",
            api.create_customer(with(create(|c| c.display_name = "Grace".into()), |r| {
                r.request_id = "retry-1".into()
            })),
        ),
        row!(
            "CreateCustomer with the nil UUID as request id",
            "request_id",
            api.create_customer(with(create(|c| c.display_name = "Grace".into()), |r| {
                r.request_id = uuid::Uuid::nil().to_string()
            })),
        ),
        row!(
            "CreateOrder with a request id without hyphens",
            "request_id",
            api.create_order(with(new_order(&ada, &[("A", 1)]), |r| {
                r.request_id = uuid::Uuid::now_v7().simple().to_string()
            })),
        ),
        row!(
            "SubmitOrder with a request id that is not a UUID",
            "request_id",
            api.submit_order(SubmitOrderRequest {
                request_id: "submit-once".into(),
                id: draft.clone(),
                version: 0,
            }),
        ),
        // ---- CrmService.CreateCustomer
        row!(
            "CreateCustomer without a customer",
            "customer",
            api.create_customer(CreateCustomerRequest {
                request_id: String::new(),
                customer: None
            }),
        ),
        row!(
            "CreateCustomer with an empty display name",
            "customer.display_name",
            api.create_customer(create(|c| c.display_name = " ".into())),
        ),
        row!(
            "CreateCustomer with a display name of 201 characters",
            "customer.display_name",
            api.create_customer(create(|c| c.display_name = too_long(201))),
        ),
        row!(
            "CreateCustomer with a control character in the display name",
            "customer.display_name",
            api.create_customer(create(|c| c.display_name = "Ada\0Lovelace".into())),
        ),
        row!(
            "CreateCustomer without an e-mail address",
            "customer.email",
            api.create_customer(create(|c| c.email.clear())),
        ),
        row!(
            "CreateCustomer with a malformed e-mail address",
            "customer.email",
            api.create_customer(create(|c| c.email = "ada@".into())),
        ),
        row!(
            "CreateCustomer with a malformed phone number",
            "customer.phone",
            api.create_customer(create(|c| c.phone = "call me".into())),
        ),
        row!(
            "CreateCustomer with a malformed tax id",
            "customer.tax_id",
            api.create_customer(create(|c| c.tax_id = "DE#1".into())),
        ),
        row!(
            "CreateCustomer with a malformed external ref",
            "customer.external_ref",
            api.create_customer(create(|c| c.external_ref = "has space".into())),
        ),
        row!(
            "CreateCustomer already ARCHIVED",
            "customer.status",
            api.create_customer(create(|c| c.status = CustomerStatus::Archived as i32)),
        ),
        row!(
            "CreateCustomer with an unknown status value",
            "customer.status",
            api.create_customer(create(|c| c.status = UNKNOWN_ENUM)),
        ),
        row!(
            "CreateCustomer with a contact without a name",
            "customer.contacts[0].name",
            api.create_customer(create(|c| c.contacts = vec![Contact::default()])),
        ),
        row!(
            "CreateCustomer with a contact's malformed e-mail",
            "customer.contacts[0].email",
            api.create_customer(create(|c| {
                c.contacts = vec![Contact {
                    name: "Charles".into(),
                    email: "charles".into(),
                    ..Contact::default()
                }];
            })),
        ),
        row!(
            "CreateCustomer with a NUL character in a contact's role",
            "customer.contacts[0].role",
            api.create_customer(create(|c| {
                c.contacts = vec![Contact {
                    name: "Charles".into(),
                    role: "buy\0er".into(),
                    ..Contact::default()
                }];
            })),
        ),
        row!(
            "CreateCustomer with 51 contacts",
            "customer.contacts",
            api.create_customer(create(|c| {
                c.contacts = vec![
                    Contact {
                        name: "Charles".into(),
                        ..Contact::default()
                    };
                    51
                ];
            })),
        ),
        row!(
            "CreateCustomer with an address of no kind",
            "customer.addresses[0].kind",
            api.create_customer(create(
                |c| c.addresses = vec![address(AddressKind::Unspecified)]
            )),
        ),
        row!(
            "CreateCustomer with an address of an unknown kind value",
            "customer.addresses[0].kind",
            api.create_customer(create(|c| {
                c.addresses = vec![Address {
                    kind: UNKNOWN_ENUM,
                    ..address(AddressKind::Billing)
                }];
            })),
        ),
        row!(
            "CreateCustomer with two billing addresses",
            "customer.addresses[1].kind",
            api.create_customer(create(
                |c| c.addresses = vec![address(AddressKind::Billing); 2]
            )),
        ),
        row!(
            "CreateCustomer with an address in an unknown country",
            "customer.addresses[0].country_code",
            api.create_customer(create(|c| {
                c.addresses = vec![Address {
                    country_code: "XX".into(),
                    ..address(AddressKind::Shipping)
                }];
            })),
        ),
        row!(
            "CreateCustomer with an address without a city",
            "customer.addresses[0].city",
            api.create_customer(create(|c| {
                c.addresses = vec![Address {
                    city: String::new(),
                    ..address(AddressKind::Shipping)
                }];
            })),
        ),
        row!(
            "CreateCustomer with a NUL character in a postal code",
            "customer.addresses[0].postal_code",
            api.create_customer(create(|c| {
                c.addresses = vec![Address {
                    postal_code: "10115\0".into(),
                    ..address(AddressKind::Shipping)
                }];
            })),
        ),
        // ---- CrmService.GetCustomer
        row!(
            "GetCustomer without an id",
            "id",
            api.get_customer(GetCustomerRequest { id: String::new() }),
        ),
        row!(
            "GetCustomer with a malformed id",
            "id",
            api.get_customer(GetCustomerRequest { id: "42".into() }),
        ),
        // ---- CrmService.ListCustomers
        row!(
            "ListCustomers with a negative page size",
            "page_size",
            api.list_customers(ListCustomersRequest {
                page_size: -1,
                ..ListCustomersRequest::default()
            }),
        ),
        row!(
            "ListCustomers with a made-up page token",
            "page_token",
            api.list_customers(ListCustomersRequest {
                page_token: "nonsense".into(),
                ..ListCustomersRequest::default()
            }),
        ),
        row!(
            "ListCustomers with an unknown status value",
            "status",
            api.list_customers(ListCustomersRequest {
                status: UNKNOWN_ENUM,
                ..ListCustomersRequest::default()
            }),
        ),
        row!(
            "ListCustomers by a name with a NUL character",
            "display_name_contains",
            api.list_customers(ListCustomersRequest {
                display_name_contains: "Ada\0".into(),
                ..ListCustomersRequest::default()
            }),
        ),
        row!(
            "ListCustomers by an e-mail address with a NUL character",
            "email",
            api.list_customers(ListCustomersRequest {
                email: "ada@example.com\0".into(),
                ..ListCustomersRequest::default()
            }),
        ),
        row!(
            "ListCustomers by an external ref with a NUL character",
            "external_ref",
            api.list_customers(ListCustomersRequest {
                external_ref: "web:\0".into(),
                ..ListCustomersRequest::default()
            }),
        ),
        // ---- CrmService.UpdateCustomer
        row!(
            "UpdateCustomer without a customer",
            "customer",
            api.update_customer(UpdateCustomerRequest {
                customer: None,
                update_mask: mask(&["email"]),
            }),
        ),
        row!(
            "UpdateCustomer without an id",
            "customer.id",
            api.update_customer(update(&["email"], |c| c.id.clear())),
        ),
        row!(
            "UpdateCustomer with a malformed id",
            "customer.id",
            api.update_customer(update(&["email"], |c| c.id = "not-a-uuid".into())),
        ),
        row!(
            "UpdateCustomer with an unknown mask path",
            "update_mask",
            api.update_customer(update(&["nickname"], |_| {})),
        ),
        row!(
            "UpdateCustomer with a read-only mask path",
            "update_mask",
            api.update_customer(update(&["version"], |_| {})),
        ),
        row!(
            "UpdateCustomer to a malformed e-mail",
            "customer.email",
            api.update_customer(update(&["email"], |c| c.email = "ada@@example.com".into())),
        ),
        row!(
            "UpdateCustomer to an empty display name (empty mask: every field)",
            "customer.display_name",
            api.update_customer(update(&[], |c| {
                c.display_name.clear();
                c.status = CustomerStatus::Active as i32;
            })),
        ),
        row!(
            "UpdateCustomer to no status",
            "customer.status",
            api.update_customer(update(&["status"], |c| {
                c.status = CustomerStatus::Unspecified as i32;
            })),
        ),
        row!(
            "UpdateCustomer to an unknown status value",
            "customer.status",
            api.update_customer(update(&["status"], |c| c.status = UNKNOWN_ENUM)),
        ),
        row!(
            "UpdateCustomer to an address of no kind",
            "customer.addresses[0].kind",
            api.update_customer(update(&["addresses"], |c| {
                c.addresses = vec![address(AddressKind::Unspecified)];
            })),
        ),
        row!(
            "UpdateCustomer to a contact without a name",
            "customer.contacts[0].name",
            api.update_customer(update(&["contacts"], |c| c.contacts = vec![Contact::default()])),
        ),
        // ---- CrmService.ArchiveCustomer
        row!(
            "ArchiveCustomer without an id",
            "id",
            api.archive_customer(ArchiveCustomerRequest::default()),
        ),
        row!(
            "ArchiveCustomer with a malformed id",
            "id",
            api.archive_customer(ArchiveCustomerRequest {
                id: "ada".into(),
                version: 0,
            }),
        ),
        // ---- CrmService.CreateOrder
        row!(
            "CreateOrder without an order",
            "order",
            api.create_order(CreateOrderRequest {
                request_id: String::new(),
                order: None
            }),
        ),
        row!(
            "CreateOrder without a customer id",
            "order.customer_id",
            api.create_order(new_order("", &[("A", 1)])),
        ),
        row!(
            "CreateOrder with a malformed customer id",
            "order.customer_id",
            api.create_order(new_order("ada", &[("A", 1)])),
        ),
        row!(
            "CreateOrder with a zero quantity",
            "order.lines[0].quantity",
            api.create_order(new_order(&ada, &[("A", 0)])),
        ),
        row!(
            "CreateOrder with a negative quantity",
            "order.lines[0].quantity",
            api.create_order(new_order(&ada, &[("A", -3)])),
        ),
        row!(
            "CreateOrder with a quantity above 1000000",
            "order.lines[0].quantity",
            api.create_order(new_order(&ada, &[("A", 1_000_001)])),
        ),
        row!(
            "CreateOrder without a sku",
            "order.lines[0].sku",
            api.create_order(new_order(&ada, &[("", 1)])),
        ),
        row!(
            "CreateOrder with a malformed sku",
            "order.lines[0].sku",
            api.create_order(new_order(&ada, &[("A B", 1)])),
        ),
        row!(
            "CreateOrder with a sku twice",
            "order.lines[1].sku",
            api.create_order(new_order(&ada, &[("A", 1), ("A", 2)])),
        ),
        row!(
            "CreateOrder with a sku not in the catalogue",
            "order.lines[0].sku",
            api.create_order(new_order(&ada, &[("NOPE", 1)])),
        ),
        row!(
            "CreateOrder with 201 lines",
            "order.lines",
            api.create_order(CreateOrderRequest {
                request_id: String::new(),
                order: Some(Order {
                    customer_id: ada.clone(),
                    lines: (0..201)
                        .map(|i| OrderLine {
                            sku: format!("S{i}"),
                            quantity: 1,
                            ..OrderLine::default()
                        })
                        .collect(),
                    ..Order::default()
                }),
            }),
        ),
        // ---- CrmService.GetOrder
        row!(
            "GetOrder without an id",
            "id",
            api.get_order(GetOrderRequest { id: String::new() }),
        ),
        row!(
            "GetOrder with a malformed id",
            "id",
            api.get_order(GetOrderRequest {
                id: "order-1".into(),
            }),
        ),
        // ---- CrmService.ListOrders
        row!(
            "ListOrders with a malformed customer id",
            "customer_id",
            api.list_orders(ListOrdersRequest {
                customer_id: "ada".into(),
                ..ListOrdersRequest::default()
            }),
        ),
        row!(
            "ListOrders with a negative page size",
            "page_size",
            api.list_orders(ListOrdersRequest {
                page_size: -5,
                ..ListOrdersRequest::default()
            }),
        ),
        row!(
            "ListOrders with a made-up page token",
            "page_token",
            api.list_orders(ListOrdersRequest {
                page_token: "00000000000000007b7d".into(),
                ..ListOrdersRequest::default()
            }),
        ),
        row!(
            "ListOrders with an unknown status value",
            "status",
            api.list_orders(ListOrdersRequest {
                status: UNKNOWN_ENUM,
                ..ListOrdersRequest::default()
            }),
        ),
        // ---- CrmService.UpdateOrder
        row!(
            "UpdateOrder without an order",
            "order",
            api.update_order(UpdateOrderRequest {
                order: None,
                update_mask: mask(&["lines"]),
            }),
        ),
        row!(
            "UpdateOrder without an id",
            "order.id",
            api.update_order(edit_order("", &[("A", 1)], &["lines"])),
        ),
        row!(
            "UpdateOrder with a malformed id",
            "order.id",
            api.update_order(edit_order("draft", &[("A", 1)], &["lines"])),
        ),
        row!(
            "UpdateOrder with a mask path other than lines",
            "update_mask",
            api.update_order(edit_order(&draft, &[("A", 1)], &["customer_id"])),
        ),
        row!(
            "UpdateOrder to a negative quantity",
            "order.lines[0].quantity",
            api.update_order(edit_order(&draft, &[("A", -1)], &["lines"])),
        ),
        row!(
            "UpdateOrder to a malformed sku (empty mask: lines)",
            "order.lines[0].sku",
            api.update_order(edit_order(&draft, &[("A/1", 1)], &[])),
        ),
        row!(
            "UpdateOrder to a sku twice",
            "order.lines[1].sku",
            api.update_order(edit_order(&draft, &[("B", 1), ("B", 1)], &["lines"])),
        ),
        // ---- CrmService.SubmitOrder
        row!(
            "SubmitOrder without an id",
            "id",
            api.submit_order(SubmitOrderRequest::default()),
        ),
        row!(
            "SubmitOrder with a malformed id",
            "id",
            api.submit_order(SubmitOrderRequest {
                request_id: String::new(),
                id: format!("{draft}x"),
                version: 0,
            }),
        ),
        // ---- CrmService.RequestOrderCancellation
        row!(
            "RequestOrderCancellation without an id",
            "id",
            api.request_order_cancellation(cancel("", "")),
        ),
        row!(
            "RequestOrderCancellation with a malformed id",
            "id",
            api.request_order_cancellation(cancel("42", "")),
        ),
        row!(
            "RequestOrderCancellation with a reason of 501 characters",
            "reason",
            api.request_order_cancellation(cancel(&submitted, &too_long(501))),
        ),
        row!(
            "RequestOrderCancellation with a control character in the reason",
            "reason",
            api.request_order_cancellation(cancel(&draft, "too\u{7}late")),
        ),
        // ---- CrmService.ListProducts
        row!(
            "ListProducts with a negative page size",
            "page_size",
            api.list_products(ListProductsRequest {
                page_size: -1,
                ..ListProductsRequest::default()
            }),
        ),
        row!(
            "ListProducts with a made-up page token",
            "page_token",
            api.list_products(ListProductsRequest {
                page_token: "zz".into(),
                ..ListProductsRequest::default()
            }),
        ),
        // ---- CrmService.GetAvailability
        row!(
            "GetAvailability without skus",
            "skus",
            api.get_availability(GetAvailabilityRequest { skus: Vec::new() }),
        ),
        row!(
            "GetAvailability with 501 skus",
            "skus",
            api.get_availability(GetAvailabilityRequest {
                skus: (0..501).map(|i| format!("S{i}")).collect(),
            }),
        ),
        row!(
            "GetAvailability with an empty sku",
            "skus[1]",
            api.get_availability(GetAvailabilityRequest {
                skus: vec!["A".into(), String::new()],
            }),
        ),
        row!(
            "GetAvailability with a malformed sku",
            "skus[0]",
            api.get_availability(GetAvailabilityRequest {
                skus: vec!["A;B".into()],
            }),
        ),
        // ---- CrmSync.Republish
        row!(
            "Republish with a token of another operation",
            "page_token",
            sync.republish(pb::RepublishRequest {
                page_token: "not-a-token".into(),
            }),
        ),
        // ---- CrmSync.ApplyProduct
        row!(
            "ApplyProduct without a product",
            "product",
            sync.apply_product(with(apply_product(|_| {}), |r| r.product = None)),
        ),
        row!(
            "ApplyProduct without a sku",
            "product.sku",
            sync.apply_product(apply_product(|p| p.sku.clear())),
        ),
        row!(
            "ApplyProduct with a malformed sku",
            "product.sku",
            sync.apply_product(apply_product(|p| p.sku = "W 1".into())),
        ),
        row!(
            "ApplyProduct without a name",
            "product.name",
            sync.apply_product(apply_product(|p| p.name.clear())),
        ),
        row!(
            "ApplyProduct with a negative price",
            "product.unit_price.amount_minor",
            sync.apply_product(apply_product(|p| p.unit_price = Some(money("EUR", -1)))),
        ),
        row!(
            "ApplyProduct with an unknown currency",
            "product.unit_price.currency_code",
            sync.apply_product(apply_product(|p| p.unit_price = Some(money("euro", 1)))),
        ),
        // One currency rule for both services (ISO 4217 with minor units, not withdrawn).
        row!(
            "ApplyProduct in a currency withdrawn from ISO 4217",
            "product.unit_price.currency_code",
            sync.apply_product(apply_product(|p| p.unit_price = Some(money("BGN", 1)))),
        ),
        row!(
            "ApplyProduct without a price",
            "product.unit_price.currency_code",
            sync.apply_product(apply_product(|p| p.unit_price = None)),
        ),
        row!(
            "ApplyProduct with a zero source version",
            "source_version",
            sync.apply_product(with(apply_product(|_| {}), |r| r.source_version = 0)),
        ),
        // ---- CrmSync.ApplyStockLevels
        row!(
            "ApplyStockLevels without levels",
            "levels",
            sync.apply_stock_levels(stock(&[])),
        ),
        row!(
            "ApplyStockLevels with 1001 levels",
            "levels",
            sync.apply_stock_levels(ApplyStockLevelsRequest {
                levels: (0..1001)
                    .map(|i| StockLevel {
                        sku: format!("S{i}"),
                        available: 1,
                        source_version: 1,
                    })
                    .collect(),
                ..ApplyStockLevelsRequest::default()
            }),
        ),
        row!(
            "ApplyStockLevels with a malformed sku",
            "levels[0].sku",
            sync.apply_stock_levels(stock(&[("A?", 1, 2)])),
        ),
        row!(
            "ApplyStockLevels with a negative quantity",
            "levels[0].available",
            sync.apply_stock_levels(stock(&[("A", -1, 2)])),
        ),
        row!(
            "ApplyStockLevels with a zero source version",
            "levels[0].source_version",
            sync.apply_stock_levels(stock(&[("A", 1, 0)])),
        ),
        row!(
            "ApplyStockLevels with a sku twice",
            "levels[1].sku",
            sync.apply_stock_levels(stock(&[("A", 1, 2), ("A", 2, 3)])),
        ),
        // ---- CrmSync.ApplyOrderStatus
        row!(
            "ApplyOrderStatus without an order id",
            "order_id",
            sync.apply_order_status(order_status(|r| r.order_id.clear())),
        ),
        row!(
            "ApplyOrderStatus with a malformed order id",
            "order_id",
            sync.apply_order_status(order_status(|r| r.order_id = "o-1".into())),
        ),
        row!(
            "ApplyOrderStatus without a status",
            "status",
            sync.apply_order_status(order_status(|r| {
                r.status = FulfilmentStatus::Unspecified as i32;
            })),
        ),
        row!(
            "ApplyOrderStatus with an unknown status value",
            "status",
            sync.apply_order_status(order_status(|r| r.status = UNKNOWN_ENUM)),
        ),
        row!(
            "ApplyOrderStatus with a zero source version",
            "source_version",
            sync.apply_order_status(order_status(|r| r.source_version = 0)),
        ),
        row!(
            "ApplyOrderStatus REJECTED without a reason",
            "rejection_reason",
            sync.apply_order_status(order_status(|r| {
                r.status = FulfilmentStatus::Rejected as i32;
            })),
        ),
        row!(
            "ApplyOrderStatus with a rejection reason of 501 characters",
            "rejection_reason",
            sync.apply_order_status(order_status(|r| {
                r.status = FulfilmentStatus::Rejected as i32;
                r.rejection_reason = too_long(501);
            })),
        ),
        row!(
            "ApplyOrderStatus INVOICED without an invoice number",
            "invoice_number",
            sync.apply_order_status(invoiced("", Some(("EUR", 500)))),
        ),
        row!(
            "ApplyOrderStatus INVOICED without an amount",
            "invoice_amount",
            sync.apply_order_status(invoiced("INV-1", None)),
        ),
        row!(
            "ApplyOrderStatus INVOICED in another currency than the order's",
            "invoice_amount.currency_code",
            sync.apply_order_status(invoiced("INV-1", Some(("USD", 500)))),
        ),
        row!(
            "ApplyOrderStatus INVOICED with a negative amount",
            "invoice_amount.amount_minor",
            sync.apply_order_status(invoiced("INV-1", Some(("EUR", -500)))),
        ),
        // ---- CrmSync.ApplyOrderStatuses
        row!(
            "ApplyOrderStatuses without statuses",
            "statuses",
            sync.apply_order_statuses(ApplyOrderStatusesRequest { statuses: vec![] }),
        ),
        row!(
            "ApplyOrderStatuses with 1001 statuses",
            "statuses",
            sync.apply_order_statuses(ApplyOrderStatusesRequest {
                statuses: vec![order_status(|_| {}); 1001],
            }),
        ),
        row!(
            "ApplyOrderStatuses with a malformed order id in the second status",
            "statuses[1].order_id",
            sync.apply_order_statuses(ApplyOrderStatusesRequest {
                statuses: vec![
                    order_status(|_| {}),
                    order_status(|r| r.order_id = "o-1".into()),
                ],
            }),
        ),
        row!(
            "ApplyOrderStatuses with an invoice in another currency than the order's",
            "statuses[1].invoice_amount.currency_code",
            sync.apply_order_statuses(ApplyOrderStatusesRequest {
                statuses: vec![order_status(|_| {}), invoiced("INV-1", Some(("USD", 500))),],
            }),
        ),
        // ---- CrmSync.ApplyCustomerFinance
        row!(
            "ApplyCustomerFinance without a customer id",
            "customer_id",
            sync.apply_customer_finance(finance(|r| r.customer_id.clear())),
        ),
        row!(
            "ApplyCustomerFinance with a malformed customer id",
            "customer_id",
            sync.apply_customer_finance(finance(|r| r.customer_id = "ada".into())),
        ),
        row!(
            "ApplyCustomerFinance without a credit limit",
            "credit_limit.currency_code",
            sync.apply_customer_finance(finance(|r| r.credit_limit = None)),
        ),
        row!(
            "ApplyCustomerFinance with an unknown currency",
            "credit_limit.currency_code",
            sync.apply_customer_finance(finance(|r| {
                r.credit_limit = Some(money("EU", 1));
                r.open_balance = Some(money("EU", 0));
            })),
        ),
        row!(
            "ApplyCustomerFinance in a currency withdrawn from ISO 4217",
            "credit_limit.currency_code",
            sync.apply_customer_finance(finance(|r| {
                r.credit_limit = Some(money("BGN", 1));
                r.open_balance = Some(money("BGN", 0));
            })),
        ),
        row!(
            "ApplyCustomerFinance with a negative credit limit",
            "credit_limit.amount_minor",
            sync.apply_customer_finance(finance(|r| r.credit_limit = Some(money("EUR", -1)))),
        ),
        row!(
            "ApplyCustomerFinance with the balance in another currency",
            "open_balance.currency_code",
            sync.apply_customer_finance(finance(|r| r.open_balance = Some(money("USD", 0)))),
        ),
        row!(
            "ApplyCustomerFinance with payment terms of 33 characters",
            "payment_terms",
            sync.apply_customer_finance(finance(|r| r.payment_terms = too_long(33))),
        ),
        row!(
            "ApplyCustomerFinance with a zero source version",
            "source_version",
            sync.apply_customer_finance(finance(|r| r.source_version = 0)),
        ),
        // ---- CrmSync.UpsertCustomerByExternalRef
        row!(
            "UpsertCustomerByExternalRef without a customer",
            "customer",
            sync.upsert_customer_by_external_ref(upsert(|r| r.customer = None)),
        ),
        row!(
            "UpsertCustomerByExternalRef without an external ref",
            "customer.external_ref",
            sync.upsert_customer_by_external_ref(upsert(|r| r.customer = Some(customer("G")))),
        ),
        row!(
            "UpsertCustomerByExternalRef with a malformed external ref",
            "customer.external_ref",
            sync.upsert_customer_by_external_ref(upsert(|r| {
                r.customer = Some(Customer {
                    external_ref: "web grace".into(),
                    ..customer("Grace Hopper")
                });
            })),
        ),
        row!(
            "UpsertCustomerByExternalRef with a malformed e-mail",
            "customer.email",
            sync.upsert_customer_by_external_ref(upsert(|r| {
                r.customer.as_mut().unwrap().email = "grace.example.com".into();
            })),
        ),
        row!(
            "UpsertCustomerByExternalRef without a display name",
            "customer.display_name",
            sync.upsert_customer_by_external_ref(upsert(|r| {
                r.customer.as_mut().unwrap().display_name.clear();
            })),
        ),
        row!(
            "UpsertCustomerByExternalRef with an address of no kind",
            "customer.addresses[0].kind",
            sync.upsert_customer_by_external_ref(upsert(|r| {
                r.customer.as_mut().unwrap().addresses = vec![address(AddressKind::Unspecified)];
            })),
        ),
        row!(
            "UpsertCustomerByExternalRef with an unknown status value",
            "customer.status",
            sync.upsert_customer_by_external_ref(upsert(|r| {
                r.customer.as_mut().unwrap().status = UNKNOWN_ENUM;
            })),
        ),
        row!(
            "UpsertCustomerByExternalRef with a zero source version",
            "source_version",
            sync.upsert_customer_by_external_ref(upsert(|r| r.source_version = 0)),
        ),
        row!(
            "UpsertCustomerByExternalRef from a source with a NUL character",
            "source",
            sync.upsert_customer_by_external_ref(upsert(|r| r.source = "web\0shop".into())),
        ),
        row!(
            "UpsertCustomerByExternalRef of an existing customer to a malformed e-mail",
            "customer.email",
            sync.upsert_customer_by_external_ref(upsert(|r| {
                r.source_version = 7;
                let customer = r.customer.as_mut().unwrap();
                customer.external_ref = "web:ada".into();
                customer.email = "ada@".into();
            })),
        ),
        // ---- CrmSync.PlaceExternalOrder
        row!(
            "PlaceExternalOrder without an external ref",
            "external_ref",
            sync.place_external_order(place(|r| r.external_ref.clear())),
        ),
        row!(
            "PlaceExternalOrder with a malformed external ref",
            "external_ref",
            sync.place_external_order(place(|r| r.external_ref = "shop 1".into())),
        ),
        row!(
            "PlaceExternalOrder without a customer external ref",
            "customer_external_ref",
            sync.place_external_order(place(|r| r.customer_external_ref.clear())),
        ),
        row!(
            "PlaceExternalOrder without a currency",
            "currency_code",
            sync.place_external_order(place(|r| r.currency_code.clear())),
        ),
        row!(
            "PlaceExternalOrder with an unknown currency",
            "currency_code",
            sync.place_external_order(place(|r| r.currency_code = "EURO".into())),
        ),
        row!(
            "PlaceExternalOrder without lines",
            "lines",
            sync.place_external_order(place(|r| r.lines.clear())),
        ),
        row!(
            "PlaceExternalOrder with 501 lines",
            "lines",
            sync.place_external_order(place(|r| {
                r.lines = (0..501)
                    .map(|i| external_line(&format!("S{i}"), 1))
                    .collect();
            })),
        ),
        row!(
            "PlaceExternalOrder with a zero quantity",
            "lines[0].quantity",
            sync.place_external_order(place(|r| r.lines = vec![external_line("A", 0)])),
        ),
        row!(
            "PlaceExternalOrder with a malformed sku",
            "lines[0].sku",
            sync.place_external_order(place(|r| r.lines = vec![external_line("A*", 1)])),
        ),
        row!(
            "PlaceExternalOrder with a sku twice",
            "lines[1].sku",
            sync.place_external_order(place(|r| r.lines = vec![external_line("A", 1); 2])),
        ),
        row!(
            "PlaceExternalOrder in another currency than the catalogue's",
            "lines[0].sku",
            sync.place_external_order(place(|r| r.currency_code = "USD".into())),
        ),
        // ---- CrmSync.LiftCustomerVersions
        row!(
            "LiftCustomerVersions without customers",
            "customers",
            sync.lift_customer_versions(pb::LiftCustomerVersionsRequest::default()),
        ),
        row!(
            "LiftCustomerVersions with a zero mirror version",
            "customers[0].mirror_version",
            sync.lift_customer_versions(lift(|c| c.mirror_version = 0)),
        ),
        row!(
            "LiftCustomerVersions without the customer",
            "customers[0].customer",
            sync.lift_customer_versions(lift(|c| c.customer = None)),
        ),
        row!(
            "LiftCustomerVersions with a malformed id",
            "customers[0].customer.id",
            sync.lift_customer_versions(lift(|c| c.customer.as_mut().unwrap().id = "7".into())),
        ),
        row!(
            "LiftCustomerVersions with a malformed e-mail",
            "customers[0].customer.email",
            sync.lift_customer_versions(lift(|c| {
                c.customer.as_mut().unwrap().email = "ada@".into()
            })),
        ),
        // ---- CrmSync.RecoverOrders
        row!(
            "RecoverOrders without orders",
            "orders",
            sync.recover_orders(pb::RecoverOrdersRequest::default()),
        ),
        row!(
            "RecoverOrders with a malformed id",
            "orders[0].id",
            sync.recover_orders(recover(|o| o.id = "7".into())),
        ),
        row!(
            "RecoverOrders with a malformed currency",
            "orders[0].currency_code",
            sync.recover_orders(recover(|o| o.currency_code = "euro".into())),
        ),
        row!(
            "RecoverOrders without lines",
            "orders[0].lines",
            sync.recover_orders(recover(|o| o.lines.clear())),
        ),
        row!(
            "RecoverOrders with a zero quantity",
            "orders[0].lines[0].quantity",
            sync.recover_orders(recover(|o| o.lines[0].quantity = 0)),
        ),
    ];

    assert_all_refused_writing_nothing(
        &crm.pool,
        &["customers", "orders", "catalogue", "outbox"],
        include_str!("../../proto/tandem/crm/v1/crm.proto"),
        rows,
    )
    .await;
    crm.stop().await;
}
