//! Who may call what, proved against the running binaries:
//!
//! - every public RPC of both services, called with a token of each role, is either allowed
//!   or PERMISSION_DENIED, as the table written out below says (written by hand from the
//!   roles we promise, not generated from the servers' tables);
//! - bad tokens (none, expired, not yet valid, wrong audience, wrong issuer, bad signature,
//!   unknown key id, `alg: none`) are UNAUTHENTICATED;
//! - the internal sync RPCs are not served on the public ports;
//! - the internal ports refuse a client without a certificate, one from another CA and one
//!   whose identity is not the bridge's or tandemctl's, and serve the bridge;
//! - the caller's subject reaches the event envelope of the change it made;
//! - the bridge presents a rotated client certificate without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;
use tandem_common::{
    auth::Role,
    pki::{Ca, Usage},
    tls::ClientTlsSettings,
};
use tandem_proto::{crm::v1 as crm, events::topics};
use tandem_tests::{
    Stack, read_topic,
    security::{self, Bearer, Security},
};
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const ROLES: [(&str, Role); 5] = [
    ("sales", Role::Sales),
    ("warehouse", Role::Warehouse),
    ("finance", Role::Finance),
    ("admin", Role::Admin),
    ("read-only", Role::ReadOnly),
];

/// Every public RPC and the roles allowed to call it (`*`: every role).
const CRM_EXPECTED: &[(&str, &str)] = &[
    ("CreateCustomer", "sales admin"),
    ("GetCustomer", "*"),
    ("ListCustomers", "*"),
    ("UpdateCustomer", "sales admin"),
    ("ArchiveCustomer", "sales admin"),
    ("CreateOrder", "sales admin"),
    ("GetOrder", "*"),
    ("ListOrders", "*"),
    ("UpdateOrder", "sales admin"),
    ("SubmitOrder", "sales admin"),
    ("RequestOrderCancellation", "sales admin"),
    ("ListProducts", "*"),
    ("GetAvailability", "*"),
];

const ERP_EXPECTED: &[(&str, &str)] = &[
    ("CreateProduct", "warehouse admin"),
    ("GetProduct", "*"),
    ("ListProducts", "*"),
    ("UpdateProduct", "warehouse admin"),
    ("CreateWarehouse", "admin"),
    ("ListWarehouses", "*"),
    ("ReceiveStock", "warehouse admin"),
    ("AdjustStock", "warehouse admin"),
    ("TransferStock", "warehouse admin"),
    ("GetStockLevel", "*"),
    ("ListStockLevels", "*"),
    ("ListStockMovements", "*"),
    ("GetCustomer", "*"),
    ("ListCustomers", "*"),
    ("SetCreditTerms", "finance admin"),
    ("RecordPayment", "finance admin"),
    ("GetSalesOrder", "*"),
    ("ListSalesOrders", "*"),
    ("ReleaseCreditHold", "finance admin"),
    ("ShipOrder", "warehouse admin"),
    ("InvoiceOrder", "finance admin"),
];

use security::call_empty as call;

