//! Builds the bridge from its settings and runs it until shutdown.

use std::{net::SocketAddr, time::Duration};

use tandem_common::{
    CancellationToken,
    admin_http::Readiness,
    backoff::BackoffSettings,
    guard::Guard,
    host::{GrpcSurface, Host, HostError},
    kafka::{KafkaError, KafkaSettings},
    producer::AckProducer,
    tls,
};
use tonic::service::RoutesBuilder;

use crate::{
    apply::Applier,
    consumer::{self, Bridge},
    dead_letter::DeadLetter,
    flows::Flows,
    reachability::Reachability,
    settings::{EndpointSettings, Settings},
};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("endpoint: {0}")]
    Endpoint(#[source] tls::TlsError),
    #[error("cannot create Kafka clients: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Host(#[from] HostError),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("consumer failed: {0}")]
    Kafka(#[from] KafkaError),
}

/// A lazily connected channel (the bridge starts while its targets are down), over TLS with
/// the bridge's client certificate when the settings say so.
fn channel(endpoint: &EndpointSettings) -> Result<tonic::transport::Channel, StartupError> {
    tls::lazy_channel(&endpoint.url, &endpoint.tls).map_err(StartupError::Endpoint)
}

pub struct Application {
    host: Host,
    bridge: Bridge,
    reachability: Reachability,
    kafka: KafkaSettings,
    retry: BackoffSettings,
    shutdown_grace: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let (erp, crm) = (channel(&settings.erp)?, channel(&settings.crm)?);
        let flows = Flows::new(
            erp.clone(),
            crm.clone(),
            Duration::from_millis(settings.erp.timeout_ms.max(settings.crm.timeout_ms)),
        );
        let producer = AckProducer::new(&settings.kafka.producer_config()?)?;
        let (reachability, dependencies) = Reachability::new(
            crm,
            erp,
            producer.clone(),
            settings.consumer.dead_letter_topic.clone(),
        );
        let dead_letter = DeadLetter::new(producer, settings.consumer.dead_letter_topic.clone());
        let consumer = consumer::consumer(&settings.kafka, &settings.consumer)?;
        let (bridge, assigned) = Bridge::new(
            consumer,
            Applier::new(
                flows,
                dead_letter,
                settings.consumer.retry,
                settings.consumer.dependency_attempts,
            ),
            settings.consumer.batch_max,
            settings.consumer.assignment,
            Duration::from_millis(settings.consumer.rejoin_after_ms),
            consumer::Resting::from_settings(&settings.consumer),
        );
        // Ready while holding partitions and while the CRM, the ERP and the broker are
        // reachable.
        let readiness = dependencies
            .into_iter()
            .chain([assigned])
            .fold(Readiness::new(), Readiness::requiring);
        let host = Host::bind(&settings.grpc, None, &settings.http, readiness).await?;
        Ok(Self {
            host,
            bridge,
            reachability,
            kafka: settings.kafka,
            retry: settings.consumer.retry,
            shutdown_grace: Duration::from_millis(settings.shutdown_grace_ms),
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.host.http_addr()
    }

    /// Consumes until `shutdown` is cancelled, then commits applied offsets and stops.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let surface = GrpcSurface {
            routes: RoutesBuilder::default(),
            services: &[],
            descriptor_sets: &[],
            guard: Guard::Open,
        };
        let host =
            tokio::spawn(
                self.host
                    .serve(surface, None, shutdown.clone(), self.shutdown_grace),
            );
        tokio::spawn(self.reachability.watch(shutdown.clone()));
        let consumed = self
            .bridge
            .run(
                &self.kafka,
                self.retry,
                shutdown.clone(),
                self.shutdown_grace,
            )
            .await;
        // Whatever ended the consumer ends the process (the orchestrator restarts it).
        shutdown.cancel();
        match host.await {
            Ok(Err(error)) => return Err(error.into()),
            Err(error) => tracing::error!(%error, "admin task panicked"),
            Ok(Ok(())) => {}
        }
        consumed.map_err(RunError::from)
    }
}
