//! `tandemctl reconcile [--repair]`: pages through both services, compares every mirrored
//! field with its owner's, reports drift (counts and examples) and, with `--repair`,
//! re-applies the owner's state to the mirror through the sync RPCs with `repair` set (an
//! equal version applies too, so drift written without a version change is fixed).
//!
//! A repair counts as repaired only when the target says it applied it. After a restore of
//! an owner's database the mirror holds versions newer than the owner's, so the re-sent state
//! is stale and not applied: reconcile reports it as "not applied" and points to
//! `tandemctl resync --after-restore`. Entities only a mirror holds (the owner lost them) are
//! drift that no repair from the owner can fix: also reported, not counted as repaired.
//!
//! Memory stays bounded by the pages in flight, not by the data: customers are compared as
//! both listings stream by in id order (a merge join), orders against a compact index of the
//! ERP's (status and version per CRM order id, about 40 bytes each) while the CRM's stream by,
//! and only the first [`EXAMPLES_KEPT`] drifts of each kind are kept (all are counted).

use std::collections::{BTreeMap, HashMap, HashSet};

use tandem_proto::{crm::v1 as crm, erp::v1 as erp};
use tonic::Status;

use crate::{
    flows::{Flows, to_erp::customer_from_crm},
    ops::listing::{Merged, Pair},
};

/// One difference between an owner and its mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// What kind of field: `customer_profile`, `customer_finance`, `product`, `stock`,
    /// `order_status`, `order_submission`.
    pub kind: &'static str,
    /// The entity: customer id, sku, CRM order id.
    pub id: String,
    pub detail: String,
}

/// What reconcile found (and repaired).
#[derive(Debug, Default)]
pub struct Report {
    /// Entities compared, per kind.
    pub compared: BTreeMap<&'static str, usize>,
    /// Drift found, per kind.
    drift_counts: BTreeMap<&'static str, usize>,
    /// The first [`EXAMPLES_KEPT`] drifts of each kind.
    pub drift: Vec<Drift>,
    /// Repairs the target applied.
    pub repaired: usize,
    /// Repairs the target answered OK to without applying them (it holds a newer version),
    /// and drift the owner cannot repair (only the mirror has the entity).
    pub not_applied: Vec<String>,
    pub repair_failures: Vec<String>,
}

/// What a repair that the target did not apply means, and what to do.
const AFTER_RESTORE: &str = "after a restore of the owner's database, run `tandemctl resync \
                             --after-restore crm|erp`";

/// Drifts of one kind kept as examples; more are only counted.
pub const EXAMPLES_KEPT: usize = 1_000;

impl Report {
    /// Counts `drift`, and keeps it while its kind has fewer than [`EXAMPLES_KEPT`].
    pub(crate) fn found(&mut self, drift: Drift) {
        let count = self.drift_counts.entry(drift.kind).or_insert(0);
        *count += 1;
        if *count <= EXAMPLES_KEPT {
            self.drift.push(drift);
        }
    }

    /// Drift found, of every kind.
    pub fn total_drift(&self) -> usize {
        self.drift_counts.values().sum()
    }

    /// Counts one repair: applied (`Ok(true)`), answered but not applied (`Ok(false)`: the
    /// target holds a newer version), or failed.
    pub(crate) fn record(&mut self, result: Result<bool, Status>, what: String) {
        match result {
            Ok(true) => self.repaired += 1,
            Ok(false) => self.not_applied.push(format!(
                "{what}: not applied, the mirror holds a newer version ({AFTER_RESTORE})"
            )),
            Err(status) => self.repair_failures.push(format!("{what}: {status}")),
        }
    }

    /// Drift no repair from the owner can fix: only the mirror holds `what`.
    fn only_in_mirror(&mut self, repair: bool, what: String) {
        if repair {
            self.not_applied.push(format!(
                "{what}: only the mirror has it, nothing to repair from ({AFTER_RESTORE} \
                 --recover-from-mirror)"
            ));
        }
    }

