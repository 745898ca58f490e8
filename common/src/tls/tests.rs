//! Real TLS over loopback: tonic servers with the health service behind [`incoming`] and
//! [`ClientIdentityLayer`], called through [`channel`].

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Server};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::{client::plan, *};
use crate::pki::{Ca, Usage};

const ALLOWED: &str = "sync-bridge";

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tandem-tls-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA with a server certificate (`server.pem`/`server.key`) for localhost and 127.0.0.1,
/// and client certificates on demand, all in one directory.
struct Pki {
    dir: TempDir,
    ca: Ca,
}

impl Pki {
    fn new() -> Self {
        let dir = TempDir::new();
        let ca = Ca::generate("Tandem test CA").unwrap();
        ca.write(&dir.0).unwrap();
        ca.issue(&["localhost", "127.0.0.1"], Usage::Server)
            .unwrap()
            .write(&dir.0, "server")
            .unwrap();
        Self { dir, ca }
    }

    /// Writes a client certificate for `name` issued by `ca` as `<stem>.pem`/`<stem>.key`.
    fn client_cert(&self, ca: &Ca, name: &str, stem: &str) {
        ca.issue(&[name], Usage::Client)
            .unwrap()
            .write(&self.dir.0, stem)
            .unwrap();
    }

    /// Writes `ca`'s certificate as `<stem>.pem`.
    fn trust_file(&self, ca: &Ca, stem: &str) -> String {
        let path = self.dir.file(&format!("{stem}.pem"));
        std::fs::write(&path, ca.cert_pem()).unwrap();
        path
    }

    /// TLS with the server certificate; client certificates from this CA when `client_certs`
    /// is `Some(required)`.
    fn server(&self, client_certs: Option<bool>) -> ServerTlsSettings {
        ServerTlsSettings {
            enabled: true,
            cert_file: self.dir.file("server.pem"),
            key_file: self.dir.file("server.key"),
            client_ca_file: if client_certs.is_some() {
                self.dir.file("ca.pem")
            } else {
                String::new()
            },
            require_client_cert: client_certs.unwrap_or(false),
            allowed_clients: Vec::new(),
            reload_check_ms: 50,
        }
    }

    /// A TLS client trusting `ca_file`, presenting `<stem>.pem` when `identity` is given.
    fn client(&self, ca_file: &str, identity: Option<&str>) -> ClientTlsSettings {
        ClientTlsSettings {
            enabled: true,
            ca_file: ca_file.to_owned(),
            cert_file: identity.map_or_else(String::new, |s| self.dir.file(&format!("{s}.pem"))),
            key_file: identity.map_or_else(String::new, |s| self.dir.file(&format!("{s}.key"))),
            domain: String::new(),
        }
    }
}

/// What the server's innermost layer saw of each call: the identity the layer recorded and
/// the names [`peer_names`] reads.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Call>>>);

/// The identity recorded by the layer, the certificate's names, and whether [`peer_is`] says
/// the caller is [`ALLOWED`].
type Call = (Option<PeerIdentity>, Vec<String>, bool);

impl Seen {
    fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }
}

impl<S> tower_layer::Layer<S> for Seen {
    type Service = Capturing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Capturing {
            inner,
            seen: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Capturing<S> {
    inner: S,
    seen: Seen,
}

impl<S, B> tower_service::Service<http::Request<B>> for Capturing<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let identity = request.extensions().get::<PeerIdentity>().cloned();
        let allowed = peer_is(&request, &[ALLOWED.to_owned()]);
        self.seen
            .0
            .lock()
            .unwrap()
            .push((identity, peer_names(&request), allowed));
        self.inner.call(request)
    }
}

/// A tonic server with the health service, over [`incoming`], behind `layer`.
struct Running {
    addr: SocketAddr,
    seen: Seen,
    stop: CancellationToken,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    async fn start(settings: &ServerTlsSettings, layer: ClientIdentityLayer) -> Self {
        Self::start_with(settings, layer, HANDSHAKE_TIMEOUT).await
    }

