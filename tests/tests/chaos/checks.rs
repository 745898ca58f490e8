//! The end-of-run checks: the state of both systems against what the clients were told.
//!
//! The ground truth is the workload's ledger (every call with its outcome), not one of the
//! system's tables: every acknowledged effect must be present exactly once on both sides with
//! its final version, nothing may be present that no client asked for, unknown outcomes are
//! resolved (present once, absent, or more than once: a duplicate), and stock and money must
//! equal the sums of the movements and payments the clients were told about.
//!
//! Where duplicates could hide, the apply side's own records are looked at: reservation rows
//! per order line, ledger rows per request reference and per order, invoices per order,
//! payments per reference, WMS counts per event id (`stock_counts`), and one state per
//! (entity, version) in each outbox. The apply side keeps no log of the CRM events it applied
//! (customers, orders, cancellations) nor of the ERP events the CRM applied (stock levels,
//! statuses, finance): only the last version applied (`profile_version`, `stock_version`,
//! `fulfilment_version`, `source_version`), which must equal the owner's version.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::PgConnection;
use tandem_tests::{
    Record, TestDatabase,
    outcomes::{Category, Entry, Findings, Found, Told},
};

use super::workload::{Ack, CANCEL_REASON, COUNT_SKU, INITIAL_STOCK, Op, SKUS, WAREHOUSE};

type Work = Entry<Op, Ack>;