#[tokio::test]
async fn every_public_rpc_answers_each_role_as_the_role_table_says() {
    let stack = Stack::start().await.unwrap();
    let services = [
        (stack.crm_grpc, "tandem.crm.v1.CrmService", CRM_EXPECTED, 13),
        (stack.erp_grpc, "tandem.erp.v1.ErpService", ERP_EXPECTED, 21),
    ];
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (addr, service, expected, methods) in services {
        assert_eq!(expected.len(), methods, "{service}: one row per RPC");
        let channel = stack.security.public_channel(addr).await.unwrap();
        for (role_name, role) in ROLES {
            let token = stack
                .security
                .token(&format!("{role_name}-user"), &[role])
                .unwrap();
            for (method, allowed) in expected {
                let may = *allowed == "*" || allowed.split(' ').any(|r| r == role_name);
                let code = call(
                    channel.clone(),
                    Some(&token),
                    &format!("/{service}/{method}"),
                )
                .await;
                let refused = matches!(code, Code::PermissionDenied | Code::Unauthenticated);
                checked += 1;
                if may == refused {
                    wrong.push(format!(
                        "{service}/{method} as {role_name}: {code:?}, expected {}",
                        if may { "allowed" } else { "PERMISSION_DENIED" }
                    ));
                } else if !may && code != Code::PermissionDenied {
                    wrong.push(format!("{service}/{method} as {role_name}: {code:?}"));
                }
            }
        }
    }
    assert_eq!(checked, (13 + 21) * 5);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token signed by `key` with the kit's issuer and audience unless `claims` overrides them.
fn token_with(key: &str, kid: &str, claims: serde_json::Value) -> String {
    let mut body = json!({
        "iss": security::ISSUER,
        "aud": security::AUDIENCE,
        "sub": "mallory",
        "roles": ["admin"],
        "iat": now(),
        "exp": now() + 600,
    });
    for (k, v) in claims.as_object().unwrap() {
        body[k] = v.clone();
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &body,
        &jsonwebtoken::EncodingKey::from_ec_pem(key.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated_and_internal_rpcs_are_not_on_the_public_port() {
    let stack = Stack::start().await.unwrap();
    let key = stack.security.signing_key().to_owned();
    let other_key = tandem_common::auth::generate_signing_key().unwrap();
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"test-1"}"#),
        URL_SAFE_NO_PAD.encode(
            json!({"iss": security::ISSUER, "aud": security::AUDIENCE, "sub": "mallory",
                   "roles": ["admin"], "exp": now() + 600})
            .to_string()
        )
    );
    let kid = security::KID;
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("not.a.token".into())),
        (
            "expired",
            Some(token_with(&key, kid, json!({"exp": now() - 600}))),
        ),
        (
            "not yet valid",
            Some(token_with(&key, kid, json!({"nbf": now() + 600}))),
        ),
        (
            "wrong audience",
            Some(token_with(&key, kid, json!({"aud": "someone-else"}))),
        ),
        (
            "wrong issuer",
            Some(token_with(&key, kid, json!({"iss": "evil"}))),
        ),
        (
            "bad signature",
            Some(token_with(&other_key, kid, json!({}))),
        ),
        (
            "unknown key id",
            Some(token_with(&key, "test-2", json!({}))),
        ),
        ("alg none", Some(alg_none)),
    ];
    let channel = stack.security.public_channel(stack.crm_grpc).await.unwrap();
    for (what, token) in &cases {
        let code = call(
            channel.clone(),
            token.as_deref(),
            "/tandem.crm.v1.CrmService/ListCustomers",
        )
        .await;
        assert_eq!(code, Code::Unauthenticated, "{what}");
    }
    // The same claims, well signed, pass: the refusals above are about what was wrong.
    let good = token_with(&key, kid, json!({}));
    assert_eq!(
        call(
            channel.clone(),
            Some(&good),
            "/tandem.crm.v1.CrmService/ListCustomers"
        )
        .await,
        Code::Ok
    );
    // Internal RPCs are not on the public ports, whatever the token.
    for (addr, path) in [
        (stack.crm_grpc, "/tandem.crm.v1.CrmSync/Republish"),
        (stack.erp_grpc, "/tandem.erp.v1.ErpSync/Republish"),
    ] {
        let channel = stack.security.public_channel(addr).await.unwrap();
        assert_eq!(
            call(channel, Some(&good), path).await,
            Code::PermissionDenied,
            "{path} on the public port"
        );
    }
}

