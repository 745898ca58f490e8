//! Kafka client configuration, topic creation and header helpers.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::RDKafkaErrorCode,
    message::{Header, Headers, OwnedHeaders},
    types::RDKafkaConfRes,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use rdkafka::error::KafkaError;

/// How clients talk to the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    #[serde(rename = "PLAINTEXT", alias = "plaintext")]
    Plaintext,
    /// TLS; the client authenticates with a certificate when `ssl_cert_file` is set.
    #[serde(rename = "SSL", alias = "ssl")]
    Ssl,
    /// SASL (e.g. SCRAM) without TLS: the credentials and the data cross the network in the
    /// clear; only for networks one trusts.
    #[serde(rename = "SASL_PLAINTEXT", alias = "sasl_plaintext")]
    SaslPlaintext,
    /// SASL over TLS.
    #[serde(rename = "SASL_SSL", alias = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    /// The value of librdkafka's `security.protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

/// Settings shared by every Kafka client of a process.
///
/// The security keys (`security_protocol`, `ssl_*`, `sasl_*`) map to librdkafka's
/// `security.protocol`, `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`,
/// `ssl.key.password`, `sasl.mechanism`, `sasl.username` and `sasl.password`. The broker's
/// certificate is verified against `ssl_ca_file` (else the system's trust store) and its host
/// name against the address the client connects to (librdkafka's default
/// `ssl.endpoint.identification.algorithm=https`). Secrets are never printed by `Debug` nor
/// serialised.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Create missing topics at start-up (off where topics are managed elsewhere, e.g. Strimzi
    /// `KafkaTopic` resources).
    pub create_topics: bool,
    /// Partitions of topics created at start-up.
    pub topic_partitions: i32,
    /// Replication factor of topics created at start-up.
    pub topic_replication: i32,
    /// Producer `linger.ms`: how long to wait to fill a batch.
    pub linger_ms: u32,
    /// Producer `message.timeout.ms`: how long to keep retrying one message before reporting
    /// it failed (the outbox then retries it later).
    pub message_timeout_ms: u32,
    /// Producer `enable.idempotence`. Off by default: the producer then keeps each partition's
    /// order across retries with one request in flight per connection, and the duplicates a
    /// retry can leave are harmless (every consumer is version-gated, and the outbox relay is
    /// at-least-once anyway: a crash between the broker's ack and the outbox mark publishes
    /// again). On, up to five requests fly at once and the broker drops retried duplicates;
    /// the local broker's bookkeeping of idempotent producers does not survive its own
    /// SIGKILL (docs/runbook.md, "Local broker"), so turn it on only against Apache Kafka.
    pub idempotence: bool,
    /// `PLAINTEXT` (default), `SSL`, `SASL_SSL` or `SASL_PLAINTEXT`
    /// (`CRM__KAFKA__SECURITY_PROTOCOL=SSL`).
    pub security_protocol: SecurityProtocol,
    /// PEM file of the CA(s) that sign the brokers' certificates (`ssl.ca.location`); unset,
    /// the system's trust store.
    pub ssl_ca_file: Option<PathBuf>,
    /// PEM certificate of this client, for brokers that require TLS client authentication
    /// (`ssl.certificate.location`).
    pub ssl_cert_file: Option<PathBuf>,
    /// PEM private key of `ssl_cert_file` (`ssl.key.location`).
    pub ssl_key_file: Option<PathBuf>,
    /// Password of `ssl_key_file` when it is encrypted (`ssl.key.password`).
    #[serde(skip_serializing)]
    pub ssl_key_password: Option<SecretString>,
    /// SASL mechanism, e.g. `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN` (`sasl.mechanism`).
    pub sasl_mechanism: Option<String>,
    /// SASL user name (`sasl.username`).
    pub sasl_username: Option<String>,
    /// SASL password (`sasl.password`); prefer `sasl_password_file`.
    #[serde(skip_serializing)]
    pub sasl_password: Option<SecretString>,
    /// A file holding the SASL password (e.g. a mounted Kubernetes Secret), read each time a
    /// client is created, surrounding whitespace trimmed. Wins over `sasl_password`.
    pub sasl_password_file: Option<PathBuf>,
    /// Extra librdkafka properties for every client, e.g. `socket.timeout.ms`. Underscores
    /// stand for dots, so `CRM__KAFKA__CLIENT__SOCKET_TIMEOUT_MS=500` sets `socket.timeout.ms`
    /// (librdkafka property names never contain underscores). A property that one of the
    /// keys above also sets is refused (say it once); `security.protocol` may still be given
    /// here while `security_protocol` keeps its default. Values whose property name holds
    /// `password`, `secret`, `sasl.jaas` or `key.pem` are never printed by `Debug`.
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            create_topics: true,
            topic_partitions: 3,
            topic_replication: 1,
            linger_ms: 2,
            message_timeout_ms: 10_000,
            idempotence: false,
            security_protocol: SecurityProtocol::Plaintext,
            ssl_ca_file: None,
            ssl_cert_file: None,
            ssl_key_file: None,
            ssl_key_password: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            sasl_password_file: None,
            client: BTreeMap::new(),
        }
    }
}

