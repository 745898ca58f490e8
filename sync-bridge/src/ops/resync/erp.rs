//! The ERP's database was restored. The CRM mirrors products (name, price, active), available
//! stock per sku, each order's fulfilment status and each customer's finance, each with the
//! ERP version it applied; and it owns what the ERP mirrors (customer profiles, submitted
//! orders and cancellation requests).
//!
//! In order:
//! 1. The CRM's customers the restored ERP lost, or holds at an older version, are applied
//!    again (`ErpSync.ApplyCustomer`): orders and finance need them.
//! 2. With `--recover-from-mirror`: products whose CRM copy is newer, or that only the CRM
//!    has, are taken back (`ErpSync.RecoverProducts`; the CRM mirrors a product's whole
//!    owned state but its description).
//! 3. Every version the CRM has seen is sent to `ErpSync.LiftVersions`: the ERP lifts its
//!    own above it and publishes its state (the ERP wins). Stock, fulfilment steps and finance
//!    cannot come back from the CRM (it sees availability, not the ledger; a status, not the
//!    shipment; balances, not invoices and payments): they are the operator's work list.
//! 4. Orders the CRM submitted that the ERP lost are accepted again (`ErpSync.AcceptOrder`:
//!    they reserve against the rewound ledger, so they may be BACKORDERED now), and
//!    cancellations the CRM asked for are sent again; then their versions are lifted above
//!    the CRM's.
//! 5. Wait until the CRM applied every lifted version; reconcile with repair.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use serde_json::json;
use tandem_proto::{crm::v1 as crm, erp::v1 as erp};

use super::{BATCH, Lost, ResyncReport, Side, converge};
use crate::{
    flows::{Flows, to_erp::customer_from_crm},
    ops::reconcile::{self, ErpClient, accept_request},
};

fn outcome_name(outcome: erp::LiftOutcome) -> &'static str {
    match outcome {
        erp::LiftOutcome::Current => "current",
        erp::LiftOutcome::Lifted => "lifted",
        erp::LiftOutcome::Recovered => "recovered",
        erp::LiftOutcome::Missing => "missing",
        erp::LiftOutcome::Unspecified => "unknown",
    }
}

fn money_json(money: Option<&crm::Money>) -> serde_json::Value {
    money.map_or(
        json!(null),
        |m| json!({"currency_code": m.currency_code, "amount_minor": m.amount_minor}),
    )
}

/// What the CRM mirrors, read once before anything changes.
struct Mirror {
    products: Vec<crm::Product>,
    orders: Vec<crm::Order>,
    customers: Vec<crm::Customer>,
}

/// The version of one entity the CRM has seen, with its values there.
#[derive(Debug, Clone)]
struct Floor {
    key: String,
    mirror_version: i64,
    /// The CRM's values (what the report shows when the ERP was behind).
    mirror: serde_json::Value,
    /// What is left for the operator when the ERP was behind.
    todo: Option<String>,
}

type Floors = Vec<Floor>;

