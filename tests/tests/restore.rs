//! The restore drill, for each database: a private PostgreSQL cluster archiving its WAL, a
//! base backup, a stream of changes that sync (what the clients were acknowledged is kept: ids
//! and versions), a restore point in the middle, more changes; then the database restored to
//! the restore point and, later, to the base backup, the service restarted on it, and the
//! documented procedure run (`tandemctl resync --after-restore crm|erp`, see
//! docs/runbook.md, "Backups and restores"). After each: the report lists every entity the
//! restore lost with the mirror's values, versions keep rising above anything the other side
//! has seen (an edit after the resync applies there), owner and mirror agree on every field,
//! `--recover-from-mirror` brings back what the mirror holds in full, and a second reconcile
//! reports no drift.
//!
//! `make test` runs a short drill; `make drill` the full one (`TANDEM_DRILL=full`: more
//! changes per phase).
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    Stack, StackOptions, TestDatabase, eventually,
    pitr::{ArchivedPostgres, RecoveryTarget},
    security::Authed,
    wait_ready,
};

mod support;

use support::*;

/// How many changes each phase makes.
#[derive(Debug, Clone, Copy)]
struct Size {
    /// Customers (CRM drill) or products (ERP drill) in the base backup.
    seed: usize,
    /// New entities per phase.
    created: usize,
    /// Edits per phase.
    edited: usize,
    /// Orders submitted per phase.
    orders: usize,
}

impl Size {
    fn from_env() -> Self {
        if std::env::var("TANDEM_DRILL").as_deref() == Ok("full") {
            Size {
                seed: 12,
                created: 10,
                edited: 10,
                orders: 8,
            }
        } else {
            Size {
                seed: 3,
                created: 2,
                edited: 2,
                orders: 2,
            }
        }
    }
}

const CONVERGE: Duration = Duration::from_secs(60);
const POINT: &str = "drill";

