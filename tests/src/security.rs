//! The test kit's security: a private CA with the certificates every process needs, a token
//! signing key with its JWKS, tokens for any subject and roles, and the settings (environment
//! or in-process) that make the services, the bridge and `tandemctl` use them. Every stack
//! the kit starts runs secured this way, as production does.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use tandem_common::{
    auth::{self, Role},
    pki::{Ca, Usage},
    tls::ClientTlsSettings,
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

/// The key id of the kit's token signing key.
pub const KID: &str = "test-1";
pub const ISSUER: &str = "tandem-dev";
pub const AUDIENCE: &str = "tandem";

/// Client identities the kit holds certificates for.
pub const BRIDGE: &str = "sync-bridge";
pub const TANDEMCTL: &str = "tandemctl";
/// A certificate from the right CA whose identity the services do not let in.
pub const STRANGER: &str = "frontend";

/// A channel whose calls carry a bearer token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    pub fn new(token: &str) -> Result<Self> {
        Ok(Self(format!("Bearer {token}").parse()?))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Files of one test PKI, in a directory of its own.
pub struct Security {
    pub dir: PathBuf,
    signing_key: String,
}

impl Security {
    /// A fresh CA, a server certificate for localhost and 127.0.0.1, client certificates for
    /// the bridge, tandemctl and a stranger, a signing key and its JWKS.
    pub fn create() -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("tandem-security-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        let ca = Ca::generate("Tandem test CA")?;
        ca.write(&dir)?;
        ca.issue(&["localhost", "127.0.0.1"], Usage::Server)?
            .write(&dir, "server")?;
        for client in [BRIDGE, TANDEMCTL, STRANGER] {
            ca.issue(&[client], Usage::Client)?.write(&dir, client)?;
        }
        let signing_key = auth::generate_signing_key()?;
        std::fs::write(
            dir.join("jwks.json"),
            auth::public_jwks(&[(KID, &signing_key)])?,
        )?;
        Ok(Self { dir, signing_key })
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub fn ca_file(&self) -> String {
        self.file("ca.pem")
    }

    /// A token for `subject` with `roles`, valid for an hour.
    pub fn token(&self, subject: &str, roles: &[Role]) -> Result<String> {
        Ok(auth::mint(
            &self.signing_key,
            KID,
            ISSUER,
            AUDIENCE,
            subject,
            roles,
            Duration::from_secs(3600),
        )?)
    }

    /// The kit's token signing key (PKCS#8 PEM), for tests that craft tokens of their own.
    pub fn signing_key(&self) -> &str {
        &self.signing_key
    }

    /// The environment securing a service (`prefix` `CRM` or `ERP`): TLS on both ports, mutual
    /// TLS on the sync port, tokens verified with the kit's JWKS.
    pub fn service_env(&self, prefix: &str) -> Vec<(String, String)> {
        let mut env = vec![
            (format!("{prefix}__AUTH__KEYS"), self.file("jwks.json")),
            (format!("{prefix}__AUTH__ISSUER"), ISSUER.to_owned()),
            (format!("{prefix}__AUTH__AUDIENCE"), AUDIENCE.to_owned()),
        ];
        for port in ["GRPC", "SYNC"] {
            env.extend([
                (format!("{prefix}__{port}__TLS__ENABLED"), "true".to_owned()),
                (
                    format!("{prefix}__{port}__TLS__CERT_FILE"),
                    self.file("server.pem"),
                ),
                (
                    format!("{prefix}__{port}__TLS__KEY_FILE"),
                    self.file("server.key"),
                ),
            ]);
        }
        env.extend([
            (
                format!("{prefix}__SYNC__TLS__CLIENT_CA_FILE"),
                self.ca_file(),
            ),
            (
                format!("{prefix}__SYNC__TLS__REQUIRE_CLIENT_CERT"),
                "true".to_owned(),
            ),
            (
                format!("{prefix}__SYNC__TLS__ALLOWED_CLIENTS"),
                format!("{BRIDGE},{TANDEMCTL}"),
            ),
        ]);
        env
    }

    /// The environment of a caller of the internal ports (the bridge, or `tandemctl` with
    /// identity [`TANDEMCTL`]): `BRIDGE__CRM__TLS__*` and `BRIDGE__ERP__TLS__*`.
    pub fn caller_env(&self, identity: &str) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for target in ["CRM", "ERP"] {
            env.extend([
                (format!("BRIDGE__{target}__TLS__ENABLED"), "true".to_owned()),
                (format!("BRIDGE__{target}__TLS__CA_FILE"), self.ca_file()),
                (
                    format!("BRIDGE__{target}__TLS__CERT_FILE"),
                    self.file(&format!("{identity}.pem")),
                ),
                (
                    format!("BRIDGE__{target}__TLS__KEY_FILE"),
                    self.file(&format!("{identity}.key")),
                ),
                (
                    format!("BRIDGE__{target}__TLS__DOMAIN"),
                    "localhost".to_owned(),
                ),
            ]);
        }
        env
    }

