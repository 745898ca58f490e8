//! The bridge on the real stack: duplicates, versions out of order, poison messages and
//! unknown types between good events, an ERP outage in the middle of the flow, a
//! self-assigned bridge killed and restarted, and a bridge woken from its rest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tandem_proto::{crm::v1 as crm, erp::v1 as erp, events::topics};
use tandem_tests::{
    Stack, StackOptions, TestBroker, eventually,
    evidence::{
        BRIDGE_GROUP, positions_after, read_until_markers, settled, wait_caught_up, wait_committed,
    },
    produce,
};
use tonic::Code;

mod support;

use support::{WAIT, tandemctl};

/// The `N dead letter(s) shown` count of a `dlq list` output.
fn shown(listing: &str) -> usize {
    listing
        .lines()
        .find_map(|line| line.split_once(" dead letter(s) shown")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no count in:\n{listing}"))
}

fn customer_event(id: &str, version: i64, name: &str) -> Value {
    json!({
        "id": uuid::Uuid::now_v7(),
        "type": "crm.customer.upserted",
        "schema_version": 1,
        "source": "crm",
        "aggregate_type": "customer",
        "aggregate_id": id,
        "aggregate_version": version,
        "occurred_at": "2026-11-26T10:00:00.000000Z",
        "data": {
            "customer_id": id,
            "display_name": name,
            "email": "someone@example.com",
            "phone": null,
            "tax_id": null,
            "status": "ACTIVE",
            "external_ref": null
        }
    })
}

async fn publish(stack: &Stack, key: &str, event: &Value) -> (i32, i64) {
    produce(
        &stack.broker.brokers,
        topics::CRM_CUSTOMERS,
        Some(key),
        event.to_string().as_bytes(),
        &[],
    )
    .await
    .unwrap()
}

/// The ERP's copy of customer `id` once it has `version`.
async fn mirrored(stack: &Stack, id: &str, version: i64) -> erp::Customer {
    let client = stack.erp_client().await.unwrap();
    eventually(
        Duration::from_secs(20),
        &format!("{id} v{version} in the ERP"),
        || {
            let mut client = client.clone();
            let request = erp::GetCustomerRequest { id: id.to_owned() };
            async move {
                match client.get_customer(request).await {
                    Ok(r) if r.get_ref().profile_version == version => Some(r.into_inner()),
                    Ok(_) => None,
                    Err(s) if s.code() == Code::NotFound => None,
                    Err(s) => panic!("GetCustomer: {s}"),
                }
            }
        },
    )
    .await
    .unwrap()
}

fn name_of(customer: &erp::Customer) -> &str {
    &customer.profile.as_ref().unwrap().display_name
}

/// tansu keeps every record's headers in a table of its own, which it creates without an
/// index; a fetch then scanned every header stored for each record it returned, and a broker
/// holding 30,000 events (each with its `traceparent` header) stalled the bridge. The kit
/// indexes the table when it starts tansu (`scripts/tansu_index.py`).
#[tokio::test]
async fn the_test_broker_finds_a_records_headers_by_index() {
    let broker = TestBroker::start().await.unwrap();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    broker
        .kafka_settings()
        .ensure_topics(&["headers.indexed"])
        .await
        .unwrap();
    let (partition, offset) = produce(
        &broker.brokers,
        "headers.indexed",
        Some("k"),
        b"{}",
        &[("traceparent", traceparent)],
    )
    .await
    .unwrap();
    let record = format!(
        "FROM header WHERE topition = \
         (SELECT p.id FROM topition p JOIN topic t ON t.id = p.topic \
          WHERE t.name = 'headers.indexed' AND p.partition = {partition}) AND offset_id = {offset}"
    );
    let query = |sql: String| {
        let output = std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys; \
                 print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall())",
            ])
            .arg(broker.store())
            .arg(sql)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(
        query(format!("SELECT CAST(k AS TEXT), CAST(v AS TEXT) {record}")).trim(),
        format!("[('traceparent', '{traceparent}')]"),
        "the record's one header"
    );
    let plan = query(format!("EXPLAIN QUERY PLAN SELECT k, v {record}"));
    assert!(
        plan.contains("SEARCH header USING INDEX tandem_header_record"),
        "tansu's headers are looked up without the index: {plan}"
    );
}

