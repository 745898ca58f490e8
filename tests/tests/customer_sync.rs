//! End to end: the three real binaries, a real broker and real databases. A customer created
//! over gRPC in the CRM reaches the ERP; updates follow; duplicates and stale versions change
//! nothing; traces and health work across processes; SIGTERM stops everything cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tandem_proto::{
    crm::v1::{
        self as crm, CreateCustomerRequest, UpdateCustomerRequest,
        crm_service_client::CrmServiceClient,
    },
    erp::v1::{
        self as erp, ApplyCustomerRequest, erp_service_client::ErpServiceClient,
        erp_sync_client::ErpSyncClient,
    },
    events::topics,
};
use tandem_tests::security::{self, Authed};
use tandem_tests::{
    Stack, eventually,
    evidence::{read_until_markers, wait_outbox_published},
};
use tonic::{Code, Request};

async fn crm_client(stack: &Stack) -> CrmServiceClient<Authed> {
    stack.crm_client().await.unwrap()
}

async fn erp_client(stack: &Stack) -> ErpServiceClient<Authed> {
    stack.erp_client().await.unwrap()
}

async fn erp_sync_client(stack: &Stack) -> ErpSyncClient<tonic::transport::Channel> {
    stack.erp_sync_client().await.unwrap()
}

/// The ERP's copy of `id` once its profile version reaches `version`.
async fn erp_customer_at(stack: &Stack, id: &str, version: i64) -> erp::Customer {
    let erp = erp_client(stack).await;
    eventually(
        Duration::from_secs(15),
        &format!("customer {id} v{version} in the ERP"),
        || {
            let request = erp::GetCustomerRequest { id: id.to_owned() };
            let mut erp = erp.clone();
            async move {
                match erp.get_customer(request).await {
                    Ok(response) if response.get_ref().profile_version >= version => {
                        Some(response.into_inner())
                    }
                    Ok(_) => None,
                    Err(status) if status.code() == Code::NotFound => None,
                    Err(status) => panic!("ERP GetCustomer failed: {status}"),
                }
            }
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_customer_created_in_the_crm_reaches_the_erp_and_stays_consistent() {
    let mut stack = Stack::start().await.unwrap();
    let mut crm = crm_client(&stack).await;

    // A frontend's trace context, to follow through outbox, Kafka and the bridge.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut create = Request::new(CreateCustomerRequest {
        request_id: String::new(),
        customer: Some(crm::Customer {
            display_name: "Grace Hopper".into(),
            email: "grace@navy.mil".into(),
            tax_id: "US-1906".into(),
            ..crm::Customer::default()
        }),
    });
    create.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let started = Instant::now();
    let created = crm.create_customer(create).await.unwrap().into_inner();
    let mirrored = erp_customer_at(&stack, &created.id, 1).await;
    println!("create -> visible in ERP: {:?}", started.elapsed());
    let profile = mirrored.profile.unwrap();
    assert_eq!(profile.id, created.id);
    assert_eq!(profile.display_name, "Grace Hopper");
    assert_eq!(profile.email, "grace@navy.mil");
    assert_eq!(profile.tax_id, "US-1906");
    assert_eq!(profile.status(), erp::CustomerStatus::Active);
    assert_eq!(mirrored.profile_version, 1);

    // Update -> the new version is visible.
    let updated = crm
        .update_customer(UpdateCustomerRequest {
            customer: Some(crm::Customer {
                id: created.id.clone(),
                email: "grace@cobol.dev".into(),
                status: crm::CustomerStatus::Archived as i32,
                ..crm::Customer::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into(), "status".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);
    let started = Instant::now();
    let mirrored = erp_customer_at(&stack, &created.id, 2).await;
    println!("update -> visible in ERP: {:?}", started.elapsed());
    let profile = mirrored.profile.clone().unwrap();
    assert_eq!(profile.email, "grace@cobol.dev");
    assert_eq!(profile.status(), erp::CustomerStatus::Archived);
    assert_eq!(mirrored.profile_version, 2);

    // A duplicate (same version) and a stale one (older) change nothing.
    let mut sync = erp_sync_client(&stack).await;
    for (version, name) in [(2, "Duplicate"), (1, "Stale")] {
        let response = sync
            .apply_customer(ApplyCustomerRequest {
                customer: Some(erp::CustomerProfile {
                    display_name: name.into(),
                    ..profile.clone()
                }),
                source_version: version,
                event_id: uuid::Uuid::now_v7().to_string(),
                repair: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!response.applied, "version {version} applied over 2");
        assert_eq!(response.current_version, 2);
    }
    let unchanged = erp_customer_at(&stack, &created.id, 2).await;
    assert_eq!(unchanged.profile, mirrored.profile);
    assert_eq!(unchanged.profile_version, 2);

    // Garbage for the sync RPC is refused with the field named.
    let refused = sync
        .apply_customer(ApplyCustomerRequest {
            customer: Some(erp::CustomerProfile {
                id: "not-a-uuid".into(),
                ..profile.clone()
            }),
            source_version: 3,
            event_id: String::new(),
            repair: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("customer.id"),
        "{}",
        refused.message()
    );

    // The events carry the frontend's trace, in order, keyed by the customer. Every change is
    // published (the outbox has nothing left), and markers bound the topic: the two events
    // are all it holds.
    wait_outbox_published(&stack.crm_db.url, Duration::from_secs(15))
        .await
        .unwrap();
    let records = read_until_markers(&stack.broker.brokers, topics::CRM_CUSTOMERS)
        .await
        .unwrap();
    assert_eq!(
        records.len(),
        2,
        "exactly the two changes published: {records:#?}"
    );
    assert!(
        records
            .iter()
            .all(|r| r.key.as_deref() == Some(created.id.as_str()))
    );
    let versions: Vec<i64> = records
        .iter()
        .map(|r| r.payload["aggregate_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2], "in offset order");
    let traceparent = records[0]
        .header("traceparent")
        .expect("traceparent header");
    assert!(
        traceparent.contains(trace_id),
        "trace not continued: {traceparent}"
    );

    // Every process stops cleanly on SIGTERM.
    for process in [&mut stack.bridge, &mut stack.crm, &mut stack.erp] {
        let stopping = Instant::now();
        let clean = process.terminate(Duration::from_secs(15)).unwrap();
        println!("{} stopped in {:?}", process.name, stopping.elapsed());
        assert!(
            clean,
            "{} exited with an error:\n{}",
            process.name,
            process.output()
        );
    }
}

#[tokio::test]
async fn every_process_serves_health_and_reflection() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let stack = Stack::start().await.unwrap();
    // The public ports serve only the public APIs; the sync ports the sync APIs and the public
    // ones (for the bridge).
    let expectations: [(SocketAddr, &[&str]); 5] = [
        (stack.crm_grpc, &["tandem.crm.v1.CrmService"]),
        (
            stack.crm_sync,
            &["tandem.crm.v1.CrmService", "tandem.crm.v1.CrmSync"],
        ),
        (stack.erp_grpc, &["tandem.erp.v1.ErpService"]),
        (
            stack.erp_sync,
            &["tandem.erp.v1.ErpService", "tandem.erp.v1.ErpSync"],
        ),
        (stack.bridge_grpc, &[]),
    ];
    for (addr, services) in expectations {
        // Health and reflection need no token; the sync ports still want the certificate.
        let channel = if addr == stack.bridge_grpc {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap()
        } else if addr == stack.crm_sync || addr == stack.erp_sync {
            stack
                .security
                .sync_channel(addr, security::BRIDGE)
                .await
                .unwrap()
        } else {
            stack.security.public_channel(addr).await.unwrap()
        };
        let health = HealthClient::new(channel.clone());
        for service in services.iter().copied().chain([""]) {
            // Health follows readiness, polled every 2 s: it may trail `/readyz` by that much.
            eventually(
                Duration::from_secs(10),
                &format!("{addr} {service:?} SERVING"),
                || {
                    let mut health = health.clone();
                    async move {
                        let status = health
                            .check(HealthCheckRequest {
                                service: service.to_owned(),
                            })
                            .await
                            .unwrap()
                            .into_inner()
                            .status();
                        (status == ServingStatus::Serving).then_some(())
                    }
                },
            )
            .await
            .unwrap();
        }

        let mut reflection = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("no service list from {addr}");
        };
        let mut listed: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        listed.sort();
        let mut expected: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
        expected.push("grpc.health.v1.Health".into());
        expected.push("grpc.reflection.v1.ServerReflection".into());
        expected.sort();
        assert_eq!(listed, expected, "reflection of {addr}");
    }
}
