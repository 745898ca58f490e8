//! The dead-letter topic: events that can never apply, kept with their reason so they can be
//! inspected and replayed. The original key, payload and headers are kept; `dlq.*` headers
//! say why and where from.

use std::time::Duration;

use rdkafka::{
    Message,
    message::{Header, Headers, OwnedHeaders},
    producer::FutureRecord,
};
use tandem_common::{kafka::KafkaError, producer::AckProducer};

/// Header names on dead-lettered records.
pub mod headers {
    pub const REASON: &str = "dlq.reason";
    pub const ERROR_CODE: &str = "dlq.error_code";
    pub const DETAIL: &str = "dlq.detail";
    pub const SOURCE_TOPIC: &str = "dlq.source_topic";
    pub const SOURCE_PARTITION: &str = "dlq.source_partition";
    pub const SOURCE_OFFSET: &str = "dlq.source_offset";
    pub const FAILED_AT: &str = "dlq.failed_at";
}

/// Longest `dlq.detail` kept; details can quote whole payloads.
const DETAIL_MAX: usize = 1_000;

#[derive(Clone)]
pub struct DeadLetter {
    producer: AckProducer,
    topic: String,
}

impl DeadLetter {
    pub fn new(producer: AckProducer, topic: String) -> Self {
        Self { producer, topic }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes `message` to the dead-letter topic and waits for the broker's ack.
    pub async fn publish<M: Message>(
        &self,
        message: &M,
        reason: &str,
        code: &str,
        detail: &str,
    ) -> Result<(), KafkaError> {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let failed_at = chrono::Utc::now().to_rfc3339();
        let detail: String = detail.chars().take(DETAIL_MAX).collect();
        let mut out = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter().filter(|h| !h.key.starts_with("dlq.")) {
                out = out.insert(header);
            }
        }
        for (key, value) in [
            (headers::REASON, reason),
            (headers::ERROR_CODE, code),
            (headers::DETAIL, detail.as_str()),
            (headers::SOURCE_TOPIC, message.topic()),
            (headers::SOURCE_PARTITION, partition.as_str()),
            (headers::SOURCE_OFFSET, offset.as_str()),
            (headers::FAILED_AT, failed_at.as_str()),
        ] {
            out = out.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(out);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
    }
}