/// Runs `sql` and returns every row, retrying while the database is down.
async fn rows<T>(db: &TestDatabase, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    for _ in 0..50 {
        if let Ok(mut conn) = db.connect().await {
            match query_all::<T>(&mut conn, sql).await {
                Ok(rows) => return rows,
                Err(error) => eprintln!("chaos check: {error} ({sql}), retrying"),
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("cannot run {sql}");
}

async fn query_all<T>(conn: &mut PgConnection, sql: &str) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as::<_, T>(sql).fetch_all(conn).await
}

struct CrmCustomer {
    name: String,
    email: String,
    version: i64,
}

struct ErpCustomer {
    name: String,
    email: String,
    version: i64,
}

struct CrmOrder {
    customer: String,
    status: String,
    version: i64,
    fulfilment: Option<String>,
    fulfilment_version: i64,
    invoice_amount: Option<i64>,
    cancellation_reason: Option<String>,
    line: Option<(String, i64)>,
    lines: i64,
}

struct ErpOrder {
    customer: String,
    status: String,
    version: i64,
    invoice_amount: Option<i64>,
    line: Option<(String, i64)>,
    lines: i64,
}

/// Both systems' state after the run, read once.
pub struct EndState {
    crm_customers: BTreeMap<String, CrmCustomer>,
    erp_customers: BTreeMap<String, ErpCustomer>,
    /// (customer id, version) -> e-mail of each crm.customers event in the CRM's outbox, with
    /// how many distinct states carry that version.
    customer_events: BTreeMap<(String, i64), (String, usize)>,
    crm_orders: BTreeMap<String, CrmOrder>,
    /// By CRM order id.
    erp_orders: BTreeMap<String, ErpOrder>,
    /// ERP order id -> CRM order id.
    erp_ids: HashMap<String, String>,
    /// (ERP order id, line) -> (rows, sum of quantities, states).
    reservations: BTreeMap<(String, i32), (i64, i64, String)>,
    /// (CRM order id, ledger reason) -> (rows, sum on hand delta, sum reserved delta).
    order_ledger: BTreeMap<(String, String), (i64, i64, i64)>,
    /// (reference, reason, adjustment reason) -> (rows, sum on hand delta, skus).
    reference_ledger: BTreeMap<(String, String, String), (i64, i64, String)>,
    /// sku -> (on hand, reserved) in MAIN; other warehouses are findings.
    erp_levels: BTreeMap<String, (i64, i64)>,
    other_levels: Vec<String>,
    erp_stock_versions: BTreeMap<String, i64>,
    crm_catalogue: BTreeMap<String, (i64, i64)>,
    /// customer -> (open balance, version).
    erp_finance: BTreeMap<String, (i64, i64)>,
    crm_finance: BTreeMap<String, (i64, i64)>,
    /// (customer, reference) -> amount.
    payments: BTreeMap<(String, String), i64>,
    /// event id -> (sku, counted quantity).
    stock_counts: BTreeMap<String, (String, i64)>,
    /// (service, topic, key, version) with more than one distinct state in the outbox.
    reused_versions: Vec<String>,
    /// Levels that differ from the sum of their ledger rows.
    unbalanced_levels: Vec<String>,
}

impl EndState {
    pub async fn read(crm: &TestDatabase, erp: &TestDatabase) -> Self {
        let crm_customers = rows::<(String, String, String, i64)>(
            crm,
            "SELECT id::text, display_name, email, version FROM customers",
        )
        .await
        .into_iter()
        .map(|(id, name, email, version)| {
            (
                id,
                CrmCustomer {
                    name,
                    email,
                    version,
                },
            )
        })
        .collect();
        let erp_customers = rows::<(String, String, String, i64)>(
            erp,
            "SELECT id::text, display_name, email, profile_version FROM customers",
        )
        .await
        .into_iter()
        .map(|(id, name, email, version)| {
            (
                id,
                ErpCustomer {
                    name,
                    email,
                    version,
                },
            )
        })
        .collect();
        let customer_events = rows::<(String, i64, String, i64)>(
            crm,
            "SELECT kafka_key, (payload->>'aggregate_version')::bigint, \
                    min(payload->'data'->>'email'), count(DISTINCT (payload->'data')::jsonb) \
             FROM outbox WHERE topic = 'crm.customers' GROUP BY 1, 2",
        )
        .await
        .into_iter()
        .map(|(id, version, email, states)| ((id, version), (email, states as usize)))
        .collect();
        type CrmOrderRow = (
            String,
            String,
            String,
            i64,
            Option<String>,
            i64,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<i64>,
            i64,
        );
        let crm_orders = rows::<CrmOrderRow>(
            crm,
            "SELECT o.id::text, o.customer_id::text, o.status, o.version, o.fulfilment_status, \
                    o.fulfilment_version, o.invoice_amount_minor, o.cancellation_reason, \
                    l.sku, l.quantity, \
                    (SELECT count(*) FROM order_lines c WHERE c.order_id = o.id) \
             FROM orders o LEFT JOIN order_lines l ON l.order_id = o.id AND l.line_number = 1",
        )
        .await
        .into_iter()
        .map(|r| {
            (
                r.0,
                CrmOrder {
                    customer: r.1,
                    status: r.2,
                    version: r.3,
                    fulfilment: r.4,
                    fulfilment_version: r.5,
                    invoice_amount: r.6,
                    cancellation_reason: r.7,
                    line: r.8.zip(r.9),
                    lines: r.10,
                },
            )
        })
        .collect();
        type ErpOrderRow = (
            String,
            String,
            String,
            String,
            i64,
            Option<i64>,
            Option<String>,
            Option<i64>,
            i64,
        );
        let mut erp_orders = BTreeMap::new();
        let mut erp_ids = HashMap::new();
        for r in rows::<ErpOrderRow>(
            erp,
            "SELECT o.id::text, o.crm_order_id, o.customer_id::text, o.status, o.version, \
                    o.invoice_amount_minor, l.sku, l.quantity, \
                    (SELECT count(*) FROM sales_order_lines c WHERE c.order_id = o.id) \
             FROM sales_orders o \
             LEFT JOIN sales_order_lines l ON l.order_id = o.id AND l.line_number = 1",
        )
        .await
        {
            erp_ids.insert(r.0, r.1.clone());
            erp_orders.insert(
                r.1.clone(),
                ErpOrder {
                    customer: r.2,
                    status: r.3,
                    version: r.4,
                    invoice_amount: r.5,
                    line: r.6.zip(r.7),
                    lines: r.8,
                },
            );
        }
        let reservations = rows::<(String, i32, i64, i64, String)>(
            erp,
            "SELECT order_id::text, line_number, count(*), sum(quantity)::bigint, \
                    string_agg(state, ',' ORDER BY state) \
             FROM reservations GROUP BY 1, 2",
        )
        .await
        .into_iter()
        .map(|(order, line, n, quantity, states)| ((order, line), (n, quantity, states)))
        .collect();
        let order_ledger = rows::<(String, String, i64, i64, i64)>(
            erp,
            "SELECT o.crm_order_id, g.reason, count(*), sum(g.on_hand_delta)::bigint, \
                    sum(g.reserved_delta)::bigint \
             FROM stock_ledger g JOIN sales_orders o ON o.id = g.order_id GROUP BY 1, 2",
        )
        .await
        .into_iter()
        .map(|(order, reason, n, on_hand, reserved)| ((order, reason), (n, on_hand, reserved)))
        .collect();
        let reference_ledger = rows::<(String, String, String, i64, i64, String)>(
            erp,
            "SELECT COALESCE(reference, ''), reason, COALESCE(adjustment_reason, ''), count(*), \
                    sum(on_hand_delta)::bigint, string_agg(DISTINCT sku, ',') \
             FROM stock_ledger WHERE order_id IS NULL GROUP BY 1, 2, 3",
        )
        .await
        .into_iter()
        .map(|(reference, reason, adjustment, n, on_hand, skus)| {
            ((reference, reason, adjustment), (n, on_hand, skus))
        })
        .collect();
        let mut erp_levels = BTreeMap::new();
        let mut other_levels = Vec::new();
        for (sku, warehouse, on_hand, reserved) in rows::<(String, String, i64, i64)>(
            erp,
            "SELECT sku, warehouse, on_hand, reserved FROM stock_levels",
        )
        .await
        {
            if warehouse == WAREHOUSE {
                erp_levels.insert(sku, (on_hand, reserved));
            } else {
                other_levels.push(format!("{sku}/{warehouse}: on hand {on_hand}"));
            }
        }
        let erp_stock_versions =
            rows::<(String, i64)>(erp, "SELECT sku, stock_version FROM products")
                .await
                .into_iter()
                .collect();
        let crm_catalogue =
            rows::<(String, i64, i64)>(crm, "SELECT sku, available, stock_version FROM catalogue")
                .await
                .into_iter()
                .map(|(sku, available, version)| (sku, (available, version)))
                .collect();
        let erp_finance = rows::<(String, i64, i64)>(
            erp,
            "SELECT customer_id::text, open_balance_minor, version FROM customer_finance",
        )
        .await
        .into_iter()
        .map(|(id, open, version)| (id, (open, version)))
        .collect();
        let crm_finance = rows::<(String, i64, i64)>(
            crm,
            "SELECT customer_id::text, open_balance_minor, source_version FROM customer_finance",
        )
        .await
        .into_iter()
        .map(|(id, open, version)| (id, (open, version)))
        .collect();
        let payments = rows::<(String, String, i64)>(
            erp,
            "SELECT customer_id::text, reference, amount_minor FROM payments",
        )
        .await
        .into_iter()
        .map(|(customer, reference, amount)| ((customer, reference), amount))
        .collect();
        let stock_counts = rows::<(String, String, i64)>(
            erp,
            "SELECT event_id, sku, counted_quantity FROM stock_counts",
        )
        .await
        .into_iter()
        .map(|(id, sku, quantity)| (id, (sku, quantity)))
        .collect();
        let reused = "SELECT topic, kafka_key, payload->>'aggregate_version', \
                             count(DISTINCT (payload->'data')::jsonb) \
                      FROM outbox GROUP BY 1, 2, 3 HAVING count(DISTINCT (payload->'data')::jsonb) > 1";
        let mut reused_versions = Vec::new();
        for (service, db) in [("crm", crm), ("erp", erp)] {
            for (topic, key, version, states) in
                rows::<(String, String, String, i64)>(db, reused).await
            {
                reused_versions.push(format!(
                    "{service} outbox: {topic} {key} version {version} carries {states} different states"
                ));
            }
        }
        let unbalanced_levels = rows::<(String, String, i64, i64, i64, i64)>(
            erp,
            "SELECT l.sku, l.warehouse, l.on_hand, l.reserved, \
                    COALESCE(sum(g.on_hand_delta), 0)::bigint, \
                    COALESCE(sum(g.reserved_delta), 0)::bigint \
             FROM stock_levels l LEFT JOIN stock_ledger g USING (sku, warehouse) \
             GROUP BY 1, 2, 3, 4 \
             HAVING l.on_hand <> COALESCE(sum(g.on_hand_delta), 0) \
                 OR l.reserved <> COALESCE(sum(g.reserved_delta), 0)",
        )
        .await
        .into_iter()
        .map(
            |(sku, warehouse, on_hand, reserved, ledger_on_hand, ledger_reserved)| {
                format!(
                    "{sku}/{warehouse}: level (on hand, reserved) ({on_hand}, {reserved}), its \
                 ledger sums to ({ledger_on_hand}, {ledger_reserved})"
                )
            },
        )
        .collect();
        Self {
            unbalanced_levels,
            crm_customers,
            erp_customers,
            customer_events,
            crm_orders,
            erp_orders,
            erp_ids,
            reservations,
            order_ledger,
            reference_ledger,
            erp_levels,
            other_levels,
            erp_stock_versions,
            crm_catalogue,
            erp_finance,
            crm_finance,
            payments,
            stock_counts,
            reused_versions,
        }
    }
}

/// What was read back from the topics at the end.
pub struct Topics {
    /// Every record of `integration.stock` (the WMS counts that reached the broker).
    pub counts: Vec<Record>,
    /// Every record of `integration.orders` (only the bad messages go there).
    pub integration_orders: Vec<Record>,
    pub dead_letters: Vec<Record>,
}

/// Figures the checks computed, for the report.
#[derive(Debug, Default)]
pub struct Figures {
    pub orders_submitted: usize,
    pub dead_letters: usize,
    pub dead_lettered_again: usize,
    /// Bad messages the (non-idempotent) producer's retries wrote twice.
    pub sent_twice: usize,
    pub expected_stock: BTreeMap<String, (i64, i64)>,
}

/// Runs every check; resolves the unknown outcomes in `entries` on the way.
pub fn check(
    entries: &mut [Work],
    state: &EndState,
    topics: &Topics,
    findings: &mut Findings,
) -> Figures {
    let mut figures = Figures::default();
    customers(entries, state, findings);
    let orders = orders(entries, state, findings);
    figures.orders_submitted = orders.submitted.len();
    stock(entries, state, &orders, findings, &mut figures);
    counts(entries, state, topics, findings, &mut figures);
    money(entries, state, &orders, findings);
    dead_letters(entries, topics, findings, &mut figures);
    for reused in &state.reused_versions {
        findings.add(Category::Duplicated, reused.clone());
    }
    // The ERP's own invariant (written in one transaction, so a weak proof of exactly-once,
    // but a level changed without its ledger row shows here).
    for unbalanced in &state.unbalanced_levels {
        findings.add(Category::Mismatched, unbalanced.clone());
    }
    figures
}

fn customers(entries: &mut [Work], state: &EndState, findings: &mut Findings) {
    use Category::*;
    let mut by_name: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, c) in &state.crm_customers {
        by_name
            .entry(c.name.as_str())
            .or_default()
            .push(id.as_str());
    }
    // Customers whose ids the end state knows: the create's e-mail and every update, in order.
    let mut known: BTreeMap<String, (String, Vec<usize>)> = BTreeMap::new();
    let mut asked_names = BTreeSet::new();
    for (at, entry) in entries.iter_mut().enumerate() {
        let Op::CreateCustomer { name, email } = entry.request.clone() else {
            continue;
        };
        asked_names.insert(name.clone());
        let found = by_name.get(name.as_str()).cloned().unwrap_or_default();
        if found.len() > 1 {
            findings.add(
                Duplicated,
                format!(
                    "customer {name:?} exists {} times in the CRM: {found:?}",
                    found.len()
                ),
            );
        }
        match &entry.told {
            Told::Acknowledged(ack) => {
                if !found.contains(&ack.id.as_str()) {
                    findings.add(
                        Lost,
                        format!(
                            "customer {name:?} ({}) acknowledged, missing in the CRM",
                            ack.id
                        ),
                    );
                }
                known.insert(ack.id.clone(), (email.clone(), vec![at]));
            }
            Told::Unknown(_) => {
                entry.resolve(Found::of(found.len()));
                if let Some(id) = found.first() {
                    known.insert((*id).to_owned(), (email.clone(), vec![at]));
                }
            }
            Told::Refused(code) => findings.check(found.is_empty(), Unasked, || {
                format!("customer {name:?} refused ({code:?}) yet present: {found:?}")
            }),
        }
    }
    for (id, c) in &state.crm_customers {
        findings.check(asked_names.contains(&c.name), Unasked, || {
            format!("CRM customer {id} {:?}: no client created it", c.name)
        });
    }
    for (id, c) in &state.erp_customers {
        findings.check(state.crm_customers.contains_key(id), Unasked, || {
            format!("ERP customer {id} {:?} has no CRM customer", c.name)
        });
    }
    for (at, entry) in entries.iter().enumerate() {
        if let Op::UpdateEmail { customer, .. } = &entry.request
            && let Some((_, updates)) = known.get_mut(customer)
        {
            updates.push(at);
        }
    }
    // Each customer: present once on both sides, its versions traced to its requests.
    let mut resolutions = Vec::new();
    for (id, (created_email, calls)) in &known {
        let Some(crm) = state.crm_customers.get(id) else {
            continue; // reported above
        };
        let Some(erp) = state.erp_customers.get(id) else {
            findings.add(
                Lost,
                format!("customer {id} {:?} missing in the ERP", crm.name),
            );
            continue;
        };
        findings.check(erp.name == crm.name, Mismatched, || {
            format!("customer {id}: ERP name {:?}, CRM {:?}", erp.name, crm.name)
        });
        // The versions any client was told, and the e-mails allowed at the end: the last
        // acknowledged one's, or any later unknown one's.
        let mut told_version = 0;
        let mut allowed: Vec<&str> = vec![created_email.as_str()];
        for &at in calls {
            let entry = &entries[at];
            let email = match &entry.request {
                Op::UpdateEmail { email, .. } => email.as_str(),
                _ => created_email.as_str(),
            };
            match &entry.told {
                Told::Acknowledged(ack) => {
                    told_version = told_version.max(ack.version);
                    allowed = vec![email];
                }
                Told::Unknown(_) => allowed.push(email),
                Told::Refused(_) => {}
            }
        }
        for (side, email, version) in [
            ("CRM", &crm.email, crm.version),
            ("ERP", &erp.email, erp.version),
        ] {
            findings.check(version >= told_version, Mismatched, || {
                format!(
                    "customer {id}: {side} at version {version}, a client was told {told_version}"
                )
            });
            findings.check(allowed.contains(&email.as_str()), Mismatched, || {
                format!("customer {id}: {side} e-mail {email:?}, expected one of {allowed:?}")
            });
        }
        findings.check(erp.version == crm.version, Mismatched, || {
            format!(
                "customer {id}: ERP applied version {}, the CRM is at {}",
                erp.version, crm.version
            )
        });
        // Every version of the customer came from exactly one of its requests: the create
        // (version 1) or an update (its e-mail), none twice, none from nowhere.
        let mut emails_seen: HashMap<&str, Vec<i64>> = HashMap::new();
        for version in 1..=crm.version {
            match state.customer_events.get(&(id.clone(), version)) {
                Some((email, states)) => {
                    findings.check(*states == 1, Duplicated, || {
                        format!("customer {id}: version {version} published with {states} states")
                    });
                    emails_seen.entry(email.as_str()).or_default().push(version);
                }
                None => findings.add(
                    Lost,
                    format!("customer {id}: no event of version {version} in the CRM outbox"),
                ),
            }
        }
        let asked: BTreeSet<&str> = calls
            .iter()
            .map(|&at| match &entries[at].request {
                Op::UpdateEmail { email, .. } => email.as_str(),
                _ => created_email.as_str(),
            })
            .collect();
        for (email, versions) in &emails_seen {
            findings.check(asked.contains(email), Unasked, || {
                format!("customer {id}: e-mail {email:?} (versions {versions:?}) no client sent")
            });
            findings.check(versions.len() == 1, Duplicated, || {
                format!("customer {id}: e-mail {email:?} applied as versions {versions:?}")
            });
        }
        for &at in &calls[1..] {
            let entry = &entries[at];
            let Op::UpdateEmail { email, .. } = &entry.request else {
                continue;
            };
            let versions = emails_seen.get(email.as_str()).cloned().unwrap_or_default();
            match &entry.told {
                Told::Acknowledged(ack) => findings.check(versions == [ack.version], Lost, || {
                    format!(
                        "customer {id}: update to {email:?} acknowledged at version {}, \
                         found at versions {versions:?}",
                        ack.version
                    )
                }),
                Told::Unknown(_) => resolutions.push((at, Found::of(versions.len()))),
                Told::Refused(code) => findings.check(versions.is_empty(), Unasked, || {
                    format!("customer {id}: update to {email:?} refused ({code:?}), applied")
                }),
            }
        }
    }
    for (at, found) in resolutions {
        entries[at].resolve(found);
    }
}

/// The orders as the clients know them.
struct Orders {
    /// CRM order id -> (customer, sku, quantity, total told at creation).
    created: BTreeMap<String, (String, String, i64, i64)>,
    /// CRM order ids whose submission took effect.
    submitted: BTreeSet<String>,
    /// CRM order ids whose shipment took effect.
    shipped: BTreeSet<String>,
    /// CRM order id -> invoice amount, for invoices that took effect.
    invoiced: BTreeMap<String, (String, i64)>,
}

fn orders(entries: &mut [Work], state: &EndState, findings: &mut Findings) -> Orders {
    use Category::*;
    let mut created = BTreeMap::new();
    let mut unknown_creates: BTreeMap<(String, String, i64), Vec<usize>> = BTreeMap::new();
    for (at, entry) in entries.iter().enumerate() {
        if let Op::CreateOrder {
            customer,
            sku,
            quantity,
        } = &entry.request
        {
            match &entry.told {
                Told::Acknowledged(ack) => {
                    created.insert(
                        ack.id.clone(),
                        (customer.clone(), (*sku).to_owned(), *quantity, ack.amount),
                    );
                }
                Told::Unknown(_) => unknown_creates
                    .entry((customer.clone(), (*sku).to_owned(), *quantity))
                    .or_default()
                    .push(at),
                Told::Refused(_) => {}
            }
        }
    }
    // CRM orders nobody was told about must match an unknown create (customer, sku,
    // quantity), each at most once, and be drafts: nobody knew their id to submit them.
    let mut matched: BTreeMap<(String, String, i64), usize> = BTreeMap::new();
    for (id, order) in &state.crm_orders {
        findings.check(order.lines == 1, Mismatched, || {
            format!(
                "CRM order {id} has {} lines; every client order has one",
                order.lines
            )
        });
        if let Some((customer, sku, quantity, _)) = created.get(id) {
            findings.check(
                order.customer == *customer && order.line == Some((sku.clone(), *quantity)),
                Mismatched,
                || {
                    format!(
                        "CRM order {id}: {} {:?}, created for {customer} {sku} x{quantity}",
                        order.customer, order.line
                    )
                },
            );
            continue;
        }
        let key = order
            .line
            .clone()
            .map(|(sku, quantity)| (order.customer.clone(), sku, quantity));
        let fits = key.as_ref().is_some_and(|key| {
            let used = matched.entry(key.clone()).or_default();
            *used += 1;
            *used <= unknown_creates.get(key).map_or(0, Vec::len)
        });
        findings.check(fits, Unasked, || {
            format!("CRM order {id} {:?}: no client created it", order.line)
        });
        findings.check(order.status == "DRAFT", Unasked, || {
            format!(
                "CRM order {id} is {}, yet no client knew its id",
                order.status
            )
        });
    }
    for (key, ats) in &unknown_creates {
        let present = matched.get(key).copied().unwrap_or(0).min(ats.len());
        for (n, &at) in ats.iter().enumerate() {
            entries[at].resolve(if n < present {
                Found::Once
            } else {
                Found::Absent
            });
        }
    }
    for (id, (customer, sku, quantity, _)) in &created {
        findings.check(state.crm_orders.contains_key(id), Lost, || {
            format!("order {id} ({customer} {sku} x{quantity}) acknowledged, missing in the CRM")
        });
    }

    // Submissions: acknowledged ones reached the ERP once, as created.
    let mut submitted = BTreeSet::new();
    for entry in entries.iter_mut() {
        let Op::SubmitOrder { order: id } = entry.request.clone() else {
            continue;
        };
        let crm = state.crm_orders.get(&id);
        let past_draft = crm.is_some_and(|o| o.status != "DRAFT");
        match &entry.told {
            Told::Acknowledged(ack) => {
                findings.check(past_draft, Lost, || {
                    format!("order {id}: submission acknowledged, the CRM order is a draft")
                });
                if let Some(crm) = crm {
                    findings.check(crm.version >= ack.version, Mismatched, || {
                        format!(
                            "order {id}: CRM version {}, a client was told {}",
                            crm.version, ack.version
                        )
                    });
                }
                submitted.insert(id.clone());
            }
            Told::Unknown(_) => {
                entry.resolve(Found::of(usize::from(past_draft)));
                if past_draft {
                    submitted.insert(id.clone());
                }
            }
            Told::Refused(code) => findings.check(!past_draft, Unasked, || {
                format!("order {id}: submission refused ({code:?}), yet submitted")
            }),
        }
    }
    for (id, order) in &state.crm_orders {
        findings.check(
            order.status == "DRAFT" || submitted.contains(id),
            Unasked,
            || format!("CRM order {id} is {}: no client submitted it", order.status),
        );
    }
    for id in &submitted {
        let Some(erp) = state.erp_orders.get(id) else {
            findings.add(Lost, format!("order {id}: submitted, missing in the ERP"));
            continue;
        };
        if let Some((customer, sku, quantity, _)) = created.get(id) {
            findings.check(
                erp.customer == *customer && erp.line == Some((sku.clone(), *quantity)) && erp.lines == 1,
                Mismatched,
                || {
                    format!(
                        "ERP order of {id}: {} {:?} ({} lines), created for {customer} {sku} x{quantity}",
                        erp.customer, erp.line, erp.lines
                    )
                },
            );
        }
        if let Some(crm) = state.crm_orders.get(id) {
            findings.check(
                (erp.status == "CANCELLED") == (crm.status == "CANCELLED"),
                Mismatched,
                || {
                    format!(
                        "order {id}: {} in the ERP, {} in the CRM",
                        erp.status, crm.status
                    )
                },
            );
            findings.check(
                crm.fulfilment.as_deref() == Some(erp.status.as_str())
                    && crm.fulfilment_version == erp.version,
                Mismatched,
                || {
                    format!(
                        "order {id}: ERP {} v{}, the CRM mirrors {:?} v{}",
                        erp.status, erp.version, crm.fulfilment, crm.fulfilment_version
                    )
                },
            );
        }
    }
    for (crm_id, erp) in &state.erp_orders {
        findings.check(submitted.contains(crm_id), Unasked, || {
            format!(
                "ERP order for {crm_id} ({}): no client submitted it",
                erp.status
            )
        });
    }

    // Cancellation requests: an acknowledged one reached the ERP (cancelled, or too late).
    let mut cancelled = BTreeSet::new();
    for entry in entries.iter_mut() {
        let Op::CancelOrder { order: id } = entry.request.clone() else {
            continue;
        };
        let crm = state.crm_orders.get(&id);
        let requested =
            crm.is_some_and(|o| o.cancellation_reason.as_deref() == Some(CANCEL_REASON));
        match &entry.told {
            Told::Acknowledged(ack) => {
                findings.check(requested, Lost, || {
                    format!("order {id}: cancellation acknowledged, not in the CRM")
                });
                if let Some(crm) = crm {
                    findings.check(crm.version >= ack.version, Mismatched, || {
                        format!(
                            "order {id}: CRM version {}, a client was told {}",
                            crm.version, ack.version
                        )
                    });
                }
                cancelled.insert(id.clone());
            }
            Told::Unknown(_) => {
                entry.resolve(Found::of(usize::from(requested)));
                if requested {
                    cancelled.insert(id.clone());
                }
            }
            Told::Refused(code) => findings.check(!requested, Unasked, || {
                format!("order {id}: cancellation refused ({code:?}), yet requested")
            }),
        }
    }
    for (id, order) in &state.crm_orders {
        findings.check(
            order.cancellation_reason.is_none() || cancelled.contains(id),
            Unasked,
            || format!("CRM order {id} has a cancellation no client requested"),
        );
    }
    for id in &cancelled {
        if let Some(erp) = state.erp_orders.get(id) {
            findings.check(
                matches!(
                    erp.status.as_str(),
                    "CANCELLED" | "REJECTED" | "SHIPPED" | "INVOICED"
                ),
                Lost,
                || {
                    format!(
                        "order {id}: cancellation requested, the ERP order is still {}",
                        erp.status
                    )
                },
            );
        }
    }
    for (id, erp) in &state.erp_orders {
        findings.check(
            erp.status != "CANCELLED" || cancelled.contains(id),
            Unasked,
            || format!("ERP order {id} CANCELLED: no client asked"),
        );
    }

    // Shipments and invoices: state-gated, so at most one call per order took effect.
    let shipped = transitions(
        entries,
        state,
        findings,
        "ship",
        |op| match op {
            Op::ShipOrder { order } => Some(order.as_str()),
            _ => None,
        },
        |status| matches!(status, "SHIPPED" | "INVOICED"),
    );
    let invoiced_ids = transitions(
        entries,
        state,
        findings,
        "invoice",
        |op| match op {
            Op::InvoiceOrder { order, .. } => Some(order.as_str()),
            _ => None,
        },
        |status| status == "INVOICED",
    );
    let mut invoiced = BTreeMap::new();
    for entry in entries.iter() {
        let Op::InvoiceOrder {
            order: id,
            customer,
        } = &entry.request
        else {
            continue;
        };
        let Some(erp) = state.erp_orders.get(id) else {
            continue;
        };
        let told = created.get(id).map(|c| c.3);
        if let Told::Acknowledged(ack) = &entry.told {
            findings.check(
                erp.invoice_amount == Some(ack.amount) && told == Some(ack.amount),
                Mismatched,
                || {
                    format!(
                        "order {id}: invoiced {} as told, the ERP holds {:?}, the order total was {told:?}",
                        ack.amount, erp.invoice_amount
                    )
                },
            );
        }
        if invoiced_ids.contains(id) {
            // The amount a client was told: the invoice's, else the order total at creation.
            let amount = match &entry.told {
                Told::Acknowledged(ack) => ack.amount,
                _ => told.unwrap_or_default(),
            };
            invoiced
                .entry(id.clone())
                .or_insert((customer.clone(), amount));
        }
    }
    for id in invoiced.keys() {
        if let (Some(crm), Some(erp)) = (state.crm_orders.get(id), state.erp_orders.get(id)) {
            findings.check(crm.invoice_amount == erp.invoice_amount, Mismatched, || {
                format!(
                    "order {id}: invoice {:?} in the ERP, {:?} in the CRM",
                    erp.invoice_amount, crm.invoice_amount
                )
            });
        }
    }

    // Duplicates where they could happen: reservations per order line, ledger rows per order.
    for ((erp_id, line), (n, quantity, states)) in &state.reservations {
        let crm_id = state.erp_ids.get(erp_id).cloned().unwrap_or_default();
        let ordered = state.erp_orders.get(&crm_id).and_then(|o| o.line.clone());
        findings.check(*n == 1, Duplicated, || {
            format!("order {crm_id} line {line}: {n} reservations ({states})")
        });
        findings.check(
            ordered.as_ref().is_some_and(|(_, q)| q == quantity) && *line == 1,
            Mismatched,
            || format!("order {crm_id} line {line}: reserved {quantity}, ordered {ordered:?}"),
        );
    }
    for (id, erp) in &state.erp_orders {
        let quantity = erp.line.as_ref().map_or(0, |l| l.1);
        let ledger = |reason: &str| {
            state
                .order_ledger
                .get(&(id.clone(), reason.to_owned()))
                .copied()
                .unwrap_or_default()
        };
        let (reserved, _, reserved_delta) = ledger("RESERVATION");
        let (released, _, released_delta) = ledger("RELEASE");
        let (shipments, shipped_delta, _) = ledger("SHIPMENT");
        let held = state
            .reservations
            .iter()
            .filter(|((order, _), _)| state.erp_ids.get(order) == Some(id))
            .map(|(_, (_, _, states))| states.clone())
            .collect::<Vec<_>>()
            .join(",");
        for (what, rows) in [
            ("reservations", reserved),
            ("releases", released),
            ("shipments", shipments),
        ] {
            findings.check(rows <= 1, Duplicated, || {
                format!("order {id}: {rows} {what} in the stock ledger")
            });
        }
        let expected = match erp.status.as_str() {
            "RESERVED" => (1, 0, 0, "HELD"),
            "SHIPPED" | "INVOICED" => (1, 0, 1, "SHIPPED"),
            "CANCELLED" if reserved > 0 => (1, 1, 0, "RELEASED"),
            _ => (0, 0, 0, ""),
        };
        findings.check(
            (reserved, released, shipments, held.as_str()) == expected,
            Mismatched,
            || {
                format!(
                    "order {id} {}: ledger {reserved} reservations, {released} releases, \
                     {shipments} shipments, reservation rows [{held}]",
                    erp.status
                )
            },
        );
        findings.check(
            reserved_delta == quantity * reserved
                && released_delta == -quantity * released
                && shipped_delta == -quantity * shipments,
            Mismatched,
            || {
                format!(
                    "order {id} x{quantity}: reserved {reserved_delta}, released \
                     {released_delta}, shipped {shipped_delta}"
                )
            },
        );
    }
    Orders {
        created,
        submitted,
        shipped,
        invoiced,
    }
}

/// Resolves a state-gated transition (ship, invoice): it took effect when the ERP order is
/// in one of the states `done` accepts; then it must have been asked for, and an
/// acknowledged one must have taken effect. Returns the orders where it took effect.
fn transitions(
    entries: &mut [Work],
    state: &EndState,
    findings: &mut Findings,
    what: &str,
    order_of: impl Fn(&Op) -> Option<&str>,
    done: impl Fn(&str) -> bool,
) -> BTreeSet<String> {
    use Category::*;
    let mut calls: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (at, entry) in entries.iter().enumerate() {
        if let Some(order) = order_of(&entry.request) {
            calls.entry(order.to_owned()).or_default().push(at);
        }
    }
    let mut took_effect = BTreeSet::new();
    for (id, erp) in &state.erp_orders {
        if !done(&erp.status) {
            continue;
        }
        let asked = calls.get(id).is_some_and(|ats| {
            ats.iter()
                .any(|&at| !matches!(entries[at].told, Told::Refused(_)))
        });
        findings.check(asked, Unasked, || {
            format!(
                "ERP order {id} is {}: no client asked to {what} it",
                erp.status
            )
        });
        took_effect.insert(id.clone());
    }
    for (id, ats) in &calls {
        let effect = took_effect.contains(id);
        let acknowledged = ats
            .iter()
            .any(|&at| matches!(entries[at].told, Told::Acknowledged(_)));
        let mut credited = acknowledged;
        for &at in ats {
            let entry = &mut entries[at];
            match &entry.told {
                Told::Acknowledged(ack) => {
                    findings.check(effect, Lost, || {
                        format!("order {id}: {what} acknowledged, the ERP order is not")
                    });
                    if let Some(erp) = state.erp_orders.get(id) {
                        findings.check(erp.version >= ack.version, Mismatched, || {
                            format!(
                                "order {id}: ERP version {}, a client was told {}",
                                erp.version, ack.version
                            )
                        });
                    }
                }
                Told::Unknown(_) => {
                    // One effect at most (state-gated): it is the acknowledged call's if any.
                    let mine = effect && !credited;
                    credited |= mine;
                    entry.resolve(Found::of(usize::from(mine)));
                }
                Told::Refused(_) => {}
            }
        }
    }
    took_effect
}

fn stock(
    entries: &mut [Work],
    state: &EndState,
    orders: &Orders,
    findings: &mut Findings,
    figures: &mut Figures,
) {
    use Category::*;
    // Receipts: one RECEIPT ledger row per acknowledged request reference; none for others.
    let mut receipts: BTreeMap<String, i64> = SKUS.iter().map(|s| ((*s).to_owned(), 0)).collect();
    let mut references = BTreeSet::new();
    for entry in entries.iter_mut() {
        let Op::ReceiveStock {
            sku,
            quantity,
            reference,
        } = entry.request.clone()
        else {
            continue;
        };
        references.insert(reference.clone());
        let (rows, on_hand, skus) = state
            .reference_ledger
            .get(&(reference.clone(), "RECEIPT".into(), String::new()))
            .cloned()
            .unwrap_or_default();
        findings.check(rows <= 1, Duplicated, || {
            format!("receipt {reference} ({sku} x{quantity}) booked {rows} times: {on_hand} in all")
        });
        if rows >= 1 {
            findings.check(
                on_hand == quantity * rows && skus == *sku,
                Mismatched,
                || format!("receipt {reference}: {sku} x{quantity} asked, {skus} {on_hand} booked"),
            );
        }
        match &entry.told {
            Told::Acknowledged(_) => findings.check(rows >= 1, Lost, || {
                format!("receipt {reference} ({sku} x{quantity}) acknowledged, not in the ledger")
            }),
            Told::Unknown(_) => entry.resolve(Found::of(rows as usize)),
            Told::Refused(code) => findings.check(rows == 0, Unasked, || {
                format!("receipt {reference} refused ({code:?}), yet booked")
            }),
        }
        if entry.took_effect() {
            *receipts.entry((*sku).to_owned()).or_default() += quantity;
        }
    }
    for ((reference, reason, adjustment), (rows, on_hand, skus)) in &state.reference_ledger {
        let known = match (reason.as_str(), adjustment.as_str()) {
            ("RECEIPT", _) if reference == "initial" => *rows == 5,
            ("RECEIPT", _) => references.contains(reference),
            ("ADJUSTMENT", "COUNT") => {
                findings.check(*rows == 1, Duplicated, || {
                    format!("count {reference} booked {rows} times ({on_hand})")
                });
                state.stock_counts.contains_key(reference)
            }
            _ => false,
        };
        findings.check(known, Unasked, || {
            format!("ledger: {rows} {reason} {adjustment} {reference:?} rows ({skus} {on_hand}) no client asked for")
        });
    }
    // Order skus: on hand = initial + receipts - shipments; reserved = the orders the ERP
    // reports RESERVED. The CRM shows on hand - reserved.
    let mut shipped: BTreeMap<&str, i64> = BTreeMap::new();
    for id in &orders.shipped {
        if let Some((_, sku, quantity, _)) = orders.created.get(id) {
            *shipped.entry(sku.as_str()).or_default() += quantity;
        }
    }
    let mut reserved: BTreeMap<&str, i64> = BTreeMap::new();
    for order in state.erp_orders.values() {
        if order.status == "RESERVED"
            && let Some((sku, quantity)) = &order.line
        {
            *reserved.entry(sku.as_str()).or_default() += quantity;
        }
    }
    for sku in SKUS {
        let received = receipts.get(sku).copied().unwrap_or_default();
        let out = shipped.get(sku).copied().unwrap_or_default();
        let on_hand = INITIAL_STOCK + received - out;
        let held = reserved.get(sku).copied().unwrap_or_default();
        figures
            .expected_stock
            .insert(sku.to_owned(), (on_hand, held));
        let erp = state.erp_levels.get(sku).copied();
        findings.check(erp == Some((on_hand, held)), Mismatched, || {
            format!(
                "{sku}: the ERP has (on hand, reserved) {erp:?}; expected ({on_hand}, {held}) = \
                 {INITIAL_STOCK} + {received} received - {out} shipped, {held} in RESERVED orders"
            )
        });
        level_mirrored(state, sku, on_hand - held, findings);
    }
    for other in &state.other_levels {
        findings.add(
            Unasked,
            format!("stock level {other}: no client used that warehouse"),
        );
    }
}

/// The CRM shows `available` for `sku`, at the ERP's stock version.
fn level_mirrored(state: &EndState, sku: &str, available: i64, findings: &mut Findings) {
    let crm = state.crm_catalogue.get(sku).copied();
    let version = state.erp_stock_versions.get(sku).copied();
    findings.check(
        crm.map(|c| c.0) == Some(available),
        Category::Mismatched,
        || format!("{sku}: the CRM shows (available, version) {crm:?}, expected {available}"),
    );
    findings.check(crm.map(|c| c.1) == version, Category::Mismatched, || {
        format!("{sku}: the CRM applied stock version {crm:?}, the ERP is at {version:?}")
    });
}

fn counts(
    entries: &mut [Work],
    state: &EndState,
    topics: &Topics,
    findings: &mut Findings,
    figures: &mut Figures,
) {
    use Category::*;
    // Where each count landed, in partition order. The producer is not idempotent, so a
    // retried send may land twice: the ERP applies an event id once, the first time the
    // bridge meets it, so that first position is the one that counts.
    let mut records: Vec<((i32, i64), String)> = topics
        .counts
        .iter()
        .filter_map(|r| {
            Some((
                (r.partition, r.offset),
                r.payload["id"].as_str()?.to_owned(),
            ))
        })
        .collect();
    records.sort();
    let mut first: HashMap<String, (i32, i64)> = HashMap::new();
    let mut at: HashMap<(i32, i64), String> = HashMap::new();
    for (position, id) in records {
        first.entry(id.clone()).or_insert(position);
        at.insert(position, id);
    }
    let mut last: Option<((i32, i64), i64)> = None;
    let mut sent = BTreeSet::new();
    for entry in entries.iter_mut() {
        let Op::CountStock { event_id, quantity } = entry.request.clone() else {
            continue;
        };
        sent.insert(event_id.clone());
        let landed = first.get(&event_id).copied();
        match &entry.told {
            Told::Acknowledged(ack) => {
                findings.check(at.get(&ack.position) == Some(&event_id), Lost, || {
                    format!(
                        "count {event_id} acknowledged at {:?}, not there in the topic",
                        ack.position
                    )
                });
            }
            Told::Unknown(_) => entry.resolve(Found::of(usize::from(landed.is_some()))),
            Told::Refused(_) => {}
        }
        let Some(position) = landed else {
            continue;
        };
        findings.check(state.stock_counts.contains_key(&event_id), Lost, || {
            format!(
                "count {event_id} ({quantity}) reached the broker at {position:?}, never applied"
            )
        });
        if last.is_none_or(|(at, _)| position > at) {
            last = Some((position, quantity));
        }
    }
    for (position, id) in &at {
        findings.check(sent.contains(id), Unasked, || {
            format!("integration.stock {position:?}: count {id} no client sent")
        });
    }
    for (event_id, (sku, quantity)) in &state.stock_counts {
        findings.check(sent.contains(event_id) && sku == COUNT_SKU, Unasked, || {
            format!("count {event_id} ({sku} {quantity}) applied: no client sent it")
        });
    }
    let on_hand = last.map_or(INITIAL_STOCK, |(_, quantity)| quantity);
    figures
        .expected_stock
        .insert(COUNT_SKU.to_owned(), (on_hand, 0));
    let erp = state.erp_levels.get(COUNT_SKU).copied();
    findings.check(erp == Some((on_hand, 0)), Mismatched, || {
        format!(
            "{COUNT_SKU}: the ERP has (on hand, reserved) {erp:?}; the last count sent \
             (at {:?}) was {on_hand}",
            last.map(|l| l.0)
        )
    });
    level_mirrored(state, COUNT_SKU, on_hand, findings);
}

fn money(entries: &mut [Work], state: &EndState, orders: &Orders, findings: &mut Findings) {
    use Category::*;
    // Open balance = invoiced amounts told to clients - payments that took effect.
    let mut open: BTreeMap<String, i64> = BTreeMap::new();
    for (customer, amount) in orders.invoiced.values() {
        *open.entry(customer.clone()).or_default() += amount;
    }
    // Credit terms: the finance version a client was told is there.
    for entry in entries.iter() {
        if let (Op::SetCredit { customer }, Told::Acknowledged(ack)) = (&entry.request, &entry.told)
        {
            let version = state.erp_finance.get(customer).map(|f| f.1);
            findings.check(version >= Some(ack.version), Lost, || {
                format!(
                    "customer {customer}: credit terms acknowledged at finance version {}, the \
                     ERP is at {version:?}",
                    ack.version
                )
            });
        }
    }
    let mut references = BTreeSet::new();
    for entry in entries.iter_mut() {
        let Op::RecordPayment {
            customer,
            amount,
            reference,
        } = entry.request.clone()
        else {
            continue;
        };
        references.insert((customer.clone(), reference.clone()));
        let stored = state
            .payments
            .get(&(customer.clone(), reference.clone()))
            .copied();
        if let Some(stored) = stored {
            findings.check(stored == amount, Mismatched, || {
                format!("payment {reference}: {amount} paid, {stored} recorded")
            });
        }
        match &entry.told {
            Told::Acknowledged(_) => findings.check(stored.is_some(), Lost, || {
                format!("payment {reference} ({amount} from {customer}) acknowledged, not recorded")
            }),
            Told::Unknown(_) => entry.resolve(Found::of(usize::from(stored.is_some()))),
            Told::Refused(code) => findings.check(stored.is_none(), Unasked, || {
                format!("payment {reference} refused ({code:?}), yet recorded")
            }),
        }
        if entry.took_effect() {
            *open.entry(customer.clone()).or_default() -= amount;
        }
    }
    for ((customer, reference), amount) in &state.payments {
        findings.check(
            references.contains(&(customer.clone(), reference.clone())),
            Unasked,
            || format!("payment {reference} ({amount}) of {customer}: no client made it"),
        );
    }
    let customers: BTreeSet<&String> = open
        .keys()
        .chain(state.erp_finance.keys())
        .chain(state.crm_finance.keys())
        .collect();
    for customer in customers {
        let expected = open.get(customer).copied().unwrap_or_default();
        let erp = state.erp_finance.get(customer).copied();
        let crm = state.crm_finance.get(customer).copied();
        findings.check(erp.map_or(0, |f| f.0) == expected, Mismatched, || {
            format!(
                "customer {customer}: the ERP's open balance is {:?}; invoices told minus \
                 payments told make {expected}",
                erp.map(|f| f.0)
            )
        });
        findings.check(crm.map_or(0, |f| f.0) == expected, Mismatched, || {
            format!(
                "customer {customer}: the CRM shows an open balance of {:?}; expected {expected}",
                crm.map(|f| f.0)
            )
        });
        findings.check(
            crm.map(|f| f.1) == erp.map(|f| f.1).filter(|v| *v > 0),
            Mismatched,
            || {
                format!(
                    "customer {customer}: the CRM applied finance version {:?}, the ERP is at {:?}",
                    crm.map(|f| f.1),
                    erp.map(|f| f.1)
                )
            },
        );
    }
}

fn dead_letters(
    entries: &mut [Work],
    topics: &Topics,
    findings: &mut Findings,
    figures: &mut Figures,
) {
    use Category::*;
    // Every record of integration.orders (only bad messages go there), by payload: a retried
    // send may have landed twice, and each copy must be dead-lettered.
    let mut source: HashMap<(i32, i64), Vec<u8>> = HashMap::new();
    let mut landed: HashMap<Vec<u8>, Vec<(i32, i64)>> = HashMap::new();
    for record in &topics.integration_orders {
        let position = (record.partition, record.offset);
        source.insert(position, record.raw.clone());
        landed.entry(record.raw.clone()).or_default().push(position);
    }
    figures.sent_twice = landed.values().map(|p| p.len() - 1).sum();
    // The dead letters, by source position (a bridge killed after publishing one and before
    // storing the offset publishes it again).
    let mut dead: HashMap<(i32, i64), usize> = HashMap::new();
    figures.dead_letters = topics.dead_letters.len();
    for record in &topics.dead_letters {
        let from = (
            record.header("dlq.source_topic"),
            record
                .header("dlq.source_partition")
                .and_then(|p| p.parse().ok()),
            record
                .header("dlq.source_offset")
                .and_then(|o| o.parse().ok()),
        );
        match from {
            (Some("integration.orders"), Some(partition), Some(offset)) => {
                let position = (partition, offset);
                *dead.entry(position).or_default() += 1;
                findings.check(source.get(&position) == Some(&record.raw), Mismatched, || {
                    format!(
                        "dead letter of integration.orders {position:?} holds {:?}, the topic {:?}",
                        String::from_utf8_lossy(&record.raw),
                        source.get(&position).map(|r| String::from_utf8_lossy(r).into_owned())
                    )
                });
            }
            _ => findings.add(
                Unasked,
                format!(
                    "unexpected dead letter from {:?}: {:?} {:?}",
                    record.header("dlq.source_topic"),
                    record.header("dlq.reason"),
                    record.header("dlq.detail")
                ),
            ),
        }
    }
    figures.dead_lettered_again = dead.values().map(|n| n - 1).sum();
    let mut sent = BTreeSet::new();
    for entry in entries.iter_mut() {
        let Op::BadMessage { payload } = entry.request.clone() else {
            continue;
        };
        let bytes = payload.clone().into_bytes();
        let positions = landed.get(&bytes).cloned().unwrap_or_default();
        match &entry.told {
            Told::Acknowledged(ack) => {
                findings.check(positions.contains(&ack.position), Lost, || {
                    format!(
                        "bad message {payload:?} acknowledged at {:?}, not there in the topic",
                        ack.position
                    )
                })
            }
            Told::Unknown(_) => entry.resolve(Found::of(usize::from(!positions.is_empty()))),
            Told::Refused(_) => {}
        }
        for position in positions {
            findings.check(dead.contains_key(&position), Lost, || {
                format!("bad message {payload:?} at {position:?} not dead-lettered")
            });
        }
        sent.insert(bytes);
    }
    for (raw, positions) in &landed {
        findings.check(sent.contains(raw), Unasked, || {
            format!(
                "integration.orders {positions:?}: {:?} no client sent",
                String::from_utf8_lossy(raw)
            )
        });
    }
}
