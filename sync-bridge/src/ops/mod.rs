//! The operator command line's building blocks (`tandemctl`): reading, replaying, resolving
//! and purging dead letters (their states kept in a compacted topic), publishing a JSON file
//! to a topic, the status of one entity, reconciling both sides, and asking both services for
//! a snapshot.

pub mod dev;
pub mod dlq;
pub mod dlq_state;
mod listing;
pub mod publish;
pub mod reconcile;
pub mod resync;
pub mod snapshot;
pub mod status;
pub mod trace;

use std::time::Duration;

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::{Headers, OwnedMessage},
};
use tandem_common::kafka::{KafkaError, KafkaSettings};

/// Reads every record of `topic` present now (up to each partition's high watermark), from the
/// beginning, without joining a consumer group or committing anything. Gives up after 60 s
/// and says so on standard error (use [`read_topic`] to know how far it got).
pub fn read_all(kafka: &KafkaSettings, topic: &str) -> Result<Vec<OwnedMessage>, KafkaError> {
    let read = read_topic(kafka, topic, &ReadLimits::default())?;
    if !read.complete() {
        eprintln!("warning: {}", read.describe());
    }
    let mut records = read.records;
    records.sort_by_key(|m| {
        (
            m.timestamp().to_millis().unwrap_or_default(),
            m.partition(),
            m.offset(),
        )
    });
    Ok(records)
}

/// How long and how much one read may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Time allowed for fetching, once the end offsets are known.
    pub timeout: Duration,
    /// Records read at most (all partitions together); `None`: no limit.
    pub max_records: Option<usize>,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_records: None,
        }
    }
}

/// Why a read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every partition was read up to the end offset it had when the read began.
    End,
    /// The record limit was reached first.
    Limit(usize),
    /// The time limit ran out first.
    Timeout(Duration),
}

/// How far one partition was read: offsets `start..next` of `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: i32,
    /// The first offset asked for (the partition's low watermark unless a start was given).
    pub start: i64,
    /// The end offset (high watermark) when the read began.
    pub end: i64,
    /// The offset after the last one read; `end` once the partition is read to its end.
    pub next: i64,
}

/// The records of one read, with how far it got.
#[derive(Debug, Clone)]
pub struct TopicRead {
    pub topic: String,
    /// In the order read (offset order within each partition).
    pub records: Vec<OwnedMessage>,
    pub partitions: Vec<PartitionProgress>,
    pub stop: Stop,
}

impl TopicRead {
    /// Whether every partition was read to its end offset.
    pub fn complete(&self) -> bool {
        self.stop == Stop::End
    }

    /// One line: records read, offsets reached against the end offsets, and why it stopped.
    pub fn describe(&self) -> String {
        let reached: i64 = self.partitions.iter().map(|p| p.next - p.start).sum();
        let total: i64 = self.partitions.iter().map(|p| p.end - p.start).sum();
        let partitions = self
            .partitions
            .iter()
            .map(|p| {
                format!(
                    "{}: {}..{} of {}..{}",
                    p.partition, p.start, p.next, p.start, p.end
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let how = match self.stop {
            Stop::End => "to the end offsets".to_owned(),
            Stop::Limit(limit) => format!("INCOMPLETE: stopped at the limit of {limit} records"),
            Stop::Timeout(timeout) => format!(
                "INCOMPLETE: stopped at the time limit of {} s",
                timeout.as_secs_f64()
            ),
        };
        format!(
            "read {topic}: {records} records, offsets {reached} of {total}, {how} (partition {partitions})",
            topic = self.topic,
            records = self.records.len(),
            partitions = if partitions.is_empty() {
                "none".to_owned()
            } else {
                partitions
            },
        )
    }
}

/// Reads every partition of `topic` from its low watermark up to the high watermark it has
/// now, within `limits`, without joining a consumer group or committing anything.
pub fn read_topic(
    kafka: &KafkaSettings,
    topic: &str,
    limits: &ReadLimits,
) -> Result<TopicRead, KafkaError> {
    read_ranges(kafka, topic, None, limits)
}

/// Reads one partition of `topic` from offset `from` (or its low watermark, if later) up to
/// its high watermark now, within `limits`.
pub fn read_partition_from(
    kafka: &KafkaSettings,
    topic: &str,
    partition: i32,
    from: i64,
    limits: &ReadLimits,
) -> Result<TopicRead, KafkaError> {
    read_ranges(kafka, topic, Some((partition, from)), limits)
}

/// The high watermark (the offset the next record will get) of `topic`'s `partition`.
pub fn end_offset(kafka: &KafkaSettings, topic: &str, partition: i32) -> Result<i64, KafkaError> {
    let consumer = reader(kafka)?;
    let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
    Ok(high)
}

/// The low watermarks (the oldest offsets still held) of every partition of `topic`.
pub fn start_offsets(
    kafka: &KafkaSettings,
    topic: &str,
) -> Result<std::collections::HashMap<i32, i64>, KafkaError> {
    let consumer = reader(kafka)?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut low = std::collections::HashMap::new();
    for partition in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
    {
        let (start, _) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
        low.insert(partition.id(), start);
    }
    Ok(low)
}

fn reader(kafka: &KafkaSettings) -> Result<BaseConsumer, KafkaError> {
    kafka
        .client_config()?
        .set("group.id", "tandemctl")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .create()
}

fn read_ranges(
    kafka: &KafkaSettings,
    topic: &str,
    only: Option<(i32, i64)>,
    limits: &ReadLimits,
) -> Result<TopicRead, KafkaError> {
    let consumer = reader(kafka)?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut partitions = Vec::new();
    for partition in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
        .filter(|p| only.is_none_or(|(wanted, _)| wanted == p.id()))
    {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
        let start = only.map_or(low, |(_, from)| from.max(low)).min(high);
        if high > start {
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(start))?;
        }
        partitions.push(PartitionProgress {
            partition: partition.id(),
            start,
            end: high,
            next: start,
        });
    }
    partitions.sort_by_key(|p| p.partition);
    let mut read = TopicRead {
        topic: topic.to_owned(),
        records: Vec::new(),
        partitions,
        stop: Stop::End,
    };
    let unfinished = |read: &TopicRead| read.partitions.iter().any(|p| p.next < p.end);
    if !unfinished(&read) {
        return Ok(read);
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + limits.timeout;
    while unfinished(&read) {
        if limits
            .max_records
            .is_some_and(|max| read.records.len() >= max)
        {
            read.stop = Stop::Limit(read.records.len());
            break;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            read.stop = Stop::Timeout(limits.timeout);
            break;
        }
        match consumer.poll((deadline - now).min(Duration::from_millis(200))) {
            Some(Ok(message)) => {
                let (partition, offset) = (message.partition(), message.offset());
                let Some(progress) = read
                    .partitions
                    .iter_mut()
                    .find(|p| p.partition == partition)
                else {
                    continue;
                };
                if offset < progress.end {
                    progress.next = progress.next.max(offset + 1);
                    read.records.push(message.detach());
                }
            }
            // Caught up with the partition's end now, which is at or past the end it had.
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if let Some(progress) = read
                    .partitions
                    .iter_mut()
                    .find(|p| p.partition == partition)
                {
                    progress.next = progress.end;
                }
            }
            Some(Err(error)) => eprintln!("warning: reading {topic}: {error}"),
            None => {}
        }
    }
    Ok(read)
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
