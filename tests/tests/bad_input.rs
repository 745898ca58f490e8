//! Bad input never crashes a process and never blocks valid traffic: 1,050 bad integrator
//! messages of nine kinds (random bytes, invalid UTF-8, wrong schema, unknown types, huge
//! payloads, negative quantities, SQL-looking strings, a version that is no number, a valid
//! event on the wrong topic) on every integration topic, with valid messages on every topic in
//! between, each on the key (so the partition) of the bad message just before it.
//!
//! Every bad one is dead-lettered with its reason, key and source topic; every valid one has
//! its effect in both systems: each lead is in the CRM by its external ref with its exact name
//! and e-mail address (the newest version's) and mirrored in the ERP; each web-shop order is in
//! the CRM once and accepted (reserved) by the ERP once, with its lines and quoted prices; each
//! WMS count is in the ERP's ledger, and the last count per sku is its stock in the ERP and its
//! availability in the CRM. No process exits; all stay ready.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
    future::Future,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1::{self as erp, erp_service_client::ErpServiceClient},
    events::topics,
};
use tandem_tests::security::Authed;
use tandem_tests::{Stack, TestProducer, assert_valid_event, http_get, read_topic};

mod support;

use support::*;

const BAD: usize = 1_050;
/// Kinds of bad message (`bad_message`).
const BAD_KINDS: usize = 9;
/// Valid messages interleaved with the bad ones, per topic (plus `LEADS / 5` renames).
const LEADS: usize = 30;
const ORDERS: usize = 30;
const COUNTS: usize = 30;
/// Keys of the bad messages; every valid message reuses the key of the bad one before it.
const KEYS: usize = 7;
/// Customers the web-shop orders are for: the first half created in the CRM, the others
/// through `integration.customer.upserted`, before the bad traffic.
const BUYERS: usize = 6;
const ORDER_SKUS: [(&str, i64); 3] = [("ORD-A", 1_250), ("ORD-B", 399), ("ORD-C", 2_000)];
const ORDER_STOCK: i64 = 10_000;
/// Stock of each counted sku before its first count.
const COUNT_STOCK: i64 = 5;
const COUNT_PRICE: i64 = 100;
const SETTLE: Duration = Duration::from_secs(120);

fn key(k: usize) -> String {
    format!("k{k}")
}

/// The sku whose counts travel on key `k` (so all counts of one sku share a partition, and
/// the last one sent is the last one applied).
fn count_sku(k: usize) -> String {
    format!("CNT-{k}")
}

fn buyer_ref(b: usize) -> String {
    format!("buyer:{b}")
}

fn envelope(event_type: &str, aggregate_type: &str, id: &str, version: i64, data: Value) -> Value {
    json!({
        "id": uuid::Uuid::now_v7(), "type": event_type, "schema_version": 1, "source": "fuzz",
        "aggregate_type": aggregate_type, "aggregate_id": id, "aggregate_version": version,
        "occurred_at": "2026-11-26T10:00:00.000000Z", "data": data,
    })
}

fn customer_event(reference: &str, version: i64, name: &str, email: &str) -> Value {
    envelope(
        "integration.customer.upserted",
        "customer",
        reference,
        version,
        json!({"external_ref": reference, "display_name": name, "email": email}),
    )
}

/// The name and e-mail address of lead `n` at `version`.
fn lead_profile(n: usize, version: i64) -> (String, String) {
    match version {
        1 => (format!("Lead {n}"), format!("lead{n}@example.com")),
        v => (
            format!("Lead {n} (v{v})"),
            format!("lead{n}.v{v}@example.com"),
        ),
    }
}

/// A customer event of the bad kinds' own: any of them reaching the CRM is an extra customer.
fn bad_customer(n: usize) -> Value {
    let reference = format!("bad:{n}");
    customer_event(
        &reference,
        1,
        &format!("Bad {n}"),
        &format!("bad{n}@example.com"),
    )
}

/// (sku, quantity) of web-shop order `g`.
fn order_lines(g: usize) -> Vec<(&'static str, i64)> {
    let mut lines = vec![(ORDER_SKUS[0].0, 1 + (g % 3) as i64)];
    if g.is_multiple_of(2) {
        lines.push((ORDER_SKUS[1].0, 2));
    }
    if g.is_multiple_of(5) {
        lines.push((ORDER_SKUS[2].0, 1));
    }
    lines
}

