//! Bad input never crashes a process and never blocks valid traffic: 1,000+ bad integrator
//! messages (random bytes, invalid UTF-8, wrong schema, unknown types, huge payloads, negative
//! quantities, SQL-looking strings) interleaved with valid ones, on every integration topic.
//! Every bad one is dead-lettered with a reason; every valid one is applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tandem_proto::{crm::v1 as crm, events::topics};
use tandem_tests::{Stack, TestProducer, eventually, read_topic};

mod support;

use support::*;

const BAD: usize = 1_050;
const GOOD: usize = 60;

fn envelope(event_type: &str, id: &str, data: Value) -> Value {
    json!({
        "id": uuid::Uuid::now_v7(), "type": event_type, "schema_version": 1, "source": "fuzz",
        "aggregate_type": "customer", "aggregate_id": id, "aggregate_version": 1,
        "occurred_at": "2026-11-26T10:00:00.000000Z", "data": data,
    })
}

fn good_customer(n: usize) -> Value {
    let reference = format!("lead:{n}");
    envelope(
        "integration.customer.upserted",
        &reference,
        json!({"external_ref": reference, "display_name": format!("Lead {n}"),
               "email": format!("lead{n}@example.com")}),
    )
}

/// One bad message, the topic it is sent to, and the dead-letter reason it must get.
fn bad_message(rng: &mut StdRng, n: usize) -> (&'static str, Vec<u8>, &'static str) {
    let any_topic = [
        topics::INTEGRATION_CUSTOMERS,
        topics::INTEGRATION_ORDERS,
        topics::INTEGRATION_STOCK,
    ][n % 3];
    let (payload, reason) = match n % 9 {
        0 => (
            (0..rng.random_range(1..200))
                .map(|_| rng.random())
                .collect(),
            "unparseable",
        ),
        1 => (vec![0xff, 0xfe, b'{', 0xc3, 0x28, b'}'], "unparseable"),
        2 => {
            let mut event = good_customer(n);
            event["data"]["email"] = json!("not-an-email");
            (event.to_string().into_bytes(), "schema_invalid")
        }
        3 => {
            let event = envelope("integration.customer.teleported", "x", json!({}));
            (event.to_string().into_bytes(), "unknown_type")
        }
        4 => {
            let mut event = good_customer(n);
            event["data"]["display_name"] = json!("x".repeat(300_000));
            (event.to_string().into_bytes(), "schema_invalid")
        }
        5 => {
            let event = envelope(
                "integration.stock.counted",
                "SKU",
                json!({"sku": "SKU", "warehouse": "MAIN", "counted_quantity": -(n as i64) - 1}),
            );
            (event.to_string().into_bytes(), "schema_invalid")
        }
        6 => {
            let event = envelope(
                "integration.order.placed",
                "o",
                json!({"order_ref": "1'); DROP TABLE orders; --", "customer_external_ref": "c",
                       "currency": "EUR", "lines": [{"sku": "A", "quantity": 1}]}),
            );
            (event.to_string().into_bytes(), "schema_invalid")
        }
        7 => {
            let mut event = good_customer(n);
            event["aggregate_version"] = json!("one");
            (event.to_string().into_bytes(), "unparseable")
        }
        _ => {
            // A valid customer event on the wrong topic.
            let event = good_customer(n);
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

#[tokio::test]
async fn a_thousand_bad_messages_are_dead_lettered_and_every_valid_one_applies() {
    let stack = Stack::start().await.unwrap();
    let (crm, _) = clients(&stack).await;
    let mut rng = StdRng::seed_from_u64(6);
    let producer = TestProducer::new(&stack.broker.brokers).unwrap();
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let mut good = 0;
    for n in 0..BAD {
        let (topic, payload, reason) = bad_message(&mut rng, n);
        *expected.entry(reason).or_insert(0) += 1;
        producer
            .send(topic, Some(&format!("k{}", n % 7)), &payload, &[])
            .await
            .unwrap();
        if n % (BAD / GOOD) == 0 && good < GOOD {
            let event = good_customer(good);
            producer
                .send(
                    topics::INTEGRATION_CUSTOMERS,
                    Some(&format!("k{}", n % 7)),
                    event.to_string().as_bytes(),
                    &[],
                )
                .await
                .unwrap();
            good += 1;
        }
    }
    assert_eq!(good, GOOD);

    // Every valid customer reached the CRM (and so passed between the bad ones).
    eventually(
        Duration::from_secs(60),
        "every valid lead in the CRM",
        || {
            let mut crm = crm.clone();
            async move {
                let mut count = 0;
                let mut token = String::new();
                loop {
                    let page = crm
                        .list_customers(crm::ListCustomersRequest {
                            page_size: 500,
                            page_token: token,
                            ..crm::ListCustomersRequest::default()
                        })
                        .await
                        .ok()?
                        .into_inner();
                    count += page.customers.len();
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
                (count == GOOD).then_some(())
            }
        },
    )
    .await
    .unwrap();

    // Every bad one is in the dead-letter topic, with the reason it deserves.
    let dead = read_topic(
        &stack.broker.brokers,
        topics::DEAD_LETTER,
        BAD,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(
        dead.len(),
        BAD,
        "exactly the bad messages are dead-lettered"
    );
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &dead {
        *reasons
            .entry(record.header("dlq.reason").unwrap_or("none"))
            .or_insert(0) += 1;
        assert!(record.header("dlq.detail").is_some_and(|d| !d.is_empty()));
    }
    assert_eq!(reasons, expected);

    // No process crashed.
    for process in [&stack.crm, &stack.erp, &stack.bridge] {
        assert!(process.pid().is_some());
    }
    for addr in [stack.crm_http, stack.erp_http, stack.bridge_http] {
        assert_eq!(tandem_tests::http_get(addr, "/readyz").unwrap().0, 200);
    }
}
