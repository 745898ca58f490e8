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
        request_id: String::new(),
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

/// What a kubelet's gRPC probe sees on the admin port: plaintext gRPC health for `""`.
async fn probe(admin: SocketAddr) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{admin}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status())
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
    eventually(
        Duration::from_secs(10),
        "the admin port's plaintext gRPC health (the kubelet's probe) NOT_SERVING",
        || async { (probe(http).await == Some(ServingStatus::NotServing)).then_some(()) },
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
    eventually(
        Duration::from_secs(10),
        "the admin port's plaintext gRPC health SERVING again",
        || async { (probe(http).await == Some(ServingStatus::Serving)).then_some(()) },
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
    // Four clients create and then rename customers, each at most once every 20 ms (a burst
    // of a bounded size however fast the CRM answers, so reading it back takes a bounded
    // time); each keeps what it was told: (id, version).
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut crm = crm.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut told: Vec<(String, i64)> = Vec::new();
                let mut n = w * 1_000_000;
                let mut pace = tokio::time::interval(Duration::from_millis(20));
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.is_cancelled() {
                    pace.tick().await;
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

/// Kubernetes gives a pod `terminationGracePeriodSeconds` after SIGTERM, then SIGKILLs it: a
/// stop must fit one budget. Here both phases of the CRM's stop hang — a call blocked on a
/// lock the test holds (draining waits for it) and committed changes the relay cannot publish
/// with the broker down (flushing waits for it) — and the process still exits within
/// `shutdown_grace + LAST_PHASE_FLOOR + EXIT_GRACE`, not twice the grace.
#[tokio::test]
async fn a_stop_spends_one_grace_when_draining_and_flushing_both_hang() {
    use std::time::Instant;
    use tandem_common::{runtime::EXIT_GRACE, shutdown::LAST_PHASE_FLOOR};

    const GRACE: Duration = Duration::from_secs(6);
    let mut stack = Stack::start_with(StackOptions {
        crm_env: vec![(
            "CRM__SHUTDOWN_GRACE_MS".into(),
            GRACE.as_millis().to_string(),
        )],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (mut crm, _) = clients(&stack).await;
    stack.broker.kill();
    for n in 0..3 {
        crm.create_customer(customer(n)).await.unwrap();
    }
    assert_eq!(
        unpublished(&stack.crm_db).await,
        3,
        "changes the relay cannot publish"
    );

    let mut lock = stack.crm_db.connect().await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    let stuck = tokio::spawn({
        let mut crm = crm.clone();
        async move { crm.create_customer(customer(99)).await }
    });
    let db_name = stack.crm_db.name.clone();
    eventually(WAIT, "the call waiting for the lock", || {
        let db = &stack.crm_db;
        let db_name = db_name.clone();
        async move {
            let mut conn = db.connect().await.ok()?;
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND wait_event_type = 'Lock'",
            )
            .bind(db_name)
            .fetch_one(&mut conn)
            .await
            .ok()?;
            (waiting > 0).then_some(())
        }
    })
    .await
    .unwrap();

    let signalled = Instant::now();
    stack.crm.terminate(Duration::from_secs(60)).unwrap();
    let took = signalled.elapsed();
    let budget = GRACE + LAST_PHASE_FLOOR + EXIT_GRACE;
    println!("the CRM stopped {took:?} after SIGTERM (budget {budget:?})");
    assert!(
        took >= GRACE - Duration::from_millis(200),
        "the stuck call should have held the drain for the grace ({GRACE:?}), took {took:?}:\n{}",
        stack.crm.output()
    );
    // Half a second for the test's own polling of the exit.
    assert!(
        took <= budget + Duration::from_millis(500),
        "the stop took {took:?}, more than shutdown_grace {GRACE:?} + last-phase floor \
         {LAST_PHASE_FLOOR:?} + exit grace {EXIT_GRACE:?}:\n{}",
        stack.crm.output()
    );
    drop(lock);
    let _ = stuck.await;
}

/// The bridge does its work only while it can reach the CRM, the ERP and the broker: its
/// readiness (`/readyz`, and so an orchestrator's rollout and the "bridge not ready" alert)
/// says which one is missing, its gauge says 0 for it, and both recover by themselves.
#[tokio::test]
async fn the_bridge_is_ready_only_while_the_crm_the_erp_and_the_broker_answer() {
    let mut stack = Stack::start().await.unwrap();
    let bridge = stack.bridge_http;
    let readyz = move || {
        let (status, body) = http_get(bridge, "/readyz").unwrap();
        (status, body.trim().to_owned())
    };
    let answers = |want: (u16, &'static str)| {
        move || {
            let got = readyz();
            async move { (got.0 == want.0 && got.1 == want.1).then_some(()) }
        }
    };
    assert_eq!(readyz(), (200, "ready".to_owned()));

    for target in ["crm", "erp", "broker"] {
        match target {
            "crm" => stack.crm.kill(),
            "erp" => stack.erp.kill(),
            _ => stack.broker.kill(),
        }
        let reason: &'static str = match target {
            "crm" => "crm unreachable",
            "erp" => "erp unreachable",
            _ => "broker unreachable",
        };
        eventually(
            WAIT,
            &format!("the bridge unready: {reason}"),
            answers((503, reason)),
        )
        .await
        .unwrap_or_else(|error| panic!("{error:#}; /readyz says {:?}", readyz()));
        eventually(WAIT, "the bridge's probe NOT_SERVING", || async {
            (probe(bridge).await == Some(ServingStatus::NotServing)).then_some(())
        })
        .await
        .unwrap();
        let gauge = format!("tandem_bridge_target_up{{target=\"{target}\"}}");
        assert_eq!(Stack::metric(bridge, &gauge), 0.0, "{gauge} while down");
        assert_eq!(
            http_get(bridge, "/healthz").unwrap().0,
            200,
            "alive all along"
        );
        match target {
            "crm" => stack.crm.start().unwrap(),
            "erp" => stack.erp.start().unwrap(),
            _ => stack.broker.restart().unwrap(),
        }
        eventually(WAIT, "the bridge ready again", answers((200, "ready")))
            .await
            .unwrap_or_else(|error| panic!("{error:#}; /readyz says {:?}", readyz()));
        assert_eq!(Stack::metric(bridge, &gauge), 1.0, "{gauge} once back");
        eventually(WAIT, "the bridge's probe SERVING", || async {
            (probe(bridge).await == Some(ServingStatus::Serving)).then_some(())
        })
        .await
        .unwrap();
    }
}