    async fn start_with(
        settings: &ServerTlsSettings,
        layer: ClientIdentityLayer,
        handshake_timeout: Duration,
    ) -> Self {
        let tls = ReloadingServerConfig::load(settings).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = incoming(listener, tls).handshake_timeout(handshake_timeout);
        let addr = stream.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let seen = Seen::default();
        let stop = CancellationToken::new();
        let server = Server::builder()
            .layer(layer)
            .layer(seen.clone())
            .add_service(health)
            .serve_with_incoming_shutdown(stream, stop.clone().cancelled_owned());
        Self {
            addr,
            seen,
            stop,
            task: tokio::spawn(server),
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// `grpc.health.v1.Health/Check` with a fresh channel.
    async fn check(&self, tls: &ClientTlsSettings) -> Result<(), Failure> {
        check(&self.url(), tls).await
    }

    async fn stop(self) {
        self.stop.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops")
            .unwrap();
        assert!(result.is_ok(), "the server ended with {result:?}");
    }
}

#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the messages are read through Debug, in assertion messages"
)]
enum Failure {
    /// `channel()` failed: the TCP connection, TLS handshake or HTTP/2 set-up.
    Connect(String),
    /// The call failed with this status.
    Status(Code, String),
}

async fn check(url: &str, tls: &ClientTlsSettings) -> Result<(), Failure> {
    let call = async {
        let channel = channel(url, tls)
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|status| {
                let detail =
                    std::error::Error::source(&status).map_or_else(String::new, super::chain);
                Failure::Status(status.code(), format!("{}: {detail}", status.message()))
            })?;
        assert_eq!(response.into_inner().status(), ServingStatus::Serving);
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("a health check answers or fails within 10 s")
}

/// Whether `failure` is a failure below gRPC (no status from the service) that mentions
/// `text`. With TLS 1.3 a client finishes its handshake before the server has checked its
/// certificate, so a refused client certificate shows as the first call failing with UNKNOWN
/// "transport error", caused by the server's alert; a refused server certificate fails
/// `channel()` itself.
fn fails_below_grpc(failure: &Failure, text: &str) -> bool {
    let message = match failure {
        Failure::Connect(message) => message,
        Failure::Status(Code::Unavailable | Code::Unknown, message) => message,
        Failure::Status(..) => return false,
    };
    message.contains(text)
}

// ---- mTLS ----

#[tokio::test]
async fn mtls_the_allowed_client_is_served_and_recorded_as_the_peer_identity() {
    let pki = Pki::new();
    pki.client_cert(&pki.ca, ALLOWED, "bridge");
    let server = Running::start(
        &pki.server(Some(true)),
        ClientIdentityLayer::new(vec![ALLOWED.to_owned()]),
    )
    .await;

    server
        .check(&pki.client(&pki.dir.file("ca.pem"), Some("bridge")))
        .await
        .unwrap();

    assert_eq!(
        server.seen.calls(),
        vec![(
            Some(PeerIdentity(ALLOWED.to_owned())),
            vec![ALLOWED.to_owned()],
            true
        )]
    );
    server.stop().await;
}