/// The resync after a restore of the ERP's database.
pub async fn resync(
    flows: &Flows,
    erp_channel: tonic::transport::Channel,
    recover: bool,
    quiet: bool,
    wait: Duration,
) -> anyhow::Result<ResyncReport> {
    let erp = ErpClient::new(erp_channel.clone());
    let mut report = ResyncReport::new(Side::Erp, recover);
    let mirror = read_mirror(flows, quiet).await?;

    // 1. The CRM's customers into the ERP's mirror.
    let profiles: HashMap<String, i64> = crate::ops::listing::erp_customers(flows, &erp, quiet)
        .all()
        .await?
        .into_iter()
        .filter_map(|c| Some((c.profile?.id, c.profile_version)))
        .collect();
    for customer in &mirror.customers {
        if profiles.get(&customer.id).copied().unwrap_or(0) >= customer.version {
            continue;
        }
        let request = customer_from_crm(customer.clone(), true);
        if let Err(status) = flows
            .erp
            .clone()
            .apply_customer(flows.request(request))
            .await
        {
            report
                .failures
                .push(format!("customer {}: {status}", customer.id));
        }
    }

    // 2. Products back from the CRM's catalogue.
    if recover {
        recover_products(flows, &mirror, &mut report).await;
    }

    // 3. Every version the CRM has seen, and the invoice numbers.
    let floors = floors(&mirror);
    let mut lifted = lift(flows, &floors, highest_invoice(&mirror), &mut report).await;

    // 4. Submissions and cancellations the ERP lost, then their versions.
    let resent = resend_orders(flows, &erp, &mirror, quiet, &mut report).await?;
    if !resent.is_empty() {
        let order_floors: [Floors; 4] = [Vec::new(), Vec::new(), resent, Vec::new()];
        lifted.extend(lift(flows, &order_floors, 0, &mut report).await);
    }

    // 5. Wait for the CRM, then reconcile.
    let (took, left) = converge(wait, || {
        let lifted = lifted.clone();
        async move { unconverged(flows, &lifted).await }
    })
    .await;
    report.converged_in = took;
    report.unconverged = left;
    report.reconcile = reconcile::reconcile(flows, erp_channel, true, quiet).await?;
    Ok(report)
}

async fn read_mirror(flows: &Flows, quiet: bool) -> anyhow::Result<Mirror> {
    let products = crate::ops::listing::crm_catalogue(flows, quiet)
        .all()
        .await?;
    let orders = crate::ops::listing::crm_orders(flows, quiet).all().await?;
    let customers = crate::ops::listing::crm_customers(flows, quiet)
        .all()
        .await?;
    Ok(Mirror {
        products,
        orders,
        customers,
    })
}

async fn recover_products(flows: &Flows, mirror: &Mirror, report: &mut ResyncReport) {
    let known: Vec<&crm::Product> = mirror
        .products
        .iter()
        .filter(|p| p.product_version > 0)
        .collect();
    for batch in known.chunks(BATCH) {
        let request = erp::RecoverProductsRequest {
            products: batch
                .iter()
                .map(|p| erp::MirroredProduct {
                    sku: p.sku.clone(),
                    display_name: p.name.clone(),
                    unit_price: p.unit_price.as_ref().map(|m| erp::Money {
                        currency_code: m.currency_code.clone(),
                        amount_minor: m.amount_minor,
                    }),
                    active: p.active,
                    mirror_version: p.product_version,
                })
                .collect(),
        };
        let results = match flows
            .erp
            .clone()
            .recover_products(flows.request(request))
            .await
        {
            Ok(response) => response.into_inner().results,
            Err(status) => {
                report.failures.push(format!(
                    "recovering {} products from {}: {status}",
                    batch.len(),
                    batch[0].sku
                ));
                continue;
            }
        };
        for (product, result) in batch.iter().zip(results) {
            if result.outcome() != erp::LiftOutcome::Recovered {
                continue;
            }
            report.lost.push(Lost {
                kind: "product",
                id: product.sku.clone(),
                owner_version: result.previous_version,
                mirror_version: product.product_version,
                mirror: product_json(product),
                outcome: "recovered".to_owned(),
                version: result.version,
                todo: (result.previous_version == 0).then(|| {
                    "re-created without a description or stock: enter them again".to_owned()
                }),
            });
        }
    }
}

fn product_json(product: &crm::Product) -> serde_json::Value {
    json!({
        "name": product.name,
        "unit_price": money_json(product.unit_price.as_ref()),
        "active": product.active,
    })
}

