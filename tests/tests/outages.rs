//! Outages on the real stack: with the broker down the services keep accepting writes, the
//! outbox grows, and it drains in order when the broker is back; with the database down a
//! service answers UNAVAILABLE and recovers without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, time::Duration};

use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1 as erp,
};
use tandem_tests::security::{self, Security};
use tandem_tests::{
    ServiceProcess, Stack, StackOptions, TestBroker, eventually,
    evidence::{check_order_per_partition, read_until_markers, wait_outbox_published},
    free_port, http_get,
    postgres::TestPostgres,
    wait_ready,
};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

mod support;

use support::*;

fn customer(n: usize) -> crm::CreateCustomerRequest {
    crm::CreateCustomerRequest {
        customer: Some(crm::Customer {
            display_name: format!("Offline {n}"),
            email: format!("offline{n}@example.com"),
            ..crm::Customer::default()
        }),
    }
}

fn rename(id: &str, n: usize) -> crm::UpdateCustomerRequest {
    crm::UpdateCustomerRequest {
        customer: Some(crm::Customer {
            id: id.to_owned(),
            display_name: format!("Offline {n} renamed"),
            ..crm::Customer::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
    }
}

async fn unpublished(db: &tandem_tests::TestDatabase) -> i64 {
    let mut conn = db.connect().await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn with_the_broker_down_writes_go_on_and_the_outbox_drains_when_it_returns() {
    let mut stack = Stack::start().await.unwrap();
    let (mut crm, erp_client) = clients(&stack).await;
    stack.broker.kill();

    // Every change in the order it was committed: (customer id, aggregate version).
    let mut written: Vec<(String, i64)> = Vec::new();
    let mut ids = Vec::new();
    for n in 0..20 {
        let id = crm
            .create_customer(customer(n))
            .await
            .unwrap()
            .into_inner()
            .id;
        written.push((id.clone(), 1));
        ids.push(id);
    }
    // A second version of some, in another order than they were created.
    const RENAMED: [usize; 3] = [7, 3, 12];
    for n in RENAMED {
        let updated = crm
            .update_customer(rename(&ids[n], n))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.version, 2);
        written.push((ids[n].clone(), 2));
    }
    assert_eq!(
        unpublished(&stack.crm_db).await,
        written.len() as i64,
        "the outbox holds every change"
    );
    // The leading relay reports how long the oldest waiting row has waited (the
    // TandemOutboxStuck alert), and 0 once the outbox has drained.
    let oldest = || Stack::metric(stack.crm_http, "tandem_outbox_oldest_unpublished_seconds");
    eventually(
        WAIT,
        "the oldest unpublished row's age reported",
        || async { (oldest() >= 2.0).then_some(()) },
    )
    .await
    .unwrap();

    stack.broker.restart().unwrap();
    eventually(Duration::from_secs(60), "the outbox drained", || async {
        (unpublished(&stack.crm_db).await == 0).then_some(())
    })
    .await
    .unwrap();
    eventually(
        WAIT,
        "the oldest unpublished row's age back to 0",
        || async { (oldest() == 0.0).then_some(()) },
    )
    .await
    .unwrap();
    for id in &ids {
        erp_has_customer(&erp_client, id).await;
    }
    // The outbox is drained, so markers bound everything it published: every change, in the
    // order committed on each partition (v1 before v2 of a key), re-sent runs allowed
    // (at-least-once after the failed publishes), nothing else.
    let records = read_until_markers(&stack.broker.brokers, "crm.customers")
        .await
        .unwrap();
    let resent = check_order_per_partition(&records, &written).unwrap_or_else(|error| {
        panic!("the outbox did not drain in order: {error:#}\n{records:#?}")
    });
    println!(
        "{} records for {} changes ({resent} re-sent)",
        records.len(),
        written.len()
    );
    for n in RENAMED {
        eventually(WAIT, "the renamed customer in the ERP", || {
            let mut erp = erp_client.clone();
            let id = ids[n].clone();
            async move {
                let customer = erp
                    .get_customer(erp::GetCustomerRequest { id })
                    .await
                    .ok()?
                    .into_inner();
                (customer.profile_version == 2).then_some(customer)
            }
        })
        .await
        .unwrap();
    }
    let mut erp = erp_client.clone();
    let mirrored = erp
        .get_customer(erp::GetCustomerRequest {
            id: ids[19].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mirrored.profile.unwrap().display_name, "Offline 19");
}

#[tokio::test]
async fn with_the_database_down_the_crm_answers_unavailable_and_recovers_by_itself() {
    let pg = TestPostgres::start_tls().unwrap();
    pg.create_database("crm").await.unwrap();
    let broker = TestBroker::start().await.unwrap();
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let sync = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let security = Security::create().unwrap();
    let _crm = ServiceProcess::spawn(
        "crm-service",
        [
            ("CRM__GRPC__LISTEN".into(), grpc.to_string()),
            ("CRM__SYNC__LISTEN".into(), sync.to_string()),
            ("CRM__HTTP__LISTEN".into(), http.to_string()),
            ("CRM__DATABASE__URL".into(), pg.url("crm")),
            ("CRM__DATABASE__ACQUIRE_TIMEOUT_MS".into(), "500".into()),
        ]
        .into_iter()
        .chain(security.service_env("CRM"))
        .chain(broker.service_env("CRM"))
        .collect(),
    )
    .unwrap();
    wait_ready(http, Duration::from_secs(30)).unwrap();
    let mut client = CrmServiceClient::new(
        security
            .authed(grpc, "outage-tester", security::ALL_ROLES)
            .await
            .unwrap(),
    );
    let before = client
        .create_customer(customer(1))
        .await
        .unwrap()
        .into_inner();

    pg.stop().unwrap();
    let down = client.create_customer(customer(2)).await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down}");
    let read = client
        .get_customer(crm::GetCustomerRequest {
            id: before.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::Unavailable, "{read}");
    assert_eq!(http_get(http, "/readyz").unwrap().0, 503);
    // The alert TandemDatabaseUnreachable reads this gauge (set by the readiness check).
    assert_eq!(Stack::metric(http, "tandem_database_up"), 0.0);
    assert_eq!(
        http_get(http, "/healthz").unwrap().0,
        200,
        "alive while the database is down"
    );
    // gRPC health says the same as /readyz (load balancers and Kubernetes ask it).
    let health = HealthClient::new(security.public_channel(grpc).await.unwrap());
    let serving = |want: ServingStatus| {
        let health = health.clone();
        move || {
            let mut health = health.clone();
            async move {
                let status = health
                    .check(HealthCheckRequest {
                        service: "tandem.crm.v1.CrmService".into(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .status();
                (status == want).then_some(())
            }
        }
    };
    eventually(
        Duration::from_secs(10),
        "gRPC health NOT_SERVING while the database is down",
        serving(ServingStatus::NotServing),
    )
    .await
    .unwrap();

    pg.resume().unwrap();
    let after = eventually(Duration::from_secs(30), "the CRM writing again", || {
        let mut client = client.clone();
        async move { client.create_customer(customer(3)).await.ok() }
    })
    .await
    .unwrap();
    wait_ready(http, Duration::from_secs(10)).unwrap();
    assert_eq!(Stack::metric(http, "tandem_database_up"), 1.0);
    eventually(
        Duration::from_secs(10),
        "gRPC health SERVING again",
        serving(ServingStatus::Serving),
    )
    .await
    .unwrap();
    // Every change committed so far is published; markers bound the topic.
    wait_outbox_published(&pg.url("crm"), Duration::from_secs(30))
        .await
        .unwrap();
    let records = read_until_markers(&broker.brokers, "crm.customers")
        .await
        .unwrap();
    let written = [(before.id.clone(), 1), (after.into_inner().id, 1)];
    check_order_per_partition(&records, &written).unwrap_or_else(|error| {
        panic!("the refused write published nothing, the others once: {error:#}\n{records:#?}")
    });
    assert_eq!(
        records.len(),
        2,
        "the refused write published nothing: {records:#?}"
    );
}

/// The broker killed with SIGKILL again and again while the CRM publishes a burst: every change
/// a client was told about reaches the topic, its newest version last, and the broker never
/// panics. With idempotent producers (`CRM__KAFKA__IDEMPOTENCE=true`) the local broker panics
/// after a restart (runbook, "Local broker") and the relay stops moving.
#[tokio::test]
async fn the_broker_killed_again_and_again_under_a_burst_loses_nothing_and_never_panics() {
    // Messages time out after 1 s, so the outages of 1.5 s below also time out requests in
    // flight (a real broker outage longer than `kafka.message_timeout_ms`).
    let mut stack = Stack::start_with(StackOptions {
        crm_env: vec![("CRM__KAFKA__MESSAGE_TIMEOUT_MS".into(), "1000".into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (crm, erp_client) = clients(&stack).await;
    let stop = tandem_common::CancellationToken::new();
    // Four clients create and then rename customers as fast as the CRM answers; each keeps
    // what it was told: (id, version).
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut crm = crm.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut told: Vec<(String, i64)> = Vec::new();
                let mut n = w * 1_000_000;
                while !stop.is_cancelled() {
                    n += 1;
                    let Ok(created) = crm.create_customer(customer(n)).await else {
                        continue;
                    };
                    let id = created.into_inner().id;
                    told.push((id.clone(), 1));
                    if let Ok(renamed) = crm.update_customer(rename(&id, n)).await {
                        told.push((id, renamed.into_inner().version));
                    }
                }
                told
            })
        })
        .collect();
    for round in 0..8u64 {
        tokio::time::sleep(Duration::from_millis(700 + 150 * (round % 4))).await;
        stack.broker.kill();
        let down = if round % 2 == 0 { 300 } else { 1_500 };
        tokio::time::sleep(Duration::from_millis(down)).await;
        stack.broker.restart().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let mut newest: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for writer in writers {
        for (id, version) in writer.await.unwrap() {
            let entry = newest.entry(id).or_insert(version);
            *entry = (*entry).max(version);
        }
    }
    assert!(
        newest.len() >= 50,
        "the burst did its work: {} customers",
        newest.len()
    );

    let drained = wait_outbox_published(&stack.crm_db.url, Duration::from_secs(60)).await;
    let log = stack.broker.log();
    assert!(
        !log.contains("panicked"),
        "the broker panicked:\n{}",
        log.lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drained.unwrap();
    // The outbox is drained, so markers bound everything it published: each customer's last
    // record carries the newest version its client was told (re-sent runs may repeat older
    // ones before it).
    let records = read_until_markers(&stack.broker.brokers, "crm.customers")
        .await
        .unwrap();
    let mut last: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for record in &records {
        let (key, version) = tandem_tests::evidence::key_and_version(record);
        last.insert(key, version);
    }
    let wrong: Vec<_> = newest
        .iter()
        .filter(|(id, version)| last.get(*id) != Some(version))
        .map(|(id, version)| format!("{id}: told v{version}, last published {:?}", last.get(id)))
        .collect();
    assert!(wrong.is_empty(), "changes lost or out of order: {wrong:#?}");
    assert_eq!(
        last.len(),
        newest.len(),
        "nothing published that no client was told"
    );
    // And the bridge carried the newest version of each to the ERP.
    let (id, version) = newest.iter().next_back().unwrap();
    eventually(WAIT, "the newest customer version in the ERP", || {
        let mut erp = erp_client.clone();
        let id = id.clone();
        async move {
            let customer = erp
                .get_customer(erp::GetCustomerRequest { id })
                .await
                .ok()?
                .into_inner();
            (customer.profile_version == *version).then_some(())
        }
    })
    .await
    .unwrap();
    println!(
        "{} customers, {} records, broker killed 8 times",
        newest.len(),
        records.len()
    );
}
