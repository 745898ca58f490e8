//! Builds the CRM from its settings and runs it until shutdown.

use std::{net::SocketAddr, time::Duration};

use sqlx::PgPool;
use tandem_common::{
    CancellationToken,
    admin_http::Readiness,
    db,
    host::{GrpcSurface, Host, HostError},
    kafka::KafkaError,
    outbox::Relay,
};
use tandem_proto::{
    crm::v1::{crm_service_server::CrmServiceServer, crm_sync_server::CrmSyncServer},
    events::topics,
};
use tonic::service::RoutesBuilder;

use crate::{
    catalogue::Catalogue,
    customers::Customers,
    finance::FinanceMirror,
    grpc::{CrmApi, SyncApi},
    orders::Orders,
    settings::Settings,
};

/// Every topic the CRM publishes to (the relay creates missing ones).
pub const TOPICS: &[&str] = &[topics::CRM_CUSTOMERS, topics::CRM_ORDERS];

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long start-up waits for an unreachable database before giving up.
const MIGRATION_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] db::DbSetupError),
    #[error("cannot create the Kafka producer: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Host(#[from] HostError),
}

/// A built CRM: listeners bound, migrations applied, ready to run.
pub struct Application {
    host: Host,
    pool: PgPool,
    relay: Relay,
    customers: Customers,
    orders: Orders,
    catalogue: Catalogue,
    finance: FinanceMirror,
    shutdown_grace: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let pool = db::prepare(&settings.database, &MIGRATOR, MIGRATION_PATIENCE).await?;
        let (relay, waker) = Relay::new(
            "tandem.crm.outbox",
            pool.clone(),
            &settings.kafka,
            &settings.outbox,
            TOPICS,
        )?;
        let host = Host::bind(
            &settings.grpc,
            &settings.http,
            Readiness::new(Some(pool.clone())),
        )
        .await?;
        Ok(Self {
            host,
            customers: Customers::new(pool.clone(), waker.clone()),
            orders: Orders::new(pool.clone(), waker),
            catalogue: Catalogue::new(pool.clone()),
            finance: FinanceMirror::new(pool.clone()),
            pool,
            relay,
            shutdown_grace: Duration::from_millis(settings.shutdown_grace_ms),
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.host.http_addr()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` is cancelled, then drains calls and the outbox.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), HostError> {
        let surface = GrpcSurface {
            routes: {
                let mut routes = RoutesBuilder::default();
                routes.add_service(CrmServiceServer::new(CrmApi::new(
                    self.customers.clone(),
                    self.orders.clone(),
                    self.catalogue.clone(),
                )));
                routes.add_service(CrmSyncServer::new(SyncApi::new(
                    self.customers,
                    self.catalogue,
                    self.orders,
                    self.finance,
                )));
                routes
            },
            services: &["tandem.crm.v1.CrmService", "tandem.crm.v1.CrmSync"],
            descriptor_sets: &[tandem_proto::crm::v1::FILE_DESCRIPTOR_SET],
        };
        self.host
            .serve_with_outbox(
                surface,
                self.relay,
                self.pool,
                shutdown,
                self.shutdown_grace,
            )
            .await
    }
}
