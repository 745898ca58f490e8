//! Binds a process's gRPC listeners (the public API and, for the services, the internal sync
//! API on a port of its own) and its admin HTTP listener, and serves them until shutdown, with
//! the service's outbox relay alongside when it has one (`Host::serve_with_outbox`, in
//! [`crate::outbox`], with the `database` feature).

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::{
    admin_http::{self, Readiness},
    grpc,
    guard::Guard,
    limits::LimitSettings,
    settings::ListenSettings,
    telemetry::InFlight,
    tls::{ClientIdentityLayer, ReloadingServerConfig, ServerTlsSettings, TlsError},
};

/// One gRPC port: where it listens, whether it serves reflection, its TLS and its limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GrpcSettings {
    /// Socket address, e.g. `127.0.0.1:50051`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Serve gRPC server reflection (grpcurl, grpcui) on this port.
    pub reflection: bool,
    pub tls: ServerTlsSettings,
    pub limits: LimitSettings,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self::loopback(0)
    }
}

impl GrpcSettings {
    /// The guard of an internal port: mutual TLS, callers named in `tls.allowed_clients`.
    /// Refuses settings without TLS and a client CA: an internal port never serves callers it
    /// cannot identify.
    pub fn mutual_tls_guard(&self) -> Result<Guard, HostError> {
        if !self.tls.enabled || self.tls.client_ca_file.is_empty() {
            return Err(HostError::Insecure {
                addr: self.listen,
                what: "this internal port serves only callers with client certificates: set \
                       its tls.enabled, tls.cert_file, tls.key_file and tls.client_ca_file",
            });
        }
        Ok(Guard::Peers(ClientIdentityLayer::new(
            self.tls.allowed_clients.clone(),
        )))
    }

    /// A public port on loopback: TLS on (the certificate files still to be named).
    pub fn public(port: u16) -> Self {
        let mut settings = Self::loopback(port);
        settings.tls.enabled = true;
        settings
    }

    /// An internal port on loopback: mutual TLS, only the bridge and tandemctl let in.
    pub fn internal(port: u16) -> Self {
        let mut settings = Self::public(port);
        settings.tls.require_client_cert = true;
        settings.tls.allowed_clients = vec!["sync-bridge".to_owned(), "tandemctl".to_owned()];
        settings
    }