#[tokio::test]
async fn mtls_required_a_client_without_certificate_fails_the_handshake() {
    let pki = Pki::new();
    let server = Running::start(
        &pki.server(Some(true)),
        ClientIdentityLayer::new(vec![ALLOWED.to_owned()]),
    )
    .await;

    let failure = server
        .check(&pki.client(&pki.dir.file("ca.pem"), None))
        .await
        .unwrap_err();

    // The server refuses the handshake: no gRPC status from the service, and the call never
    // reached the layer.
    assert!(
        fails_below_grpc(&failure, "CertificateRequired"),
        "{failure:?}"
    );
    assert!(server.seen.calls().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn mtls_optional_a_client_without_certificate_is_unauthenticated() {
    let pki = Pki::new();
    let server = Running::start(
        &pki.server(Some(false)),
        ClientIdentityLayer::new(vec![ALLOWED.to_owned()]),
    )
    .await;

    let failure = server
        .check(&pki.client(&pki.dir.file("ca.pem"), None))
        .await
        .unwrap_err();

    assert!(
        matches!(failure, Failure::Status(Code::Unauthenticated, _)),
        "{failure:?}"
    );
    assert!(server.seen.calls().is_empty(), "refused before the service");
    server.stop().await;
}

#[tokio::test]
async fn mtls_a_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let other = Ca::generate("Someone else's CA").unwrap();
    pki.client_cert(&other, ALLOWED, "impostor");
    for required in [true, false] {
        let server = Running::start(
            &pki.server(Some(required)),
            ClientIdentityLayer::new(vec![ALLOWED.to_owned()]),
        )
        .await;

        let failure = server
            .check(&pki.client(&pki.dir.file("ca.pem"), Some("impostor")))
            .await
            .unwrap_err();

        // Required or optional, a certificate that is presented must verify: the handshake
        // fails.
        assert!(fails_below_grpc(&failure, "UnknownCA"), "{failure:?}");
        assert!(server.seen.calls().is_empty());
        server.stop().await;
    }
}

#[tokio::test]
async fn mtls_a_client_of_the_right_ca_that_is_not_allowed_is_permission_denied() {
    let pki = Pki::new();
    pki.client_cert(&pki.ca, "frontend", "frontend");
    let server = Running::start(
        &pki.server(Some(true)),
        ClientIdentityLayer::new(vec![ALLOWED.to_owned(), "tandemctl".to_owned()]),
    )
    .await;

    let failure = server
        .check(&pki.client(&pki.dir.file("ca.pem"), Some("frontend")))
        .await
        .unwrap_err();

    assert!(
        matches!(failure, Failure::Status(Code::PermissionDenied, _)),
        "{failure:?}"
    );
    assert!(server.seen.calls().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn mtls_identities_match_exactly_ignoring_ascii_case_and_never_by_wildcard() {
    let pki = Pki::new();
    pki.client_cert(&pki.ca, "*.tandem.internal", "wildcard");
    pki.client_cert(&pki.ca, "Sync-Bridge.tandem.internal", "bridge");
    let server = Running::start(
        &pki.server(Some(true)),
        ClientIdentityLayer::new(vec!["sync-bridge.tandem.internal".to_owned()]),
    )
    .await;
    let ca = pki.dir.file("ca.pem");

    let failure = server
        .check(&pki.client(&ca, Some("wildcard")))
        .await
        .unwrap_err();
    assert!(
        matches!(failure, Failure::Status(Code::PermissionDenied, _)),
        "{failure:?}"
    );
    server
        .check(&pki.client(&ca, Some("bridge")))
        .await
        .unwrap();
    assert_eq!(
        server.seen.calls()[0].0,
        Some(PeerIdentity("sync-bridge.tandem.internal".to_owned()))
    );
    server.stop().await;
}

#[tokio::test]
async fn mtls_with_no_listed_clients_any_certificate_from_the_ca_is_served() {
    let pki = Pki::new();
    pki.client_cert(&pki.ca, "frontend", "frontend");
    let server = Running::start(
        &pki.server(Some(true)),
        ClientIdentityLayer::new(Vec::new()),
    )
    .await;

    server
        .check(&pki.client(&pki.dir.file("ca.pem"), Some("frontend")))
        .await
        .unwrap();

    assert_eq!(
        server.seen.calls(),
        vec![(
            Some(PeerIdentity("frontend".to_owned())),
            vec!["frontend".to_owned()],
            false
        )]
    );
    server.stop().await;
}

#[tokio::test]
async fn the_layer_built_from_settings_checks_only_when_client_certificates_are_asked_for() {
    let pki = Pki::new();
    pki.client_cert(&pki.ca, "frontend", "frontend");
    let mut mtls = pki.server(Some(true));
    mtls.allowed_clients = vec![ALLOWED.to_owned()];
    let server = Running::start(&mtls, ClientIdentityLayer::from_settings(&mtls)).await;
    let failure = server
        .check(&pki.client(&pki.dir.file("ca.pem"), Some("frontend")))
        .await
        .unwrap_err();
    assert!(
        matches!(failure, Failure::Status(Code::PermissionDenied, _)),
        "{failure:?}"
    );
    server.stop().await;

    let server_only = pki.server(None);
    let server = Running::start(
        &server_only,
        ClientIdentityLayer::from_settings(&server_only),
    )
    .await;
    server
        .check(&pki.client(&pki.dir.file("ca.pem"), None))
        .await
        .unwrap();
    assert_eq!(server.seen.calls(), vec![(None, Vec::new(), false)]);
    server.stop().await;
}

// ---- server-only TLS ----

#[tokio::test]
async fn server_tls_a_client_trusting_the_ca_is_served() {
    let pki = Pki::new();
    let server = Running::start(&pki.server(None), ClientIdentityLayer::pass_through()).await;

    server
        .check(&pki.client(&pki.dir.file("ca.pem"), None))
        .await
        .unwrap();
    // By name rather than by the URL's IP address.
    let mut by_name = pki.client(&pki.dir.file("ca.pem"), None);
    by_name.domain = "localhost".to_owned();
    server.check(&by_name).await.unwrap();
    // And through a lazy channel.
    let lazy = lazy_channel(&server.url(), &by_name).unwrap();
    HealthClient::new(lazy)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();

    server.stop().await;
}

#[tokio::test]
async fn server_tls_the_layer_refuses_calls_on_connections_without_client_certificates() {
    let pki = Pki::new();
    let server = Running::start(
        &pki.server(None),
        ClientIdentityLayer::new(vec![ALLOWED.to_owned()]),
    )
    .await;

    let failure = server
        .check(&pki.client(&pki.dir.file("ca.pem"), None))
        .await
        .unwrap_err();

    assert!(
        matches!(failure, Failure::Status(Code::Unauthenticated, _)),
        "{failure:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn server_tls_a_client_trusting_another_ca_or_expecting_another_name_fails() {
    let pki = Pki::new();
    let other = Ca::generate("Someone else's CA").unwrap();
    let other_file = pki.trust_file(&other, "other-ca");
    let server = Running::start(&pki.server(None), ClientIdentityLayer::pass_through()).await;

    let failure = server
        .check(&pki.client(&other_file, None))
        .await
        .unwrap_err();
    assert!(matches!(failure, Failure::Connect(_)), "{failure:?}");
    assert!(fails_below_grpc(&failure, "UnknownIssuer"), "{failure:?}");

    let mut wrong_name = pki.client(&pki.dir.file("ca.pem"), None);
    wrong_name.domain = "erp.example".to_owned();
    let failure = server.check(&wrong_name).await.unwrap_err();
    assert!(matches!(failure, Failure::Connect(_)), "{failure:?}");
    assert!(
        fails_below_grpc(&failure, "not valid for name"),
        "{failure:?}"
    );

    assert!(server.seen.calls().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn server_tls_a_plaintext_client_fails_and_the_server_keeps_serving() {
    let pki = Pki::new();
    let server = Running::start(&pki.server(None), ClientIdentityLayer::pass_through()).await;
    let trusting = pki.client(&pki.dir.file("ca.pem"), None);

    for _ in 0..3 {
        let failure = server
            .check(&ClientTlsSettings::default())
            .await
            .unwrap_err();
        // Whatever the client then reads: the connection is gone (broken pipe, reset).
        assert!(fails_below_grpc(&failure, "transport error"), "{failure:?}");
    }
    server.check(&trusting).await.unwrap();
    assert!(!server.task.is_finished());
    server.stop().await;
}

// ---- the accept loop ----

#[tokio::test]
async fn a_client_that_connects_and_says_nothing_does_not_block_others() {
    let pki = Pki::new();
    pki.client_cert(&pki.ca, ALLOWED, "bridge");
    let server = Running::start(
        &pki.server(Some(true)),
        ClientIdentityLayer::new(vec![ALLOWED.to_owned()]),
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }

    let started = Instant::now();
    server
        .check(&pki.client(&pki.dir.file("ca.pem"), Some("bridge")))
        .await
        .unwrap();

    assert!(
        started.elapsed() < HANDSHAKE_TIMEOUT / 2,
        "served in {:?} while silent clients wait",
        started.elapsed()
    );
    drop(silent);
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_disconnected_after_the_handshake_timeout() {
    let pki = Pki::new();
    let server = Running::start_with(
        &pki.server(None),
        ClientIdentityLayer::pass_through(),
        Duration::from_millis(200),
    )
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();

    let mut buffer = [0_u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer))
        .await
        .expect("the server hangs up on a silent client");
    // End of stream, or a reset: either way the connection is gone.
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    server
        .check(&pki.client(&pki.dir.file("ca.pem"), None))
        .await
        .unwrap();
    server.stop().await;
}

// ---- reload ----

#[tokio::test]
async fn reload_a_certificate_from_a_new_ca_is_served_without_a_restart() {
    let pki = Pki::new();
    let settings = pki.server(None);
    let server = Running::start(&settings, ClientIdentityLayer::pass_through()).await;
    let old = pki.client(&pki.dir.file("ca.pem"), None);
    server.check(&old).await.unwrap();

    let new_ca = Ca::generate("Tandem test CA, next year").unwrap();
    let new = pki.client(&pki.trust_file(&new_ca, "new-ca"), None);
    new_ca
        .issue(&["localhost", "127.0.0.1"], Usage::Server)
        .unwrap()
        .write(&pki.dir.0, "server")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(settings.reload_check_ms * 3)).await;

    server.check(&new).await.unwrap();
    let failure = server.check(&old).await.unwrap_err();
    assert!(matches!(failure, Failure::Connect(_)), "{failure:?}");
    assert!(fails_below_grpc(&failure, "UnknownIssuer"), "{failure:?}");
    server.stop().await;
}

#[tokio::test]
async fn reload_a_broken_key_keeps_the_previous_certificate_until_the_files_are_fixed() {
    let pki = Pki::new();
    let settings = pki.server(None);
    let server = Running::start(&settings, ClientIdentityLayer::pass_through()).await;
    let old = pki.client(&pki.dir.file("ca.pem"), None);
    let pause = Duration::from_millis(settings.reload_check_ms * 3);

    // A key that does not match the certificate, then one that is not a key at all.
    let stray = pki.ca.issue(&["localhost"], Usage::Server).unwrap();
    std::fs::write(&settings.key_file, &stray.key_pem).unwrap();
    tokio::time::sleep(pause).await;
    server.check(&old).await.unwrap();
    std::fs::write(&settings.key_file, "not a key").unwrap();
    tokio::time::sleep(pause).await;
    server.check(&old).await.unwrap();

    let new_ca = Ca::generate("Tandem test CA, next year").unwrap();
    new_ca
        .issue(&["localhost", "127.0.0.1"], Usage::Server)
        .unwrap()
        .write(&pki.dir.0, "server")
        .unwrap();
    tokio::time::sleep(pause).await;
    server
        .check(&pki.client(&pki.trust_file(&new_ca, "new-ca"), None))
        .await
        .unwrap();
    server.stop().await;
}

#[test]
fn the_files_are_checked_at_most_every_reload_check_ms() {
    let pki = Pki::new();
    let mut settings = pki.server(None);
    settings.reload_check_ms = 60_000;
    let tls = ReloadingServerConfig::load(&settings).unwrap();
    let before = tls.current();

    pki.ca
        .issue(&["localhost"], Usage::Server)
        .unwrap()
        .write(&pki.dir.0, "server")
        .unwrap();

    assert!(Arc::ptr_eq(&before, &tls.current()), "not checked yet");

    settings.reload_check_ms = 0;
    let eager = ReloadingServerConfig::load(&settings).unwrap();
    let first = eager.current();
    assert!(Arc::ptr_eq(&first, &eager.current()), "unchanged files");
    pki.ca
        .issue(&["localhost"], Usage::Server)
        .unwrap()
        .write(&pki.dir.0, "server")
        .unwrap();
    assert!(!Arc::ptr_eq(&first, &eager.current()), "reloaded");
    assert_eq!(eager.current().alpn_protocols, vec![b"h2".to_vec()]);
}

// ---- start-up errors ----

#[test]
fn server_start_up_errors_name_the_file_and_never_quote_the_key() {
    let pki = Pki::new();
    let settings = pki.server(Some(true));

    let mut missing = settings.clone();
    missing.cert_file = pki.dir.file("absent.pem");
    let error = ReloadingServerConfig::load(&missing).unwrap_err();
    assert!(matches!(error, TlsError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.pem"), "{error}");

    let secret =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==!!\n-----END PRIVATE KEY-----\n";
    std::fs::write(pki.dir.file("bad.key"), secret).unwrap();
    let mut bad_key = settings.clone();
    bad_key.key_file = pki.dir.file("bad.key");
    let error = ReloadingServerConfig::load(&bad_key).unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains("bad.key"), "{text}");
    assert!(!text.contains("c2VjcmV0"), "{text}");

    std::fs::write(pki.dir.file("empty.pem"), "").unwrap();
    let mut no_ca = settings.clone();
    no_ca.client_ca_file = pki.dir.file("empty.pem");
    let error = ReloadingServerConfig::load(&no_ca).unwrap_err();
    assert!(error.to_string().contains("empty.pem"), "{error}");
    assert!(error.to_string().contains("no certificate"), "{error}");

    let stray = pki.ca.issue(&["localhost"], Usage::Server).unwrap();
    stray.write(&pki.dir.0, "stray").unwrap();
    let mut mismatched = settings.clone();
    mismatched.key_file = pki.dir.file("stray.key");
    let error = ReloadingServerConfig::load(&mismatched).unwrap_err();
    assert!(matches!(error, TlsError::Identity { .. }), "{error:?}");
    assert!(error.to_string().contains("stray.key"), "{error}");

    let mut required_without_ca = pki.server(None);
    required_without_ca.require_client_cert = true;
    assert!(matches!(
        ReloadingServerConfig::load(&required_without_ca),
        Err(TlsError::Settings(_))
    ));
    let mut allowed_without_ca = pki.server(None);
    allowed_without_ca.allowed_clients = vec![ALLOWED.to_owned()];
    assert!(matches!(
        ReloadingServerConfig::load(&allowed_without_ca),
        Err(TlsError::Settings(_))
    ));
    assert!(matches!(
        ReloadingServerConfig::load(&ServerTlsSettings::default()),
        Err(TlsError::Settings(_))
    ));

    let loaded = ReloadingServerConfig::load(&settings).unwrap();
    assert!(!format!("{loaded:?}").contains("PRIVATE KEY"));
}

#[tokio::test]
async fn client_settings_errors_name_the_file_or_url() {
    let pki = Pki::new();
    pki.client_cert(&pki.ca, ALLOWED, "bridge");
    let good = pki.client(&pki.dir.file("ca.pem"), Some("bridge"));

    for url in ["ftp://127.0.0.1:1", "127.0.0.1:1", "not a url"] {
        let error = plan(url, &good).unwrap_err();
        assert!(matches!(error, TlsError::Url { .. }), "{url}: {error:?}");
        assert!(error.to_string().contains(url), "{error}");
    }

    let mut missing_ca = good.clone();
    missing_ca.ca_file = pki.dir.file("absent.pem");
    let error = plan("https://127.0.0.1:1", &missing_ca).unwrap_err();
    assert!(error.to_string().contains("absent.pem"), "{error}");

    let mut no_ca = good.clone();
    no_ca.ca_file = String::new();
    assert!(matches!(
        plan("https://127.0.0.1:1", &no_ca),
        Err(TlsError::Settings(_))
    ));

    let mut half = good.clone();
    half.key_file = String::new();
    assert!(matches!(
        plan("https://127.0.0.1:1", &half),
        Err(TlsError::Settings(_))
    ));

    let mut bad_key = good.clone();
    std::fs::write(pki.dir.file("bad.key"), "nothing here").unwrap();
    bad_key.key_file = pki.dir.file("bad.key");
    let error = plan("https://127.0.0.1:1", &bad_key).unwrap_err();
    assert!(error.to_string().contains("bad.key"), "{error}");

    // Nobody listens on port 1.
    let error = channel("https://127.0.0.1:1", &good).await.unwrap_err();
    assert!(matches!(error, TlsError::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
}

#[test]
fn the_settings_decide_the_scheme() {
    let pki = Pki::new();
    let tls = pki.client(&pki.dir.file("ca.pem"), None);
    // TLS is the connector's: tonic always sees plain http, with the port made explicit.
    let (enabled, connector) = plan("http://erp:50051", &tls).unwrap();
    assert_eq!(enabled.uri().to_string(), "http://erp:50051/");
    assert!(connector.is_some());
    let (disabled, connector) = plan("https://erp:50051", &ClientTlsSettings::default()).unwrap();
    assert_eq!(disabled.uri().to_string(), "http://erp:50051/");
    assert!(connector.is_none());
    let (default_port, _) = plan("https://erp", &tls).unwrap();
    assert_eq!(default_port.uri().to_string(), "http://erp:443/");
}

// ---- settings ----

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Process {
    sync: Listener,
    erp: Target,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Listener {
    tls: ServerTlsSettings,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Target {
    tls: ClientTlsSettings,
}

/// Loads [`Process`] as `crate::settings` does: defaults, then a TOML file, then `CRM__*`.
fn load(toml: &str, env: &[(&str, &str)]) -> Process {
    let env: config::Map<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    config::Config::builder()
        .add_source(config::Config::try_from(&Process::default()).unwrap())
        .add_source(config::File::from_str(toml, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("CRM")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        )
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap()
}

#[test]
fn settings_defaults_file_lists_and_comma_separated_environment_values() {
    let defaults = load("", &[]);
    assert_eq!(defaults.sync.tls, ServerTlsSettings::default());
    assert_eq!(defaults.sync.tls.reload_check_ms, 1000);
    assert!(!defaults.sync.tls.enabled && !defaults.erp.tls.enabled);

    let from_file = load(
        "[sync.tls]\nenabled = true\nallowed_clients = [\"sync-bridge\", \"tandemctl\"]\n",
        &[],
    );
    assert!(from_file.sync.tls.enabled);
    assert_eq!(
        from_file.sync.tls.allowed_clients,
        vec!["sync-bridge", "tandemctl"]
    );

    let from_env = load(
        "",
        &[
            ("CRM__SYNC__TLS__ENABLED", "true"),
            ("CRM__SYNC__TLS__CERT_FILE", "/etc/tandem/crm.pem"),
            ("CRM__SYNC__TLS__REQUIRE_CLIENT_CERT", "true"),
            ("CRM__SYNC__TLS__ALLOWED_CLIENTS", "sync-bridge, tandemctl,"),
            ("CRM__SYNC__TLS__RELOAD_CHECK_MS", "250"),
            ("CRM__ERP__TLS__ENABLED", "true"),
            ("CRM__ERP__TLS__DOMAIN", "erp.tandem.internal"),
        ],
    );
    let tls = &from_env.sync.tls;
    assert!(tls.enabled && tls.require_client_cert);
    assert_eq!(tls.cert_file, "/etc/tandem/crm.pem");
    assert_eq!(tls.allowed_clients, vec!["sync-bridge", "tandemctl"]);
    assert_eq!(tls.reload_check_ms, 250);
    assert!(from_env.erp.tls.enabled);
    assert_eq!(from_env.erp.tls.domain, "erp.tandem.internal");

    let one = load("", &[("CRM__SYNC__TLS__ALLOWED_CLIENTS", "sync-bridge")]);
    assert_eq!(one.sync.tls.allowed_clients, vec!["sync-bridge"]);

    // The environment overrides a file's list.
    let both = load(
        "[sync.tls]\nallowed_clients = [\"a\"]\n",
        &[("CRM__SYNC__TLS__ALLOWED_CLIENTS", "b,c")],
    );
    assert_eq!(both.sync.tls.allowed_clients, vec!["b", "c"]);
}

#[test]
fn settings_paths_are_the_only_thing_debug_shows() {
    let pki = Pki::new();
    let settings = pki.server(Some(true));
    let shown = format!("{settings:?} {:?}", pki.client("ca.pem", Some("bridge")));
    assert!(!shown.contains("PRIVATE KEY"));
    assert!(shown.contains("server.key"));
}
