//! The ERP started for real for the integration tests: its own database, a private broker,
//! gRPC on port 0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use erp_service::{Application, Settings};
use prost_types::FieldMask;
use tandem_common::{host::GrpcSettings, settings::ListenSettings};
use tandem_proto::erp::v1::{erp_service_client::ErpServiceClient, erp_sync_client::ErpSyncClient};
use tandem_tests::security::{self, Authed, Security};
use tandem_tests::{InProcess, TestBroker, TestDatabase};
use tonic::transport::Channel;

pub struct Erp {
    pub api: ErpServiceClient<Authed>,
    pub security: Security,
    pub sync: ErpSyncClient<Channel>,
    pub pool: sqlx::PgPool,
    pub broker: TestBroker,
    pub service: InProcess,
    _db: TestDatabase,
}

impl Erp {
    pub async fn start() -> Erp {
        let db = TestDatabase::create("erp").await.unwrap();
        let broker = TestBroker::start().await.unwrap();
        let mut settings = Settings {
            grpc: GrpcSettings::loopback(0),
            sync: GrpcSettings::loopback(0),
            http: ListenSettings::loopback(0),
            ..Settings::default()
        };
        settings.database.url = db.url.clone();
        settings.database.max_connections = 20;
        // The race tests send 100 calls at once; the default cap (64) would shed some.
        settings.sync.limits.max_concurrent_calls = 128;
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
            .authed(addr, "erp-tester", security::ALL_ROLES)
            .await
            .unwrap();
        let sync_channel = security
            .sync_channel(sync_addr, security::BRIDGE)
            .await
            .unwrap();
        Erp {
            api: ErpServiceClient::new(channel),
            security,
            sync: ErpSyncClient::new(sync_channel),
            pool,
            broker,
            service,
            _db: db,
        }
    }

    pub async fn stop(self) {
        self.service.stop().await;
    }
}

pub fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}