async fn health(channel: Result<Channel, anyhow::Error>, service: &str) -> Result<(), String> {
    let channel = channel.map_err(|e| format!("{e:#}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map(|_| ())
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

#[tokio::test]
async fn the_internal_ports_serve_only_the_bridge_and_tandemctl() {
    let stack = Stack::start().await.unwrap();
    let other = Security::create().unwrap();
    for (addr, service) in [
        (stack.crm_sync, "tandem.crm.v1.CrmSync"),
        (stack.erp_sync, "tandem.erp.v1.ErpSync"),
    ] {
        let url = format!("https://{addr}");
        let with = |cert: &str, key: &str| ClientTlsSettings {
            enabled: true,
            ca_file: stack.security.ca_file(),
            cert_file: cert.to_owned(),
            key_file: key.to_owned(),
            domain: "localhost".into(),
        };
        for identity in [security::BRIDGE, security::TANDEMCTL] {
            health(stack.security.sync_channel(addr, identity).await, service)
                .await
                .unwrap_or_else(|e| panic!("{identity} refused on {addr}: {e}"));
        }
        let no_certificate = health(
            tandem_common::tls::channel(&url, &with("", ""))
                .await
                .map_err(Into::into),
            service,
        )
        .await;
        let dir = other.dir.display().to_string();
        let other_ca = health(
            tandem_common::tls::channel(
                &url,
                &with(
                    &format!("{dir}/sync-bridge.pem"),
                    &format!("{dir}/sync-bridge.key"),
                ),
            )
            .await
            .map_err(Into::into),
            service,
        )
        .await;
        let stranger = health(
            stack.security.sync_channel(addr, security::STRANGER).await,
            service,
        )
        .await;
        assert!(no_certificate.is_err(), "no certificate on {addr}");
        assert!(other_ca.is_err(), "another CA's certificate on {addr}");
        let stranger = stranger.expect_err("a stranger's certificate");
        assert!(
            stranger.starts_with("PermissionDenied"),
            "a stranger is named and refused: {stranger}"
        );
        // A token is no way in either: the internal port wants the certificate.
        let token = stack.security.token("mallory", &[Role::Admin]).unwrap();
        let channel = tandem_common::tls::channel(&url, &with("", ""))
            .await
            .unwrap();
        let mut client = HealthClient::new(InterceptedService::new(
            channel,
            Bearer::new(&token).unwrap(),
        ));
        assert!(
            client
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn the_subject_of_a_change_is_carried_in_its_event() {
    let stack = Stack::start().await.unwrap();
    let channel = stack
        .security
        .authed(stack.crm_grpc, "ada@sales.example", &[Role::Sales])
        .await
        .unwrap();
    let customer = crm::crm_service_client::CrmServiceClient::new(channel)
        .create_customer(crm::CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(crm::Customer {
                display_name: "Subject Test".into(),
                email: "subject@example.com".into(),
                ..crm::Customer::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let records = read_topic(
        &stack.broker.brokers,
        topics::CRM_CUSTOMERS,
        1,
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let event = records
        .iter()
        .find(|r| r.payload["aggregate_id"] == customer.id.as_str())
        .expect("the customer's event");
    assert_eq!(event.payload["subject"], "ada@sales.example");
}

#[tokio::test]
async fn the_services_reach_postgresql_over_verified_tls() {
    let admin = tandem_tests::admin_database_url();
    assert!(
        admin.contains("sslmode=verify-full"),
        "the test server is reached with verify-full (`make test` sets it up): {admin}"
    );
    let stack = Stack::start().await.unwrap();
    stack
        .crm_client()
        .await
        .unwrap()
        .create_customer(crm::CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(crm::Customer {
                display_name: "Over TLS".into(),
                email: "tls@example.com".into(),
                ..crm::Customer::default()
            }),
        })
        .await
        .unwrap();
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    for db in [&stack.crm_db.name, &stack.erp_db.name] {
        let (sessions, encrypted): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
        )
        .bind(db)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(sessions > 0, "{db}: the service holds connections");
        assert_eq!(encrypted, sessions, "{db}: every session is encrypted");
    }
}

/// Rotation as an operator does it when the client CA changes: the bridge's certificate and
/// key files are replaced by ones from a new CA, and the services restart trusting only that
/// CA. The bridge keeps running (same process) and must present the new certificate on its
/// next connections; the old one, still held by tandemctl, is now refused.
#[tokio::test]
async fn the_bridge_presents_a_rotated_client_certificate_without_a_restart() {
    let mut stack = Stack::start().await.unwrap();
    let (mut crm, erp) = support::clients(&stack).await;
    let bridge_pid = stack.bridge.pid();
    let before = create_customer(&mut crm, "Before Rotation").await;
    support::erp_has_customer(&erp, &before).await;

    // A new CA and a bridge certificate from it, written over the bridge's files (each
    // through a rename, as a Secret update lands).
    let dir = stack.security.dir.clone();
    let ca = Ca::generate("Tandem rotated test CA").unwrap();
    std::fs::write(dir.join("rotated-ca.pem"), ca.cert_pem()).unwrap();
    let issued = ca.issue(&[security::BRIDGE], Usage::Client).unwrap();
    issued.write(&dir, "next").unwrap();
    for ext in ["pem", "key"] {
        std::fs::rename(
            dir.join(format!("next.{ext}")),
            dir.join(format!("{}.{ext}", security::BRIDGE)),
        )
        .unwrap();
    }
    let rotated_ca = dir.join("rotated-ca.pem").display().to_string();
    for (service, prefix, http) in [
        (&mut stack.crm, "CRM", stack.crm_http),
        (&mut stack.erp, "ERP", stack.erp_http),
    ] {
        service.set_env(
            &format!("{prefix}__SYNC__TLS__CLIENT_CA_FILE"),
            Some(&rotated_ca),
        );
        service.kill();
        service.start().unwrap();
        tandem_tests::wait_ready(http, Duration::from_secs(30)).unwrap();
    }
    // The services really changed CAs: a certificate from the old one is refused.
    assert!(
        health(
            stack
                .security
                .sync_channel(stack.crm_sync, security::TANDEMCTL)
                .await,
            "tandem.crm.v1.CrmSync"
        )
        .await
        .is_err(),
        "the old CA's certificate must be refused after the rotation"
    );

    // Both directions sync again through the same bridge process.
    let (mut crm, mut erp) = support::clients(&stack).await;
    let after = create_customer(&mut crm, "After Rotation").await;
    support::erp_has_customer(&erp, &after).await;
    support::stock_product(&mut erp, "ROT-1", 1_000, 7).await;
    support::crm_available(&crm, "ROT-1", 7).await;
    assert_eq!(
        stack.bridge.pid(),
        bridge_pid,
        "the bridge was not restarted"
    );
}

async fn create_customer(
    crm: &mut crm::crm_service_client::CrmServiceClient<security::Authed>,
    name: &str,
) -> String {
    crm.create_customer(crm::CreateCustomerRequest {
        request_id: String::new(),
        customer: Some(crm::Customer {
            display_name: name.into(),
            email: format!("{}@example.com", name.replace(' ', ".").to_lowercase()),
            ..crm::Customer::default()
        }),
    })
    .await
    .unwrap()
    .into_inner()
    .id
}