    /// Did every repair apply?
    pub fn all_repaired(&self) -> bool {
        self.not_applied.is_empty() && self.repair_failures.is_empty()
    }

    /// Drift counts per kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.drift_counts.clone()
    }

    /// The human-readable report: counts per kind, then up to `examples` per kind.
    pub fn render(&self, examples: usize) -> String {
        let mut out = String::new();
        let counts = self.counts();
        for (kind, compared) in &self.compared {
            out.push_str(&format!(
                "{kind:<18} compared {compared:>7}  drift {:>5}\n",
                counts.get(kind).copied().unwrap_or(0)
            ));
        }
        for kind in counts.keys() {
            for drift in self.drift.iter().filter(|d| d.kind == *kind).take(examples) {
                out.push_str(&format!("  {kind} {}: {}\n", drift.id, drift.detail));
            }
        }
        out.push_str(&format!("total drift: {}", self.total_drift()));
        if self.repaired > 0 || !self.all_repaired() {
            out.push_str(&format!(
                ", repaired: {}, repair failures: {}",
                self.repaired,
                self.repair_failures.len()
            ));
            if !self.not_applied.is_empty() {
                out.push_str(&format!(", not applied: {}", self.not_applied.len()));
            }
            for problem in self
                .not_applied
                .iter()
                .take(examples)
                .chain(self.repair_failures.iter().take(examples))
            {
                out.push_str(&format!("\n  {problem}"));
            }
        }
        out
    }
}

pub(crate) const PAGE: i32 = 500;

pub(crate) type ErpClient = erp::erp_service_client::ErpServiceClient<tonic::transport::Channel>;

pub(crate) fn profile_differences(
    owner: &crm::Customer,
    mirror: &erp::CustomerProfile,
) -> Vec<String> {
    let mut fields = Vec::new();
    let mut check = |name: &str, a: &str, b: &str| {
        if a != b {
            fields.push(format!("{name}: CRM {a:?} vs ERP {b:?}"));
        }
    };
    check("display_name", &owner.display_name, &mirror.display_name);
    check("email", &owner.email, &mirror.email);
    check("phone", &owner.phone, &mirror.phone);
    check("tax_id", &owner.tax_id, &mirror.tax_id);
    check("external_ref", &owner.external_ref, &mirror.external_ref);
    let archived = owner.status() == crm::CustomerStatus::Archived;
    if archived != (mirror.status() == erp::CustomerStatus::Archived) {
        fields.push(format!(
            "status: CRM {:?} vs ERP {:?}",
            owner.status(),
            mirror.status()
        ));
    }
    let owned = sorted_addresses(owner.addresses.iter().map(|a| {
        [
            a.kind.to_string(),
            a.line1.clone(),
            a.line2.clone(),
            a.city.clone(),
            a.postal_code.clone(),
            a.region.clone(),
            a.country_code.clone(),
        ]
    }));
    let mirrored = sorted_addresses(mirror.addresses.iter().map(|a| {
        [
            a.kind.to_string(),
            a.line1.clone(),
            a.line2.clone(),
            a.city.clone(),
            a.postal_code.clone(),
            a.region.clone(),
            a.country_code.clone(),
        ]
    }));
    if owned != mirrored {
        fields.push(format!(
            "addresses: CRM {} vs ERP {}",
            owned.len(),
            mirrored.len()
        ));
    }
    fields
}

fn sorted_addresses(addresses: impl Iterator<Item = [String; 7]>) -> Vec<[String; 7]> {
    let mut addresses: Vec<[String; 7]> = addresses.collect();
    addresses.sort();
    addresses
}

fn money(m: Option<&crm::Money>) -> (String, i64) {
    m.map(|m| (m.currency_code.clone(), m.amount_minor))
        .unwrap_or_default()
}