const REDACTED: &str = "<redacted>";

/// Whether a `client` property (with `_` or `.` separators) may hold a secret.
fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('_', ".");
    ["password", "secret", "sasl.jaas", "key.pem"]
        .iter()
        .any(|word| key.contains(word))
}

fn redacted(secret: Option<&SecretString>) -> Option<&'static str> {
    secret.map(|_| REDACTED)
}

/// The `client` map with its secret values replaced.
struct RedactedClient<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for RedactedClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(key, value)| {
                let value = if is_secret_property(key) {
                    REDACTED
                } else {
                    value.as_str()
                };
                (key, value)
            }))
            .finish()
    }
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("create_topics", &self.create_topics)
            .field("topic_partitions", &self.topic_partitions)
            .field("topic_replication", &self.topic_replication)
            .field("linger_ms", &self.linger_ms)
            .field("message_timeout_ms", &self.message_timeout_ms)
            .field("idempotence", &self.idempotence)
            .field("security_protocol", &self.security_protocol)
            .field("ssl_ca_file", &self.ssl_ca_file)
            .field("ssl_cert_file", &self.ssl_cert_file)
            .field("ssl_key_file", &self.ssl_key_file)
            .field(
                "ssl_key_password",
                &redacted(self.ssl_key_password.as_ref()),
            )
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &redacted(self.sasl_password.as_ref()))
            .field("sasl_password_file", &self.sasl_password_file)
            .field("client", &RedactedClient(&self.client))
            .finish()
    }
}

fn exposed(secret: Option<&SecretString>) -> Option<&str> {
    secret.map(ExposeSecret::expose_secret)
}

