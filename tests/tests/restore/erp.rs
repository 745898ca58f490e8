//! The ERP drill's steps: changes as the warehouse and finance make them, the comparison of
//! the CRM's mirrors with the ERP, and one restore with its resync, checked against both.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use serde_json::Value;
use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1::{self as erp, erp_service_client::ErpServiceClient},
};
use tandem_tests::{
    Stack, eventually,
    pitr::{ArchivedPostgres, RecoveryTarget},
    security::Authed,
};

use crate::{
    CONVERGE, Size,
    lists::{
        crm_catalogue, crm_customers, crm_orders, erp_available, erp_customers, erp_orders,
        erp_products,
    },
    lost, restore, resync,
    support::{
        clients, crm_available, crm_fulfilment, erp_order, eur, stock_product, submit_order,
    },
};

/// The status name without its enum prefix (`RESERVED`), comparable across the two APIs.
fn status_name(name: &str) -> String {
    name.rsplit("STATUS_").next().unwrap_or(name).to_owned()
}

/// The first thing the CRM's mirrors and the ERP disagree on (versions and values), if any.
pub async fn erp_disagreement(
    crm: &CrmServiceClient<Authed>,
    erp: &ErpServiceClient<Authed>,
) -> Option<String> {
    let products = erp_products(erp).await;
    let available = erp_available(erp).await;
    let catalogue = crm_catalogue(crm).await;
    for (sku, product) in &products {
        let Some(mirrored) = catalogue.get(sku) else {
            return Some(format!("product {sku} missing in the CRM"));
        };
        let price = |m: Option<i64>| m.unwrap_or_default();
        if mirrored.product_version != product.version
            || price(mirrored.unit_price.as_ref().map(|m| m.amount_minor))
                != price(product.unit_price.as_ref().map(|m| m.amount_minor))
            || mirrored.name != product.display_name
        {
            return Some(format!(
                "product {sku}: CRM v{} vs ERP v{}",
                mirrored.product_version, product.version
            ));
        }
        if mirrored.available != available.get(sku).copied().unwrap_or(0) {
            return Some(format!(
                "stock {sku}: CRM {} vs ERP {:?}",
                mirrored.available,
                available.get(sku)
            ));
        }
    }
    let orders = crm_orders(crm).await;
    for (id, order) in erp_orders(erp).await {
        let fulfilment = orders.get(&id).and_then(|o| o.fulfilment.clone());
        let Some(fulfilment) = fulfilment else {
            return Some(format!("order {id}: no fulfilment in the CRM"));
        };
        if fulfilment.source_version != order.version
            || status_name(fulfilment.status().as_str_name())
                != status_name(order.status().as_str_name())
        {
            return Some(format!(
                "order {id}: CRM {:?} v{} vs ERP {:?} v{}",
                fulfilment.status(),
                fulfilment.source_version,
                order.status(),
                order.version
            ));
        }
    }
    let customers = crm_customers(crm).await;
    for (id, customer) in erp_customers(erp).await {
        let Some(finance) = customer.finance.filter(|f| f.version > 0) else {
            continue;
        };
        let mirrored = customers.get(&id).and_then(|c| c.finance.clone());
        if mirrored.as_ref().map(|f| f.source_version) != Some(finance.version) {
            return Some(format!(
                "finance {id}: CRM {:?} vs ERP v{}",
                mirrored.map(|f| f.source_version),
                finance.version
            ));
        }
    }
    None
}

pub async fn erp_mirrored(
    crm: &CrmServiceClient<Authed>,
    erp: &ErpServiceClient<Authed>,
) -> Duration {
    let started = Instant::now();
    let last = std::sync::Mutex::new(None);
    let agreed = eventually(CONVERGE, "the CRM mirroring the ERP", || {
        let (crm, erp, last) = (crm.clone(), erp.clone(), &last);
        async move {
            let disagreement = erp_disagreement(&crm, &erp).await;
            let agreed = disagreement.is_none();
            *last.lock().unwrap() = disagreement;
            agreed.then_some(())
        }
    })
    .await;
    if let Err(error) = agreed {
        panic!("{error:#}: {:?}", last.lock().unwrap());
    }
    started.elapsed()
}

