//! Domain helpers shared by the end-to-end tests: set up products, customers and orders the
//! way the frontends would, and wait for the other side to show them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1::{self as erp, erp_service_client::ErpServiceClient},
};
use tandem_tests::security::Authed;
use tandem_tests::{Stack, TestDatabase, eventually};

pub const WAIT: Duration = Duration::from_secs(20);

pub async fn clients(stack: &Stack) -> (CrmServiceClient<Authed>, ErpServiceClient<Authed>) {
    (
        stack.crm_client().await.unwrap(),
        stack.erp_client().await.unwrap(),
    )
}

pub fn eur(amount_minor: i64) -> Option<erp::Money> {
    Some(erp::Money {
        currency_code: "EUR".into(),
        amount_minor,
    })
}

/// A product with `stock` units in warehouse MAIN, as the ERP's users would set it up.
pub async fn stock_product(erp: &mut ErpServiceClient<Authed>, sku: &str, price: i64, stock: i64) {
    erp.create_product(erp::CreateProductRequest {
        request_id: String::new(),
        product: Some(erp::Product {
            sku: sku.into(),
            display_name: format!("Product {sku}"),
            unit_price: eur(price),
            active: true,
            ..erp::Product::default()
        }),
        inactive: false,
    })
    .await
    .unwrap();
    let _ = erp
        .create_warehouse(erp::CreateWarehouseRequest {
            request_id: String::new(),
            warehouse: Some(erp::Warehouse {
                code: "MAIN".into(),
                display_name: "Main".into(),
                ..erp::Warehouse::default()
            }),
        })
        .await;
    erp.receive_stock(erp::ReceiveStockRequest {
        request_id: String::new(),
        sku: sku.into(),
        warehouse: "MAIN".into(),
        quantity: stock,
        reference: "initial".into(),
    })
    .await
    .unwrap();
}

/// Waits until the CRM's catalogue shows `sku` with `available` units.
pub async fn crm_available(crm: &CrmServiceClient<Authed>, sku: &str, available: i64) {
    eventually(
        WAIT,
        &format!("{sku} available={available} in the CRM"),
        || {
            let mut crm = crm.clone();
            let sku = sku.to_owned();
            async move {
                let response = crm
                    .get_availability(crm::GetAvailabilityRequest { skus: vec![sku] })
                    .await
                    .ok()?;
                (response.get_ref().availability.first()?.available == available).then_some(())
            }
        },
    )
    .await
    .unwrap();
}

/// A customer created in the CRM, mirrored to the ERP, with a credit limit set there.
pub async fn customer_with_credit(
    crm: &mut CrmServiceClient<Authed>,
    erp: &mut ErpServiceClient<Authed>,
    name: &str,
) -> String {
    let customer = crm
        .create_customer(crm::CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(crm::Customer {
                display_name: name.into(),
                email: format!("{}@example.com", name.to_lowercase()),
                ..crm::Customer::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let id = customer.id.clone();
    eventually(WAIT, "the customer in the ERP", || {
        let mut erp = erp.clone();
        let id = id.clone();
        async move {
            erp.get_customer(erp::GetCustomerRequest { id })
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await
    .unwrap();
    erp.set_credit_terms(erp::SetCreditTermsRequest {
        version: None,
        customer_id: id.clone(),
        credit_limit: eur(1_000_000),
        payment_terms_days: 30,
        credit_hold: false,
        update_mask: None,
    })
    .await
    .unwrap();
    id
}

pub async fn submit_order(
    crm: &mut CrmServiceClient<Authed>,
    customer_id: &str,
    sku: &str,
    quantity: i64,
) -> crm::Order {
    let draft = draft_order(crm, customer_id, sku, quantity).await;
    crm.submit_order(crm::SubmitOrderRequest {
        request_id: String::new(),
        id: draft.id.clone(),
        version: draft.version,
    })
    .await
    .unwrap()
    .into_inner()
}

/// A draft order of one line, in EUR.
pub async fn draft_order(
    crm: &mut CrmServiceClient<Authed>,
    customer_id: &str,
    sku: &str,
    quantity: i64,
) -> crm::Order {
    crm.create_order(crm::CreateOrderRequest {
        request_id: String::new(),
        order: Some(crm::Order {
            customer_id: customer_id.into(),
            currency_code: "EUR".into(),
            lines: vec![crm::OrderLine {
                sku: sku.into(),
                quantity,
                ..crm::OrderLine::default()
            }],
            ..crm::Order::default()
        }),
    })
    .await
    .unwrap()
    .into_inner()
}

/// Waits until the CRM shows `status` as the order's fulfilment.
pub async fn crm_fulfilment(
    crm: &CrmServiceClient<Authed>,
    order_id: &str,
    status: crm::FulfilmentStatus,
) -> crm::Order {
    eventually(
        WAIT,
        &format!("order {order_id} {status:?} in the CRM"),
        || {
            let mut crm = crm.clone();
            let id = order_id.to_owned();
            async move {
                let order = crm
                    .get_order(crm::GetOrderRequest { id })
                    .await
                    .ok()?
                    .into_inner();
                (order.fulfilment.as_ref()?.status() == status).then_some(order)
            }
        },
    )
    .await
    .unwrap()
}

pub async fn erp_order(erp: &mut ErpServiceClient<Authed>, crm_order_id: &str) -> erp::SalesOrder {
    let list = erp
        .list_sales_orders(erp::ListSalesOrdersRequest {
            crm_order_id: crm_order_id.into(),
            ..erp::ListSalesOrdersRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    list.orders.into_iter().next().expect("order in the ERP")
}

/// Runs `tandemctl` against the stack; fails the test unless it exits 0.
pub fn tandemctl(stack: &Stack, args: &[&str]) -> String {
    tandemctl_status(stack, args, true)
}

/// Runs `tandemctl`; returns its output, failing the test unless its success is `success`.
pub fn tandemctl_status(stack: &Stack, args: &[&str], success: bool) -> String {
    let output = stack.tandemctl().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.success(),
        success,
        "tandemctl {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Waits until the ERP has customer `id`.
pub async fn erp_has_customer(erp: &ErpServiceClient<Authed>, id: &str) {
    eventually(WAIT, "the customer in the ERP", || {
        let mut erp = erp.clone();
        let id = id.to_owned();
        async move {
            erp.get_customer(erp::GetCustomerRequest { id })
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await
    .unwrap();
}

/// Gives customer `id` a credit limit of 10,000.00 EUR in the ERP.
pub async fn set_credit(erp: &mut ErpServiceClient<Authed>, id: &str) {
    erp.set_credit_terms(erp::SetCreditTermsRequest {
        version: None,
        customer_id: id.to_owned(),
        credit_limit: eur(1_000_000),
        payment_terms_days: 30,
        credit_hold: false,
        update_mask: None,
    })
    .await
    .unwrap();
}

/// Runs `sql` (a count) on `db`, retrying for up to 10 s while the database is down.
pub async fn count(db: &TestDatabase, sql: &str) -> i64 {
    for _ in 0..50 {
        if let Ok(mut conn) = db.connect().await
            && let Ok(n) = sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await
        {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("cannot run {sql}");
}
