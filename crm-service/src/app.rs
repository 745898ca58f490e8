//! Builds the CRM from its settings and runs it until shutdown.

use std::{net::SocketAddr, time::Duration};

use sqlx::PgPool;
use tandem_common::pool::Db;
use tandem_common::{
    CancellationToken,
    admin_http::Readiness,
    auth::{AuthLayer, KeyStoreError, Verifier},
    db,
    guard::Guard,
    host::{GrpcSurface, Host, HostError},
    idempotency::Pruner,
    kafka::KafkaError,
    outbox::Relay,
    paging,
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
    restore::Restore,
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
    #[error("cannot load the token verification keys: {0}")]
    Auth(#[from] KeyStoreError),
    #[error(transparent)]
    PageTokenKey(#[from] paging::KeyError),
}

/// A built CRM: listeners bound, migrations applied, ready to run.
pub struct Application {
    host: Host,
    db: Db,
    relay: Relay,
    pruner: Pruner,
    customers: Customers,
    orders: Orders,
    catalogue: Catalogue,
    finance: FinanceMirror,
    restore: Restore,
    /// Largest message on the public and on the sync port.
    max_message_bytes: (usize, usize),
    /// Who may call the public and the sync port.
    guards: (Guard, Guard),
    shutdown_grace: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        paging::load_key(&settings.page_token_key_file)?;
        let pool = db::prepare(&settings.database, &MIGRATOR, MIGRATION_PATIENCE).await?;
        let db = Db::new(
            pool.clone(),
            Duration::from_millis(settings.database.check_idle_after_ms),
        );
        let (relay, waker) = Relay::new(
            "tandem.crm.outbox",
            pool.clone(),
            &settings.kafka,
            &settings.outbox,
            TOPICS,
        )?;
        let host = Host::bind(
            &settings.grpc,
            Some(&settings.sync),
            &settings.http,
            Readiness::new().with_database(pool.clone()),
        )
        .await?;
        Ok(Self {
            host,
            customers: Customers::new(db.clone(), waker.clone()),
            restore: Restore::new(db.clone(), waker.clone()),
            orders: Orders::new(db.clone(), waker),
            catalogue: Catalogue::new(db.clone()),
            finance: FinanceMirror::new(db.clone()),
            pruner: Pruner::new(pool.clone(), &settings.idempotency),
            db,
            relay,
            max_message_bytes: (
                settings.grpc.limits.max_message_bytes,
                settings.sync.limits.max_message_bytes,
            ),
            guards: (
                Guard::Bearer(AuthLayer::new(
                    Verifier::from_settings(&settings.auth)?,
                    crate::grpc::ACCESS,
                )),
                settings.sync.mutual_tls_guard()?,
            ),
            shutdown_grace: Duration::from_millis(settings.shutdown_grace_ms),
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    /// The internal sync port.
    pub fn sync_addr(&self) -> Option<SocketAddr> {
        self.host.sync_addr()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.host.http_addr()
    }

    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// Serves until `shutdown` is cancelled, then drains calls and the outbox.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), HostError> {
        tokio::spawn(self.pruner.run(shutdown.child_token()));
        let (public_max, sync_max) = self.max_message_bytes;
        let (public_guard, sync_guard) = self.guards;
        let api = CrmApi::new(
            self.customers.clone(),
            self.orders.clone(),
            self.catalogue.clone(),
        );
        let public = CrmServiceServer::new(api)
            .max_decoding_message_size(public_max)
            .max_encoding_message_size(public_max);
        let surface = GrpcSurface {
            routes: {
                let mut routes = RoutesBuilder::default();
                routes.add_service(public.clone());
                routes
            },
            services: &["tandem.crm.v1.CrmService"],
            descriptor_sets: &[tandem_proto::crm::v1::FILE_DESCRIPTOR_SET],
            guard: public_guard,
        };
        let sync = GrpcSurface {
            routes: {
                let mut routes = RoutesBuilder::default();
                routes.add_service(
                    CrmSyncServer::new(SyncApi::new(
                        self.customers,
                        self.catalogue,
                        self.orders,
                        self.finance,
                        self.restore,
                    ))
                    .max_decoding_message_size(sync_max)
                    .max_encoding_message_size(sync_max),
                );
                routes.add_service(
                    public
                        .max_decoding_message_size(sync_max)
                        .max_encoding_message_size(sync_max),
                );
                routes
            },
            services: &["tandem.crm.v1.CrmService", "tandem.crm.v1.CrmSync"],
            descriptor_sets: &[tandem_proto::crm::v1::FILE_DESCRIPTOR_SET],
            guard: sync_guard,
        };
        self.host
            .serve_with_outbox(
                surface,
                Some(sync),
                self.relay,
                self.db,
                shutdown,
                self.shutdown_grace,
            )
            .await
    }
}