fn erp_money(m: Option<&erp::Money>) -> (String, i64) {
    m.map(|m| (m.currency_code.clone(), m.amount_minor))
        .unwrap_or_default()
}

pub(crate) fn to_crm_money(m: Option<&erp::Money>) -> Option<crm::Money> {
    m.map(|m| crm::Money {
        currency_code: m.currency_code.clone(),
        amount_minor: m.amount_minor,
    })
}

/// Compares one CRM customer with the ERP's mirror of it (with `repair`, re-applies the owner's
/// side of what differs); answers whether the ERP had finance to compare.
async fn compare_customer(
    flows: &Flows,
    repair: bool,
    owner: &crm::Customer,
    mirror: Option<&erp::Customer>,
    report: &mut Report,
) -> bool {
    let differences = match mirror.and_then(|m| m.profile.as_ref()) {
        None => vec!["missing in the ERP".to_owned()],
        Some(profile) => profile_differences(owner, profile),
    };
    if !differences.is_empty() {
        report.found(Drift {
            kind: "customer_profile",
            id: owner.id.clone(),
            detail: differences.join("; "),
        });
        if repair {
            let request = customer_from_crm(owner.clone(), true);
            report.record(
                flows
                    .erp
                    .clone()
                    .apply_customer(flows.request(request))
                    .await
                    .map(|r| r.into_inner().applied),
                format!("customer {}", owner.id),
            )
        }
    }
    let Some(finance) = mirror
        .and_then(|m| m.finance.as_ref())
        .filter(|f| f.version > 0)
    else {
        return false;
    };
    let crm_finance = owner.finance.clone().unwrap_or_default();
    let mut differences = Vec::new();
    if money(crm_finance.credit_limit.as_ref()) != erp_money(finance.credit_limit.as_ref()) {
        differences.push("credit_limit");
    }
    if money(crm_finance.open_balance.as_ref()) != erp_money(finance.open_balance.as_ref()) {
        differences.push("open_balance");
    }
    if crm_finance.credit_hold != finance.credit_hold {
        differences.push("credit_hold");
    }
    if crm_finance.payment_terms != format!("NET{}", finance.payment_terms_days) {
        differences.push("payment_terms");
    }
    if !differences.is_empty() {
        report.found(Drift {
            kind: "customer_finance",
            id: owner.id.clone(),
            detail: format!("differs in {}", differences.join(", ")),
        });
        if repair {
            let request = tandem_proto::crm::v1::ApplyCustomerFinanceRequest {
                customer_id: owner.id.clone(),
                credit_limit: to_crm_money(finance.credit_limit.as_ref()),
                payment_terms: format!("NET{}", finance.payment_terms_days),
                open_balance: to_crm_money(finance.open_balance.as_ref()),
                credit_hold: finance.credit_hold,
                source_version: finance.version.max(crm_finance.source_version),
                event_id: String::new(),
                repair: true,
            };
            report.record(
                flows
                    .crm_sync
                    .clone()
                    .apply_customer_finance(flows.request(request))
                    .await
                    .map(|r| r.into_inner().applied),
                format!("finance {}", owner.id),
            )
        }
    }
    true
}

