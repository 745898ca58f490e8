//! TLS for the gRPC servers and clients: server certificates reloaded from disk, optional or
//! required client certificates (mTLS), client identities checked per request, and TLS
//! channels for the callers. One crypto provider: ring.
//!
//! - [`ServerTlsSettings`] / [`ClientTlsSettings`]: the settings (file paths, no secrets).
//! - [`ReloadingServerConfig`]: the current `rustls::ServerConfig`, rebuilt when the files'
//!   modification times change (checked at most every `reload_check_ms`, on accept). A
//!   failed reload keeps the previous configuration and logs a warning.
//! - [`incoming`]: a stream of TLS connections for tonic's `serve_with_incoming*`. Handshakes
//!   run concurrently with a timeout, so a client that connects and says nothing does not
//!   hold up anyone else; failed handshakes are logged and dropped, never yielded as errors.
//! - [`ClientIdentityLayer`]: a tower layer refusing calls without a client certificate
//!   (UNAUTHENTICATED) or from an identity that is not allowed (PERMISSION_DENIED), and
//!   recording the caller as [`PeerIdentity`] in the request extensions. [`peer_names`] and
//!   [`peer_is`] read the same information.
//! - [`channel`] / [`lazy_channel`]: client channels, TLS when the settings say so (the
//!   settings decide, not the URL's scheme). Each new connection's handshake uses
//!   [`ReloadingClientConfig`]'s current configuration, so a rotated client certificate (or
//!   CA) is used from the next connection on, without a restart.
//!
//! Server:
//!
//! ```text
//! let tls = ReloadingServerConfig::load(&settings.tls)?; // when settings.tls.enabled
//! let listener = tokio::net::TcpListener::bind(addr).await?;
//! tonic::transport::Server::builder()
//!     .layer(ClientIdentityLayer::from_settings(&settings.tls))
//!     .add_routes(routes)
//!     .serve_with_incoming_shutdown(tls::incoming(listener, tls), shutdown.cancelled())
//!     .await?;
//! ```
//!
//! With `enabled = false` serve `tokio_stream::wrappers::TcpListenerStream::new(listener)`
//! as before; `ClientIdentityLayer::from_settings` then passes everything through, so the
//! server's type only differs by its incoming stream. Calls on a server with client
//! certificates can read the caller from the extensions:
//! `request.extensions().get::<PeerIdentity>()` (or tonic's `request.peer_certs()`).
//!
//! Client:
//!
//! ```text
//! let channel = tls::lazy_channel("https://erp:50051", &settings.erp.tls)?;
//! let client = ErpSyncClient::new(channel);
//! ```
//!
//! Private keys are read from their files and handed to rustls or tonic; they never appear in
//! logs, errors or `Debug` output.

mod client;
mod identity;
mod reload;
mod server;
mod settings;

#[cfg(test)]
mod tests;

use std::{
    error::Error as StdError,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

pub use client::{ReloadingClientConfig, TlsConnector, channel, lazy_channel};
pub use identity::{ClientIdentity, ClientIdentityLayer, PeerIdentity, peer_is, peer_names};
pub use server::{HANDSHAKE_TIMEOUT, ReloadingServerConfig, TlsIncoming, incoming};
pub use settings::{ClientTlsSettings, ServerTlsSettings};

/// Why TLS could not be set up. Each error names the setting, file or URL at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The settings contradict themselves or miss a file (e.g. `require_client_cert` without
    /// `client_ca_file`).
    #[error("invalid TLS settings: {0}")]
    Settings(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is readable but holds no usable PEM certificate or key.
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("cannot trust the CA certificates in {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("cannot use the certificate {cert} with the key {key}: {source}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the TLS provider refused the protocol versions: {0}")]
    Provider(#[source] rustls::Error),
    #[error("invalid endpoint {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot connect to {url}: {}", chain(source))]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// `error` and its sources, `: `-separated (tonic's transport errors only say "transport
/// error" at the top).
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some layers repeat their source's text in their own: say it once.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in the PEM file `path` (at least one).
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(path, &read(path)?)
}

/// Every certificate in `pem`, read from `path` (at least one).
fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: path.to_owned(),
            reason: format!("invalid PEM: {error}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no certificate found".to_owned(),
        });
    }
    Ok(certs)
}

/// The CA certificates in the PEM file `path`, as the roots a peer's certificate must chain to.
fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Ca {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file `path`.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    parse_key(path, &read(path)?)
}

/// The first private key in `pem`, read from `path`. Errors describe the problem without
/// quoting the file.
fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| TlsError::Pem {
        path: path.to_owned(),
        reason: match error {
            rustls_pki_types::pem::Error::NoItemsFound => "no private key found".to_owned(),
            _ => "not a valid PEM private key".to_owned(),
        },
    })
}