// By hand: `SecretString` has no `PartialEq` (the settings of each service compare whole).
impl PartialEq for KafkaSettings {
    fn eq(&self, other: &Self) -> bool {
        self.brokers == other.brokers
            && self.create_topics == other.create_topics
            && self.topic_partitions == other.topic_partitions
            && self.topic_replication == other.topic_replication
            && self.linger_ms == other.linger_ms
            && self.message_timeout_ms == other.message_timeout_ms
            && self.idempotence == other.idempotence
            && self.security_protocol == other.security_protocol
            && self.ssl_ca_file == other.ssl_ca_file
            && self.ssl_cert_file == other.ssl_cert_file
            && self.ssl_key_file == other.ssl_key_file
            && exposed(self.ssl_key_password.as_ref()) == exposed(other.ssl_key_password.as_ref())
            && self.sasl_mechanism == other.sasl_mechanism
            && self.sasl_username == other.sasl_username
            && exposed(self.sasl_password.as_ref()) == exposed(other.sasl_password.as_ref())
            && self.sasl_password_file == other.sasl_password_file
            && self.client == other.client
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot create Kafka client for {brokers}: {source}")]
    Client {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic creation request failed: {0}")]
    Admin(#[source] KafkaError),
}

/// A settings mistake, as librdkafka reports its own (`KafkaError::ClientConfig`), so that every
/// caller handles both alike.
fn config_error(description: String, property: &str, value: &str) -> KafkaError {
    KafkaError::ClientConfig(
        RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
        description,
        property.to_owned(),
        value.to_owned(),
    )
}

fn path_value(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// One librdkafka property set by a named key of [`KafkaSettings`].
struct Explicit {
    setting: &'static str,
    property: &'static str,
    /// Other librdkafka names of the same property.
    aliases: &'static [&'static str],
    value: String,
}

impl KafkaSettings {
    /// The properties the security keys set (only those given; the protocol only when not
    /// the default).
    fn security_properties(&self) -> Result<Vec<Explicit>, KafkaError> {
        let mut explicit = Vec::new();
        let mut add = |setting, property, aliases, value: Option<String>| {
            if let Some(value) = value {
                explicit.push(Explicit {
                    setting,
                    property,
                    aliases,
                    value,
                });
            }
        };
        add(
            "security_protocol",
            "security.protocol",
            &[],
            (self.security_protocol != SecurityProtocol::Plaintext)
                .then(|| self.security_protocol.as_str().to_owned()),
        );
        add(
            "ssl_ca_file",
            "ssl.ca.location",
            &[],
            self.ssl_ca_file.as_deref().map(path_value),
        );
        add(
            "ssl_cert_file",
            "ssl.certificate.location",
            &[],
            self.ssl_cert_file.as_deref().map(path_value),
        );
        add(
            "ssl_key_file",
            "ssl.key.location",
            &[],
            self.ssl_key_file.as_deref().map(path_value),
        );
        add(
            "ssl_key_password",
            "ssl.key.password",
            &[],
            exposed(self.ssl_key_password.as_ref()).map(str::to_owned),
        );
        add(
            "sasl_mechanism",
            "sasl.mechanism",
            &["sasl.mechanisms"],
            self.sasl_mechanism.clone(),
        );
        add(
            "sasl_username",
            "sasl.username",
            &[],
            self.sasl_username.clone(),
        );
        let password = match &self.sasl_password_file {
            Some(path) => Some(read_password_file(path)?),
            None => exposed(self.sasl_password.as_ref()).map(str::to_owned),
        };
        let password_setting = if self.sasl_password_file.is_some() {
            "sasl_password_file"
        } else {
            "sasl_password"
        };
        add(password_setting, "sasl.password", &[], password);
        Ok(explicit)
    }

    /// The common client configuration: brokers, the security keys and the extra properties.
    /// Fails when the password file cannot be read, when `client` repeats a property a named
    /// key sets, or when TLS or SASL settings are given with a protocol that does not use them
    /// (a client that would silently talk in the clear).
    pub fn client_config(&self) -> Result<ClientConfig, KafkaError> {
        let explicit = self.security_properties()?;
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.client {
            let property = key.replace('_', ".");
            if let Some(named) = explicit
                .iter()
                .find(|e| e.property == property || e.aliases.contains(&property.as_str()))
            {
                let value = if is_secret_property(&property) {
                    REDACTED
                } else {
                    value.as_str()
                };
                return Err(config_error(
                    format!(
                        "kafka.client.{key} repeats kafka.{}: set only one",
                        named.setting
                    ),
                    &property,
                    value,
                ));
            }
            config.set(property, value);
        }
        for Explicit {
            property, value, ..
        } in explicit
        {
            config.set(property, value);
        }
        if config.get("security.protocol").is_none() {
            config.set("security.protocol", SecurityProtocol::Plaintext.as_str());
        }
        let protocol = config
            .get("security.protocol")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let tls_given = self.ssl_ca_file.is_some()
            || self.ssl_cert_file.is_some()
            || self.ssl_key_file.is_some()
            || self.ssl_key_password.is_some();
        if tls_given && !protocol.ends_with("ssl") {
            return Err(config_error(
                "kafka.ssl_* is set but the security protocol does not use TLS \
                 (set kafka.security_protocol to SSL or SASL_SSL)"
                    .to_owned(),
                "security.protocol",
                &protocol,
            ));
        }
        let sasl_given = self.sasl_mechanism.is_some()
            || self.sasl_username.is_some()
            || self.sasl_password.is_some()
            || self.sasl_password_file.is_some();
        if sasl_given && !protocol.starts_with("sasl") {
            return Err(config_error(
                "kafka.sasl_* is set but the security protocol does not use SASL \
                 (set kafka.security_protocol to SASL_SSL)"
                    .to_owned(),
                "security.protocol",
                &protocol,
            ));
        }
        Ok(config)
    }

    /// A producer with acks=all, retries that keep each partition's order, and a small linger
    /// (see [`KafkaSettings::idempotence`]).
    pub fn producer_config(&self) -> Result<ClientConfig, KafkaError> {
        let mut config = self.client_config()?;
        if self.idempotence {
            config.set("enable.idempotence", "true");
        } else {
            config
                .set("enable.idempotence", "false")
                .set("max.in.flight.requests.per.connection", "1");
        }
        config
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.to_string())
            .set("message.timeout.ms", self.message_timeout_ms.to_string());
        Ok(config)
    }

    /// Creates `topics` when [`KafkaSettings::create_topics`] is on; existing topics are fine.
    pub async fn ensure_topics(&self, topics: &[&str]) -> Result<(), KafkaSetupError> {
        self.create_missing(topics, &[]).await
    }

    /// Creates `topics` with `cleanup.policy=compact` (the broker keeps the last record per
    /// key) when [`KafkaSettings::create_topics`] is on; existing topics are left as they are.
    pub async fn ensure_compacted_topics(&self, topics: &[&str]) -> Result<(), KafkaSetupError> {
        self.create_missing(topics, &[("cleanup.policy", "compact")])
            .await
    }

    async fn create_missing(
        &self,
        topics: &[&str],
        config: &[(&str, &str)],
    ) -> Result<(), KafkaSetupError> {
        if !self.create_topics || topics.is_empty() {
            return Ok(());
        }
        let client_error = |source| KafkaSetupError::Client {
            brokers: self.brokers.clone(),
            source,
        };
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .map_err(client_error)?
            .create()
            .map_err(client_error)?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|name| {
                config.iter().fold(
                    NewTopic::new(
                        name,
                        self.topic_partitions,
                        TopicReplication::Fixed(self.topic_replication),
                    ),
                    |topic, (key, value)| topic.set(key, value),
                )
            })
            .collect();
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(KafkaSetupError::Admin)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, code }),
            }
        }
        Ok(())
    }
}