/// Compares (and with `repair`, fixes) everything mirrored between the CRM and the ERP.
pub async fn reconcile(
    flows: &Flows,
    erp: tonic::transport::Channel,
    repair: bool,
    quiet: bool,
) -> anyhow::Result<Report> {
    let erp = ErpClient::new(erp);
    let mut report = Report::default();

    // Customers: the profile (CRM -> ERP) and the finance (ERP -> CRM). Both listings are in
    // id order and read at once (each waits on its service most of the time), and compared
    // as they stream by.
    let mut pairs = Merged::new(
        crate::ops::listing::crm_customers(flows, quiet),
        |c: &crm::Customer| Some(c.id.as_str()),
        crate::ops::listing::erp_customers(flows, &erp, quiet),
        |c: &erp::Customer| c.profile.as_ref().map(|p| p.id.as_str()),
    );
    let (mut compared, mut finance_compared) = (0, 0);
    while let Some(pair) = pairs.next().await? {
        let (owner, mirror) = match pair {
            Pair::Both(owner, mirror) => (owner, Some(mirror)),
            Pair::Left(owner) => (owner, None),
            Pair::Right(mirror) => {
                let id = mirror.profile.map(|p| p.id).unwrap_or_default();
                report.found(Drift {
                    kind: "customer_profile",
                    id: id.clone(),
                    detail: "only in the ERP's mirror: the CRM does not have it".to_owned(),
                });
                report.only_in_mirror(repair, format!("customer {id}"));
                continue;
            }
        };
        compared += 1;
        if compare_customer(flows, repair, &owner, mirror.as_ref(), &mut report).await {
            finance_compared += 1;
        }
    }
    report.compared.insert("customer_profile", compared);
    report.compared.insert("customer_finance", finance_compared);

    reconcile_catalogue(flows, &erp, repair, quiet, &mut report).await?;
    reconcile_orders(flows, &erp, repair, quiet, &mut report).await?;
    Ok(report)
}

async fn reconcile_catalogue(
    flows: &Flows,
    erp: &ErpClient,
    repair: bool,
    quiet: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (owners, levels, catalogue) = tokio::try_join!(
        crate::ops::listing::erp_products(flows, erp, quiet).all(),
        crate::ops::listing::erp_stock_levels(flows, erp, quiet).all(),
        crate::ops::listing::crm_catalogue(flows, quiet).all(),
    )?;
    let mut available: BTreeMap<String, i64> = BTreeMap::new();
    for level in levels {
        *available.entry(level.sku).or_insert(0) += level.available;
    }
    let mirrors: HashMap<String, crm::Product> =
        catalogue.into_iter().map(|p| (p.sku.clone(), p)).collect();

    report.compared.insert("product", owners.len());
    report.compared.insert("stock", available.len());
    for owner in &owners {
        let mirror = mirrors.get(&owner.sku);
        let price = erp_money(owner.unit_price.as_ref());
        let differs = match mirror {
            None => Some("missing in the CRM".to_owned()),
            Some(m)
                if m.name != owner.display_name
                    || money(m.unit_price.as_ref()) != price
                    || m.active != owner.active =>
            {
                Some(format!(
                    "CRM {:?} {:?} active={} vs ERP {:?} {:?} active={}",
                    m.name,
                    money(m.unit_price.as_ref()),
                    m.active,
                    owner.display_name,
                    price,
                    owner.active
                ))
            }
            Some(_) => None,
        };
        if let Some(detail) = differs {
            report.found(Drift {
                kind: "product",
                id: owner.sku.clone(),
                detail,
            });
            if repair {
                let request = crm::ApplyProductRequest {
                    product: Some(crm::ProductData {
                        sku: owner.sku.clone(),
                        name: owner.display_name.clone(),
                        unit_price: to_crm_money(owner.unit_price.as_ref()),
                        active: owner.active,
                    }),
                    source_version: owner
                        .version
                        .max(mirror.map(|m| m.product_version).unwrap_or(0)),
                    event_id: String::new(),
                    repair: true,
                };
                report.record(
                    flows
                        .crm_sync
                        .clone()
                        .apply_product(flows.request(request))
                        .await
                        .map(|r| r.into_inner().applied),
                    format!("product {}", owner.sku),
                )
            }
        }
    }
    let owned: HashSet<&str> = owners.iter().map(|p| p.sku.as_str()).collect();
    let mut orphans: Vec<&crm::Product> = mirrors
        .values()
        .filter(|p| p.product_version > 0 && !owned.contains(p.sku.as_str()))
        .collect();
    orphans.sort_by(|a, b| a.sku.cmp(&b.sku));
    for orphan in orphans {
        report.found(Drift {
            kind: "product",
            id: orphan.sku.clone(),
            detail: "only in the CRM's catalogue mirror: the ERP does not have it".to_owned(),
        });
        report.only_in_mirror(repair, format!("product {}", orphan.sku));
    }
    for (sku, owner_available) in &available {
        let mirrored = mirrors.get(sku);
        if mirrored.map(|m| m.available) == Some(*owner_available) {
            continue;
        }
        report.found(Drift {
            kind: "stock",
            id: sku.clone(),
            detail: format!(
                "available: CRM {:?} vs ERP {owner_available}",
                mirrored.map(|m| m.available)
            ),
        });
        if repair {
            // The ERP's levels carry no per-sku version; the mirror's own version with
            // `repair` overwrites the value without skipping a newer event still in flight.
            let request = crm::ApplyStockLevelsRequest {
                levels: vec![crm::StockLevel {
                    sku: sku.clone(),
                    available: *owner_available,
                    source_version: mirrored.map(|m| m.stock_version).unwrap_or(0).max(1),
                }],
                event_id: String::new(),
                repair: true,
            };
            report.record(
                flows
                    .crm_sync
                    .clone()
                    .apply_stock_levels(flows.request(request))
                    .await
                    .map(|r| r.into_inner().results.first().is_some_and(|l| l.applied)),
                format!("stock {sku}"),
            )
        }
    }
    Ok(())
}

