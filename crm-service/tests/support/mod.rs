//! The CRM started for real (its own database, a private broker, port 0), with clients for
//! both of its gRPC services, and helpers shared by the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use crm_service::{Application, Settings};
use tandem_common::{host::GrpcSettings, settings::ListenSettings};
use tandem_proto::crm::v1::{
    self as pb, ApplyProductRequest, ApplyStockLevelsRequest, CreateCustomerRequest, ProductData,
    StockLevel, crm_service_client::CrmServiceClient, crm_sync_client::CrmSyncClient,
};
use tandem_tests::security::{self, Authed, Security};
use tandem_tests::{InProcess, Record, TestBroker, TestDatabase, assert_valid_event, read_topic};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

pub struct Crm {
    pub client: CrmServiceClient<Authed>,
    pub security: Security,
    pub sync: CrmSyncClient<Channel>,
    pub db: TestDatabase,
    pub broker: TestBroker,
    pub pool: sqlx::PgPool,
    service: InProcess,
}

impl Crm {
    pub async fn start() -> Crm {
        let db = TestDatabase::create("crm").await.unwrap();
        let broker = TestBroker::start().await.unwrap();
        let mut settings = Settings {
            grpc: GrpcSettings::loopback(0),
            sync: GrpcSettings::loopback(0),
            http: ListenSettings::loopback(0),
            ..Settings::default()
        };
        settings.database.url = db.url.clone();
        settings.kafka = broker.kafka_settings();
        let security = Security::create().unwrap();
        security.secure(&mut settings.grpc, &mut settings.sync, &mut settings.auth);
        settings.outbox.poll_interval_ms = 100;
        let app = Application::build(settings).await.unwrap();
        let addr = app.grpc_addr();
        let sync_addr = app.sync_addr().unwrap();
        let pool = app.pool().clone();
        let service = InProcess::spawn(|stop| app.run_until_stopped(stop));
        let channel = security
            .authed(addr, "crm-tester", security::ALL_ROLES)
            .await
            .unwrap();
        let sync_channel = security
            .sync_channel(sync_addr, security::BRIDGE)
            .await
            .unwrap();
        Crm {
            client: CrmServiceClient::new(channel),
            security,
            sync: CrmSyncClient::new(sync_channel),
            db,
            broker,
            pool,
            service,
        }
    }

    pub async fn stop(self) {
        self.service.stop().await;
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Every event on `topic`, once at least `expected` arrived and the topic stayed quiet;
    /// each one validated against its JSON Schema.
    pub async fn events(&self, topic: &str, expected: usize) -> Vec<Record> {
        let records = read_topic(
            &self.broker.brokers,
            topic,
            expected,
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        for record in &records {
            assert_valid_event(&record.payload);
        }
        records
    }

    /// GetCustomer of `id`, which must exist.
    pub async fn customer(&mut self, id: &str) -> pb::Customer {
        self.client
            .get_customer(pb::GetCustomerRequest { id: id.to_owned() })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn create_customer(&mut self, customer: pb::Customer) -> pb::Customer {
        self.client
            .create_customer(CreateCustomerRequest {
                request_id: String::new(),
                customer: Some(customer),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Puts a product in the catalogue mirror, as the bridge would.
    pub async fn product(
        &mut self,
        sku: &str,
        price: i64,
        currency: &str,
        active: bool,
        version: i64,
    ) {
        self.sync
            .apply_product(ApplyProductRequest {
                product: Some(ProductData {
                    sku: sku.into(),
                    name: format!("Product {sku}"),
                    unit_price: Some(money(currency, price)),
                    active,
                }),
                source_version: version,
                event_id: uuid::Uuid::now_v7().to_string(),
                repair: false,
            })
            .await
            .unwrap();
    }

    pub async fn stock(&mut self, sku: &str, available: i64, version: i64) -> pb::StockLevelResult {
        self.sync
            .apply_stock_levels(ApplyStockLevelsRequest {
                levels: vec![StockLevel {
                    sku: sku.into(),
                    available,
                    source_version: version,
                }],
                event_id: String::new(),
                repair: false,
            })
            .await
            .unwrap()
            .into_inner()
            .results
            .remove(0)
    }
}

pub fn money(currency: &str, amount_minor: i64) -> pb::Money {
    pb::Money {
        currency_code: currency.into(),
        amount_minor,
    }
}

pub fn customer(name: &str) -> pb::Customer {
    pb::Customer {
        display_name: name.into(),
        email: format!("{}@example.com", name.to_lowercase().replace(' ', ".")),
        ..pb::Customer::default()
    }
}

pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

/// The fields named by an INVALID_ARGUMENT's BadRequest details.
pub fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .expect("BadRequest details")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect()
}
