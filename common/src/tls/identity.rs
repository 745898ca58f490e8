//! Who is calling: the client certificate of the connection a request came on, and a layer
//! refusing calls from callers that are not allowed.
//!
//! The certificate chain was verified against the client CA during the handshake
//! ([`super::ReloadingServerConfig`]); here only the identity is read. An identity is a DNS
//! name among the certificate's subject alternative names, compared exactly (ASCII case
//! aside): a wildcard certificate (`*.tandem.internal`) never stands for a listed client.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::{Either, Ready, ready};
use rustls_pki_types::CertificateDer;
use tonic::{
    Status,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

/// The identity of the client a request came from (one of the allowed names, or the
/// certificate's first DNS name when any certificate from the CA is allowed), set in the
/// request extensions by [`ClientIdentityLayer`]. Handlers read it with
/// `request.extensions().get::<PeerIdentity>()`, e.g. to log the caller as the subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity(pub String);

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn connect_info(extensions: &http::Extensions) -> Option<&TlsConnectInfo<TcpConnectInfo>> {
    extensions.get::<TlsConnectInfo<TcpConnectInfo>>()
}

/// The peer's end-entity certificate, if the connection is TLS and the client sent one.
fn peer_certificate(extensions: &http::Extensions) -> Option<CertificateDer<'static>> {
    let certs = connect_info(extensions)?.peer_certs()?;
    certs.first().cloned()
}

fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(cert) => cert.valid_dns_names().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}

/// The first of `allowed` that `cert` names, if any.
fn matching<'a>(cert: &CertificateDer<'_>, allowed: &'a [String]) -> Option<&'a String> {
    let names = dns_names(cert);
    allowed
        .iter()
        .find(|wanted| names.iter().any(|name| name.eq_ignore_ascii_case(wanted)))
}

/// The DNS names (subject alternative names) of the client certificate `request` came with;
/// empty without TLS or without a client certificate. For logs and diagnostics: decide with
/// [`peer_is`] or [`ClientIdentityLayer`].
pub fn peer_names<B>(request: &http::Request<B>) -> Vec<String> {
    peer_certificate(request.extensions())
        .map(|cert| dns_names(&cert))
        .unwrap_or_default()
}

/// Whether `request` came with a client certificate naming one of `allowed`.
pub fn peer_is<B>(request: &http::Request<B>, allowed: &[String]) -> bool {
    peer_certificate(request.extensions()).is_some_and(|cert| matching(&cert, allowed).is_some())
}

/// Refuses calls without a client certificate (UNAUTHENTICATED) or whose certificate names
/// none of the allowed identities (PERMISSION_DENIED); lets the others through with a
/// [`PeerIdentity`] in their extensions. Every path is checked, the health service included.
///
/// Works on the connections of [`super::incoming`] (tonic puts their
/// `TlsConnectInfo<TcpConnectInfo>` in each request); on plaintext connections every call is
/// UNAUTHENTICATED, so the layer fails closed when TLS is off, unless built with
/// [`pass_through`](Self::pass_through) (which [`from_settings`](Self::from_settings) does
/// when no client certificates are asked for).
#[derive(Debug, Clone)]
pub struct ClientIdentityLayer {
    /// `None`: no checks. `Some(empty)`: any certificate.
    allowed: Option<Arc<[String]>>,
}

impl ClientIdentityLayer {
    /// Only clients whose certificate names one of `allowed`; empty: any client certificate
    /// (the TLS handshake already checked it chains to the client CA).
    pub fn new(allowed: Vec<String>) -> Self {
        Self {
            allowed: Some(allowed.into()),
        }
    }

    /// No checks at all: for servers that do not ask for client certificates.
    pub fn pass_through() -> Self {
        Self { allowed: None }
    }

    /// Checks `allowed_clients` when the settings enable TLS with client certificates
    /// (`client_ca_file` set); passes everything through otherwise.
    pub fn from_settings(settings: &super::ServerTlsSettings) -> Self {
        if settings.enabled && !settings.client_ca_file.is_empty() {
            Self::new(settings.allowed_clients.clone())
        } else {
            Self::pass_through()
        }
    }
}

impl<S> tower_layer::Layer<S> for ClientIdentityLayer {
    type Service = ClientIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIdentity {
            inner,
            allowed: self.allowed.clone(),
        }
    }
}

/// The service [`ClientIdentityLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct ClientIdentity<S> {
    inner: S,
    allowed: Option<Arc<[String]>>,
}

/// The caller's identity, or the status refusing it.
fn identify(
    extensions: &http::Extensions,
    allowed: &[String],
    path: &str,
) -> Result<Option<PeerIdentity>, Status> {
    let peer = connect_info(extensions).and_then(|info| info.get_ref().remote_addr());
    let Some(cert) = peer_certificate(extensions) else {
        tracing::info!(?peer, path, "refused a call without a client certificate");
        return Err(Status::unauthenticated("a client certificate is required"));
    };
    if allowed.is_empty() {
        return Ok(dns_names(&cert).into_iter().next().map(PeerIdentity));
    }
    match matching(&cert, allowed) {
        Some(name) => Ok(Some(PeerIdentity(name.clone()))),
        None => {
            tracing::info!(
                ?peer,
                path,
                names = ?dns_names(&cert),
                "refused a call from a client that is not allowed"
            );
            Err(Status::permission_denied("this client is not allowed"))
        }
    }
}

impl<S, B, ResBody> tower_service::Service<http::Request<B>> for ClientIdentity<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let Some(allowed) = &self.allowed else {
            return Either::Right(self.inner.call(request));
        };
        match identify(request.extensions(), allowed, request.uri().path()) {
            Ok(identity) => {
                if let Some(identity) = identity {
                    request.extensions_mut().insert(identity);
                }
                Either::Right(self.inner.call(request))
            }
            Err(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}