pub(crate) fn fulfilment_of(status: erp::SalesOrderStatus) -> crm::FulfilmentStatus {
    match status {
        erp::SalesOrderStatus::Reserved => crm::FulfilmentStatus::Reserved,
        erp::SalesOrderStatus::Backordered => crm::FulfilmentStatus::Backordered,
        erp::SalesOrderStatus::CreditHold => crm::FulfilmentStatus::CreditHold,
        erp::SalesOrderStatus::Rejected => crm::FulfilmentStatus::Rejected,
        erp::SalesOrderStatus::Shipped => crm::FulfilmentStatus::Shipped,
        erp::SalesOrderStatus::Invoiced => crm::FulfilmentStatus::Invoiced,
        erp::SalesOrderStatus::Cancelled => crm::FulfilmentStatus::Cancelled,
        erp::SalesOrderStatus::Unspecified => crm::FulfilmentStatus::Unspecified,
    }
}

/// What reconcile keeps of an ERP order while the CRM's orders stream by.
struct HeldOrder {
    status: erp::SalesOrderStatus,
    version: i64,
    /// The rejection reason and the invoice, for the orders that have either.
    details: Option<Box<(String, Option<erp::Invoice>)>>,
}

impl HeldOrder {
    fn of(order: erp::SalesOrder) -> Self {
        let status = order.status();
        let details = (!order.reason.is_empty() || order.invoice.is_some())
            .then(|| Box::new((order.reason, order.invoice)));
        Self {
            status,
            version: order.version,
            details,
        }
    }

    fn reason(&self) -> &str {
        self.details.as_ref().map_or("", |d| d.0.as_str())
    }

    fn invoice(&self) -> Option<&erp::Invoice> {
        self.details.as_ref().and_then(|d| d.1.as_ref())
    }
}

