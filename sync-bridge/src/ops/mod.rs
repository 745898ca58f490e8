//! The operator command line's building blocks (`tandemctl`): reading and replaying the
//! dead-letter topic, publishing a JSON file to a topic, the status of one entity,
//! reconciling both sides, and asking both services for a snapshot.

pub mod dev;
pub mod dlq;
pub mod publish;
pub mod reconcile;
pub mod resync;
pub mod status;

use std::time::Duration;

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::{Headers, OwnedMessage},
};
use tandem_common::kafka::{KafkaError, KafkaSettings};

/// Reads every record of `topic` present now (up to each partition's high watermark), from the
/// beginning, without joining a consumer group or committing anything.
pub fn read_all(kafka: &KafkaSettings, topic: &str) -> Result<Vec<OwnedMessage>, KafkaError> {
    let consumer: BaseConsumer = kafka
        .client_config()?
        .set("group.id", "tandemctl")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = Vec::new();
    for partition in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
    {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
        if high > low {
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(low))?;
            remaining.push((partition.id(), high));
        }
    }
    if remaining.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let (partition, offset) = (message.partition(), message.offset());
                records.push(message.detach());
                remaining.retain(|(p, high)| !(*p == partition && offset + 1 >= *high));
            }
            Some(Err(error)) => eprintln!("warning: {error}"),
            None => {}
        }
    }
    records.sort_by_key(|m| {
        (
            m.timestamp().to_millis().unwrap_or_default(),
            m.partition(),
            m.offset(),
        )
    });
    Ok(records)
}

/// The UTF-8 value of header `name` of `message`.
pub fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}