pub async fn product_versions(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, i64> {
    erp_products(erp)
        .await
        .into_values()
        .map(|p| (p.sku, p.version))
        .collect()
}

async fn set_price(erp: &mut ErpServiceClient<Authed>, sku: &str, price: i64) -> i64 {
    erp.update_product(erp::UpdateProductRequest {
        product: Some(erp::Product {
            sku: sku.to_owned(),
            unit_price: eur(price),
            ..erp::Product::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["unit_price".into()],
        }),
    })
    .await
    .unwrap()
    .into_inner()
    .version
}

/// What the ERP's clients were told: counts of each kind of change.
#[derive(Debug, Default)]
pub struct ErpChanges {
    products_created: usize,
    prices: usize,
    receipts: usize,
    orders: usize,
    shipped: usize,
    invoiced: usize,
    credit_terms: usize,
}

impl ErpChanges {
    pub fn total(&self) -> usize {
        self.products_created
            + self.prices
            + self.receipts
            + self.orders
            + self.shipped
            + self.invoiced
            + self.credit_terms
    }
}

/// One phase of ERP changes: new products with stock, price changes, a receipt, orders from
/// the CRM (reserved by the ERP), one shipped, one earlier one invoiced, new credit terms.
pub async fn erp_phase(
    crm: &mut CrmServiceClient<Authed>,
    erp: &mut ErpServiceClient<Authed>,
    customers: &[String],
    phase: &str,
    size: Size,
) -> ErpChanges {
    let mut changes = ErpChanges::default();
    let existing: Vec<String> = erp_products(erp).await.into_keys().collect();
    let mut new = Vec::new();
    for n in 0..size.created {
        let sku = format!("{phase}-NEW-{n}");
        stock_product(erp, &sku, 2000 + n as i64, 50).await;
        crm_available(crm, &sku, 50).await;
        new.push(sku);
        changes.products_created += 1;
    }
    for (n, sku) in existing.iter().take(size.edited).enumerate() {
        set_price(
            erp,
            sku,
            3000 + n as i64 + if phase == "A" { 0 } else { 500 },
        )
        .await;
        changes.prices += 1;
    }
    erp.receive_stock(erp::ReceiveStockRequest {
        sku: existing[0].clone(),
        warehouse: "MAIN".into(),
        quantity: 7,
        reference: format!("{phase} delivery"),
        request_id: String::new(),
    })
    .await
    .unwrap();
    changes.receipts += 1;
    let mut placed = Vec::new();
    for n in 0..size.orders {
        let sku = if n % 2 == 0 {
            &new[0]
        } else {
            &existing[n % existing.len()]
        };
        let order = submit_order(crm, &customers[n % customers.len()], sku, 1 + n as i64).await;
        crm_fulfilment(crm, &order.id, crm::FulfilmentStatus::Reserved).await;
        placed.push(order.id);
        changes.orders += 1;
    }
    let shipped = erp_order(erp, &placed[0]).await;
    erp.ship_order(erp::ShipOrderRequest {
        id: shipped.id.clone(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    crm_fulfilment(crm, &placed[0], crm::FulfilmentStatus::Shipped).await;
    changes.shipped += 1;
    // An order shipped in an earlier phase is invoiced now.
    let earlier = erp_orders(erp)
        .await
        .into_values()
        .find(|o| o.status() == erp::SalesOrderStatus::Shipped && o.crm_order_id != placed[0]);
    if let Some(order) = earlier {
        erp.invoice_order(erp::InvoiceOrderRequest {
            id: order.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
        crm_fulfilment(crm, &order.crm_order_id, crm::FulfilmentStatus::Invoiced).await;
        changes.invoiced += 1;
    }
    let customer = &customers[if phase == "A" { 0 } else { customers.len() - 1 }];
    erp.set_credit_terms(erp::SetCreditTermsRequest {
        customer_id: customer.clone(),
        credit_limit: eur(if phase == "A" { 2_000_000 } else { 3_000_000 }),
        payment_terms_days: 45,
        credit_hold: false,
        update_mask: None,
        version: None,
    })
    .await
    .unwrap();
    changes.credit_terms += 1;
    changes
}

/// One ERP restore and its resync, checked against the CRM's mirrors as they were before.
pub async fn erp_restore_and_resync(
    stack: &mut Stack,
    pg: &ArchivedPostgres,
    target: RecoveryTarget,
    recover: bool,
    at_target: &BTreeMap<String, i64>,
) -> Value {
    restore(stack, pg, "erp", &target).await;
    let (crm, mut erp) = clients(stack).await;
    let owner_products = erp_products(&erp).await;
    // The restored ERP holds exactly the products (and versions) it had at the target.
    let restored: BTreeMap<String, i64> = owner_products
        .values()
        .map(|p| (p.sku.clone(), p.version))
        .collect();
    assert_eq!(&restored, at_target, "the ERP restored to {target:?}");
    let owner_orders = erp_orders(&erp).await;
    let owner_customers = erp_customers(&erp).await;
    let owner_available = erp_available(&erp).await;
    let catalogue = crm_catalogue(&crm).await;
    let orders = crm_orders(&crm).await;
    let customers = crm_customers(&crm).await;

    // What the restore lost, as the CRM's mirrors show it.
    let lost_products: BTreeSet<String> = catalogue
        .values()
        .filter(|p| {
            owner_products
                .get(&p.sku)
                .is_none_or(|o| o.version < p.product_version)
        })
        .map(|p| p.sku.clone())
        .collect();
    let lost_stock: BTreeSet<String> = catalogue
        .values()
        .filter(|p| owner_available.get(&p.sku).copied().unwrap_or(0) != p.available)
        .map(|p| p.sku.clone())
        .collect();
    let lost_orders: BTreeSet<String> = orders
        .values()
        .filter(|o| o.submit_time.is_some())
        .filter(|o| {
            owner_orders.get(&o.id).is_none_or(|owner| {
                o.fulfilment
                    .as_ref()
                    .is_some_and(|f| owner.version < f.source_version)
            })
        })
        .map(|o| o.id.clone())
        .collect();
    let lost_finance: BTreeSet<String> = customers
        .values()
        .filter(|c| {
            c.finance.as_ref().is_some_and(|f| {
                owner_customers
                    .get(&c.id)
                    .and_then(|o| o.finance.as_ref())
                    .is_none_or(|o| o.version < f.source_version)
            })
        })
        .map(|c| c.id.clone())
        .collect();
    println!(
        "ERP restored to {target:?}: the CRM's mirrors are ahead on {} products, {} skus' stock, \
         {} orders, {} customers' finance",
        lost_products.len(),
        lost_stock.len(),
        lost_orders.len(),
        lost_finance.len()
    );
    assert!(
        !lost_orders.is_empty(),
        "the drill lost no order: it proves nothing"
    );

    let (report, took) = resync(stack, "erp", recover);
    println!(
        "resync --after-restore erp{}: {took:?}, converged in {} ms\n{}",
        if recover {
            " --recover-from-mirror"
        } else {
            ""
        },
        report["converged_ms"],
        serde_json::to_string_pretty(&report["counts"]).unwrap()
    );
    let keys = |kind: &str| lost(&report, kind).keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(keys("product"), lost_products, "lost products:\n{report:#}");
    assert_eq!(keys("order"), lost_orders, "lost orders:\n{report:#}");
    assert_eq!(keys("finance"), lost_finance, "lost finance:\n{report:#}");
    assert!(
        lost_stock.is_subset(&keys("stock")),
        "every sku whose availability the restore changed is listed:\n{report:#}"
    );
    for (sku, entry) in lost(&report, "product") {
        assert_eq!(
            entry["mirror"]["name"],
            catalogue[&sku].name.as_str(),
            "{entry}"
        );
    }
    for (sku, entry) in lost(&report, "stock") {
        assert_eq!(
            entry["mirror"]["available"], catalogue[&sku].available,
            "{entry}"
        );
    }
    for (id, entry) in lost(&report, "order") {
        let seen = orders[&id].fulfilment.as_ref().unwrap();
        assert_eq!(
            entry["mirror"]["status"],
            seen.status().as_str_name(),
            "{entry}"
        );
        assert!(entry["todo"].is_string(), "{entry}");
    }

    // What the CRM shows now for the orders the restore lost.
    let after = crm_orders(&crm).await;
    let decided = erp_orders(&erp).await;
    for id in &lost_orders {
        let before = orders[id].fulfilment.as_ref().unwrap().status();
        let now = after[id].fulfilment.as_ref().map(|f| f.status());
        println!(
            "  order {id}: the CRM showed {before:?}, now {now:?} (ERP: {:?})",
            decided.get(id).map(|o| o.status())
        );
    }
    // Invoice numbers never repeat one issued before the restore: a new order, shipped and
    // invoiced now, gets a number the CRM has not seen.
    let seen_invoices: BTreeSet<String> = orders
        .values()
        .filter_map(|o| o.fulfilment.as_ref())
        .map(|f| f.invoice_number.clone())
        .filter(|n| !n.is_empty())
        .collect();
    let issued_after: BTreeSet<String> = seen_invoices
        .iter()
        .filter(|n| {
            !owner_orders
                .values()
                .any(|o| o.invoice.as_ref().is_some_and(|i| &&i.invoice_number == n))
        })
        .cloned()
        .collect();
    if !issued_after.is_empty() {
        let listed = lost(&report, "invoice_numbers");
        assert_eq!(
            listed.keys().cloned().collect::<Vec<_>>(),
            vec![seen_invoices.iter().max().unwrap().clone()],
            "the report says the invoice numbering moved above the highest the CRM saw"
        );
    }
    let (mut crm_client, buyer) = (crm.clone(), customers.keys().next().unwrap().clone());
    let fresh = submit_order(&mut crm_client, &buyer, "DRILL-0", 1).await;
    crm_fulfilment(&crm, &fresh.id, crm::FulfilmentStatus::Reserved).await;
    let sales_order = erp_order(&mut erp, &fresh.id).await;
    erp.ship_order(erp::ShipOrderRequest {
        id: sales_order.id.clone(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    let invoiced = erp
        .invoice_order(erp::InvoiceOrderRequest {
            id: sales_order.id,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let number = invoiced.invoice.unwrap().invoice_number;
    assert!(
        !seen_invoices.contains(&number),
        "invoice {number} was issued before the restore already: {seen_invoices:?}"
    );
    crm_fulfilment(&crm, &fresh.id, crm::FulfilmentStatus::Invoiced).await;
    println!("  a new invoice after the resync: {number} (the CRM had seen {seen_invoices:?})");

    if recover {
        for sku in &lost_products {
            let product = erp_products(&erp).await.remove(sku).unwrap();
            assert_eq!(product.display_name, catalogue[sku].name, "{sku} recovered");
            assert_eq!(
                product.unit_price.as_ref().unwrap().amount_minor,
                catalogue[sku].unit_price.as_ref().unwrap().amount_minor,
                "{sku} recovered"
            );
        }
        for order in orders.values().filter(|o| o.submit_time.is_some()) {
            assert!(
                decided.contains_key(&order.id),
                "order {} accepted again",
                order.id
            );
        }
        if let Some(problem) = erp_disagreement(&crm, &erp).await {
            panic!("after the resync: {problem}");
        }
        // New changes apply on the other side: a price of a product the restore touched.
        let sku = lost_products
            .iter()
            .next()
            .unwrap_or(&"DRILL-0".to_owned())
            .clone();
        let version = set_price(&mut erp, &sku, 9_999).await;
        assert!(version > catalogue[&sku].product_version);
        eventually(CONVERGE, "the new price in the CRM", || {
            let crm = crm.clone();
            let sku = sku.clone();
            async move {
                let product = crm_catalogue(&crm).await.remove(&sku)?;
                (product.product_version == version && product.unit_price?.amount_minor == 9_999)
                    .then_some(())
            }
        })
        .await
        .unwrap();
    }
    report
}