/// The SASL password in `path`, surrounding whitespace (a trailing newline) trimmed.
fn read_password_file(path: &std::path::Path) -> Result<String, KafkaError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        config_error(
            format!("cannot read kafka.sasl_password_file: {error}"),
            "sasl.password",
            &path_value(path),
        )
    })?;
    let password = text.trim();
    if password.is_empty() {
        return Err(config_error(
            "kafka.sasl_password_file is empty".to_owned(),
            "sasl.password",
            &path_value(path),
        ));
    }
    Ok(password.to_owned())
}

/// Builds Kafka headers from name/value pairs.
pub fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> OwnedHeaders {
    pairs
        .into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        })
}

/// The UTF-8 value of header `name`, if present.
pub fn header<'a, H: Headers>(headers: Option<&'a H>, name: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_properties_accept_underscores_for_dots() {
        let settings = KafkaSettings {
            client: BTreeMap::from([
                ("security_protocol".to_owned(), "SSL".to_owned()),
                ("socket.timeout.ms".to_owned(), "500".to_owned()),
            ]),
            ..KafkaSettings::default()
        };
        let config = settings.producer_config().unwrap();
        assert_eq!(config.get("security.protocol"), Some("SSL"));
        assert_eq!(config.get("socket.timeout.ms"), Some("500"));
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }

    #[test]
    fn producers_keep_partition_order_with_or_without_idempotence() {
        let ordered = KafkaSettings::default().producer_config().unwrap();
        assert_eq!(ordered.get("enable.idempotence"), Some("false"));
        assert_eq!(
            ordered.get("max.in.flight.requests.per.connection"),
            Some("1")
        );
        assert_eq!(ordered.get("acks"), Some("all"));
        let idempotent = KafkaSettings {
            idempotence: true,
            ..KafkaSettings::default()
        }
        .producer_config()
        .unwrap();
        assert_eq!(idempotent.get("enable.idempotence"), Some("true"));
        assert_eq!(
            idempotent.get("max.in.flight.requests.per.connection"),
            None
        );
    }

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tandem-kafka-{}-{}",
            std::process::id(),
            name.replace('.', "-")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn secret(value: &str) -> Option<SecretString> {
        Some(SecretString::from(value.to_owned()))
    }

    #[test]
    fn plaintext_is_the_default_and_said_explicitly() {
        let config = KafkaSettings::default().client_config().unwrap();
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        for property in [
            "ssl.ca.location",
            "ssl.certificate.location",
            "ssl.key.location",
            "ssl.key.password",
            "sasl.mechanism",
            "sasl.username",
            "sasl.password",
            // librdkafka's default (host name verification) is left alone.
            "ssl.endpoint.identification.algorithm",
        ] {
            assert_eq!(config.get(property), None, "{property}");
        }
    }

    #[test]
    fn each_tls_key_maps_to_its_librdkafka_property() {
        let settings = KafkaSettings {
            security_protocol: SecurityProtocol::Ssl,
            ssl_ca_file: Some("/pki/ca.pem".into()),
            ssl_cert_file: Some("/pki/client.pem".into()),
            ssl_key_file: Some("/pki/client.key".into()),
            ssl_key_password: secret("key-pass"),
            ..KafkaSettings::default()
        };
        for config in [
            settings.client_config().unwrap(),
            settings.producer_config().unwrap(),
        ] {
            assert_eq!(config.get("security.protocol"), Some("ssl"));
            assert_eq!(config.get("ssl.ca.location"), Some("/pki/ca.pem"));
            assert_eq!(
                config.get("ssl.certificate.location"),
                Some("/pki/client.pem")
            );
            assert_eq!(config.get("ssl.key.location"), Some("/pki/client.key"));
            assert_eq!(config.get("ssl.key.password"), Some("key-pass"));
            assert_eq!(config.get("ssl.endpoint.identification.algorithm"), None);
        }
    }

    #[test]
    fn each_sasl_key_maps_to_its_librdkafka_property() {
        let settings = KafkaSettings {
            security_protocol: SecurityProtocol::SaslSsl,
            ssl_ca_file: Some("/pki/ca.pem".into()),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("crm".into()),
            sasl_password: secret("s3cret"),
            ..KafkaSettings::default()
        };
        let config = settings.client_config().unwrap();
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("ssl.ca.location"), Some("/pki/ca.pem"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("crm"));
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        let plain = KafkaSettings {
            security_protocol: SecurityProtocol::SaslPlaintext,
            ssl_ca_file: None,
            ..settings
        };
        let config = plain.client_config().unwrap();
        assert_eq!(config.get("security.protocol"), Some("sasl_plaintext"));
    }

    /// librdkafka itself takes the SASL settings: this build has SCRAM (a build without it
    /// refuses `sasl.mechanism=SCRAM-SHA-512` when the client is created).
    #[test]
    fn librdkafka_accepts_the_sasl_and_tls_settings() {
        for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
            let settings = KafkaSettings {
                security_protocol: SecurityProtocol::SaslSsl,
                sasl_mechanism: Some(mechanism.into()),
                sasl_username: Some("crm".into()),
                sasl_password: secret("s3cret"),
                ..KafkaSettings::default()
            };
            let producer: Result<rdkafka::producer::BaseProducer, _> =
                settings.producer_config().unwrap().create();
            assert!(producer.is_ok(), "{mechanism}: {:?}", producer.err());
        }
        let unknown = KafkaSettings {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some("NO-SUCH-MECHANISM".into()),
            ..KafkaSettings::default()
        };
        let refused: Result<rdkafka::producer::BaseProducer, _> =
            unknown.client_config().unwrap().create();
        assert!(refused.is_err());
    }

    #[test]
    fn security_keys_load_from_the_environment() {
        let env: std::collections::HashMap<String, String> = [
            ("CRM__KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
            ("CRM__KAFKA__SSL_CA_FILE", "/pki/ca.pem"),
            ("CRM__KAFKA__SASL_MECHANISM", "SCRAM-SHA-512"),
            ("CRM__KAFKA__SASL_USERNAME", "crm"),
            // Digits only: `try_parsing` makes it a number, still read as a string.
            ("CRM__KAFKA__SASL_PASSWORD", "12345"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        #[derive(Deserialize, Serialize, Default)]
        #[serde(default)]
        struct Root {
            kafka: KafkaSettings,
        }
        let loaded: Root = config::Config::builder()
            .add_source(config::Config::try_from(&Root::default()).unwrap())
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
            .unwrap();
        let kafka = loaded.kafka;
        assert_eq!(kafka.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(kafka.ssl_ca_file, Some(PathBuf::from("/pki/ca.pem")));
        assert_eq!(kafka.sasl_mechanism.as_deref(), Some("SCRAM-SHA-512"));
        assert_eq!(kafka.sasl_username.as_deref(), Some("crm"));
        assert_eq!(exposed(kafka.sasl_password.as_ref()), Some("12345"));
        assert!(kafka.ssl_key_password.is_none());
    }

    #[test]
    fn secrets_are_neither_printed_nor_serialised() {
        let settings = KafkaSettings {
            security_protocol: SecurityProtocol::SaslSsl,
            ssl_key_password: secret("key-pass-1"),
            sasl_username: Some("crm".into()),
            sasl_password: secret("sasl-pass-2"),
            client: BTreeMap::from([
                (
                    "ssl_keystore_password".to_owned(),
                    "store-pass-3".to_owned(),
                ),
                (
                    "sasl.oauthbearer.client.secret".to_owned(),
                    "oauth-4".to_owned(),
                ),
                (
                    "sasl_jaas_config".to_owned(),
                    "password=\"jaas-5\"".to_owned(),
                ),
                ("ssl.key.pem".to_owned(), "PRIVATE-6".to_owned()),
                ("socket.timeout.ms".to_owned(), "500".to_owned()),
            ]),
            ..KafkaSettings::default()
        };
        let printed = format!("{settings:?} {settings:#?}");
        let serialised = serde_json::to_string(&settings).unwrap();
        for text in [&printed, &serialised] {
            for secret in ["key-pass-1", "sasl-pass-2"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        for secret in ["store-pass-3", "oauth-4", "jaas-5", "PRIVATE-6"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(printed.contains("500"), "{printed}");
        assert!(printed.contains("crm"), "{printed}");
    }

    #[test]
    fn settings_compare_their_secrets() {
        let one = KafkaSettings {
            sasl_password: secret("a"),
            ..KafkaSettings::default()
        };
        assert_eq!(one, one.clone());
        assert_ne!(
            one,
            KafkaSettings {
                sasl_password: secret("b"),
                ..KafkaSettings::default()
            }
        );
        assert_ne!(one, KafkaSettings::default());
    }

    #[test]
    fn the_password_file_is_read_trimmed_and_wins() {
        let path = temp_file("sasl-password", "  from-file\n\n");
        let settings = KafkaSettings {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("crm".into()),
            sasl_password: secret("from-settings"),
            sasl_password_file: Some(path.clone()),
            ..KafkaSettings::default()
        };
        let config = settings.client_config().unwrap();
        assert_eq!(config.get("sasl.password"), Some("from-file"));
        // Read at each client creation: a rotated secret is picked up by the next client.
        std::fs::write(&path, "rotated\n").unwrap();
        let config = settings.producer_config().unwrap();
        assert_eq!(config.get("sasl.password"), Some("rotated"));

        std::fs::write(&path, " \n").unwrap();
        let empty = settings.client_config().unwrap_err().to_string();
        assert!(empty.contains("empty"), "{empty}");

        let missing = KafkaSettings {
            sasl_password_file: Some(path.with_file_name("no-such-file")),
            ..settings
        };
        let error = missing.client_config().unwrap_err().to_string();
        assert!(error.contains("sasl_password_file"), "{error}");
        assert!(error.contains("no-such-file"), "{error}");
        assert!(!error.contains("from-settings"), "{error}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_property_set_twice_is_refused() {
        let settings = KafkaSettings {
            security_protocol: SecurityProtocol::Ssl,
            client: BTreeMap::from([("security_protocol".to_owned(), "PLAINTEXT".to_owned())]),
            ..KafkaSettings::default()
        };
        let error = settings.client_config().unwrap_err().to_string();
        assert!(error.contains("kafka.security_protocol"), "{error}");
        let password = KafkaSettings {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_password: secret("first-pass"),
            client: BTreeMap::from([("sasl.password".to_owned(), "second-pass".to_owned())]),
            ..KafkaSettings::default()
        };
        let error = password.client_config().unwrap_err().to_string();
        assert!(error.contains("sasl_password"), "{error}");
        assert!(!error.contains("first-pass"), "{error}");
        assert!(!error.contains("second-pass"), "{error}");
        let alias = KafkaSettings {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            client: BTreeMap::from([("sasl.mechanisms".to_owned(), "PLAIN".to_owned())]),
            ..KafkaSettings::default()
        };
        assert!(alias.client_config().is_err());
    }

    #[test]
    fn tls_or_sasl_settings_without_a_protocol_that_uses_them_are_refused() {
        let tls = KafkaSettings {
            ssl_ca_file: Some("/pki/ca.pem".into()),
            ..KafkaSettings::default()
        };
        let error = tls.client_config().unwrap_err().to_string();
        assert!(error.contains("SSL"), "{error}");
        let sasl = KafkaSettings {
            security_protocol: SecurityProtocol::Ssl,
            sasl_username: Some("crm".into()),
            ..KafkaSettings::default()
        };
        let error = sasl.client_config().unwrap_err().to_string();
        assert!(error.contains("SASL"), "{error}");
        // The protocol may come from `client` while the named key keeps its default.
        let legacy = KafkaSettings {
            ssl_ca_file: Some("/pki/ca.pem".into()),
            client: BTreeMap::from([("security_protocol".to_owned(), "SSL".to_owned())]),
            ..KafkaSettings::default()
        };
        let config = legacy.client_config().unwrap();
        assert_eq!(config.get("security.protocol"), Some("SSL"));
        assert_eq!(config.get("ssl.ca.location"), Some("/pki/ca.pem"));
    }
}
