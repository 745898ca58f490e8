//! The CRM drill's steps: changes as the sales desk makes them, what the clients were told,
//! and one restore with its resync, checked against both.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

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
    lists::{crm_customers, crm_orders, erp_customers, erp_orders},
    lost, restore, resync,
    support::{clients, customer_with_credit, submit_order},
};

/// What the CRM's clients were told: each customer's last acknowledged version and name, and
/// every submitted order.
#[derive(Debug, Default)]
pub struct CrmAcks {
    pub customers: BTreeMap<String, (i64, String)>,
    pub orders: BTreeSet<String>,
}

pub async fn create_customer(
    crm: &mut CrmServiceClient<Authed>,
    erp: &mut ErpServiceClient<Authed>,
    acks: &mut CrmAcks,
    name: &str,
) -> String {
    let id = customer_with_credit(crm, erp, name).await;
    acks.customers.insert(id.clone(), (1, name.to_owned()));
    id
}

pub async fn rename(crm: &mut CrmServiceClient<Authed>, acks: &mut CrmAcks, id: &str, name: &str) {
    let updated = crm
        .update_customer(crm::UpdateCustomerRequest {
            customer: Some(crm::Customer {
                id: id.to_owned(),
                display_name: name.to_owned(),
                ..crm::Customer::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    acks.customers
        .insert(id.to_owned(), (updated.version, name.to_owned()));
}

/// One phase of CRM changes: new customers, renames of earlier ones (one of them twice),
/// orders submitted (some for this phase's new customers). Returns how many changes.
pub async fn crm_phase(
    crm: &mut CrmServiceClient<Authed>,
    erp: &mut ErpServiceClient<Authed>,
    acks: &mut CrmAcks,
    phase: &str,
    size: Size,
) -> usize {
    let earlier: Vec<String> = acks.customers.keys().cloned().collect();
    let mut new = Vec::new();
    for n in 0..size.created {
        new.push(create_customer(crm, erp, acks, &format!("{phase}New{n}")).await);
    }
    let mut changes = size.created;
    for (n, id) in earlier.iter().rev().take(size.edited).enumerate() {
        rename(crm, acks, id, &format!("{phase}Renamed{n}")).await;
        changes += 1;
    }
    if let Some(id) = earlier.first() {
        rename(crm, acks, id, &format!("{phase}RenamedTwice")).await;
        changes += 1;
    }
    for n in 0..size.orders {
        let customer = if n % 2 == 0 && !new.is_empty() {
            &new[n % new.len()]
        } else {
            &earlier[n % earlier.len()]
        };
        let order = submit_order(crm, customer, "DRILL-1", 1 + n as i64).await;
        acks.orders.insert(order.id);
        changes += 1;
    }
    changes
}

/// Waits until the ERP mirrors every acknowledged customer version and (with `orders`) the
/// CRM shows the ERP's decision on every order.
pub async fn crm_mirrored(
    crm: &CrmServiceClient<Authed>,
    erp: &ErpServiceClient<Authed>,
    acks: &CrmAcks,
    orders: bool,
) -> Duration {
    let started = Instant::now();
    for (id, (version, name)) in &acks.customers {
        eventually(
            CONVERGE,
            &format!("customer {id} v{version} in the ERP"),
            || {
                let mut erp = erp.clone();
                let id = id.clone();
                async move {
                    let customer = erp
                        .get_customer(erp::GetCustomerRequest { id })
                        .await
                        .ok()?
                        .into_inner();
                    let profile = customer.profile?;
                    (customer.profile_version == *version && profile.display_name == *name)
                        .then_some(())
                }
            },
        )
        .await
        .unwrap();
    }
    for id in acks.orders.iter().filter(|_| orders) {
        eventually(CONVERGE, &format!("order {id} decided in the CRM"), || {
            let mut crm = crm.clone();
            let id = id.clone();
            async move {
                let order = crm
                    .get_order(crm::GetOrderRequest { id })
                    .await
                    .ok()?
                    .into_inner();
                order.fulfilment.is_some().then_some(())
            }
        })
        .await
        .unwrap();
    }
    started.elapsed()
}

/// One CRM restore and its resync, checked against the mirror as it was before the resync
/// and against what the clients were told.
pub async fn crm_restore_and_resync(
    stack: &mut Stack,
    pg: &ArchivedPostgres,
    acks: &mut CrmAcks,
    target: RecoveryTarget,
    recover: bool,
    at_target: &BTreeMap<String, (i64, String)>,
) {
    restore(stack, pg, "crm", &target).await;
    let (mut crm, erp) = clients(stack).await;
    let owner = crm_customers(&crm).await;
    // The restored CRM holds exactly what its clients had been told at the target.
    let restored: BTreeMap<String, (i64, String)> = owner
        .values()
        .map(|c| (c.id.clone(), (c.version, c.display_name.clone())))
        .collect();
    assert_eq!(&restored, at_target, "the CRM restored to {target:?}");
    let owner_orders = crm_orders(&crm).await;
    let mirror = erp_customers(&erp).await;
    let mirror_orders = erp_orders(&erp).await;

    // What the restore lost: customers whose mirror is ahead of (or missing in) the restored
    // CRM, and orders the ERP holds that the CRM lost or holds as a draft again.
    let ahead: BTreeSet<String> = mirror
        .iter()
        .filter(|(id, m)| owner.get(*id).is_none_or(|o| o.version < m.profile_version))
        .map(|(id, _)| id.clone())
        .collect();
    let acked_ahead: BTreeSet<String> = acks
        .customers
        .iter()
        .filter(|(id, (version, _))| owner.get(*id).is_none_or(|o| o.version < *version))
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        acked_ahead.is_subset(&ahead),
        "the ERP had applied every acknowledged version before the restore"
    );
    let lost_orders: BTreeSet<String> = mirror_orders
        .keys()
        .filter(|id| {
            owner_orders
                .get(*id)
                .is_none_or(|o| o.status() == crm::OrderStatus::Draft)
        })
        .cloned()
        .collect();
    println!(
        "CRM restored to {target:?}: {} of {} customers and {} of {} orders behind the ERP's mirror \
         ({} acknowledged customer versions lost)",
        ahead.len(),
        mirror.len(),
        lost_orders.len(),
        mirror_orders.len(),
        acked_ahead.len()
    );
    assert!(
        !ahead.is_empty(),
        "the drill lost nothing: it proves nothing"
    );

    let (report, took) = resync(stack, "crm", recover);
    println!(
        "resync --after-restore crm{}: {took:?}, converged in {} ms\n{}",
        if recover {
            " --recover-from-mirror"
        } else {
            ""
        },
        report["converged_ms"],
        serde_json::to_string_pretty(&report["counts"]).unwrap()
    );

    // Every lost customer is in the report, with the mirror's values.
    let listed = lost(&report, "customer");
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        ahead,
        "the report lists exactly the customers whose mirror was ahead"
    );
    for (id, entry) in &listed {
        let m = mirror[id].profile.as_ref().unwrap();
        assert_eq!(
            entry["mirror_version"], mirror[id].profile_version,
            "{entry}"
        );
        assert_eq!(
            entry["mirror"]["display_name"],
            m.display_name.as_str(),
            "{entry}"
        );
        assert_eq!(entry["mirror"]["email"], m.email.as_str(), "{entry}");
    }
    assert_eq!(
        lost(&report, "order")
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        lost_orders,
        "the report lists every order the restore lost"
    );

    // Owner and mirror agree on every customer the CRM has, at a version above the mirror's
    // old one where it was ahead; with --recover-from-mirror, at the mirror's values.
    let after = crm_customers(&crm).await;
    let mirrored_after = erp_customers(&erp).await;
    for (id, customer) in &after {
        let m = &mirrored_after[id];
        let profile = m.profile.as_ref().unwrap();
        assert_eq!(m.profile_version, customer.version, "customer {id}");
        assert_eq!(profile.display_name, customer.display_name, "customer {id}");
        assert_eq!(profile.email, customer.email, "customer {id}");
        if ahead.contains(id) {
            assert!(
                customer.version > mirror[id].profile_version,
                "customer {id}"
            );
        }
        if recover && ahead.contains(id) {
            assert_eq!(
                customer.display_name,
                mirror[id].profile.as_ref().unwrap().display_name,
                "customer {id} recovered from the mirror"
            );
        }
        acks.customers.insert(
            id.clone(),
            (customer.version, customer.display_name.clone()),
        );
    }
    if recover {
        assert_eq!(
            after.keys().collect::<BTreeSet<_>>(),
            mirror.keys().collect::<BTreeSet<_>>(),
            "every customer the mirror held is in the CRM again"
        );
        let orders = crm_orders(&crm).await;
        for (id, m) in &mirror_orders {
            let order = &orders[id];
            assert_ne!(order.status(), crm::OrderStatus::Draft, "order {id}");
            let lines: Vec<(String, i64, i64)> = order
                .lines
                .iter()
                .map(|l| {
                    (
                        l.sku.clone(),
                        l.quantity,
                        l.unit_price.as_ref().unwrap().amount_minor,
                    )
                })
                .collect();
            let mirrored: Vec<(String, i64, i64)> = m
                .lines
                .iter()
                .map(|l| (l.sku.clone(), l.quantity, l.unit_price_minor))
                .collect();
            assert_eq!(lines, mirrored, "order {id} recovered with the ERP's lines");
            assert!(
                order.fulfilment.is_some(),
                "order {id} shows the ERP's status"
            );
        }
    }

    // New edits apply on the other side.
    let edited = ahead
        .iter()
        .find(|id| after.contains_key(*id))
        .unwrap()
        .clone();
    rename(&mut crm, acks, &edited, "Edited after the resync").await;
    crm_mirrored(&crm, &erp, acks, recover).await;
}
