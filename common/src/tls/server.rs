//! The server side: a `rustls::ServerConfig` reloaded when its files change, and the stream of
//! TLS connections tonic serves.

use std::{
    fmt,
    future::Future as _,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use rustls::{ServerConfig, server::WebPkiClientVerifier};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
    time::Sleep,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use super::{
    ServerTlsSettings, TlsError, load_certs, load_key,
    reload::{ConfigFiles, Reloading, required},
    root_store,
};

/// How long a client has to complete its TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections accepted per poll before finished handshakes get a turn.
const ACCEPT_BUDGET: usize = 64;

/// Pause after an accept error that is not about one connection (e.g. too many open files).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The files a server configuration is built from.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    require_client_cert: bool,
}

impl Files {
    fn from_settings(settings: &ServerTlsSettings) -> Result<Self, TlsError> {
        let client_ca =
            (!settings.client_ca_file.is_empty()).then(|| PathBuf::from(&settings.client_ca_file));
        if client_ca.is_none() && settings.require_client_cert {
            return Err(TlsError::Settings(
                "require_client_cert needs client_ca_file".to_owned(),
            ));
        }
        if client_ca.is_none() && !settings.allowed_clients.is_empty() {
            return Err(TlsError::Settings(
                "allowed_clients needs client_ca_file (no client certificates are asked for)"
                    .to_owned(),
            ));
        }
        Ok(Self {
            cert: required(&settings.cert_file, "cert_file")?,
            key: required(&settings.key_file, "key_file")?,
            client_ca,
            require_client_cert: settings.require_client_cert,
        })
    }
}

impl ConfigFiles for Files {
    type Config = ServerConfig;

    fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.cert.as_path(), self.key.as_path()];
        paths.extend(self.client_ca.as_deref());
        paths
    }

    fn named(&self) -> &Path {
        &self.cert
    }

    fn build(&self) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Provider)?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(root_store(path)?),
                    provider,
                );
                let verifier = if self.require_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Ca {
                    path: path.clone(),
                    reason: e.to_string(),
                })?)
            }
        };
        let chain = load_certs(&self.cert)?;
        let key = load_key(&self.key)?;
        let mut config =
            builder
                .with_single_cert(chain, key)
                .map_err(|source| TlsError::Identity {
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                    source,
                })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The server's TLS configuration, rebuilt from its files when their modification times (or
/// lengths) change. Cheap to clone; clones share the configuration.
///
/// [`current`](Self::current) checks the files at most every `reload_check_ms`. A
/// configuration that fails to build (say the key was written before the certificate) is
/// logged as a warning and the previous one stays in use; it is tried again when the files
/// change again.
#[derive(Clone)]
pub struct ReloadingServerConfig {
    inner: Reloading<Files>,
}

impl fmt::Debug for ReloadingServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.inner.files();
        f.debug_struct("ReloadingServerConfig")
            .field("cert_file", &files.cert)
            .field("key_file", &files.key)
            .field("client_ca_file", &files.client_ca)
            .field("require_client_cert", &files.require_client_cert)
            .field("check_every", &self.inner.check_every())
            .finish_non_exhaustive()
    }
}

impl ReloadingServerConfig {
    /// Builds the configuration from the files `settings` name (whether or not
    /// `settings.enabled`: that is the caller's decision). ALPN offers `h2` only.
    pub fn load(settings: &ServerTlsSettings) -> Result<Self, TlsError> {
        Ok(Self {
            inner: Reloading::load(
                Files::from_settings(settings)?,
                Duration::from_millis(settings.reload_check_ms),
            )?,
        })
    }

    /// The configuration to use for the next handshake, reloaded first when the check is due
    /// and the files changed.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.inner.current()
    }
}

/// TLS connections accepted on `listener`, for
/// `tonic::transport::Server::builder()...serve_with_incoming_shutdown(incoming(..), signal)`.
///
/// Each connection's handshake runs in its own task with [`HANDSHAKE_TIMEOUT`]; finished
/// connections are yielded as they complete. Failed or timed-out handshakes are logged with
/// the peer's address and dropped; accept errors are logged (and paused on when they are not
/// about a single connection). The stream never yields an error. Accepted sockets get
/// `TCP_NODELAY`. Dropping the stream closes the listener and abandons handshakes in flight.
pub fn incoming(listener: TcpListener, tls: ReloadingServerConfig) -> TlsIncoming {
    TlsIncoming {
        listener,
        tls,
        handshakes: JoinSet::new(),
        handshake_timeout: HANDSHAKE_TIMEOUT,
        paused: None,
    }
}

/// The stream [`incoming`] returns.
pub struct TlsIncoming {
    listener: TcpListener,
    tls: ReloadingServerConfig,
    handshakes: JoinSet<Option<TlsStream<TcpStream>>>,
    handshake_timeout: Duration,
    paused: Option<Pin<Box<Sleep>>>,
}

impl fmt::Debug for TlsIncoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIncoming")
            .field("listener", &self.listener)
            .field("handshakes", &self.handshakes.len())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsIncoming {
    /// Replaces [`HANDSHAKE_TIMEOUT`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let tls = self.tls.clone();
        let timeout = self.handshake_timeout;
        self.handshakes.spawn(async move {
            let acceptor = TlsAcceptor::from(tls.current());
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(error)) => {
                    log_handshake_failure(peer, &error);
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

/// Certificate problems are worth an operator's attention (info); the rest (plaintext clients,
/// port scanners, resets) is noise (debug).
fn log_handshake_failure(peer: SocketAddr, error: &io::Error) {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::AlertReceived(_),
        ) => tracing::info!(%peer, %error, "TLS handshake failed"),
        _ => tracing::debug!(%peer, %error, "TLS handshake failed"),
    }
}

/// Accept errors about one connection: the next accept may well succeed.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

impl Stream for TlsIncoming {
    type Item = Result<TlsStream<TcpStream>, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();

        if let Some(pause) = &mut this.paused
            && pause.as_mut().poll(cx).is_ready()
        {
            this.paused = None;
        }
        if this.paused.is_none() {
            let mut budget_spent = true;
            for _ in 0..ACCEPT_BUDGET {
                match this.listener.poll_accept(cx) {
                    Poll::Ready(Ok((stream, peer))) => this.start_handshake(stream, peer),
                    Poll::Ready(Err(error)) if is_connection_error(&error) => {
                        tracing::debug!(%error, "accept failed");
                    }
                    Poll::Ready(Err(error)) => {
                        tracing::warn!(%error, "accept failed; pausing");
                        let mut pause = Box::pin(tokio::time::sleep(ACCEPT_ERROR_PAUSE));
                        // Registers the waker for the end of the pause.
                        let _ = pause.as_mut().poll(cx);
                        this.paused = Some(pause);
                        budget_spent = false;
                        break;
                    }
                    Poll::Pending => {
                        budget_spent = false;
                        break;
                    }
                }
            }
            if budget_spent {
                // Connections may still be waiting and nothing registered a wake-up: come back.
                cx.waker().wake_by_ref();
            }
        }

        loop {
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(stream)))) => return Poll::Ready(Some(Ok(stream))),
                Poll::Ready(Some(Ok(None))) => {}
                Poll::Ready(Some(Err(error))) => {
                    tracing::warn!(%error, "TLS handshake task failed");
                }
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}