/// Order statuses (ERP -> CRM) and submissions (CRM -> ERP). The ERP's orders are indexed by
/// CRM order id (status and version only), then the CRM's stream by and are looked up.
async fn reconcile_orders(
    flows: &Flows,
    erp: &ErpClient,
    repair: bool,
    quiet: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    // Both listings start at once; the CRM's waits a few pages ahead while the ERP's is read.
    let mut held_orders = crate::ops::listing::erp_orders(flows, erp, quiet);
    let mut mirrors = crate::ops::listing::crm_orders(flows, quiet);
    let mut held: HashMap<u128, HeldOrder> = HashMap::new();
    let mut compared = 0;
    while let Some(order) = held_orders.next().await? {
        compared += 1;
        match uuid::Uuid::parse_str(&order.crm_order_id) {
            Ok(id) => {
                held.insert(id.as_u128(), HeldOrder::of(order));
            }
            // Not an id the CRM gives out: no CRM order can be this one.
            Err(_) => {
                let id = order.crm_order_id.clone();
                compare_status(flows, repair, &id, &HeldOrder::of(order), None, report).await;
            }
        }
    }
    report.compared.insert("order_status", compared);

    let mut submitted = 0;
    while let Some(order) = mirrors.next().await? {
        let owner = uuid::Uuid::parse_str(&order.id)
            .ok()
            .and_then(|id| held.remove(&id.as_u128()));
        if order.submit_time.is_some() {
            submitted += 1;
        }
        match owner {
            Some(owner) => {
                compare_status(flows, repair, &order.id, &owner, Some(&order), report).await
            }
            None if order.submit_time.is_some() => {
                missing_submission(flows, repair, &order, report).await;
            }
            None => {}
        }
    }
    report.compared.insert("order_submission", submitted);

    // The ERP's orders no CRM order matched: the CRM lost them.
    let mut lost: Vec<(u128, HeldOrder)> = held.into_iter().collect();
    lost.sort_unstable_by_key(|(id, _)| *id);
    for (id, owner) in lost {
        let id = uuid::Uuid::from_u128(id).to_string();
        compare_status(flows, repair, &id, &owner, None, report).await;
    }
    Ok(())
}

/// Compares the ERP's status of order `id` with the CRM's fulfilment (with `repair`, applies
/// the ERP's to the CRM).
async fn compare_status(
    flows: &Flows,
    repair: bool,
    id: &str,
    owner: &HeldOrder,
    mirror: Option<&crm::Order>,
    report: &mut Report,
) {
    let expected = fulfilment_of(owner.status);
    let none = crm::Fulfilment::default();
    let fulfilment = mirror.and_then(|m| m.fulfilment.as_ref()).unwrap_or(&none);
    let invoice_number = owner.invoice().map_or("", |i| i.invoice_number.as_str());
    if mirror.is_some()
        && fulfilment.status() == expected
        && fulfilment.invoice_number == invoice_number
    {
        return;
    }
    report.found(Drift {
        kind: "order_status",
        id: id.to_owned(),
        detail: match mirror {
            None => "missing in the CRM".to_owned(),
            Some(_) => format!("CRM {:?} vs ERP {:?}", fulfilment.status(), expected),
        },
    });
    if !repair {
        return;
    }
    if mirror.is_none() {
        report.only_in_mirror(repair, format!("order {id}"));
        return;
    }
    let request = crm::ApplyOrderStatusRequest {
        order_id: id.to_owned(),
        status: expected as i32,
        rejection_reason: if expected == crm::FulfilmentStatus::Rejected {
            if owner.reason().is_empty() {
                "rejected by the ERP".to_owned()
            } else {
                owner.reason().to_owned()
            }
        } else {
            String::new()
        },
        invoice_number: invoice_number.to_owned(),
        invoice_amount: owner
            .invoice()
            .and_then(|i| to_crm_money(i.amount.as_ref())),
        source_version: owner.version.max(fulfilment.source_version),
        event_id: String::new(),
        repair: true,
    };
    report.record(
        flows
            .crm_sync
            .clone()
            .apply_order_status(flows.request(request))
            .await
            .map(|r| r.into_inner().applied),
        format!("order {id}"),
    )
}