#[tokio::test]
async fn duplicates_and_stale_versions_change_nothing() {
    let stack = Stack::start().await.unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let v2 = customer_event(&id, 2, "Second");
    // v2 first, then v1 (stale), then v2 again (duplicate), then v3.
    publish(&stack, &id, &v2).await;
    publish(&stack, &id, &customer_event(&id, 1, "First")).await;
    publish(&stack, &id, &v2).await;
    publish(&stack, &id, &customer_event(&id, 3, "Third")).await;

    let customer = mirrored(&stack, &id, 3).await;
    assert_eq!(name_of(&customer), "Third");
    // The bridge committed the offset after the fourth event: all four were handled, so the
    // counters are final.
    settled(&stack, WAIT).await.unwrap();
    let counter = |outcome: &str| {
        Stack::metric(
            stack.bridge_http,
            &format!(
                "tandem_bridge_events_applied_total{{type=\"crm.customer.upserted\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(
        (counter("applied"), counter("unchanged")),
        (2.0, 2.0),
        "v2 and v3 applied; stale v1 and duplicate v2 unchanged"
    );
}

#[tokio::test]
async fn poison_between_good_events_is_dead_lettered_and_the_partition_moves_on() {
    let stack = Stack::start().await.unwrap();
    let key = "one-partition";
    let (a, b) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let (partition, first) = publish(&stack, key, &customer_event(&a, 1, "Before")).await;
    let event = customer_event(&a, 2, "x").to_string();
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"\xff\xfe not json".to_vec(), "unparseable"),
        (br#"{"id":"x"}"#.to_vec(), "unparseable"),
        (
            event
                .replace("crm.customer.upserted", "crm.customer.teleported")
                .into_bytes(),
            "unknown_type",
        ),
        (
            event.replace("\"ACTIVE\"", "\"SLEEPING\"").into_bytes(),
            "schema_invalid",
        ),
    ];
    for (payload, _) in &bad {
        produce(
            &stack.broker.brokers,
            topics::CRM_CUSTOMERS,
            Some(key),
            payload,
            &[("traceparent", "garbage")],
        )
        .await
        .unwrap();
    }
    publish(&stack, key, &customer_event(&b, 1, "After")).await;

    assert_eq!(name_of(&mirrored(&stack, &a, 1).await), "Before");
    assert_eq!(name_of(&mirrored(&stack, &b, 1).await), "After");

    // The bridge committed past "After" (so every dead letter before it was acknowledged), then
    // markers bound the dead-letter topic: what precedes them is all it holds.
    settled(&stack, WAIT).await.unwrap();
    let dead = read_until_markers(&stack.broker.brokers, topics::DEAD_LETTER)
        .await
        .unwrap();
    assert_eq!(
        dead.len(),
        bad.len(),
        "exactly the bad records are dead-lettered: {dead:#?}"
    );
    for (i, (record, (_, reason))) in dead.iter().zip(bad.iter()).enumerate() {
        assert_eq!(record.header("dlq.reason"), Some(*reason), "record {i}");
        assert_eq!(
            record.header("dlq.source_topic"),
            Some(topics::CRM_CUSTOMERS)
        );
        assert_eq!(
            record.header("dlq.source_partition"),
            Some(partition.to_string().as_str())
        );
        assert_eq!(
            record.header("dlq.source_offset"),
            Some((first + 1 + i as i64).to_string().as_str())
        );
        assert!(record.header("dlq.detail").is_some_and(|d| !d.is_empty()));
        assert_eq!(record.key.as_deref(), Some(key));
        assert_eq!(record.raw, bad[i].0, "payload kept as it was");
        assert_eq!(
            record.header("traceparent"),
            Some("garbage"),
            "original headers kept"
        );
    }
}

#[tokio::test]
async fn an_erp_outage_delays_but_loses_nothing() {
    let mut stack = Stack::start().await.unwrap();
    stack.erp.kill();
    let id = uuid::Uuid::now_v7().to_string();
    publish(&stack, &id, &customer_event(&id, 1, "Patient")).await;
    // The bridge retries while the ERP is down...
    eventually(Duration::from_secs(20), "a retry", || async {
        (Stack::metric(stack.bridge_http, "tandem_bridge_events_retried_total") > 0.0).then_some(())
    })
    .await
    .unwrap();
    // ...and applies the event once it is back.
    stack.erp.start().unwrap();
    tandem_tests::wait_ready(stack.erp_http, Duration::from_secs(20)).unwrap();
    assert_eq!(name_of(&mirrored(&stack, &id, 1).await), "Patient");
    assert_eq!(
        Stack::metric(
            stack.bridge_http,
            "tandem_bridge_events_dead_lettered_total"
        ),
        0.0
    );
}

/// `consumer.assignment = all`: the bridge takes every partition itself and commits its
/// offsets for the group, so after a SIGKILL it resumes where it committed (nothing already
/// applied comes back) and needs no group coordinator to get its partitions again.
#[tokio::test]
async fn a_self_assigned_bridge_resumes_from_its_committed_offsets_after_a_kill() {
    let mut stack = Stack::start_with(StackOptions {
        bridge_env: vec![
            ("BRIDGE__CONSUMER__ASSIGNMENT".into(), "all".into()),
            ("BRIDGE__CONSUMER__COMMIT_INTERVAL_MS".into(), "100".into()),
        ],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let handled = |stack: &Stack| {
        ["applied", "unchanged"]
            .iter()
            .map(|outcome| {
                Stack::metric(
                    stack.bridge_http,
                    &format!(
                        "tandem_bridge_events_applied_total{{type=\"crm.customer.upserted\",outcome=\"{outcome}\"}}"
                    ),
                )
            })
            .sum::<f64>()
    };
    let before: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let mut published = Vec::new();
    for id in &before {
        published.push(publish(&stack, id, &customer_event(id, 1, "Before")).await);
    }
    for id in &before {
        mirrored(&stack, id, 1).await;
    }
    assert_eq!(handled(&stack), 3.0);
    // The group's committed offsets, read back from the broker, are past all three events.
    wait_committed(
        &stack.broker.brokers,
        BRIDGE_GROUP,
        &positions_after(topics::CRM_CUSTOMERS, &published),
        WAIT,
    )
    .await
    .unwrap();

    stack.bridge.kill();
    stack.bridge.start().unwrap();
    tandem_tests::wait_ready(stack.bridge_http, Duration::from_secs(20)).unwrap();
    let after = uuid::Uuid::now_v7().to_string();
    publish(&stack, &after, &customer_event(&after, 1, "After")).await;
    assert_eq!(name_of(&mirrored(&stack, &after, 1).await), "After");
    // Every partition committed to its end: anything the restarted bridge re-read (on other
    // partitions than "After") has been handled and counted by now.
    wait_caught_up(
        &stack.broker.brokers,
        BRIDGE_GROUP,
        &[topics::CRM_CUSTOMERS],
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(
        handled(&stack),
        1.0,
        "the restarted bridge handled only the new event, none of the committed ones"
    );
}

/// A backlog of one partition well past the pause threshold (2,000 received events): the
/// partition is paused while its worker catches up, resumed, and every event is applied.
#[tokio::test]
async fn a_backlog_past_the_pause_threshold_drains_completely() {
    const EVENTS: usize = 5_000;
    let mut stack = Stack::start_with(StackOptions {
        bridge_env: vec![("BRIDGE__CONSUMER__ASSIGNMENT".into(), "all".into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    stack.bridge.kill();
    let producer = tandem_tests::TestProducer::new(&stack.broker.brokers).unwrap();
    let events: Vec<Value> = (0..EVENTS)
        .map(|n| {
            let id = uuid::Uuid::now_v7().to_string();
            customer_event(&id, 1, &format!("Backlog {n}"))
        })
        .collect();
    let payloads: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
    for chunk in payloads.chunks(500) {
        // One key: every event in the same partition.
        futures::future::try_join_all(
            chunk
                .iter()
                .map(|p| producer.send(topics::CRM_CUSTOMERS, Some("one-partition"), p, &[])),
        )
        .await
        .unwrap();
    }
    stack.bridge.start().unwrap();
    tandem_tests::wait_ready(stack.bridge_http, Duration::from_secs(20)).unwrap();
    let db = stack.erp_db.connect().await.unwrap();
    let db = tokio::sync::Mutex::new(db);
    let applied = eventually(
        Duration::from_secs(120),
        "the whole backlog applied",
        || async {
            let mut db = db.lock().await;
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
                .fetch_one(&mut *db)
                .await
                .unwrap();
            (count >= EVENTS as i64).then_some(count)
        },
    )
    .await
    .unwrap();
    assert_eq!(applied, EVENTS as i64);
    let log = stack.bridge.output();
    assert!(
        log.contains("partition paused") && log.contains("partition resumed"),
        "the backlog went through a pause and a resume"
    );
}

/// Waits until `tandem_bridge_resting` says the bridge rests (`true`) or fetches.
async fn resting(stack: &Stack, want: bool) {
    let addr = stack.bridge_http;
    let what = if want {
        "the bridge resting"
    } else {
        "the bridge fetching"
    };
    eventually(Duration::from_secs(20), what, || async move {
        let value = Stack::metric(addr, "tandem_bridge_resting ");
        ((value == 1.0) == want).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_resting_bridge_wakes_for_the_first_event_and_loses_none_of_a_burst() {
    let stack = Stack::start_with(StackOptions {
        bridge_env: vec![("BRIDGE__CONSUMER__REST_AFTER_MS".into(), "500".into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    resting(&stack, true).await;

    // One event while every partition is paused: only the check of the ends can wake the
    // bridge for it.
    let first = uuid::Uuid::now_v7().to_string();
    publish(
        &stack,
        &first,
        &customer_event(&first, 1, "First after quiet"),
    )
    .await;
    mirrored(&stack, &first, 1).await;
    resting(&stack, true).await;

    // A burst over every partition, two versions per customer, each acknowledged.
    let producer = tandem_tests::TestProducer::new(&stack.broker.brokers).unwrap();
    let ids: Vec<String> = (0..300).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for version in 1..=2 {
        let payloads: Vec<(String, Vec<u8>)> = ids
            .iter()
            .map(|id| {
                let event = customer_event(id, version, &format!("Burst v{version}"));
                (id.clone(), event.to_string().into_bytes())
            })
            .collect();
        futures::future::try_join_all(
            payloads
                .iter()
                .map(|(id, payload)| producer.send(topics::CRM_CUSTOMERS, Some(id), payload, &[])),
        )
        .await
        .unwrap();
    }
    for id in &ids {
        assert_eq!(name_of(&mirrored(&stack, id, 2).await), "Burst v2");
    }
    // Caught up, it rests again.
    resting(&stack, true).await;
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_once_with_a_loop_guard_and_resolved() {
    let stack = Stack::start().await.unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    // A schema-invalid event, published with the CLI (unchecked, on purpose).
    let mut bad = customer_event(&id, 1, "Bad");
    bad["data"]["status"] = json!("SLEEPING");
    let file = std::env::temp_dir().join(format!("tandem-bad-{id}.json"));
    std::fs::write(&file, bad.to_string()).unwrap();
    let file = file.to_str().unwrap();
    let refused = std::process::Command::new(tandem_tests::binary("tandemctl"))
        .args([
            "--brokers",
            &stack.broker.brokers,
            "publish",
            "--topic",
            topics::CRM_CUSTOMERS,
            "--file",
            file,
        ])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "schema check let a bad event through"
    );
    let published = tandemctl(
        &stack,
        &[
            "publish",
            "--topic",
            topics::CRM_CUSTOMERS,
            "--file",
            file,
            "--unchecked",
        ],
    );
    assert!(
        published.starts_with("published to crm.customers["),
        "{published}"
    );

    // Once the bridge committed past the event, its dead letter is in the topic, open.
    settled(&stack, WAIT).await.unwrap();
    let listed = tandemctl(&stack, &["dlq", "list", "--reason", "schema_invalid"]);
    assert_eq!(shown(&listed), 1, "{listed}");
    assert!(listed.contains("crm.customer.upserted"), "{listed}");
    assert!(listed.contains("replays=0"), "{listed}");
    assert!(
        listed.contains("read tandem.dead-letter: 1 records, offsets 1 of 1, to the end offsets"),
        "{listed}"
    );
    let rejected = tandemctl(&stack, &["dlq", "list", "--reason", "rejected"]);
    assert_eq!(shown(&rejected), 0, "{rejected}");

    // Replay once: it fails again and comes back as a new open dead letter with replays=1;
    // the first is replayed, no longer open.
    let replayed = tandemctl(
        &stack,
        &["dlq", "replay", "--type", "crm.customer.upserted"],
    );
    assert!(replayed.starts_with("1 replayed, 0 refused"), "{replayed}");
    settled(&stack, WAIT).await.unwrap();
    let open = tandemctl(&stack, &["dlq", "list"]);
    assert_eq!(shown(&open), 1, "{open}");
    assert!(open.contains("replays=1"), "{open}");
    assert!(open.contains("open 1, replaying 0, replayed 1"), "{open}");

    // The loop guard: with at most one replay, the second letter may not go; the first is
    // not replayed again without --again.
    let guarded = tandemctl(
        &stack,
        &["dlq", "replay", "--max-replays", "1", "--dry-run"],
    );
    assert!(
        guarded.starts_with("0 would be replayed, 1 refused")
            && guarded.contains("1 already replayed"),
        "{guarded}"
    );

    // Resolved, both are closed: not listed as open, not replayed.
    let resolved = tandemctl(
        &stack,
        &[
            "dlq",
            "resolve",
            "--reason",
            "schema_invalid",
            "--note",
            "test event, bad on purpose",
        ],
    );
    assert!(resolved.starts_with("2 resolved"), "{resolved}");
    assert_eq!(shown(&tandemctl(&stack, &["dlq", "list"])), 0);
    let closed = tandemctl(&stack, &["dlq", "replay"]);
    assert!(
        closed.starts_with("0 replayed") && closed.contains("2 resolved or purged"),
        "{closed}"
    );
    let _ = std::fs::remove_file(file);
}

/// `consumer.assignment = group` (several replicas share the partitions), the bridge killed
/// with SIGKILL and restarted. The local broker never expires the dead member, so the new
/// process may be given no partition: it must say so (`/readyz` 503, `no partitions
/// assigned`) rather than look healthy while nothing syncs, and after
/// `consumer.rejoin_after_ms` leave and join the group again. Every event published meanwhile
/// is applied in the end.
#[tokio::test]
async fn a_group_member_without_partitions_says_so_and_rejoins() {
    let mut stack = Stack::start_with(StackOptions {
        bridge_env: vec![
            ("BRIDGE__CONSUMER__ASSIGNMENT".into(), "group".into()),
            ("BRIDGE__CONSUMER__REJOIN_AFTER_MS".into(), "3000".into()),
        ],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let first = uuid::Uuid::now_v7().to_string();
    publish(&stack, &first, &customer_event(&first, 1, "First")).await;
    mirrored(&stack, &first, 1).await;

    stack.bridge.kill();
    stack.bridge.start().unwrap();
    let ids: Vec<String> = (0..5).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for id in &ids {
        publish(&stack, id, &customer_event(id, 1, "While rejoining")).await;
    }
    let bridge = stack.bridge_http;
    let client = stack.erp_client().await.unwrap();
    let unready_seen = std::sync::Mutex::new(None::<String>);
    let converged = eventually(Duration::from_secs(90), "every event applied", || {
        let (status, body) = tandem_tests::http_get(bridge, "/readyz").unwrap_or_default();
        let mut seen = unready_seen.lock().unwrap();
        if status == 503 && seen.is_none() {
            *seen = Some(body.trim().to_owned());
        }
        let client = client.clone();
        let ids = ids.clone();
        async move {
            for id in ids {
                let mut client = client.clone();
                client
                    .get_customer(erp::GetCustomerRequest { id })
                    .await
                    .ok()?;
            }
            Some(())
        }
    })
    .await;
    let unready_seen = unready_seen.lock().unwrap().clone();
    println!(
        "unready reason seen: {unready_seen:?}; rejoins: {}",
        Stack::metric(bridge, "tandem_bridge_rejoins_total")
    );
    converged.unwrap_or_else(|error| {
        panic!(
            "{error:#}\n/readyz: {:?}\n{}",
            tandem_tests::http_get(bridge, "/readyz").ok(),
            stack.bridge.output()
        )
    });
    // The local broker gave the restarted member nothing at first: it said so.
    assert_eq!(unready_seen.as_deref(), Some("no partitions assigned"));
    tandem_tests::wait_ready(bridge, Duration::from_secs(20)).unwrap();
}

/// `make run`'s own bridge settings (config/local/bridge.toml, the file scripts/run.sh
/// passes): the bridge killed with SIGKILL while clients keep editing, then restarted, and
/// every version the CRM acknowledged reaches the ERP.
#[tokio::test]
async fn under_make_run_settings_a_killed_bridge_converges_every_acknowledged_version() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/local/bridge.toml");
    let mut stack = Stack::start_with(StackOptions {
        bridge_env: vec![("BRIDGE_CONFIG".into(), config.into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let mut crm = stack.crm_client().await.unwrap();
    let mut told: Vec<(String, i64)> = Vec::new();
    for n in 0..10 {
        let customer = crm
            .create_customer(crm::CreateCustomerRequest {
                request_id: String::new(),
                customer: Some(crm::Customer {
                    display_name: format!("Run {n}"),
                    email: format!("run{n}@example.com"),
                    ..crm::Customer::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        told.push((customer.id, customer.version));
    }
    let rename = |id: &str, name: String| crm::UpdateCustomerRequest {
        customer: Some(crm::Customer {
            id: id.to_owned(),
            display_name: name,
            ..crm::Customer::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
    };
    // Killed in the middle of the stream; the edits go on while it is down.
    stack.bridge.kill();
    for round in 1..=2 {
        for (id, version) in &mut told {
            let updated = crm
                .update_customer(rename(id, format!("{id} round {round}")))
                .await
                .unwrap()
                .into_inner();
            *version = updated.version;
        }
    }
    stack.bridge.start().unwrap();
    for (id, version) in &told {
        assert_eq!(
            mirrored(&stack, id, *version).await.profile_version,
            *version
        );
    }
    tandem_tests::wait_ready(stack.bridge_http, Duration::from_secs(20)).unwrap();
}