/// The CRM's versions: [products, stock, orders, finance].
fn floors(mirror: &Mirror) -> [Floors; 4] {
    let products = mirror
        .products
        .iter()
        .filter(|p| p.product_version > 0)
        .map(|p| Floor {
            key: p.sku.clone(),
            mirror_version: p.product_version,
            mirror: product_json(p),
            todo: Some(
                "the ERP's restored product replaced these values; enter again what still holds"
                    .to_owned(),
            ),
        })
        .collect();
    let stock = mirror
        .products
        .iter()
        .filter(|p| p.stock_version > 0)
        .map(|p| Floor {
            key: p.sku.clone(),
            mirror_version: p.stock_version,
            mirror: json!({"available": p.available}),
            todo: Some(format!(
                "stock movements after the restore point are lost (the CRM saw {} available): \
                 count the sku again",
                p.available
            )),
        })
        .collect();
    let orders = mirror
        .orders
        .iter()
        .filter_map(|o| {
            let fulfilment = o.fulfilment.as_ref()?;
            (fulfilment.source_version > 0).then(|| Floor {
                key: o.id.clone(),
                mirror_version: fulfilment.source_version,
                mirror: fulfilment_json(fulfilment),
                todo: Some(format!(
                    "the CRM saw {}: redo the fulfilment steps the ERP lost (shipment, invoice)",
                    fulfilment.status().as_str_name()
                )),
            })
        })
        .collect();
    let finance = mirror
        .customers
        .iter()
        .filter_map(|c| {
            let finance = c.finance.as_ref()?;
            (finance.source_version > 0).then(|| Floor {
                key: c.id.clone(),
                mirror_version: finance.source_version,
                mirror: json!({
                    "credit_limit": money_json(finance.credit_limit.as_ref()),
                    "payment_terms": finance.payment_terms,
                    "open_balance": money_json(finance.open_balance.as_ref()),
                    "credit_hold": finance.credit_hold,
                }),
                todo: Some(
                    "credit terms, payments and invoices after the restore point are lost: \
                     enter them again"
                        .to_owned(),
                ),
            })
        })
        .collect();
    [products, stock, orders, finance]
}

fn fulfilment_json(fulfilment: &crm::Fulfilment) -> serde_json::Value {
    json!({
        "status": fulfilment.status().as_str_name(),
        "invoice_number": fulfilment.invoice_number,
        "invoice_amount": money_json(fulfilment.invoice_amount.as_ref()),
    })
}

const KINDS: [&str; 4] = ["product", "stock", "order", "finance"];