/// An order the CRM submitted that the ERP does not hold (a lost `crm.order.submitted`, or an
/// ERP restored to before it). Repair sends the CRM's order to `ErpSync.AcceptOrder` (keyed
/// by the CRM's order id, so a bridge delivering it meanwhile cannot double it), then the
/// cancellation when the CRM asked for one.
async fn missing_submission(flows: &Flows, repair: bool, order: &crm::Order, report: &mut Report) {
    report.found(Drift {
        kind: "order_submission",
        id: order.id.clone(),
        detail: format!("{:?} in the CRM, missing in the ERP", order.status()),
    });
    if !repair {
        return;
    }
    let accepted = flows
        .erp
        .clone()
        .accept_order(flows.request(accept_request(order)))
        .await;
    let cancel = matches!(
        order.status(),
        crm::OrderStatus::CancelRequested | crm::OrderStatus::Cancelled
    );
    let result = match accepted {
        Ok(_) if cancel => flows
            .erp
            .clone()
            .cancel_order(flows.request(erp::CancelOrderRequest {
                crm_order_id: order.id.clone(),
                reason: order.cancellation_reason.clone(),
                event_id: String::new(),
            }))
            .await
            .map(|r| r.into_inner().status() == erp::SalesOrderStatus::Cancelled),
        // Accepted now, or by someone else meanwhile (then not by this repair).
        other => other.map(|r| r.into_inner().created),
    };
    report.record(result, format!("order submission {}", order.id));
}

/// The CRM's order as the ERP accepts it (what `crm.order.submitted` carries).
pub(crate) fn accept_request(order: &crm::Order) -> erp::AcceptOrderRequest {
    erp::AcceptOrderRequest {
        crm_order_id: order.id.clone(),
        customer_id: order.customer_id.clone(),
        currency_code: order.currency_code.clone(),
        lines: order
            .lines
            .iter()
            .map(|line| erp::AcceptOrderLine {
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_price_minor: line.unit_price.as_ref().map_or(0, |m| m.amount_minor),
            })
            .collect(),
        final_attempt: false,
        event_id: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repair_counts_only_when_the_target_applied_it() {
        let mut report = Report::default();
        report.record(Ok(true), "customer a".into());
        // After a restore of the owner, the mirror answers OK but holds a newer version.
        report.record(Ok(false), "customer b".into());
        report.record(Err(Status::unavailable("down")), "customer c".into());
        assert_eq!(report.repaired, 1);
        assert_eq!(report.not_applied.len(), 1);
        assert!(report.not_applied[0].starts_with("customer b: not applied"));
        assert!(report.not_applied[0].contains("resync --after-restore"));
        assert_eq!(report.repair_failures.len(), 1);
        assert!(!report.all_repaired());
        let rendered = report.render(5);
        assert!(
            rendered.contains("repaired: 1, repair failures: 1, not applied: 1"),
            "{rendered}"
        );
    }

    #[test]
    fn drift_only_a_mirror_holds_is_never_repaired() {
        let mut report = Report::default();
        report.only_in_mirror(false, "customer a".into());
        assert!(
            report.all_repaired(),
            "reconcile without --repair repairs nothing"
        );
        report.only_in_mirror(true, "customer a".into());
        assert_eq!(report.repaired, 0);
        assert!(report.not_applied[0].contains("--recover-from-mirror"));
    }

    #[test]
    fn drift_beyond_the_examples_kept_is_counted_not_kept() {
        let mut report = Report::default();
        for i in 0..EXAMPLES_KEPT + 5 {
            report.found(Drift {
                kind: "customer_profile",
                id: format!("c{i}"),
                detail: "missing in the ERP".into(),
            });
        }
        report.found(Drift {
            kind: "stock",
            id: "SKU-1".into(),
            detail: "available: CRM None vs ERP 0".into(),
        });
        assert_eq!(report.total_drift(), EXAMPLES_KEPT + 6);
        assert_eq!(report.counts()["customer_profile"], EXAMPLES_KEPT + 5);
        assert_eq!(
            report.drift.len(),
            EXAMPLES_KEPT + 1,
            "one kind's flood keeps the other"
        );
        let rendered = report.render(2);
        assert!(
            rendered.ends_with(&format!("total drift: {}", EXAMPLES_KEPT + 6)),
            "{rendered}"
        );
        assert!(rendered.contains("stock SKU-1"), "{rendered}");
    }
}
