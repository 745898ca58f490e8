//! Outages on the real stack: with the broker down the services keep accepting writes, the
//! outbox grows, and it drains in order when the broker is back; with the database down a
//! service answers UNAVAILABLE and recovers without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, time::Duration};

use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1 as erp,
};
use tandem_tests::{
    ServiceProcess, Stack, TestBroker, eventually, free_port, http_get, postgres::TestPostgres,
    read_topic, wait_ready,
};
use tonic::Code;

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

    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            crm.create_customer(customer(n))
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    assert_eq!(
        unpublished(&stack.crm_db).await,
        20,
        "the outbox holds every change"
    );

    stack.broker.restart().unwrap();
    eventually(Duration::from_secs(60), "the outbox drained", || async {
        (unpublished(&stack.crm_db).await == 0).then_some(())
    })
    .await
    .unwrap();
    for id in &ids {
        erp_has_customer(&erp_client, id).await;
    }
    let records = read_topic(
        &stack.broker.brokers,
        "crm.customers",
        20,
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let mut keys: Vec<String> = records.iter().filter_map(|r| r.key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 20, "every change published");
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
    let pg = TestPostgres::start().unwrap();
    pg.create_database("crm").await.unwrap();
    let broker = TestBroker::start().await.unwrap();
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _crm = ServiceProcess::spawn(
        "crm-service",
        vec![
            ("CRM__GRPC__LISTEN".into(), grpc.to_string()),
            ("CRM__HTTP__LISTEN".into(), http.to_string()),
            ("CRM__DATABASE__URL".into(), pg.url("crm")),
            ("CRM__DATABASE__ACQUIRE_TIMEOUT_MS".into(), "500".into()),
            ("CRM__KAFKA__BROKERS".into(), broker.brokers.clone()),
        ],
    )
    .unwrap();
    wait_ready(http, Duration::from_secs(30)).unwrap();
    let mut client = CrmServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
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
    assert_eq!(
        http_get(http, "/healthz").unwrap().0,
        200,
        "alive while the database is down"
    );

    pg.resume().unwrap();
    let after = eventually(Duration::from_secs(30), "the CRM writing again", || {
        let mut client = client.clone();
        async move { client.create_customer(customer(3)).await.ok() }
    })
    .await
    .unwrap();
    wait_ready(http, Duration::from_secs(10)).unwrap();
    let records = read_topic(
        &broker.brokers,
        "crm.customers",
        2,
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let keys: Vec<&str> = records.iter().filter_map(|r| r.key.as_deref()).collect();
    assert!(keys.contains(&before.id.as_str()) && keys.contains(&after.into_inner().id.as_str()));
    assert_eq!(records.len(), 2, "the refused write published nothing");
}
