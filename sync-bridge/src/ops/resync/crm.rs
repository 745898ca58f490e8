//! The CRM's database was restored. The ERP mirrors customer profiles (with their version)
//! and holds every submitted order (customer, currency, lines with the quoted prices).
//!
//! - Customers: the ERP's version of each is sent to `CrmSync.LiftCustomerVersions`; the CRM
//!   lifts its own above it (its profile wins), or with `--recover-from-mirror` takes the
//!   mirror's profile back (the ERP mirrors every owned field but the contacts, which stay as
//!   restored). A customer only the ERP has is listed, and re-created with the flag.
//! - Orders the ERP holds that the CRM lost (or holds as a draft again) are listed, and with
//!   the flag re-created as SUBMITTED from the ERP's copy (`CrmSync.RecoverOrders`); their
//!   fulfilment status follows from the reconcile at the end. The ERP does not gate orders on
//!   the CRM's order version, so orders need no lift.
//! - The CRM's own mirrors (catalogue, stock, fulfilment, finance) are behind too: the
//!   reconcile with repair at the end re-applies the ERP's state.

use std::{collections::HashMap, time::Duration};

use serde_json::json;
use tandem_proto::{crm::v1 as crm, erp::v1 as erp};
use uuid::Uuid;

use super::{BATCH, Lost, ResyncReport, Side, converge};
use crate::{
    flows::Flows,
    ops::reconcile::{self, ErpClient},
};

/// The ERP's copy of a customer, as the CRM's message.
fn customer_from_mirror(profile: &erp::CustomerProfile) -> crm::Customer {
    crm::Customer {
        id: profile.id.clone(),
        display_name: profile.display_name.clone(),
        email: profile.email.clone(),
        phone: profile.phone.clone(),
        tax_id: profile.tax_id.clone(),
        status: match profile.status() {
            erp::CustomerStatus::Archived => crm::CustomerStatus::Archived,
            _ => crm::CustomerStatus::Active,
        } as i32,
        external_ref: profile.external_ref.clone(),
        // One shared type (tandem.common.v1.Address): the ERP's mirror is the CRM's.
        addresses: profile.addresses.clone(),
        ..crm::Customer::default()
    }
}

fn profile_json(profile: &erp::CustomerProfile) -> serde_json::Value {
    json!({
        "display_name": profile.display_name,
        "email": profile.email,
        "phone": profile.phone,
        "tax_id": profile.tax_id,
        "status": profile.status().as_str_name(),
        "external_ref": profile.external_ref,
        "addresses": profile.addresses.len(),
    })
}

fn order_json(order: &erp::SalesOrder) -> serde_json::Value {
    json!({
        "customer_id": order.customer_id,
        "status": order.status().as_str_name(),
        "lines": order.lines.iter().map(|l| json!({
            "sku": l.sku, "quantity": l.quantity, "unit_price_minor": l.unit_price_minor,
        })).collect::<Vec<_>>(),
    })
}

fn outcome_name(outcome: crm::LiftOutcome) -> &'static str {
    match outcome {
        crm::LiftOutcome::Current => "current",
        crm::LiftOutcome::Lifted => "lifted",
        crm::LiftOutcome::Recovered => "recovered",
        crm::LiftOutcome::Missing => "missing",
        crm::LiftOutcome::CustomerMissing => "customer missing",
        crm::LiftOutcome::Unspecified => "unknown",
    }
}

