//! Kafka client configuration, topic creation and header helpers.

use std::{collections::BTreeMap, time::Duration};

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::RDKafkaErrorCode,
    message::{Header, Headers, OwnedHeaders},
};
use serde::{Deserialize, Serialize};

pub use rdkafka::error::KafkaError;

/// Settings shared by every Kafka client of a process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// Extra librdkafka properties for every client, e.g. `security.protocol`. Underscores
    /// stand for dots, so `CRM__KAFKA__CLIENT__SECURITY_PROTOCOL=SSL` sets `security.protocol`
    /// (librdkafka property names never contain underscores).
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
            client: BTreeMap::new(),
        }
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

impl KafkaSettings {
    /// The common client configuration: brokers plus the extra properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.client {
            config.set(key.replace('_', "."), value);
        }
        config
    }

    /// A producer with acks=all, retries that keep each partition's order, and a small linger
    /// (see [`KafkaSettings::idempotence`]).
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
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
        config
    }

    /// Creates `topics` when [`KafkaSettings::create_topics`] is on; existing topics are fine.
    pub async fn ensure_topics(&self, topics: &[&str]) -> Result<(), KafkaSetupError> {
        if !self.create_topics || topics.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> =
            self.client_config()
                .create()
                .map_err(|source| KafkaSetupError::Client {
                    brokers: self.brokers.clone(),
                    source,
                })?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    self.topic_partitions,
                    TopicReplication::Fixed(self.topic_replication),
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
        let config = settings.producer_config();
        assert_eq!(config.get("security.protocol"), Some("SSL"));
        assert_eq!(config.get("socket.timeout.ms"), Some("500"));
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }

    #[test]
    fn producers_keep_partition_order_with_or_without_idempotence() {
        let ordered = KafkaSettings::default().producer_config();
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
        .producer_config();
        assert_eq!(idempotent.get("enable.idempotence"), Some("true"));
        assert_eq!(
            idempotent.get("max.in.flight.requests.per.connection"),
            None
        );
    }
}
