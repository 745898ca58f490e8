//! `tandemctl dlq list` and `tandemctl dlq replay`.
//!
//! A replay publishes the original key, payload and headers back to the source topic, with
//! `tandem.replays` counting how often that event was replayed. The bridge keeps that header
//! when it dead-letters the event again, so the replay refuses, past `--max-replays`, an event
//! that keeps failing: the loop guard.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::{
    Message,
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
};
use tandem_common::kafka::{KafkaError, KafkaSettings};

use super::header;
use crate::dead_letter::headers as dlq;

/// Header counting replays of one event.
pub const REPLAYS: &str = "tandem.replays";

/// Which dead letters a command applies to.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Event `type` of the payload (`unknown` when it could not be parsed).
    pub event_type: Option<String>,
    /// `dlq.reason`.
    pub reason: Option<String>,
    /// Dead-lettered at or after.
    pub since: Option<DateTime<Utc>>,
    /// Dead-lettered before.
    pub until: Option<DateTime<Utc>>,
}

/// One dead letter, as listed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message: OwnedMessage,
    pub event_type: String,
    pub reason: String,
    pub code: String,
    pub detail: String,
    pub source_topic: String,
    pub source_partition: String,
    pub source_offset: String,
    pub failed_at: Option<DateTime<Utc>>,
    pub replays: u32,
}

impl DeadLetter {
    pub fn from_message(message: OwnedMessage) -> Self {
        let text = |name: &str| header(&message, name).unwrap_or_default().to_owned();
        let event_type = message
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            .and_then(|v| v.get("type")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            event_type,
            reason: text(dlq::REASON),
            code: text(dlq::ERROR_CODE),
            detail: text(dlq::DETAIL),
            source_topic: text(dlq::SOURCE_TOPIC),
            source_partition: text(dlq::SOURCE_PARTITION),
            source_offset: text(dlq::SOURCE_OFFSET),
            failed_at: header(&message, dlq::FAILED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            replays: header(&message, REPLAYS)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            message,
        }
    }

    pub fn matches(&self, filter: &Filter) -> bool {
        filter
            .event_type
            .as_ref()
            .is_none_or(|t| *t == self.event_type)
            && filter.reason.as_ref().is_none_or(|r| *r == self.reason)
            && filter
                .since
                .is_none_or(|since| self.failed_at.is_some_and(|at| at >= since))
            && filter
                .until
                .is_none_or(|until| self.failed_at.is_some_and(|at| at < until))
    }

    /// One line for `dlq list`.
    pub fn describe(&self) -> String {
        format!(
            "{at}  {reason:<14} {event_type:<32} {source}[{partition}]@{offset}  replays={replays}  key={key}  {code}: {detail}",
            at = self
                .failed_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "?".to_owned()),
            reason = self.reason,
            event_type = self.event_type,
            source = self.source_topic,
            partition = self.source_partition,
            offset = self.source_offset,
            replays = self.replays,
            key = self
                .message
                .key()
                .map(String::from_utf8_lossy)
                .unwrap_or_default(),
            code = self.code,
            detail = self.detail,
        )
    }
}

/// The dead letters of `topic` that match `filter`, oldest first.
pub fn list(
    kafka: &KafkaSettings,
    topic: &str,
    filter: &Filter,
) -> Result<Vec<DeadLetter>, KafkaError> {
    Ok(super::read_all(kafka, topic)?
        .into_iter()
        .map(DeadLetter::from_message)
        .filter(|d| d.matches(filter))
        .collect())
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: usize,
    /// Refused by the loop guard.
    pub refused: usize,
}

/// Re-publishes each dead letter to its source topic, unless it was replayed `max_replays`
/// times already. With `dry_run`, only counts.
pub async fn replay(
    kafka: &KafkaSettings,
    letters: &[DeadLetter],
    max_replays: u32,
    dry_run: bool,
) -> Result<ReplayReport, KafkaError> {
    let producer: FutureProducer = kafka.producer_config()?.create()?;
    let mut report = ReplayReport::default();
    for letter in letters {
        if letter.replays >= max_replays || letter.source_topic.is_empty() {
            report.refused += 1;
            continue;
        }
        if dry_run {
            report.replayed += 1;
            continue;
        }
        let count = (letter.replays + 1).to_string();
        let mut headers = OwnedHeaders::new();
        if let Some(original) = letter.message.headers() {
            for h in original
                .iter()
                .filter(|h| !h.key.starts_with("dlq.") && h.key != REPLAYS)
            {
                headers = headers.insert(h);
            }
        }
        headers = headers.insert(Header {
            key: REPLAYS,
            value: Some(count.as_str()),
        });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&letter.source_topic).headers(headers);
        if let Some(key) = letter.message.key() {
            record = record.key(key);
        }
        if let Some(payload) = letter.message.payload() {
            record = record.payload(payload);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| error)?;
        report.replayed += 1;
    }
    Ok(report)
}