fn order_ref(g: usize) -> String {
    format!("web-{g}")
}

fn order_event(g: usize) -> Value {
    let reference = order_ref(g);
    let lines: Vec<Value> = order_lines(g)
        .into_iter()
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
        .collect();
    envelope(
        "integration.order.placed",
        "order",
        &reference,
        1,
        json!({"order_ref": reference, "customer_external_ref": buyer_ref(g % BUYERS),
               "currency": "EUR", "lines": lines}),
    )
}

fn count_event(sku: &str, quantity: i64) -> Value {
    envelope(
        "integration.stock.counted",
        "product",
        sku,
        1,
        json!({"sku": sku, "warehouse": "MAIN", "counted_quantity": quantity}),
    )
}

/// One bad message, the topic it is sent to, and the dead-letter reason it must get.
fn bad_message(rng: &mut StdRng, n: usize) -> (&'static str, Vec<u8>, &'static str) {
    // Garbage goes to each topic in turn (each kind of it, round by round).
    let any_topic = [
        topics::INTEGRATION_CUSTOMERS,
        topics::INTEGRATION_ORDERS,
        topics::INTEGRATION_STOCK,
    ][(n / BAD_KINDS) % 3];
    let (payload, reason) = match n % BAD_KINDS {
        0 => (
            (0..rng.random_range(1..200))
                .map(|_| rng.random())
                .collect(),
            "unparseable",
        ),
        1 => (vec![0xff, 0xfe, b'{', 0xc3, 0x28, b'}'], "unparseable"),
        2 => {
            let mut event = bad_customer(n);
            event["data"]["email"] = json!("not-an-email");
            (event.to_string().into_bytes(), "schema_invalid")
        }
        3 => {
            let event = envelope(
                "integration.customer.teleported",
                "customer",
                "x",
                1,
                json!({}),
            );
            (event.to_string().into_bytes(), "unknown_type")
        }
        4 => {
            let mut event = bad_customer(n);
            event["data"]["display_name"] = json!("x".repeat(300_000));
            (event.to_string().into_bytes(), "schema_invalid")
        }
        5 => {
            // A negative count of a sku that is counted for real.
            let mut event = count_event(&count_sku(n % KEYS), 1);
            event["data"]["counted_quantity"] = json!(-(n as i64) - 1);
            (event.to_string().into_bytes(), "schema_invalid")
        }
        6 => {
            let mut event = order_event(n);
            event["data"]["order_ref"] = json!("1'); DROP TABLE orders; --");
            (event.to_string().into_bytes(), "schema_invalid")
        }
        7 => {
            let mut event = bad_customer(n);
            event["aggregate_version"] = json!("one");
            (event.to_string().into_bytes(), "unparseable")
        }
        _ => {
            // A valid customer event on the wrong topic.
            let event = bad_customer(n);
            return (
                topics::INTEGRATION_STOCK,
                event.to_string().into_bytes(),
                "unknown_type",
            );
        }
    };
    // Typed events go to their own topic; garbage anywhere.
    let topic = match reason {
        "unparseable" => any_topic,
        _ => {
            let event: Value = serde_json::from_slice(&payload).unwrap_or_default();
            match event["type"].as_str().unwrap_or_default() {
                "integration.order.placed" => topics::INTEGRATION_ORDERS,
                "integration.stock.counted" => topics::INTEGRATION_STOCK,
                _ => topics::INTEGRATION_CUSTOMERS,
            }
        }
    };
    (topic, payload, reason)
}

/// A valid message of the interleaved traffic.
#[derive(Debug, Clone, Copy)]
enum Valid {
    /// `integration.customer.upserted` of lead `n` at `version`.
    Lead { n: usize, version: i64 },
    /// `integration.order.placed` of web-shop order `g`.
    Order(usize),
    /// `integration.stock.counted`, the `c`-th count (of the sku of the key it travels on).
    Count(usize),
}

