//! TLS settings: paths to PEM files and what to ask of the peer. No secrets are held here,
//! only where to find them.

use std::fmt;

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, SeqAccess, Visitor},
};

/// TLS on a gRPC server (e.g. `CRM__SYNC__TLS__*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerTlsSettings {
    /// Serve TLS (`true`) or plaintext (`false`, the default).
    pub enabled: bool,
    /// PEM file with the server certificate, followed by any intermediate certificates.
    pub cert_file: String,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM file with the CA certificate(s) client certificates must chain to. Empty (the
    /// default): no client certificates are asked for.
    pub client_ca_file: String,
    /// Refuse the TLS handshake of a client without a certificate (`true`), or let it through
    /// to be refused per call with UNAUTHENTICATED by [`super::ClientIdentityLayer`] (`false`,
    /// the default). Needs `client_ca_file`.
    pub require_client_cert: bool,
    /// Client identities (DNS names in the certificate's subject alternative names) allowed to
    /// call; empty (the default): any certificate from the client CA. A list in a file, or a
    /// comma-separated string in the environment (`sync-bridge,tandemctl`).
    #[serde(deserialize_with = "names")]
    pub allowed_clients: Vec<String>,
    /// How often, at most, the files' modification times are checked for a reload (on an
    /// incoming connection), in milliseconds. Default 1000.
    pub reload_check_ms: u64,
}

impl Default for ServerTlsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            require_client_cert: false,
            allowed_clients: Vec::new(),
            reload_check_ms: 1000,
        }
    }
}

/// TLS on a gRPC client (e.g. `BRIDGE__ERP__TLS__*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientTlsSettings {
    /// Connect with TLS (`true`) or plaintext (`false`, the default), whatever the URL's
    /// scheme says.
    pub enabled: bool,
    /// PEM file with the CA certificate(s) the server's certificate must chain to (required
    /// when enabled).
    pub ca_file: String,
    /// PEM file with this client's certificate, for servers that ask for one. Empty with
    /// `key_file` (the default): no client certificate.
    pub cert_file: String,
    /// PEM file with this client's private key. Set together with `cert_file`.
    pub key_file: String,
    /// The name the server's certificate must be valid for. Empty (the default): the URL's
    /// host.
    pub domain: String,
}

/// A list of names from either a sequence or a comma-separated string; blanks are dropped.
fn names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct Names;

    impl<'de> Visitor<'de> for Names {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of names or a comma-separated string")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(value
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect())
        }

        // The `config` crate parses environment values: a name that looks like a number or a
        // boolean arrives as one.
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(vec![value.to_string()])
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
            Ok(vec![value.to_string()])
        }

        fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
            Ok(vec![value.to_string()])
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                let name = name.trim();
                if !name.is_empty() {
                    names.push(name.to_owned());
                }
            }
            Ok(names)
        }
    }

    deserializer.deserialize_any(Names)
}
