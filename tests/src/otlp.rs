//! An OTLP/gRPC trace receiver for the tests: the processes export their spans to it as to a
//! collector (`*__TELEMETRY__OTLP_ENDPOINT`), and a test reads back every span it received.
//! A real server speaking the OpenTelemetry protocol, not a stand-in for our code.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::Result;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use tokio_util::sync::CancellationToken;

/// One span as received (ids in lower-case hex).
pub type ReceivedSpan = tandem_common::otlp::CollectedSpan;

#[derive(Clone, Default)]
struct Store {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// The request headers (gRPC metadata) of every export call.
    headers: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .iter()
            .filter_map(|entry| match entry {
                tonic::metadata::KeyAndValueRef::Ascii(key, value) => {
                    Some((key.to_string(), value.to_str().ok()?.to_owned()))
                }
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        self.headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(headers);
        let received = ReceivedSpan::from_request(request.into_inner());
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The receiver, serving on a free loopback port until dropped.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    scheme: &'static str,
    store: Store,
    stop: CancellationToken,
}

impl OtlpReceiver {
    pub async fn start() -> Result<Self> {
        Self::serve(None).await
    }

    /// The receiver behind TLS, with the server certificate of `security` (names localhost
    /// and 127.0.0.1): endpoint `https://127.0.0.1:<port>`.
    pub async fn start_tls(security: &crate::security::Security) -> Result<Self> {
        let settings = tandem_common::tls::ServerTlsSettings {
            enabled: true,
            cert_file: security.dir.join("server.pem").display().to_string(),
            key_file: security.dir.join("server.key").display().to_string(),
            ..tandem_common::tls::ServerTlsSettings::default()
        };
        Self::serve(Some(tandem_common::tls::ReloadingServerConfig::load(
            &settings,
        )?))
        .await
    }

    async fn serve(tls: Option<tandem_common::tls::ReloadingServerConfig>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let store = Store::default();
        let stop = CancellationToken::new();
        let router =
            tonic::transport::Server::builder().add_service(TraceServiceServer::new(store.clone()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        match tls {
            Some(tls) => {
                tokio::spawn(router.serve_with_incoming_shutdown(
                    tandem_common::tls::incoming(listener, tls),
                    stop.clone().cancelled_owned(),
                ));
            }
            None => {
                tokio::spawn(router.serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ));
            }
        }
        Ok(Self {
            addr,
            scheme,
            store,
            stop,
        })
    }

    /// What the processes' `*__TELEMETRY__OTLP_ENDPOINT` should say.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store
            .spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The headers of every export call received so far.
    pub fn headers(&self) -> Vec<HashMap<String, String>> {
        self.store
            .headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
