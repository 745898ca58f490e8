//! What `/metrics` tells an operator, read from the running binaries: every gRPC call counted
//! by method and status code with its duration (the RED signals), whatever the outcome; paths
//! no service serves counted as `unknown` (callers cannot grow the label set); the database
//! pool; HELP and TYPE lines for what is exported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tandem_proto::crm::v1 as crm;
use tandem_tests::{Stack, http_get, security};
use tonic::Code;

#[tokio::test]
async fn every_call_is_counted_by_method_and_code_with_its_duration() {
    let stack = Stack::start().await.unwrap();
    let mut crm = stack.crm_client().await.unwrap();
    for n in 0..3 {
        crm.create_customer(crm::CreateCustomerRequest {
            customer: Some(crm::Customer {
                display_name: format!("Counted {n}"),
                email: format!("counted{n}@example.com"),
                ..crm::Customer::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    }
    let missing = crm
        .get_customer(crm::GetCustomerRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // 20 paths no service serves, and one call without a token.
    let token = stack
        .security
        .token("metrics-tester", security::ALL_ROLES)
        .unwrap();
    let channel = stack.security.public_channel(stack.crm_grpc).await.unwrap();
    for n in 0..20 {
        let path = format!("/made.up{n}.Service/Method{n}");
        // The port's guard refuses a method its role table does not name.
        assert_eq!(
            security::call_empty(channel.clone(), Some(&token), &path).await,
            Code::PermissionDenied
        );
    }
    let anonymous = crm::crm_service_client::CrmServiceClient::new(channel)
        .list_customers(crm::ListCustomersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let http = stack.crm_http;
    let sample = |prefix: &str| Stack::metric(http, prefix);
    let create = "method=\"/tandem.crm.v1.CrmService/CreateCustomer\"";
    assert_eq!(
        sample(&format!(
            "tandem_grpc_server_calls_total{{{create},code=\"OK\"}}"
        )),
        3.0
    );
    assert_eq!(
        sample(&format!(
            "tandem_grpc_server_call_duration_seconds_count{{{create}}}"
        )),
        3.0
    );
    assert!(
        sample(&format!(
            "tandem_grpc_server_call_duration_seconds_sum{{{create}}}"
        )) > 0.0
    );
    assert_eq!(
        sample(
            "tandem_grpc_server_calls_total{method=\"/tandem.crm.v1.CrmService/GetCustomer\",code=\"NOT_FOUND\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            "tandem_grpc_server_calls_total{method=\"/tandem.crm.v1.CrmService/ListCustomers\",code=\"UNAUTHENTICATED\"}"
        ),
        1.0
    );
    assert_eq!(
        sample("tandem_grpc_server_calls_total{method=\"unknown\",code=\"PERMISSION_DENIED\"}"),
        20.0
    );

    let (_, body) = http_get(http, "/metrics").unwrap();
    let methods: std::collections::BTreeSet<&str> = body
        .lines()
        .filter(|l| l.starts_with("tandem_grpc_server_calls_total{"))
        .filter_map(|l| l.split("method=\"").nth(1)?.split('"').next())
        .collect();
    assert!(
        methods.iter().all(|m| *m == "unknown"
            || m.starts_with("/tandem.crm.v1.")
            || m.starts_with("/grpc.")),
        "only the port's own methods name a label: {methods:?}"
    );
    for help in [
        "# HELP tandem_grpc_server_calls_total gRPC calls answered",
        "# TYPE tandem_grpc_server_calls_total counter",
        "# HELP tandem_grpc_server_call_duration_seconds time from a gRPC call",
        "# TYPE tandem_grpc_server_call_duration_seconds histogram",
    ] {
        assert!(body.contains(help), "/metrics lacks {help:?}:\n{body}");
    }
    // The pool, sampled every 5 s: the maximum at once, connections once sampled.
    tandem_tests::eventually(
        std::time::Duration::from_secs(15),
        "the pool's connections",
        || async {
            let max = sample("tandem_db_pool_max_connections");
            let open = sample("tandem_db_pool_connections");
            let (_, body) = http_get(http, "/metrics").unwrap();
            let waited = body
                .lines()
                .any(|l| l.starts_with("tandem_db_pool_acquire_seconds "));
            (max > 0.0 && open > 0.0 && open <= max && waited).then_some(())
        },
    )
    .await
    .unwrap_or_else(|error| {
        let (_, body) = http_get(http, "/metrics").unwrap();
        let pool: Vec<&str> = body.lines().filter(|l| l.contains("pool")).collect();
        panic!("{error:#}: {pool:#?}")
    });
}
