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
//! changes per phase). The steps are in `restore/crm.rs` and `restore/erp.rs`, the paged
//! reads in `restore/lists.rs`, the archiving cluster in the test kit (`tandem_tests::pitr`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::Value;
use tandem_tests::{
    Stack, StackOptions, TestDatabase,
    pitr::{ArchivedPostgres, RecoveryTarget},
    wait_ready,
};

mod support;

#[path = "restore/crm.rs"]
mod crm_drill;
#[path = "restore/erp.rs"]
mod erp_drill;
#[path = "restore/lists.rs"]
mod lists;

use crm_drill::*;
use erp_drill::*;
use support::*;

/// How many changes each phase makes.
#[derive(Debug, Clone, Copy)]
pub struct Size {
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