/// A lifted version the CRM must apply: (kind, key, version).
type Pending = (&'static str, String, i64);

/// The highest invoice number the CRM has seen (42 for `INV-00000042`), or 0.
fn highest_invoice(mirror: &Mirror) -> i64 {
    mirror
        .orders
        .iter()
        .filter_map(|o| o.fulfilment.as_ref())
        .filter_map(|f| f.invoice_number.strip_prefix("INV-")?.parse::<i64>().ok())
        .max()
        .unwrap_or(0)
}

/// Sends the floors in calls of at most [`BATCH`] (the invoice number floor with the first);
/// lists what was lifted or missing.
async fn lift(
    flows: &Flows,
    floors: &[Floors; 4],
    invoice_floor: i64,
    report: &mut ResyncReport,
) -> Vec<Pending> {
    let mut pending = Vec::new();
    let all: Vec<(usize, &Floor)> = floors
        .iter()
        .enumerate()
        .flat_map(|(kind, floors)| floors.iter().map(move |floor| (kind, floor)))
        .collect();
    for (kind, floors) in floors.iter().enumerate() {
        let name = KINDS[kind];
        if !floors.is_empty() && !report.checked.iter().any(|(k, _)| *k == name) {
            report.checked.push((name, floors.len()));
        }
    }
    let mut invoice_floor = invoice_floor;
    let mut batches: Vec<&[(usize, &Floor)]> = all.chunks(BATCH).collect();
    if batches.is_empty() && invoice_floor > 0 {
        batches.push(&[]);
    }
    for batch in batches {
        let mut request = erp::LiftVersionsRequest {
            invoice_number_floor: std::mem::take(&mut invoice_floor),
            ..erp::LiftVersionsRequest::default()
        };
        for (kind, floor) in batch {
            let floor = erp::VersionFloor {
                key: floor.key.clone(),
                mirror_version: floor.mirror_version,
            };
            match kind {
                0 => request.products.push(floor),
                1 => request.stock.push(floor),
                2 => request.orders.push(floor),
                _ => request.finance.push(floor),
            }
        }
        let sent_invoice_floor = request.invoice_number_floor;
        let response = match flows
            .erp
            .clone()
            .lift_versions(flows.request(request))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => {
                report
                    .failures
                    .push(format!("lifting {} versions: {status}", batch.len()));
                continue;
            }
        };
        if response.invoice_numbers_advanced {
            let highest = format!("INV-{sent_invoice_floor:08}");
            report.lost.push(Lost {
                kind: "invoice_numbers",
                id: highest.clone(),
                owner_version: 0,
                mirror_version: 0,
                mirror: json!({"highest_invoice_number": highest}),
                outcome: "advanced".to_owned(),
                version: 0,
                todo: Some(
                    "invoices up to this number were issued before the restore; the ERP lost \
                     some of them (see the orders listed): the numbering now continues above it"
                        .to_owned(),
                ),
            });
        }
        // The answer keeps the request's order within each kind.
        let mut answers = [
            response.products.into_iter(),
            response.stock.into_iter(),
            response.orders.into_iter(),
            response.finance.into_iter(),
        ];
        for (kind, floor) in batch {
            let Floor {
                key,
                mirror_version,
                mirror: values,
                todo,
            } = floor;
            let Some(result) = answers[*kind].next() else {
                report
                    .failures
                    .push(format!("no answer for {} {key}", KINDS[*kind]));
                continue;
            };
            let outcome = result.outcome();
            if outcome == erp::LiftOutcome::Current {
                continue;
            }
            if outcome == erp::LiftOutcome::Lifted {
                pending.push((KINDS[*kind], key.clone(), result.version));
            }
            // An order accepted again is already listed: update its entry.
            if let Some(entry) = report
                .lost
                .iter_mut()
                .find(|l| l.kind == KINDS[*kind] && l.id == *key)
            {
                entry.version = result.version;
                continue;
            }
            report.lost.push(Lost {
                kind: KINDS[*kind],
                id: key.clone(),
                owner_version: result.previous_version,
                mirror_version: *mirror_version,
                mirror: values.clone(),
                outcome: outcome_name(outcome).to_owned(),
                version: result.version,
                todo: if outcome == erp::LiftOutcome::Missing {
                    Some(match *kind {
                        0 => "only the CRM has this product: run again with --recover-from-mirror, or create it".to_owned(),
                        _ => format!("the ERP does not have it; {}", todo.clone().unwrap_or_default()),
                    })
                } else {
                    todo.clone()
                },
            });
        }
    }
    pending
}

