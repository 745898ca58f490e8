//! Kafka helpers: reading what reached a topic, publishing raw records, checking events
//! against their schemas.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

use crate::kafka_client_config;

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    /// The payload parsed as JSON (`Null` when it is not JSON).
    pub payload: serde_json::Value,
    /// The payload as sent.
    pub raw: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub partition: i32,
    pub offset: i64,
}

impl Record {
    /// A received message as a record: the payload raw and parsed, headers as text.
    pub(crate) fn of<M: Message>(message: &M) -> Record {
        let raw = message.payload().unwrap_or_default().to_vec();
        let payload = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload,
            raw,
            headers,
            partition: message.partition(),
            offset: message.offset(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` from the beginning until `expected` records arrived, or nothing new came for
/// `quiet` after at least that many. Returns everything read, so callers can also assert that
/// nothing extra arrived.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    quiet: Duration,
) -> Result<Vec<Record>> {
    let consumer: StreamConsumer = kafka_client_config(brokers)
        .set(
            "group.id",
            format!("test-reader-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut records = Vec::new();
    let overall = Instant::now() + Duration::from_secs(30);
    loop {
        let wait = if records.len() >= expected {
            quiet
        } else {
            Duration::from_millis(500)
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(message)) => {
                records.push(Record::of(&message));
            }
            // librdkafka reports transport hiccups and reconnects by itself.
            Ok(Err(error)) => eprintln!("reading {topic}: {error} (continuing)"),
            Err(_) if records.len() >= expected => return Ok(records),
            Err(_) => {}
        }
        if Instant::now() > overall {
            bail!(
                "read {} of {expected} records from {topic} in 30 s",
                records.len()
            );
        }
    }
}

/// How many records `topics` hold in all (the sum of each partition's high minus low
/// watermark).
pub async fn topic_records(brokers: &str, topics: &[&str]) -> Result<i64> {
    let brokers = brokers.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = kafka_client_config(&brokers).create()?;
        let mut total = 0;
        for topic in &topics {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            for found in metadata.topics() {
                for partition in found.partitions() {
                    let (low, high) = consumer.fetch_watermarks(
                        topic,
                        partition.id(),
                        Duration::from_secs(10),
                    )?;
                    total += high - low;
                }
            }
        }
        Ok(total)
    })
    .await?
}

/// Fails the test unless `event` (a whole envelope) matches the envelope schema and the JSON
/// Schema of its type in `proto/schemas/`.
pub fn assert_valid_event(event: &serde_json::Value) {
    if let Err(error) = tandem_proto::events::validate(event) {
        panic!("event does not match its schema: {error}\n{event:#}");
    }
}

/// A producer for tests that publish raw records (as an integrator or a broken producer
/// would): one client, reused.
pub struct TestProducer {
    producer: FutureProducer,
}

impl TestProducer {
    pub fn new(brokers: &str) -> Result<Self> {
        Ok(Self {
            producer: kafka_client_config(brokers)
                // As Tandem's own producers (kafka.idempotence): the local broker cannot
                // survive an idempotent producer's epoch bump after its own SIGKILL.
                .set("enable.idempotence", "false")
                .set("max.in.flight.requests.per.connection", "1")
                .set("acks", "all")
                .set("message.max.bytes", "2000000")
                .create()?,
        })
    }

    /// Publishes one record and waits for the ack; returns its partition and offset.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(i32, i64)> {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        let mut record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(topic).payload(payload).headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| anyhow::anyhow!("producing to {topic}: {error}"))?;
        Ok((delivery.partition, delivery.offset))
    }
}

/// Publishes one raw record with a fresh client and waits for the ack.
pub async fn produce(
    brokers: &str,
    topic: &str,
    key: Option<&str>,
    payload: &[u8],
    headers: &[(&str, &str)],
) -> Result<(i32, i64)> {
    TestProducer::new(brokers)?
        .send(topic, key, payload, headers)
        .await
}
