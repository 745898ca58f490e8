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
    let at_backup = acks.customers.clone();

    let before = crm_phase(&mut crm, &mut erp, &mut acks, "A", size).await;
    crm_mirrored(&crm, &erp, &acks, true).await;
    let lsn = pg.restore_point(POINT).await.unwrap();
    let at_point = acks.customers.clone();
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
        &at_point,
    )
    .await;
    let (report, _) = resync(&stack, "crm", true);
    println!(
        "then --recover-from-mirror: {}",
        serde_json::to_string_pretty(&report["counts"]).unwrap()
    );
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
        &at_backup,
    )
    .await;
    let started = Instant::now();
    println!("{}", reconcile_clean(&stack));
    println!("second reconcile: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// The ERP drill.

/// The status name without its enum prefix (`RESERVED`), comparable across the two APIs.
fn status_name(name: &str) -> String {
    name.rsplit("STATUS_").next().unwrap_or(name).to_owned()
}

async fn erp_products(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, erp::Product> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .clone()
            .list_products(erp::ListProductsRequest {
                page_size: 500,
                page_token,
                ..erp::ListProductsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.products.into_iter().map(|p| (p.sku.clone(), p)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// Available per sku, summed over warehouses.
async fn erp_available(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, i64> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .clone()
            .list_stock_levels(erp::ListStockLevelsRequest {
                page_size: 500,
                page_token,
                ..erp::ListStockLevelsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        for level in page.levels {
            *all.entry(level.sku).or_insert(0) += level.available;
        }
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

async fn crm_catalogue(crm: &CrmServiceClient<Authed>) -> BTreeMap<String, crm::Product> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = crm
            .clone()
            .list_products(crm::ListProductsRequest {
                page_size: 1000,
                page_token,
                include_inactive: true,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.products.into_iter().map(|p| (p.sku.clone(), p)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// The first thing the CRM's mirrors and the ERP disagree on (versions and values), if any.
async fn erp_disagreement(
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

async fn erp_mirrored(crm: &CrmServiceClient<Authed>, erp: &ErpServiceClient<Authed>) -> Duration {
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

async fn product_versions(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, i64> {
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
struct ErpChanges {
    products_created: usize,
    prices: usize,
    receipts: usize,
    orders: usize,
    shipped: usize,
    invoiced: usize,
    credit_terms: usize,
}

impl ErpChanges {
    fn total(&self) -> usize {
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
async fn erp_phase(
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
    })
    .await
    .unwrap();
    changes.credit_terms += 1;
    changes
}

/// One ERP restore and its resync, checked against the CRM's mirrors as they were before.
async fn erp_restore_and_resync(
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
    })
    .await
    .unwrap();
    let invoiced = erp
        .invoice_order(erp::InvoiceOrderRequest { id: sales_order.id })
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

#[tokio::test]
async fn erp_restored_to_a_point_in_time_and_to_its_backup_resyncs_without_losing_anything() {
    let size = Size::from_env();
    let (mut stack, pg) = stack_with_archived("erp").await;
    let (mut crm, mut erp) = clients(&stack).await;
    for n in 0..size.seed {
        let sku = format!("DRILL-{n}");
        stock_product(&mut erp, &sku, 1000 + n as i64, 100).await;
    }
    let mut customers = Vec::new();
    for n in 0..3 {
        customers.push(customer_with_credit(&mut crm, &mut erp, &format!("Buyer{n}")).await);
    }
    erp_mirrored(&crm, &erp).await;
    pg.base_backup().unwrap();
    let at_backup = product_versions(&erp).await;

    let before = erp_phase(&mut crm, &mut erp, &customers, "A", size).await;
    erp_mirrored(&crm, &erp).await;
    let lsn = pg.restore_point(POINT).await.unwrap();
    let at_point = product_versions(&erp).await;
    let after = erp_phase(&mut crm, &mut erp, &customers, "B", size).await;
    let synced = erp_mirrored(&crm, &erp).await;
    pg.flush_archive().await.unwrap();
    println!(
        "ERP drill: {} changes before restore point {POINT} ({lsn}): {before:?}; {} after: {after:?}; \
         synced in {synced:?}; {} WAL segments archived",
        before.total(),
        after.total(),
        pg.archived_segments()
    );

    // (b) To the point in time: the ERP wins; then what only the CRM's catalogue holds is
    // recovered and the orders that needed it are accepted again.
    erp_restore_and_resync(
        &mut stack,
        &pg,
        RecoveryTarget::RestorePoint(POINT.into()),
        false,
        &at_point,
    )
    .await;
    let (report, _) = resync(&stack, "erp", true);
    println!(
        "then --recover-from-mirror: {}",
        serde_json::to_string_pretty(&report["counts"]).unwrap()
    );
    let (crm, erp) = clients(&stack).await;
    if let Some(problem) = erp_disagreement(&crm, &erp).await {
        panic!("after recovering: {problem}\n{report:#}");
    }
    println!("{}", reconcile_clean(&stack));

    // (a) To the base backup, recovering from the mirror at once.
    erp_restore_and_resync(
        &mut stack,
        &pg,
        RecoveryTarget::EndOfBackup,
        true,
        &at_backup,
    )
    .await;
    let started = Instant::now();
    println!("{}", reconcile_clean(&stack));
    println!("second reconcile: {:?}", started.elapsed());
}