    /// A plaintext port on loopback (tests, and the bridge's health port).
    pub fn loopback(port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            reflection: true,
            tls: ServerTlsSettings::default(),
            limits: LimitSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Grpc(#[from] grpc::ServeError),
    #[error("gRPC port {addr}: {what}")]
    Insecure {
        addr: SocketAddr,
        what: &'static str,
    },
    #[error("TLS of the gRPC port {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: Box<TlsError>,
    },
}

/// Listeners bound at build time, so tests can ask for port 0 and read the real port.
pub struct Host {
    grpc: Port,
    sync: Option<Port>,
    http: TcpListener,
    readiness: Readiness,
}

/// A bound gRPC listener, its settings and its TLS configuration (loaded at bind time, so bad
/// files stop the start-up with their names).
struct Port {
    listener: TcpListener,
    settings: GrpcSettings,
    tls: Option<ReloadingServerConfig>,
}

impl Port {
    async fn bind(settings: &GrpcSettings) -> Result<Self, HostError> {
        let tls = if settings.tls.enabled {
            let config =
                ReloadingServerConfig::load(&settings.tls).map_err(|source| HostError::Tls {
                    addr: settings.listen,
                    source: Box::new(source),
                })?;
            Some(config)
        } else {
            None
        };
        Ok(Self {
            listener: bind(settings.listen).await?,
            settings: settings.clone(),
            tls,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }
}

/// What a host serves over gRPC.
pub struct GrpcSurface {
    /// The process's own services (may be empty); health and reflection are added.
    pub routes: RoutesBuilder,
    /// Fully-qualified service names reported by the health service.
    pub services: &'static [&'static str],
    /// Encoded file descriptor sets of those services, served by reflection.
    pub descriptor_sets: &'static [&'static [u8]],
    /// Who may call.
    pub guard: Guard,
}

impl Host {
    /// Binds the public gRPC port, the internal sync port when the process has one, and the
    /// admin HTTP port.
    pub async fn bind(
        grpc: &GrpcSettings,
        sync: Option<&GrpcSettings>,
        http: &ListenSettings,
        readiness: Readiness,
    ) -> Result<Self, HostError> {
        let sync = match sync {
            Some(settings) => Some(Port::bind(settings).await?),
            None => None,
        };
        Ok(Self {
            grpc: Port::bind(grpc).await?,
            sync,
            http: bind(http.listen).await?,
            readiness,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.addr()
    }

    /// The internal sync port, when the process has one.
    pub fn sync_addr(&self) -> Option<SocketAddr> {
        self.sync.as_ref().map(Port::addr)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Serves until `shutdown` is cancelled: readiness drops, health flips to NOT_SERVING,
    /// in-flight calls drain (at most `drain_deadline`), then the admin server stops.
    /// `sync` is what the internal port serves (ignored when the host has none).
    pub async fn serve(
        self,
        surface: GrpcSurface,
        sync: Option<GrpcSurface>,
        shutdown: CancellationToken,
        drain_deadline: Duration,
    ) -> Result<(), HostError> {
        let admin_stop = CancellationToken::new();
        let admin = tokio::spawn(admin_http::serve(
            self.http,
            self.readiness.clone(),
            admin_stop.clone(),
        ));
        tracing::info!(
            grpc = %self.grpc.addr(),
            sync = %self.sync.as_ref().map(|p| p.addr().to_string()).unwrap_or_default(),
            "serving"
        );
        self.readiness.set_ready(true);

        let readiness = self.readiness.clone();
        let grpc_stop = CancellationToken::new();
        let stopping = shutdown.clone();
        let grpc_stop_trigger = grpc_stop.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            readiness.set_ready(false);
            grpc_stop_trigger.cancel();
        });
        let in_flight = InFlight::default();
        let public = grpc::serve(
            self.grpc.listener,
            &self.grpc.settings,
            self.grpc.tls,
            surface,
            self.readiness.clone(),
            in_flight.clone(),
            grpc_stop.clone(),
        );
        let internal = async {
            match (self.sync, sync) {
                (Some(port), Some(surface)) => {
                    grpc::serve(
                        port.listener,
                        &port.settings,
                        port.tls,
                        surface,
                        self.readiness.clone(),
                        in_flight.clone(),
                        grpc_stop,
                    )
                    .await
                }
                _ => {
                    grpc_stop.cancelled().await;
                    Ok(())
                }
            }
        };
        // Both ports run until the stop; either failing stops the process.
        let served = async {
            tokio::try_join!(public, internal)?;
            Ok::<(), grpc::ServeError>(())
        };
        // The server stops on its own once every connection is gone; clients that keep idle
        // connections open must not hold shutdown up, so stop once no call is in flight.
        let result = tokio::select! {
            result = served => result.map_err(HostError::from),
            () = drained(&shutdown, &in_flight, drain_deadline) => Ok(()),
        };
        admin_stop.cancel();
        if let Ok(Err(error)) = admin.await {
            tracing::warn!(%error, "admin server stopped with an error");
        }
        result
    }
}

/// Resolves after `shutdown`, once no call is in flight or `deadline` passed.
async fn drained(shutdown: &CancellationToken, in_flight: &InFlight, deadline: Duration) {
    shutdown.cancelled().await;
    let give_up = tokio::time::Instant::now() + deadline;
    // Let calls that were accepted just before the signal register.
    tokio::time::sleep(Duration::from_millis(20)).await;
    while in_flight.count() > 0 {
        if tokio::time::Instant::now() >= give_up {
            tracing::warn!(
                calls = in_flight.count(),
                ?deadline,
                "in-flight calls did not drain in time"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!("in-flight calls drained");
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, HostError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HostError::Bind { addr, source })
}