/// The resync after a restore of the CRM's database.
pub async fn resync(
    flows: &Flows,
    erp_channel: tonic::transport::Channel,
    recover: bool,
    quiet: bool,
    wait: Duration,
) -> anyhow::Result<ResyncReport> {
    let erp = ErpClient::new(erp_channel.clone());
    let mut report = ResyncReport::new(Side::Crm, recover);

    // Customers: lift (or recover) in batches, as the mirror's listing streams by.
    let mut listing = crate::ops::listing::erp_customers(flows, &erp, quiet);
    let mut checked = 0;
    let mut lifted: Vec<(String, i64)> = Vec::new();
    loop {
        let page = listing.chunk(BATCH).await?;
        if page.is_empty() {
            break;
        }
        let batch: Vec<(erp::CustomerProfile, i64)> = page
            .into_iter()
            .filter_map(|c| Some((c.profile?, c.profile_version)))
            .filter(|(_, version)| *version > 0)
            .collect();
        checked += batch.len();
        if batch.is_empty() {
            continue;
        }
        let request = crm::LiftCustomerVersionsRequest {
            customers: batch
                .iter()
                .map(|(profile, version)| crm::MirroredCustomer {
                    customer: Some(customer_from_mirror(profile)),
                    mirror_version: *version,
                })
                .collect(),
            recover_from_mirror: recover,
        };
        let results = match flows
            .crm_sync
            .clone()
            .lift_customer_versions(flows.request(request))
            .await
        {
            Ok(response) => response.into_inner().results,
            Err(status) => {
                report.failures.push(format!(
                    "lifting {} customers from {}: {status}",
                    batch.len(),
                    batch[0].0.id
                ));
                continue;
            }
        };
        for ((profile, mirror_version), result) in batch.iter().zip(results) {
            let outcome = result.outcome();
            if outcome == crm::LiftOutcome::Current {
                continue;
            }
            if matches!(
                outcome,
                crm::LiftOutcome::Lifted | crm::LiftOutcome::Recovered
            ) {
                lifted.push((profile.id.clone(), result.version));
            }
            report.lost.push(Lost {
                kind: "customer",
                id: profile.id.clone(),
                owner_version: result.previous_version,
                mirror_version: *mirror_version,
                mirror: profile_json(profile),
                outcome: outcome_name(outcome).to_owned(),
                version: result.version,
                todo: match outcome {
                    crm::LiftOutcome::Lifted => Some(
                        "the CRM's restored profile replaced the mirror's values shown here; \
                         re-enter what still holds"
                            .to_owned(),
                    ),
                    crm::LiftOutcome::Missing => Some(
                        "only the ERP has this customer: run again with --recover-from-mirror"
                            .to_owned(),
                    ),
                    crm::LiftOutcome::Recovered => Some(
                        "contacts are not mirrored: check them (a re-created customer has none)"
                            .to_owned(),
                    ),
                    _ => None,
                },
            });
        }
    }

    report.checked.push(("customer", checked));

    // Orders the ERP holds that the CRM lost (or holds as a draft again): the CRM's orders
    // as a compact index (id -> draft?, version), the ERP's streaming past it; only the lost
    // ones are kept.
    let owned = owned_orders(flows, quiet).await?;
    let mut held = crate::ops::listing::erp_orders(flows, &erp, quiet);
    let mut checked = 0;
    let mut lost_orders: Vec<erp::SalesOrder> = Vec::new();
    while let Some(order) = held.next().await? {
        checked += 1;
        if owner_of(&owned, &order.crm_order_id).is_none_or(|owner| owner.draft) {
            lost_orders.push(order);
        }
    }
    report.checked.push(("order", checked));
    let mut outcomes: HashMap<String, (String, i64)> = HashMap::new();
    if recover {
        let recoverable: Vec<&erp::SalesOrder> = lost_orders
            .iter()
            .filter(|o| Uuid::parse_str(&o.crm_order_id).is_ok() && !o.lines.is_empty())
            .collect();
        for batch in recoverable.chunks(BATCH) {
            let request = crm::RecoverOrdersRequest {
                orders: batch
                    .iter()
                    .map(|o| crm::MirroredOrder {
                        id: o.crm_order_id.clone(),
                        customer_id: o.customer_id.clone(),
                        currency_code: o
                            .total
                            .as_ref()
                            .map(|t| t.currency_code.clone())
                            .unwrap_or_default(),
                        lines: o
                            .lines
                            .iter()
                            .map(|l| crm::MirroredOrderLine {
                                sku: l.sku.clone(),
                                quantity: l.quantity,
                                unit_price_minor: l.unit_price_minor,
                            })
                            .collect(),
                    })
                    .collect(),
            };
            match flows
                .crm_sync
                .clone()
                .recover_orders(flows.request(request))
                .await
            {
                Ok(response) => {
                    for result in response.into_inner().results {
                        outcomes.insert(
                            result.id.clone(),
                            (outcome_name(result.outcome()).to_owned(), result.version),
                        );
                    }
                }
                Err(status) => report.failures.push(format!(
                    "recovering {} orders from {}: {status}",
                    batch.len(),
                    batch[0].crm_order_id
                )),
            }
        }
    }
    for order in lost_orders {
        let (outcome, version) = outcomes
            .remove(&order.crm_order_id)
            .unwrap_or_else(|| ("missing".to_owned(), 0));
        let todo = match outcome.as_str() {
            "recovered" => None,
            "customer missing" => {
                Some("its customer is not in the CRM: recover the customer first".to_owned())
            }
            _ => {
                Some("only the ERP has this order: run again with --recover-from-mirror".to_owned())
            }
        };
        report.lost.push(Lost {
            kind: "order",
            id: order.crm_order_id.clone(),
            owner_version: owner_of(&owned, &order.crm_order_id).map_or(0, |o| o.version),
            mirror_version: order.version,
            mirror: order_json(&order),
            outcome,
            version,
            todo,
        });
    }

    // Wait until the ERP applied every lifted customer version.
    let (took, left) = converge(wait, || {
        let erp = erp.clone();
        let lifted = lifted.clone();
        async move {
            let mut left = Vec::new();
            for (id, version) in lifted {
                let applied = erp
                    .clone()
                    .get_customer(flows.request(erp::GetCustomerRequest { id: id.clone() }))
                    .await
                    .map(|c| c.into_inner().profile_version)
                    .unwrap_or(0);
                if applied < version {
                    left.push(format!("customer {id} v{version}"));
                }
            }
            left
        }
    })
    .await;
    report.converged_in = took;
    report.unconverged = left;

    report.reconcile = reconcile::reconcile(flows, erp_channel, true, quiet).await?;
    Ok(report)
}

/// What the resync needs of a CRM order.
#[derive(Debug, Clone, Copy)]
struct Owned {
    draft: bool,
    version: i64,
}

/// The CRM's orders by id (its ids are UUIDs): about 40 bytes each, where the orders
/// themselves, lines and all, would take a kilobyte.
async fn owned_orders(flows: &Flows, quiet: bool) -> anyhow::Result<HashMap<u128, Owned>> {
    let mut listing = crate::ops::listing::crm_orders(flows, quiet);
    let mut owned = HashMap::new();
    while let Some(order) = listing.next().await? {
        let id = Uuid::parse_str(&order.id)
            .map_err(|error| anyhow::anyhow!("the CRM listed order {:?}: {error}", order.id))?;
        let draft = order.status() == crm::OrderStatus::Draft;
        owned.insert(
            id.as_u128(),
            Owned {
                draft,
                version: order.version,
            },
        );
    }
    Ok(owned)
}

/// The CRM's order of an ERP order's `crm_order_id`; none for an id that is no UUID (no CRM
/// order has one).
fn owner_of(owned: &HashMap<u128, Owned>, crm_order_id: &str) -> Option<Owned> {
    let id = Uuid::parse_str(crm_order_id).ok()?;
    owned.get(&id.as_u128()).copied()
}