/// A CRM restore drill's stack: the CRM's database on a private archiving cluster.
async fn stack_with_archived(restored: &str) -> (Stack, ArchivedPostgres) {
    let pg = ArchivedPostgres::start_tls().unwrap();
    pg.pg.create_database(restored).await.unwrap();
    let archived = TestDatabase {
        name: restored.to_owned(),
        url: pg.pg.url(restored),
    };
    let other = TestDatabase::create(&format!("drill_{restored}"))
        .await
        .unwrap();
    let databases = if restored == "crm" {
        (archived, other)
    } else {
        (other, archived)
    };
    let stack = Stack::start_with(StackOptions {
        databases: Some(databases),
        label: Some("drill".into()),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    (stack, pg)
}

/// Stops the restored side's service, restores its database to `target`, starts it again.
async fn restore(stack: &mut Stack, pg: &ArchivedPostgres, side: &str, target: &RecoveryTarget) {
    let (process, http) = if side == "crm" {
        (&mut stack.crm, stack.crm_http)
    } else {
        (&mut stack.erp, stack.erp_http)
    };
    process.kill();
    let took = pg
        .restore(target)
        .await
        .unwrap_or_else(|error| panic!("restoring to {target:?}: {error:#}\n{}", pg.log()));
    process.start().unwrap();
    if let Err(error) = wait_ready(http, Duration::from_secs(60)) {
        panic!(
            "{side} not ready on the restored database: {error:#}\n{}\n{}",
            process.output(),
            pg.log()
        );
    }
    println!("{side}: restored to {target:?} in {took:?}");
}

/// Runs the documented procedure; returns its JSON report and how long it took.
fn resync(stack: &Stack, side: &str, recover: bool) -> (Value, Duration) {
    let mut args = vec!["resync", "--after-restore", side, "--json", "--quiet"];
    if recover {
        args.push("--recover-from-mirror");
    }
    let started = Instant::now();
    let output = tandemctl(stack, &args);
    let took = started.elapsed();
    let report: Value = serde_json::from_str(&output)
        .unwrap_or_else(|error| panic!("resync printed no JSON report ({error}):\n{output}"));
    (report, took)
}

/// Lost entities of `kind` in a resync report, by id.
fn lost(report: &Value, kind: &str) -> BTreeMap<String, Value> {
    report["lost"]
        .as_array()
        .expect("a `lost` list")
        .iter()
        .filter(|entry| entry["kind"] == kind)
        .map(|entry| (entry["id"].as_str().unwrap().to_owned(), entry.clone()))
        .collect()
}

/// `tandemctl reconcile` must exit 0 and report no drift.
fn reconcile_clean(stack: &Stack) -> String {
    let output = tandemctl(stack, &["reconcile", "--quiet"]);
    assert!(
        output.contains("total drift: 0"),
        "a second reconcile found drift:\n{output}"
    );
    output
}

// ---------------------------------------------------------------------------------------
// The CRM drill.

/// What the CRM's clients were told: each customer's last acknowledged version and name, and
/// every submitted order.
#[derive(Debug, Default)]
struct CrmAcks {
    customers: BTreeMap<String, (i64, String)>,
    orders: BTreeSet<String>,
}

async fn create_customer(
    crm: &mut CrmServiceClient<Authed>,
    erp: &mut ErpServiceClient<Authed>,
    acks: &mut CrmAcks,
    name: &str,
) -> String {
    let id = customer_with_credit(crm, erp, name).await;
    acks.customers.insert(id.clone(), (1, name.to_owned()));
    id
}

async fn rename(crm: &mut CrmServiceClient<Authed>, acks: &mut CrmAcks, id: &str, name: &str) {
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
async fn crm_phase(
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
async fn crm_mirrored(
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

async fn crm_customers(crm: &CrmServiceClient<Authed>) -> BTreeMap<String, crm::Customer> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = crm
            .clone()
            .list_customers(crm::ListCustomersRequest {
                page_size: 1000,
                page_token,
                ..crm::ListCustomersRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.customers.into_iter().map(|c| (c.id.clone(), c)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

async fn crm_orders(crm: &CrmServiceClient<Authed>) -> BTreeMap<String, crm::Order> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = crm
            .clone()
            .list_orders(crm::ListOrdersRequest {
                page_size: 1000,
                page_token,
                ..crm::ListOrdersRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.orders.into_iter().map(|o| (o.id.clone(), o)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

async fn erp_customers(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, erp::Customer> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .clone()
            .list_customers(erp::ListCustomersRequest {
                page_size: 500,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(
            page.customers
                .into_iter()
                .map(|c| (c.profile.as_ref().unwrap().id.clone(), c)),
        );
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

async fn erp_orders(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, erp::SalesOrder> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .clone()
            .list_sales_orders(erp::ListSalesOrdersRequest {
                page_size: 500,
                page_token,
                ..erp::ListSalesOrdersRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.orders.into_iter().map(|o| (o.crm_order_id.clone(), o)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// One CRM restore and its resync, checked against the mirror as it was before the resync
/// and against what the clients were told.
async fn crm_restore_and_resync(
    stack: &mut Stack,
    pg: &ArchivedPostgres,
    acks: &mut CrmAcks,
    target: RecoveryTarget,
    recover: bool,
) {
    restore(stack, pg, "crm", &target).await;
    let (mut crm, erp) = clients(stack).await;
    let owner = crm_customers(&crm).await;
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
        "resync --after-restore crm{}: {took:?}\n{}",
        if recover {
            " --recover-from-mirror"
        } else {
            ""
        },
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

#[tokio::test]
async fn crm_restored_to_a_point_in_time_and_to_its_backup_resyncs_without_losing_anything() {
    let size = Size::from_env();
    let (mut stack, pg) = stack_with_archived("crm").await;
    let (mut crm, mut erp) = clients(&stack).await;
    let mut acks = CrmAcks::default();
    stock_product(&mut erp, "DRILL-1", 1500, 1_000_000).await;
    crm_available(&crm, "DRILL-1", 1_000_000).await;
    for n in 0..size.seed {
        create_customer(&mut crm, &mut erp, &mut acks, &format!("Seed{n}")).await;
    }
    crm_mirrored(&crm, &erp, &acks, true).await;
    pg.base_backup().unwrap();

    let before = crm_phase(&mut crm, &mut erp, &mut acks, "A", size).await;
    crm_mirrored(&crm, &erp, &acks, true).await;
    let lsn = pg.restore_point(POINT).await.unwrap();
    let after = crm_phase(&mut crm, &mut erp, &mut acks, "B", size).await;
    let synced = crm_mirrored(&crm, &erp, &acks, true).await;
    pg.flush_archive().await.unwrap();
    println!(
        "CRM drill: {before} changes before restore point {POINT} ({lsn}), {after} after; \
         synced in {synced:?}; {} WAL segments archived",
        pg.archived_segments()
    );

    // (b) To the point in time: the restored owner wins, the report lists what it lost; then
    // what only the mirror holds is recovered.
    crm_restore_and_resync(
        &mut stack,
        &pg,
        &mut acks,
        RecoveryTarget::RestorePoint(POINT.into()),
        false,
    )
    .await;
    let (report, _) = resync(&stack, "crm", true);
    assert!(
        lost(&report, "customer")
            .values()
            .all(|entry| entry["owner_version"] == 0 && entry["outcome"] == "recovered"),
        "after the first resync, only customers the CRM lacks remain, and are recovered:\n{report:#}"
    );
    println!("{}", reconcile_clean(&stack));

    // (a) To the base backup, recovering from the mirror at once.
    crm_restore_and_resync(
        &mut stack,
        &pg,
        &mut acks,
        RecoveryTarget::EndOfBackup,
        true,
    )
    .await;
    let started = Instant::now();
    println!("{}", reconcile_clean(&stack));
    println!("second reconcile: {:?}", started.elapsed());
}