    /// Client TLS settings trusting the kit's CA, with `identity`'s certificate when given.
    pub fn client_tls(&self, identity: Option<&str>) -> ClientTlsSettings {
        ClientTlsSettings {
            enabled: true,
            ca_file: self.ca_file(),
            cert_file: identity
                .map(|i| self.file(&format!("{i}.pem")))
                .unwrap_or_default(),
            key_file: identity
                .map(|i| self.file(&format!("{i}.key")))
                .unwrap_or_default(),
            domain: "localhost".to_owned(),
        }
    }

    /// A TLS channel to a public port.
    pub async fn public_channel(&self, addr: std::net::SocketAddr) -> Result<Channel> {
        tandem_common::tls::channel(&format!("https://{addr}"), &self.client_tls(None))
            .await
            .with_context(|| format!("connecting to {addr}"))
    }

    /// A public-port channel whose calls carry a token for `subject` with `roles`.
    pub async fn authed(
        &self,
        addr: std::net::SocketAddr,
        subject: &str,
        roles: &[Role],
    ) -> Result<Authed> {
        let channel = self.public_channel(addr).await?;
        Ok(InterceptedService::new(
            channel,
            Bearer::new(&self.token(subject, roles)?)?,
        ))
    }

    /// A mutual-TLS channel to an internal port, as `identity`.
    pub async fn sync_channel(
        &self,
        addr: std::net::SocketAddr,
        identity: &str,
    ) -> Result<Channel> {
        tandem_common::tls::channel(&format!("https://{addr}"), &self.client_tls(Some(identity)))
            .await
            .with_context(|| format!("connecting to {addr} as {identity}"))
    }

    /// Applies this PKI to in-process service settings: TLS on both ports, mutual TLS on the
    /// sync port, the kit's JWKS.
    pub fn secure(
        &self,
        grpc: &mut tandem_common::host::GrpcSettings,
        sync: &mut tandem_common::host::GrpcSettings,
        auth: &mut tandem_common::auth::AuthSettings,
    ) {
        for port in [&mut *grpc, &mut *sync] {
            port.tls.enabled = true;
            port.tls.cert_file = self.file("server.pem");
            port.tls.key_file = self.file("server.key");
        }
        sync.tls.client_ca_file = self.ca_file();
        sync.tls.require_client_cert = true;
        sync.tls.allowed_clients = vec![BRIDGE.to_owned(), TANDEMCTL.to_owned()];
        auth.keys = self.file("jwks.json");
        auth.issuer = ISSUER.to_owned();
        auth.audience = AUDIENCE.to_owned();
    }
}

impl Drop for Security {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every role: the kit's default callers may call anything.
pub const ALL_ROLES: &[Role] = &[
    Role::Admin,
    Role::Sales,
    Role::Warehouse,
    Role::Finance,
    Role::ReadOnly,
];

/// Calls `path` on `channel` with an empty request (every request message encodes to nothing
/// when empty), with `token` as the bearer token when given; answers the status code (`Ok`
/// when the call succeeded). For tables of calls that are about who may call, not what.
pub async fn call_empty(channel: Channel, token: Option<&str>, path: &str) -> tonic::Code {
    let mut request = tonic::Request::new(());
    if let Some(token) = token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(error) = grpc.ready().await {
        return tonic::Status::from_error(Box::new(error)).code();
    }
    let codec: tonic_prost::ProstCodec<(), ()> = tonic_prost::ProstCodec::default();
    let Ok(path) = tonic::codegen::http::uri::PathAndQuery::try_from(path) else {
        return tonic::Code::InvalidArgument;
    };
    match grpc.unary(request, path, codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}