impl Valid {
    fn topic(self) -> &'static str {
        match self {
            Valid::Lead { .. } => topics::INTEGRATION_CUSTOMERS,
            Valid::Order(_) => topics::INTEGRATION_ORDERS,
            Valid::Count(_) => topics::INTEGRATION_STOCK,
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Valid::Lead { .. } => "integration.customer.upserted",
            Valid::Order(_) => "integration.order.placed",
            Valid::Count(_) => "integration.stock.counted",
        }
    }
}

/// The valid messages in sending order: a lead, an order and a count at a time, and every
/// fifth round a new version of the lead of four rounds before.
fn schedule() -> Vec<Valid> {
    let mut valid = Vec::new();
    for i in 0..LEADS.max(ORDERS).max(COUNTS) {
        if i < LEADS {
            valid.push(Valid::Lead { n: i, version: 1 });
        }
        if i < ORDERS {
            valid.push(Valid::Order(i));
        }
        if i < COUNTS {
            valid.push(Valid::Count(i));
        }
        if i % 5 == 4 && i < LEADS {
            valid.push(Valid::Lead {
                n: i - 4,
                version: 2,
            });
        }
    }
    valid
}

/// What differs between two maps: missing, extra and different entries.
fn diff<K: Ord + Debug, V: PartialEq + Debug>(
    expected: &BTreeMap<K, V>,
    got: &BTreeMap<K, V>,
) -> String {
    let mut lines = Vec::new();
    for (key, want) in expected {
        match got.get(key) {
            None => lines.push(format!("  missing {key:?}: expected {want:?}")),
            Some(have) if have != want => {
                lines.push(format!("  {key:?}: expected {want:?}, got {have:?}"));
            }
            Some(_) => {}
        }
    }
    for (key, have) in got {
        if !expected.contains_key(key) {
            lines.push(format!("  extra {key:?}: {have:?}"));
        }
    }
    lines.join("\n")
}

/// Polls `probe` until it answers `expected`; after [`SETTLE`], fails naming what differs.
async fn settle<K, V, F, Fut>(what: &str, expected: &BTreeMap<K, V>, mut probe: F)
where
    K: Ord + Debug,
    V: PartialEq + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<BTreeMap<K, V>, tonic::Status>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        let answer = probe().await;
        if answer.as_ref().is_ok_and(|got| got == expected) {
            return;
        }
        if Instant::now() > deadline {
            match answer {
                Ok(got) => panic!(
                    "{what}: not as expected after {SETTLE:?}:\n{}",
                    diff(expected, &got)
                ),
                Err(status) => panic!("{what}: still failing after {SETTLE:?}: {status}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every CRM customer: external ref -> (id, display name, e-mail address).
async fn crm_customers(mut crm: CrmServiceClient<Authed>) -> Result<Profiles, tonic::Status> {
    let mut customers = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = crm
            .list_customers(crm::ListCustomersRequest {
                page_size: 500,
                page_token,
                ..crm::ListCustomersRequest::default()
            })
            .await?
            .into_inner();
        for c in page.customers {
            let reference = match c.external_ref.as_str() {
                "" => format!("(no external ref) {}", c.id),
                reference => reference.to_owned(),
            };
            customers.insert(reference, (c.id, c.display_name, c.email));
        }
        if page.next_page_token.is_empty() {
            return Ok(customers);
        }
        page_token = page.next_page_token;
    }
}

/// Every ERP customer (the mirror): external ref -> (id, display name, e-mail address).
async fn erp_customers(mut erp: ErpServiceClient<Authed>) -> Result<Profiles, tonic::Status> {
    let mut customers = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .list_customers(erp::ListCustomersRequest {
                page_size: 500,
                page_token,
            })
            .await?
            .into_inner();
        for c in page.customers {
            let p = c.profile.unwrap_or_default();
            let reference = match p.external_ref.as_str() {
                "" => format!("(no external ref) {}", p.id),
                reference => reference.to_owned(),
            };
            customers.insert(reference, (p.id, p.display_name, p.email));
        }
        if page.next_page_token.is_empty() {
            return Ok(customers);
        }
        page_token = page.next_page_token;
    }
}

/// (sku, quantity, unit price) of order lines.
type Lines = Vec<(String, i64, i64)>;
/// External ref -> (id, display name, e-mail address).
type Profiles = BTreeMap<String, (String, String, String)>;
/// A CRM order: (customer id, status, fulfilment status, lines).
type CrmOrder = (String, crm::OrderStatus, crm::FulfilmentStatus, Lines);
/// An ERP sales order: (customer id, status, lines).
type ErpOrder = (String, erp::SalesOrderStatus, Lines);

/// Every CRM order, by external ref: one (customer id, status, fulfilment, lines) per order
/// with that ref (so an order placed twice shows twice).
async fn crm_orders(
    mut crm: CrmServiceClient<Authed>,
) -> Result<BTreeMap<String, Vec<CrmOrder>>, tonic::Status> {
    let mut orders: BTreeMap<String, Vec<CrmOrder>> = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = crm
            .list_orders(crm::ListOrdersRequest {
                page_size: 500,
                page_token,
                ..crm::ListOrdersRequest::default()
            })
            .await?
            .into_inner();
        for o in page.orders {
            let reference = match o.external_ref.as_str() {
                "" => format!("(no external ref) {}", o.id),
                reference => reference.to_owned(),
            };
            let fulfilment = o
                .fulfilment
                .as_ref()
                .map_or(crm::FulfilmentStatus::Unspecified, |f| f.status());
            let lines = o
                .lines
                .iter()
                .map(|l| {
                    let price = l.unit_price.as_ref().map_or(-1, |p| p.amount_minor);
                    (l.sku.clone(), l.quantity, price)
                })
                .collect();
            orders.entry(reference).or_default().push((
                o.customer_id.clone(),
                o.status(),
                fulfilment,
                lines,
            ));
        }
        if page.next_page_token.is_empty() {
            return Ok(orders);
        }
        page_token = page.next_page_token;
    }
}

