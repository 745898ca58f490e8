//! The client side: tonic channels, with TLS (and a client certificate) when the settings say
//! so. TLS is done by [`TlsConnector`], whose configuration is re-read from its files when they
//! change, so a rotated client certificate is presented from the next connection on.

use std::{
    fmt,
    future::Future,
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::uri::{Scheme, Uri};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

use super::{
    ClientTlsSettings, HANDSHAKE_TIMEOUT, TlsError, load_certs, load_key,
    reload::{ConfigFiles, Reloading, required},
    root_store,
};

/// How long the TCP connection may take (as the bridge's plaintext channels).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The files a client configuration is built from.
#[derive(Debug, Clone)]
struct Files {
    ca: PathBuf,
    /// This client's certificate and key, for servers that ask for one.
    identity: Option<(PathBuf, PathBuf)>,
}

impl Files {
    fn from_settings(settings: &ClientTlsSettings) -> Result<Self, TlsError> {
        let ca = required(&settings.ca_file, "ca_file").map_err(|_| {
            TlsError::Settings(
                "ca_file is not set (the CA the server's certificate chains to)".to_owned(),
            )
        })?;
        let identity = match (settings.cert_file.is_empty(), settings.key_file.is_empty()) {
            (true, true) => None,
            (false, false) => Some((
                PathBuf::from(&settings.cert_file),
                PathBuf::from(&settings.key_file),
            )),
            _ => {
                return Err(TlsError::Settings(
                    "cert_file and key_file are set together or not at all".to_owned(),
                ));
            }
        };
        Ok(Self { ca, identity })
    }
}

impl ConfigFiles for Files {
    type Config = ClientConfig;

    fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.ca.as_path()];
        if let Some((cert, key)) = &self.identity {
            paths.extend([cert.as_path(), key.as_path()]);
        }
        paths
    }

    fn named(&self) -> &Path {
        self.identity.as_ref().map_or(&self.ca, |(cert, _)| cert)
    }

    fn build(&self) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Provider)?
            .with_root_certificates(root_store(&self.ca)?);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|source| TlsError::Identity {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?,
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// A client's TLS configuration, rebuilt from its files (CA, certificate, key) when they
/// change; checked on every new connection (connections are few and long-lived). A
/// configuration that fails to build is logged and the previous one stays in use.
#[derive(Clone)]
pub struct ReloadingClientConfig {
    inner: Reloading<Files>,
}

impl fmt::Debug for ReloadingClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.inner.files();
        f.debug_struct("ReloadingClientConfig")
            .field("ca_file", &files.ca)
            .field("cert_file", &files.identity.as_ref().map(|(cert, _)| cert))
            .finish_non_exhaustive()
    }
}

impl ReloadingClientConfig {
    /// Reads the files `settings` name now, so a missing or malformed file is reported by
    /// name at start-up rather than on the first call. ALPN offers `h2` only.
    pub fn load(settings: &ClientTlsSettings) -> Result<Self, TlsError> {
        Ok(Self {
            inner: Reloading::load(Files::from_settings(settings)?, Duration::ZERO)?,
        })
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ClientConfig> {
        self.inner.current()
    }
}

/// Connects tonic's channels: TCP (2 s timeout, `TCP_NODELAY`), then a TLS handshake (10 s
/// timeout) with the current [`ReloadingClientConfig`], verifying the server's certificate
/// for `server_name`.
#[derive(Clone)]
pub struct TlsConnector {
    config: ReloadingClientConfig,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("config", &self.config)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsConnector {
    pub fn new(config: ReloadingClientConfig, server_name: &str) -> Result<Self, TlsError> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| TlsError::Settings(format!("invalid server name {server_name:?}: {e}")))?;
        Ok(Self {
            config,
            server_name,
        })
    }
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config.current());
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            tcp.set_nodelay(true)?;
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(server_name, tcp))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            Ok(TokioIo::new(tls))
        })
    }
}

/// How to reach `url` (`http://` or `https://`, host and port): the endpoint (connect timeout
/// 2 s, `TCP_NODELAY`) and, when `tls.enabled` (whatever the scheme says), the connector that
/// speaks TLS trusting `tls.ca_file`, presenting `tls.cert_file`/`key_file` when set, and
/// verifying the server's certificate for `tls.domain` (or the URL's host).
pub(super) fn plan(
    url: &str,
    tls: &ClientTlsSettings,
) -> Result<(Endpoint, Option<TlsConnector>), TlsError> {
    let url_error = |reason: &str| TlsError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| url_error(&e.to_string()))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        Some(_) => return Err(url_error("the scheme must be http or https")),
        None => return Err(url_error("no scheme (http:// or https://)")),
    };
    let host = uri
        .host()
        .ok_or_else(|| url_error("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let connector = if tls.enabled {
        let domain = if tls.domain.is_empty() {
            &host
        } else {
            &tls.domain
        };
        Some(TlsConnector::new(
            ReloadingClientConfig::load(tls)?,
            domain,
        )?)
    } else {
        None
    };
    // The connector does the TLS: tonic sees a plain `http` URL with an explicit port.
    let mut parts = uri.into_parts();
    if let Some(authority) = &parts.authority
        && authority.port_u16().is_none()
    {
        parts.authority = Some(
            format!("{authority}:{default_port}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| url_error(&e.to_string()))?,
        );
    }
    parts.scheme = Some(Scheme::HTTP);
    let uri = Uri::from_parts(parts).map_err(|e| url_error(&e.to_string()))?;
    let endpoint = Endpoint::from(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    Ok((endpoint, connector))
}

/// A channel to `url`, connected now (see [`plan`] for the settings).
pub async fn channel(url: &str, tls: &ClientTlsSettings) -> Result<Channel, TlsError> {
    let connect_error = |source| TlsError::Connect {
        url: url.to_owned(),
        source,
    };
    match plan(url, tls)? {
        (endpoint, Some(connector)) => endpoint
            .connect_with_connector(connector)
            .await
            .map_err(connect_error),
        (endpoint, None) => endpoint.connect().await.map_err(connect_error),
    }
}

/// A channel to `url` that connects on first use and reconnects as needed, so a process can
/// start while its peer is down (see [`plan`] for the settings). Every connection it makes
/// uses the TLS files as they are then. Must be called within a Tokio runtime.
pub fn lazy_channel(url: &str, tls: &ClientTlsSettings) -> Result<Channel, TlsError> {
    Ok(match plan(url, tls)? {
        (endpoint, Some(connector)) => endpoint.connect_with_connector_lazy(connector),
        (endpoint, None) => endpoint.connect_lazy(),
    })
}
