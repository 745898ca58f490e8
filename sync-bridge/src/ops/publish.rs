//! `tandemctl publish`: sends a JSON file to a topic, as an integrator would.

use std::time::Duration;

use rdkafka::producer::FutureRecord;
use tandem_common::kafka::{KafkaError, KafkaSettings};
use tandem_common::producer::AckProducer;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{path} is not JSON: {source}")]
    NotJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} does not match its schema: {source}")]
    Invalid {
        path: String,
        #[source]
        source: tandem_proto::events::SchemaError,
    },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Publishes `body` (the contents of `path`) to `topic`. The key is `key`, else the event's
/// `aggregate_id`. Unless `unchecked`, the event is first validated against its JSON Schema.
pub async fn publish(
    kafka: &KafkaSettings,
    topic: &str,
    path: &str,
    body: &[u8],
    key: Option<&str>,
    unchecked: bool,
) -> Result<(i32, i64), PublishError> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|source| PublishError::NotJson {
            path: path.to_owned(),
            source,
        })?;
    if !unchecked {
        tandem_proto::events::validate(&json).map_err(|source| PublishError::Invalid {
            path: path.to_owned(),
            source,
        })?;
    }
    let key = key
        .map(str::to_owned)
        .or_else(|| json.get("aggregate_id")?.as_str().map(str::to_owned));
    let producer = AckProducer::new(&kafka.producer_config()?)?;
    let payload = serde_json::to_vec(&json).map_err(|source| PublishError::NotJson {
        path: path.to_owned(),
        source,
    })?;
    let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(&payload[..]);
    if let Some(key) = &key {
        record = record.key(key);
    }
    Ok(producer.send(record, Duration::from_secs(10)).await?)
}