/// CRM order id of each external ref (after [`crm_orders`] settled).
async fn crm_order_ids(
    mut crm: CrmServiceClient<Authed>,
) -> Result<BTreeMap<String, String>, tonic::Status> {
    let mut ids = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = crm
            .list_orders(crm::ListOrdersRequest {
                page_size: 500,
                page_token,
                ..crm::ListOrdersRequest::default()
            })
            .await?
            .into_inner();
        for o in page.orders {
            ids.insert(o.external_ref, o.id);
        }
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        page_token = page.next_page_token;
    }
}

/// Every ERP sales order, by CRM order id: one (customer id, status, lines) per sales order.
async fn erp_orders(
    mut erp: ErpServiceClient<Authed>,
) -> Result<BTreeMap<String, Vec<ErpOrder>>, tonic::Status> {
    let mut orders: BTreeMap<String, Vec<ErpOrder>> = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .list_sales_orders(erp::ListSalesOrdersRequest {
                page_size: 500,
                page_token,
                ..erp::ListSalesOrdersRequest::default()
            })
            .await?
            .into_inner();
        for o in page.orders {
            let lines = o
                .lines
                .iter()
                .map(|l| (l.sku.clone(), l.quantity, l.unit_price_minor))
                .collect();
            orders.entry(o.crm_order_id.clone()).or_default().push((
                o.customer_id.clone(),
                o.status(),
                lines,
            ));
        }
        if page.next_page_token.is_empty() {
            return Ok(orders);
        }
        page_token = page.next_page_token;
    }
}

/// ERP stock of warehouse MAIN: sku -> (on hand, reserved).
async fn erp_stock(
    mut erp: ErpServiceClient<Authed>,
) -> Result<BTreeMap<String, (i64, i64)>, tonic::Status> {
    let mut levels = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .list_stock_levels(erp::ListStockLevelsRequest {
                page_size: 500,
                page_token,
                warehouse: "MAIN".into(),
                ..erp::ListStockLevelsRequest::default()
            })
            .await?
            .into_inner();
        for l in page.levels {
            levels.insert(l.sku, (l.on_hand, l.reserved));
        }
        if page.next_page_token.is_empty() {
            return Ok(levels);
        }
        page_token = page.next_page_token;
    }
}