/// Accepts again the orders the CRM submitted that the ERP lost, and sends again the
/// cancellations the ERP lost. Returns the order floors to lift afterwards.
async fn resend_orders(
    flows: &Flows,
    erp: &ErpClient,
    mirror: &Mirror,
    quiet: bool,
    report: &mut ResyncReport,
) -> anyhow::Result<Floors> {
    let held: BTreeMap<String, erp::SalesOrder> =
        crate::ops::listing::erp_orders(flows, erp, quiet)
            .all()
            .await?
            .into_iter()
            .map(|o| (o.crm_order_id.clone(), o))
            .collect();
    let mut floors = Vec::new();
    for order in mirror.orders.iter().filter(|o| o.submit_time.is_some()) {
        let cancel = matches!(
            order.status(),
            crm::OrderStatus::CancelRequested | crm::OrderStatus::Cancelled
        );
        let existing = held.get(&order.id);
        let cancelled = existing.is_some_and(|o| o.status() == erp::SalesOrderStatus::Cancelled);
        if existing.is_some() && (!cancel || cancelled) {
            continue;
        }
        let fulfilment = order.fulfilment.clone().unwrap_or_default();
        let mut outcome = String::new();
        let mut refused = None;
        if existing.is_none() {
            match flows
                .erp
                .clone()
                .accept_order(flows.request(accept_request(order)))
                .await
            {
                Ok(_) => outcome.push_str("re-accepted"),
                // Its product or customer is not in the restored ERP: listed, with what to do.
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    outcome.push_str("not re-accepted");
                    refused = Some(format!(
                        "the ERP refused it: {}; bring the product back (--recover-from-mirror) \
                         or create it, then run the resync again",
                        status.message()
                    ));
                }
                Err(status) => {
                    report
                        .failures
                        .push(format!("accepting order {} again: {status}", order.id));
                    outcome.push_str("not re-accepted");
                }
            }
        }
        if cancel && !outcome.starts_with("not") {
            match flows
                .erp
                .clone()
                .cancel_order(flows.request(erp::CancelOrderRequest {
                    crm_order_id: order.id.clone(),
                    reason: order.cancellation_reason.clone(),
                    event_id: String::new(),
                }))
                .await
            {
                Ok(_) => outcome.push_str(if outcome.is_empty() {
                    "cancelled again"
                } else {
                    ", cancelled again"
                }),
                Err(status) => report
                    .failures
                    .push(format!("cancelling order {} again: {status}", order.id)),
            }
        }
        let todo = refused.or_else(|| {
            Some(format!(
                "the CRM saw {}; the ERP decided again against its restored stock and credit: redo lost shipments and invoices",
                fulfilment.status().as_str_name()
            ))
        });
        // The lift before found it missing: that entry becomes this one.
        match report
            .lost
            .iter_mut()
            .find(|l| l.kind == "order" && l.id == order.id)
        {
            Some(entry) => {
                entry.outcome = outcome;
                entry.todo = todo;
            }
            None => report.lost.push(Lost {
                kind: "order",
                id: order.id.clone(),
                owner_version: existing.map_or(0, |o| o.version),
                mirror_version: fulfilment.source_version,
                mirror: fulfilment_json(&fulfilment),
                outcome,
                version: 0,
                todo,
            }),
        }
        if fulfilment.source_version > 0 {
            floors.push(Floor {
                key: order.id.clone(),
                mirror_version: fulfilment.source_version,
                mirror: json!(null),
                todo: None,
            });
        }
    }
    Ok(floors)
}

/// The lifted versions the CRM has not applied yet.
async fn unconverged(flows: &Flows, lifted: &[Pending]) -> Vec<String> {
    let mut left = Vec::new();
    let mut products: Option<HashMap<String, crm::Product>> = None;
    for (kind, key, version) in lifted {
        let applied = match *kind {
            "product" | "stock" => {
                if products.is_none() {
                    products = read_products(flows).await;
                }
                products
                    .as_ref()
                    .and_then(|all| all.get(key))
                    .map_or(0, |p| {
                        if *kind == "product" {
                            p.product_version
                        } else {
                            p.stock_version
                        }
                    })
            }
            "order" => flows
                .crm
                .clone()
                .get_order(flows.request(crm::GetOrderRequest { id: key.clone() }))
                .await
                .ok()
                .and_then(|o| o.into_inner().fulfilment)
                .map_or(0, |f| f.source_version),
            _ => flows
                .crm
                .clone()
                .get_customer(flows.request(crm::GetCustomerRequest { id: key.clone() }))
                .await
                .ok()
                .and_then(|c| c.into_inner().finance)
                .map_or(0, |f| f.source_version),
        };
        if applied < *version {
            left.push(format!("{kind} {key} v{version}"));
        }
    }
    left
}

async fn read_products(flows: &Flows) -> Option<HashMap<String, crm::Product>> {
    let products = crate::ops::listing::crm_catalogue(flows, true)
        .all()
        .await
        .ok()?;
    Some(products.into_iter().map(|p| (p.sku.clone(), p)).collect())
}
