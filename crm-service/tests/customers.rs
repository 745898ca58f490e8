//! The CRM over real gRPC, a real PostgreSQL database of its own and a real broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crm_service::{Application, Settings, customers};
use tandem_common::{CancellationToken, settings::ListenSettings};
use tandem_proto::{
    crm::v1::{
        CreateCustomerRequest, Customer, CustomerStatus, GetCustomerRequest, UpdateCustomerRequest,
        crm_service_client::CrmServiceClient,
    },
    events::{CustomerStatus as EventStatus, topics},
};
use tandem_tests::{TestBroker, TestDatabase, assert_valid_event, read_topic};
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

struct Crm {
    client: CrmServiceClient<Channel>,
    _db: TestDatabase,
    broker: TestBroker,
    pool: sqlx::PgPool,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Crm {
    async fn start() -> Crm {
        let db = TestDatabase::create("crm").await.unwrap();
        let broker = TestBroker::start().await.unwrap();
        let mut settings = Settings {
            grpc: ListenSettings::loopback(0),
            http: ListenSettings::loopback(0),
            ..Settings::default()
        };
        settings.database.url = db.url.clone();
        settings.kafka.brokers = broker.brokers.clone();
        settings.outbox.poll_interval_ms = 100;
        let app = Application::build(settings).await.unwrap();
        let addr = app.grpc_addr();
        let pool = app.pool().clone();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { app.run_until_stopped(stop).await.unwrap() });
        let client = CrmServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        Crm {
            client,
            _db: db,
            broker,
            pool,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

fn ada() -> Customer {
    Customer {
        display_name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        phone: "+44 20 7946 0958".into(),
        external_ref: "shop:ada".into(),
        ..Customer::default()
    }
}

#[tokio::test]
async fn create_then_get_returns_the_stored_customer_and_publishes_it() {
    let mut crm = Crm::start().await;
    let created = crm
        .client
        .create_customer(CreateCustomerRequest {
            customer: Some(ada()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.version, 1);
    assert_eq!(created.status(), CustomerStatus::Active);
    assert_eq!(created.display_name, "Ada Lovelace");

    let fetched = crm
        .client
        .get_customer(GetCustomerRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, created);

    let records = read_topic(
        &crm.broker.brokers,
        topics::CRM_CUSTOMERS,
        1,
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.key.as_deref(), Some(created.id.as_str()));
    let event = &record.payload;
    assert_valid_event(event);
    assert_eq!(event["type"], "crm.customer.upserted");
    assert_eq!(event["schema_version"], 1);
    assert_eq!(event["source"], "crm");
    assert_eq!(event["aggregate_type"], "customer");
    assert_eq!(event["aggregate_id"], created.id);
    assert_eq!(event["aggregate_version"], 1);
    assert_eq!(event["data"]["email"], "ada@example.com");
    assert_eq!(event["data"]["tax_id"], serde_json::Value::Null);
    assert_eq!(event["data"]["status"], "ACTIVE");
    crm.stop().await;
}

#[tokio::test]
async fn invalid_input_names_every_field_and_writes_nothing() {
    let mut crm = Crm::start().await;
    let status = crm
        .client
        .create_customer(CreateCustomerRequest {
            customer: Some(Customer {
                display_name: String::new(),
                email: "ada@".into(),
                ..ada()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<&str> = details
        .bad_request()
        .expect("BadRequest details")
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["customer.display_name", "customer.email"]);

    let missing = crm
        .client
        .create_customer(CreateCustomerRequest { customer: None })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);

    let not_a_uuid = crm
        .client
        .get_customer(GetCustomerRequest { id: "42".into() })
        .await
        .unwrap_err();
    assert_eq!(not_a_uuid.code(), Code::InvalidArgument);
    let unknown = crm
        .client
        .get_customer(GetCustomerRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    assert_eq!(crm.count("customers").await, 0);
    assert_eq!(crm.count("outbox").await, 0);
    crm.stop().await;
}

#[tokio::test]
async fn updates_bump_the_version_and_stale_writes_are_aborted() {
    let mut crm = Crm::start().await;
    let created = crm
        .client
        .create_customer(CreateCustomerRequest {
            customer: Some(ada()),
        })
        .await
        .unwrap()
        .into_inner();

    let updated = crm
        .client
        .update_customer(UpdateCustomerRequest {
            customer: Some(Customer {
                id: created.id.clone(),
                email: "ada@analytical.engine".into(),
                version: 1,
                ..Customer::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.email, "ada@analytical.engine");
    assert_eq!(updated.display_name, "Ada Lovelace", "unmasked field kept");

    let stale = crm
        .client
        .update_customer(UpdateCustomerRequest {
            customer: Some(Customer {
                id: created.id.clone(),
                display_name: "Stale".into(),
                version: 1,
                ..Customer::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let duplicate_ref = crm
        .client
        .create_customer(CreateCustomerRequest {
            customer: Some(Customer {
                email: "other@example.com".into(),
                ..ada()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate_ref.code(), Code::AlreadyExists);

    let current = crm
        .client
        .get_customer(GetCustomerRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current, updated);

    let records = read_topic(
        &crm.broker.brokers,
        topics::CRM_CUSTOMERS,
        2,
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let versions: Vec<i64> = records
        .iter()
        .map(|r| r.payload["aggregate_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2], "one event per committed change, in order");
    crm.stop().await;
}

#[tokio::test]
async fn a_rolled_back_transaction_publishes_nothing() {
    let crm = Crm::start().await;
    let profile = |name: &str| customers::Profile {
        display_name: name.into(),
        email: format!("{}@example.com", name.to_lowercase()),
        phone: None,
        tax_id: None,
        status: EventStatus::Active,
        external_ref: None,
    };

    let mut tx = crm.pool.begin().await.unwrap();
    let rolled_back = customers::insert_with_event(&mut tx, profile("Ghost"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let mut tx = crm.pool.begin().await.unwrap();
    let committed = customers::insert_with_event(&mut tx, profile("Real"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The relay finds the committed row by polling (nothing woke it).
    let records = read_topic(
        &crm.broker.brokers,
        topics::CRM_CUSTOMERS,
        1,
        Duration::from_millis(1_000),
    )
    .await
    .unwrap();
    let ids: Vec<&str> = records.iter().filter_map(|r| r.key.as_deref()).collect();
    assert_eq!(ids, [committed.id.to_string().as_str()]);
    assert!(!ids.contains(&rolled_back.id.to_string().as_str()));
    assert_eq!(crm.count("customers").await, 1);
    assert_eq!(crm.count("outbox").await, 1);
    crm.stop().await;
}