/// The ERP's COUNT ledger entries of each of `skus` in MAIN, oldest first: (reference, on hand
/// after the entry).
async fn erp_counts(
    mut erp: ErpServiceClient<Authed>,
    skus: Vec<String>,
) -> Result<BTreeMap<String, Vec<(String, i64)>>, tonic::Status> {
    let mut counts = BTreeMap::new();
    for sku in skus {
        let mut on_hand = 0;
        let mut entries = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = erp
                .list_stock_movements(erp::ListStockMovementsRequest {
                    page_size: 500,
                    page_token,
                    sku: sku.clone(),
                    warehouse: "MAIN".into(),
                    ..erp::ListStockMovementsRequest::default()
                })
                .await?
                .into_inner();
            for m in page.movements {
                on_hand += m.on_hand_delta;
                if m.adjustment_reason() == erp::AdjustmentReason::Count {
                    entries.push((m.reference, on_hand));
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        counts.insert(sku, entries);
    }
    Ok(counts)
}

/// The CRM's catalogue mirror: sku -> (price, available).
async fn crm_catalogue(
    mut crm: CrmServiceClient<Authed>,
) -> Result<BTreeMap<String, (i64, i64)>, tonic::Status> {
    let mut products = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = crm
            .list_products(crm::ListProductsRequest {
                page_size: 500,
                page_token,
                include_inactive: true,
            })
            .await?
            .into_inner();
        for p in page.products {
            let price = p.unit_price.as_ref().map_or(-1, |m| m.amount_minor);
            products.insert(p.sku, (price, p.available));
        }
        if page.next_page_token.is_empty() {
            return Ok(products);
        }
        page_token = page.next_page_token;
    }
}

/// The bridge's count of events of `event_type` handled with `outcome`.
fn handled(stack: &Stack, event_type: &str, outcome: &str) -> f64 {
    Stack::metric(
        stack.bridge_http,
        &format!(
            "tandem_bridge_events_applied_total{{type=\"{event_type}\",outcome=\"{outcome}\"}}"
        ),
    )
}

#[tokio::test]
async fn a_thousand_bad_messages_are_dead_lettered_and_every_valid_one_applies_on_every_topic() {
    let mut stack = Stack::start().await.unwrap();
    let (mut crm, mut erp) = clients(&stack).await;
    let producer = TestProducer::new(&stack.broker.brokers).unwrap();

    // ---- Before the bad traffic: products in the ERP (mirrored to the CRM's catalogue) and
    // the customers the web-shop orders are for, half created in the CRM and half through
    // the integration topic, each mirrored to the ERP and given credit there.
    let count_skus: Vec<String> = (0..KEYS).map(count_sku).collect();
    let mut catalogue = BTreeMap::new();
    for (sku, price) in ORDER_SKUS {
        stock_product(&mut erp, sku, price, ORDER_STOCK).await;
        catalogue.insert(sku.to_owned(), (price, ORDER_STOCK));
    }
    for sku in &count_skus {
        stock_product(&mut erp, sku, COUNT_PRICE, COUNT_STOCK).await;
        catalogue.insert(sku.clone(), (COUNT_PRICE, COUNT_STOCK));
    }
    let mut customers: BTreeMap<String, (String, String)> = BTreeMap::new();
    for b in 0..BUYERS {
        let (reference, name, email) = (
            buyer_ref(b),
            format!("Buyer {b}"),
            format!("buyer{b}@example.com"),
        );
        if b < BUYERS / 2 {
            crm.create_customer(crm::CreateCustomerRequest {
                request_id: String::new(),
                customer: Some(crm::Customer {
                    display_name: name.clone(),
                    email: email.clone(),
                    external_ref: reference.clone(),
                    ..crm::Customer::default()
                }),
            })
            .await
            .unwrap();
        } else {
            let event = customer_event(&reference, 1, &name, &email);
            assert_valid_event(&event);
            producer
                .send(
                    topics::INTEGRATION_CUSTOMERS,
                    Some(&reference),
                    event.to_string().as_bytes(),
                    &[],
                )
                .await
                .unwrap();
        }
        customers.insert(reference, (name, email));
    }
    settle("the catalogue in the CRM", &catalogue, || {
        crm_catalogue(crm.clone())
    })
    .await;
    let strip_ids = |all: Profiles| {
        all.into_iter()
            .map(|(reference, (_, name, email))| (reference, (name, email)))
            .collect::<BTreeMap<_, _>>()
    };
    settle("the buyers in the CRM", &customers, || async {
        crm_customers(crm.clone()).await.map(strip_ids)
    })
    .await;
    let buyers = crm_customers(crm.clone()).await.unwrap();
    for (id, _, _) in buyers.values() {
        erp_has_customer(&erp, id).await;
        set_credit(&mut erp, id).await;
    }

    // ---- The bad traffic, with the valid messages spread evenly between the bad ones.
    let mut rng = StdRng::seed_from_u64(6);
    let valid = schedule();
    let mut next_valid = 0;
    let mut last_bad_key: BTreeMap<&str, usize> = BTreeMap::new();
    // (topic, partition) -> offsets of the bad messages, and of the valid ones.
    let mut bad_at: BTreeMap<(&str, i32), Vec<i64>> = BTreeMap::new();
    let mut valid_at: BTreeMap<(&str, i32), Vec<i64>> = BTreeMap::new();
    let mut expected_dead: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut reasons_sent: BTreeMap<&str, usize> = BTreeMap::new();
    let mut sent_per_type: BTreeMap<&str, usize> = BTreeMap::new();
    let mut lead_versions: BTreeMap<usize, i64> = BTreeMap::new();
    let mut counts: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for n in 0..BAD {
        let (topic, payload, reason) = bad_message(&mut rng, n);
        let k = n % KEYS;
        let (partition, offset) = producer
            .send(topic, Some(&key(k)), &payload, &[])
            .await
            .unwrap();
        bad_at.entry((topic, partition)).or_default().push(offset);
        *expected_dead
            .entry((topic.to_owned(), key(k), reason.to_owned()))
            .or_insert(0) += 1;
        *reasons_sent.entry(reason).or_insert(0) += 1;
        last_bad_key.insert(topic, k);
        while next_valid < valid.len() && n * valid.len() >= next_valid * BAD {
            let message = valid[next_valid];
            // On the key of the last bad message of its topic: the same partition, after it.
            let Some(&k) = last_bad_key.get(message.topic()) else {
                break;
            };
            let event = match message {
                Valid::Lead { n: lead, version } => {
                    let (name, email) = lead_profile(lead, version);
                    let newest = lead_versions.entry(lead).or_insert(version);
                    *newest = (*newest).max(version);
                    customer_event(&format!("lead:{lead}"), version, &name, &email)
                }
                Valid::Order(g) => order_event(g),
                Valid::Count(c) => {
                    let sku = count_sku(k);
                    // Strictly increasing, so every count changes on hand.
                    let quantity = 1_000 + 7 * c as i64;
                    let event = count_event(&sku, quantity);
                    let id = event["id"].as_str().unwrap().to_owned();
                    counts.entry(sku).or_default().push((id, quantity));
                    event
                }
            };
            assert_valid_event(&event);
            let (partition, offset) = producer
                .send(
                    message.topic(),
                    Some(&key(k)),
                    event.to_string().as_bytes(),
                    &[],
                )
                .await
                .unwrap();
            valid_at
                .entry((message.topic(), partition))
                .or_default()
                .push(offset);
            *sent_per_type.entry(message.event_type()).or_insert(0) += 1;
            next_valid += 1;
        }
    }
    assert_eq!(next_valid, valid.len(), "every valid message was sent");

    // Every valid message follows a bad one in its partition, and on every topic the valid
    // messages reach every partition the bad ones do.
    for ((topic, partition), offsets) in &valid_at {
        let first_bad = bad_at
            .get(&(*topic, *partition))
            .and_then(|bad| bad.iter().min())
            .copied();
        assert!(
            offsets.iter().all(|o| first_bad.is_some_and(|b| b < *o)),
            "a valid message on {topic}[{partition}] precedes every bad one there"
        );
    }
    for topic in [
        topics::INTEGRATION_CUSTOMERS,
        topics::INTEGRATION_ORDERS,
        topics::INTEGRATION_STOCK,
    ] {
        let partitions = |at: &BTreeMap<(&str, i32), Vec<i64>>| -> BTreeSet<i32> {
            at.keys()
                .filter(|(t, _)| *t == topic)
                .map(|(_, p)| *p)
                .collect()
        };
        let sent = |at: &BTreeMap<(&str, i32), Vec<i64>>| -> usize {
            at.iter()
                .filter(|((t, _), _)| *t == topic)
                .map(|(_, offsets)| offsets.len())
                .sum()
        };
        println!(
            "{topic}: {} bad and {} valid messages, valid ones on partitions {:?}",
            sent(&bad_at),
            sent(&valid_at),
            partitions(&valid_at)
        );
        assert_eq!(
            partitions(&valid_at),
            partitions(&bad_at),
            "valid messages on every partition of {topic} that holds bad ones"
        );
    }

    // ---- Every lead in the CRM by its external ref, with the newest version's name and
    // e-mail address, and nothing else (no bad message made a customer).
    for (n, version) in &lead_versions {
        customers.insert(format!("lead:{n}"), lead_profile(*n, *version));
    }
    assert_eq!(customers.len(), BUYERS + LEADS);
    settle("the leads and buyers in the CRM", &customers, || async {
        crm_customers(crm.clone()).await.map(strip_ids)
    })
    .await;
    // ...and each mirrored to the ERP, under the CRM's id.
    let in_crm = crm_customers(crm.clone()).await.unwrap();
    settle("the leads and buyers mirrored in the ERP", &in_crm, || {
        erp_customers(erp.clone())
    })
    .await;

    // ---- Every web-shop order in the CRM once, submitted, for its buyer, quoted from the
    // catalogue, and reserved by the ERP...
    let prices: BTreeMap<&str, i64> = ORDER_SKUS.into_iter().collect();
    let quoted = |g: usize| -> Lines {
        order_lines(g)
            .into_iter()
            .map(|(sku, quantity)| (sku.to_owned(), quantity, prices[sku]))
            .collect()
    };
    let expected_crm_orders: BTreeMap<String, Vec<_>> = (0..ORDERS)
        .map(|g| {
            let buyer = in_crm[&buyer_ref(g % BUYERS)].0.clone();
            (
                order_ref(g),
                vec![(
                    buyer,
                    crm::OrderStatus::Submitted,
                    crm::FulfilmentStatus::Reserved,
                    quoted(g),
                )],
            )
        })
        .collect();
    settle(
        "each web-shop order once in the CRM, reserved",
        &expected_crm_orders,
        || crm_orders(crm.clone()),
    )
    .await;
    // ...accepted once by the ERP, with its lines.
    let order_ids = crm_order_ids(crm.clone()).await.unwrap();
    let expected_erp_orders: BTreeMap<String, Vec<_>> = (0..ORDERS)
        .map(|g| {
            let buyer = in_crm[&buyer_ref(g % BUYERS)].0.clone();
            (
                order_ids[&order_ref(g)].clone(),
                vec![(buyer, erp::SalesOrderStatus::Reserved, quoted(g))],
            )
        })
        .collect();
    settle(
        "each web-shop order accepted once by the ERP",
        &expected_erp_orders,
        || erp_orders(erp.clone()),
    )
    .await;

    // ---- Every count in the ERP's ledger in the order sent; the last count per sku is its
    // stock in the ERP and its availability in the CRM. The ordered skus are reserved once
    // per order line.
    let mut ordered: BTreeMap<&str, i64> = BTreeMap::new();
    for g in 0..ORDERS {
        for (sku, quantity) in order_lines(g) {
            *ordered.entry(sku).or_insert(0) += quantity;
        }
    }
    let ledger: BTreeMap<String, Vec<(String, i64)>> = count_skus
        .iter()
        .map(|sku| (sku.clone(), counts.get(sku).cloned().unwrap_or_default()))
        .collect();
    settle("every count in the ERP's ledger", &ledger, || {
        erp_counts(erp.clone(), count_skus.clone())
    })
    .await;
    let last_count = |sku: &String| counts.get(sku).and_then(|c| c.last()).map(|(_, q)| *q);
    let mut levels = BTreeMap::new();
    let mut catalogue = BTreeMap::new();
    for sku in &count_skus {
        let on_hand = last_count(sku).unwrap_or(COUNT_STOCK);
        levels.insert(sku.clone(), (on_hand, 0));
        catalogue.insert(sku.clone(), (COUNT_PRICE, on_hand));
    }
    for (sku, price) in ORDER_SKUS {
        levels.insert(sku.to_owned(), (ORDER_STOCK, ordered[sku]));
        catalogue.insert(sku.to_owned(), (price, ORDER_STOCK - ordered[sku]));
    }
    settle("stock levels in the ERP", &levels, || {
        erp_stock(erp.clone())
    })
    .await;
    settle("availability in the CRM", &catalogue, || {
        crm_catalogue(crm.clone())
    })
    .await;
    assert!(
        count_skus.iter().all(|sku| counts.contains_key(sku)),
        "every counted sku got counts: {:?}",
        counts.keys()
    );

    // ---- Every bad message is in the dead-letter topic, with the reason it deserves, its
    // key and its source topic; nothing else is.
    let dead = read_topic(
        &stack.broker.brokers,
        topics::DEAD_LETTER,
        BAD,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let mut got_dead: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for record in &dead {
        assert!(
            record.header("dlq.detail").is_some_and(|d| !d.is_empty()),
            "a dead letter without detail: {:?}",
            record.headers
        );
        *got_dead
            .entry((
                record
                    .header("dlq.source_topic")
                    .unwrap_or("none")
                    .to_owned(),
                record.key.clone().unwrap_or_default(),
                record.header("dlq.reason").unwrap_or("none").to_owned(),
            ))
            .or_insert(0) += 1;
    }
    assert_eq!(
        dead.len(),
        BAD,
        "exactly the bad messages are dead-lettered:\n{}",
        diff(&expected_dead, &got_dead)
    );
    assert!(
        got_dead == expected_dead,
        "dead letters (source topic, key, reason) differ from the bad messages sent:\n{}",
        diff(&expected_dead, &got_dead)
    );

    // ---- No process exited; each is still ready.
    for process in [&mut stack.crm, &mut stack.erp, &mut stack.bridge] {
        if let Some(status) = process.wait_exit(Duration::ZERO).unwrap() {
            panic!("{} exited during the test ({status})", process.name);
        }
    }
    for addr in [stack.crm_http, stack.erp_http, stack.bridge_http] {
        let (status, body) = http_get(addr, "/readyz").unwrap();
        assert_eq!(status, 200, "{addr}/readyz: {body}");
    }
    // ---- The bridge counted the same: every bad message dead-lettered, every valid one
    // handled once (a lead's older version arriving after its newer one is unchanged).
    assert_eq!(
        Stack::metric(
            stack.bridge_http,
            "tandem_bridge_events_dead_lettered_total"
        ),
        BAD as f64
    );
    let setup_upserts = BUYERS - BUYERS / 2;
    for (event_type, sent) in &sent_per_type {
        let setup = if *event_type == "integration.customer.upserted" {
            setup_upserts
        } else {
            0
        };
        assert_eq!(
            handled(&stack, event_type, "applied") + handled(&stack, event_type, "unchanged"),
            (sent + setup) as f64,
            "{event_type} events handled"
        );
    }
    for event_type in ["integration.order.placed", "integration.stock.counted"] {
        assert_eq!(
            handled(&stack, event_type, "applied"),
            sent_per_type[event_type] as f64,
            "{event_type} events applied"
        );
    }

    println!(
        "bad_input: {BAD} bad messages of {BAD_KINDS} kinds ({reasons_sent:?}) dead-lettered; \
         {} valid ones between them applied in both systems ({sent_per_type:?}): {LEADS} leads \
         ({} of them renamed), {ORDERS} orders, {COUNTS} counts of {} skus; \
         {} buyers set up before",
        valid.len(),
        valid
            .iter()
            .filter(|v| matches!(v, Valid::Lead { version: 2, .. }))
            .count(),
        counts.len(),
        BUYERS
    );
}
