//! Positive evidence instead of sleeps: committed offsets read back, marker messages.
//!
//! A test that waits "long enough" and then asserts proves nothing when the machine is slow,
//! and hides what arrives late. These helpers wait for a fact instead:
//!
//! - [`wait_committed`], [`wait_caught_up`]: the offsets a consumer group has committed, read
//!   back from the broker until they reach a position (the bridge commits stored offsets
//!   every `consumer.commit_interval_ms`, only after the effect of each event).
//! - [`settled`]: the whole [`Stack`] has nothing in flight (both outboxes published, the
//!   bridge committed the end of every source topic, and a second look finds nothing new).
//! - [`read_until_markers`]: a marker record published to every partition of a topic, then
//!   the topic read until each marker came back; everything published before is then known,
//!   so "exactly these records and nothing else" is a sound assertion.
//! - [`check_order_per_partition`]: records compared with what was written, in the order
//!   written, per partition (never a sorted set).

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use sqlx::Connection;
use tandem_proto::events::topics;

use crate::{Record, Stack};

/// The consumer group of the bridge a [`Stack`] starts (`BRIDGE__CONSUMER__GROUP_ID`).
pub const BRIDGE_GROUP: &str = "e2e-bridge";

/// Header (and payload field) that marks a record published by [`read_until_markers`].
pub const MARKER_HEADER: &str = "tandem.test.marker";

/// Offsets by topic and partition.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(100);
/// Longest wait for one broker request.
const REQUEST: Duration = Duration::from_secs(10);

fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST)
        .with_context(|| format!("metadata of {topic}"))?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("no metadata for {topic}"))?;
    if let Some(error) = found.error() {
        bail!("metadata of {topic}: {error:?}");
    }
    let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        bail!("{topic} has no partitions");
    }
    Ok(ids)
}

fn plain_consumer(brokers: &str, group: Option<&str>) -> Result<BaseConsumer> {
    let mut config = crate::kafka_client_config(brokers);
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    if let Some(group) = group {
        config.set("group.id", group);
    }
    Ok(config.create()?)
}

fn end_offsets_with(consumer: &BaseConsumer, topics: &[String]) -> Result<(Offsets, Offsets)> {
    let (mut low, mut high) = (Offsets::new(), Offsets::new());
    for topic in topics {
        for partition in partitions(consumer, topic)? {
            let (l, h) = consumer
                .fetch_watermarks(topic, partition, REQUEST)
                .with_context(|| format!("watermarks of {topic}[{partition}]"))?;
            low.insert((topic.clone(), partition), l);
            high.insert((topic.clone(), partition), h);
        }
    }
    Ok((low, high))
}

/// The end offset (high watermark: the offset the next record will get) of every partition
/// of `topics`.
pub async fn end_offsets(brokers: &str, topics: &[&str]) -> Result<Offsets> {
    let brokers = brokers.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer = plain_consumer(&brokers, None)?;
        Ok(end_offsets_with(&consumer, &topics)?.1)
    })
    .await?
}

fn committed_with(consumer: &BaseConsumer, wanted: &[(String, i32)]) -> Result<Offsets> {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in wanted {
        list.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(list, REQUEST)
        .context("fetching committed offsets")?;
    let mut offsets = Offsets::new();
    for element in committed.elements() {
        element
            .error()
            .with_context(|| format!("committed offset of {}", element.topic()))?;
        if let Offset::Offset(offset) = element.offset() {
            offsets.insert((element.topic().to_owned(), element.partition()), offset);
        }
    }
    Ok(offsets)
}

/// The offsets `group` has committed on every partition of `topics` (the offset of the next
/// record it will read); partitions without a committed offset are absent. Reading them does
/// not join the group.
pub async fn committed_offsets(brokers: &str, group: &str, topics: &[&str]) -> Result<Offsets> {
    let (brokers, group) = (brokers.to_owned(), group.to_owned());
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer = plain_consumer(&brokers, Some(&group))?;
        let mut wanted = Vec::new();
        for topic in &topics {
            for partition in partitions(&consumer, topic)? {
                wanted.push((topic.clone(), partition));
            }
        }
        committed_with(&consumer, &wanted)
    })
    .await?
}

fn describe(expected: &Offsets, seen: &Offsets) -> String {
    expected
        .iter()
        .map(|((topic, partition), want)| {
            let got = seen
                .get(&(topic.clone(), *partition))
                .map_or_else(|| "none".to_owned(), i64::to_string);
            format!("{topic}[{partition}] committed {got}, expected {want}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits until `group` has committed at least `expected` on every partition listed there (the
/// offset after the last record it must have handled); returns the committed offsets. Fails
/// after `timeout`, naming each partition with what was committed and what was expected.
pub async fn wait_committed(
    brokers: &str,
    group: &str,
    expected: &Offsets,
    timeout: Duration,
) -> Result<Offsets> {
    let (brokers, group, expected) = (brokers.to_owned(), group.to_owned(), expected.clone());
    tokio::task::spawn_blocking(move || {
        let consumer = plain_consumer(&brokers, Some(&group))?;
        let wanted: Vec<(String, i32)> = expected.keys().cloned().collect();
        let deadline = Instant::now() + timeout;
        let mut seen = Offsets::new();
        loop {
            match committed_with(&consumer, &wanted) {
                Ok(offsets) => seen = offsets,
                Err(error) => {
                    eprintln!("reading committed offsets of {group}: {error:#} (retrying)")
                }
            }
            let reached = expected
                .iter()
                .all(|(tp, want)| seen.get(tp).is_some_and(|got| got >= want));
            if reached {
                return Ok(seen);
            }
            if Instant::now() > deadline {
                bail!(
                    "group {group} did not commit the expected offsets within {timeout:.1?}: {}",
                    describe(&expected, &seen)
                );
            }
            std::thread::sleep(POLL);
        }
    })
    .await?
}

/// The committed position that follows `published` records (partition and offset, as
/// [`crate::produce`] returns them) of `topic`: the highest offset plus one per partition.
pub fn positions_after(topic: &str, published: &[(i32, i64)]) -> Offsets {
    let mut offsets = Offsets::new();
    for (partition, offset) in published {
        let next = offsets.entry((topic.to_owned(), *partition)).or_insert(0);
        *next = (*next).max(offset + 1);
    }
    offsets
}

/// Waits until `group` has committed every record `topics` hold now: each non-empty
/// partition's end offset. Returns the end offsets it waited for.
pub async fn wait_caught_up(
    brokers: &str,
    group: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<Offsets> {
    let (low, high) = {
        let brokers = brokers.to_owned();
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let consumer = plain_consumer(&brokers, None)?;
            end_offsets_with(&consumer, &topics)
        })
        .await??
    };
    let expected: Offsets = high
        .iter()
        .filter(|(tp, h)| low.get(*tp).is_some_and(|l| l < *h))
        .map(|(tp, h)| (tp.clone(), *h))
        .collect();
    wait_committed(brokers, group, &expected, timeout).await?;
    Ok(high)
}

async fn unpublished(url: &str) -> Result<i64> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&mut conn)
            .await?,
    )
}

/// Waits until the outbox of the database at `url` holds no unpublished row: every change
/// committed so far has been acknowledged by the broker.
pub async fn wait_outbox_published(url: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match unpublished(url).await {
            Ok(0) => return Ok(()),
            Ok(n) => format!("{n} unpublished row(s)"),
            Err(error) => format!("{error:#}"),
        };
        if Instant::now() > deadline {
            bail!("the outbox still has work after {timeout:.1?}: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `stack` has nothing in flight: neither service's outbox holds an unpublished
/// row, and the bridge's group ([`BRIDGE_GROUP`]) has committed the end of every source topic
/// (so every event the bridge will ever see so far was applied or dead-lettered, and each
/// dead letter acknowledged, since the bridge stores an offset only after that). Applying an
/// event can write new outbox rows, so it looks again until a round finds nothing new.
pub async fn settled(stack: &Stack, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let brokers = stack.broker.brokers.as_str();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        wait_outbox_published(&stack.crm_db.url, left)
            .await
            .context("CRM outbox")?;
        wait_outbox_published(&stack.erp_db.url, left)
            .await
            .context("ERP outbox")?;
        let ends = wait_caught_up(brokers, BRIDGE_GROUP, topics::CHANGE_EVENTS, left)
            .await
            .context("the bridge's committed offsets")?;
        let quiet = unpublished(&stack.crm_db.url).await? == 0
            && unpublished(&stack.erp_db.url).await? == 0
            && end_offsets(brokers, topics::CHANGE_EVENTS).await? == ends;
        if quiet {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the stack did not settle within {timeout:.1?}");
        }
    }
}

/// Publishes a marker record to every partition of `topic`, then reads the topic from the
/// beginning until every marker came back. Returns every other record, by partition and
/// offset: all that was published to `topic` before the markers were acknowledged, so a test
/// may assert it is exactly what it expects and nothing else.
///
/// Markers (key and header [`MARKER_HEADER`], payload `{"tandem.test.marker": "<uuid>"}`)
/// stay in the topic; this function skips earlier ones. A consumer of the topic (the bridge
/// on a source topic) sees them too: it dead-letters them as unparseable.
pub async fn read_until_markers(brokers: &str, topic: &str) -> Result<Vec<Record>> {
    let marker = uuid::Uuid::now_v7().to_string();
    let ids = {
        let brokers = brokers.to_owned();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || partitions(&plain_consumer(&brokers, None)?, &topic))
            .await??
    };
    // One record per partition: nothing to keep in order, so no idempotent producer (the
    // local broker forgets its producer ids when killed, as some tests do).
    let producer: FutureProducer = crate::kafka_client_config(brokers)
        .set("acks", "all")
        .create()?;
    let payload = format!("{{\"{MARKER_HEADER}\": \"{marker}\"}}");
    // Where each marker landed: reading is done once every partition got that far.
    let mut pending: HashMap<i32, i64> = HashMap::new();
    for partition in ids {
        let record: FutureRecord<'_, str, str> = FutureRecord::to(topic)
            .partition(partition)
            .key(MARKER_HEADER)
            .payload(payload.as_str())
            .headers(OwnedHeaders::new().insert(Header {
                key: MARKER_HEADER,
                value: Some(marker.as_str()),
            }));
        let delivery = producer
            .send(record, REQUEST)
            .await
            .map_err(|(error, _)| anyhow::anyhow!("publishing a marker to {topic}: {error}"))?;
        pending.insert(delivery.partition, delivery.offset);
    }

    let consumer: StreamConsumer = crate::kafka_client_config(brokers)
        .set(
            "group.id",
            format!("test-marker-reader-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in pending.keys() {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "read {} record(s) of {topic} in 30 s; markers not reached: {pending:?} \
                 (partition -> offset)",
                records.len()
            );
        }
        match tokio::time::timeout(left.min(Duration::from_secs(1)), consumer.recv()).await {
            Ok(Ok(message)) => {
                let record = Record::of(&message);
                if pending.get(&record.partition) == Some(&record.offset) {
                    pending.remove(&record.partition);
                } else if record.header(MARKER_HEADER).is_none() {
                    records.push(record);
                }
            }
            // librdkafka reports transport hiccups and reconnects by itself.
            Ok(Err(error)) => eprintln!("reading {topic}: {error} (continuing)"),
            Err(_) => {}
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// The key and `aggregate_version` of a change event record.
pub fn key_and_version(record: &Record) -> (String, i64) {
    (
        record.key.clone().unwrap_or_default(),
        record.payload["aggregate_version"].as_i64().unwrap_or(-1),
    )
}

/// Checks that `records` (one topic's, as [`read_until_markers`] returns them) hold exactly
/// the changes `written` (key and `aggregate_version`, in the order they were committed), in
/// that order on each partition, as an outbox must publish them: one key stays on one
/// partition, and each partition holds its share of `written` in order. Re-sent runs are
/// allowed (at-least-once: after a failed publish the outbox sends the failed row and every
/// later one again), so a record is either the next change of its partition or starts a re-run
/// from an earlier one; anything else is a gap, a reordering or an unknown record. Returns how
/// many records were such duplicates. Errors name changes by their index in `written`.
pub fn check_order_per_partition(records: &[Record], written: &[(String, i64)]) -> Result<usize> {
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    // Per partition, in offset order: the index in `written` of each record.
    let mut held: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for record in records {
        let change = key_and_version(record);
        let Some(index) = written.iter().position(|w| *w == change) else {
            bail!(
                "partition {} offset {}: {change:?} was never written",
                record.partition,
                record.offset
            );
        };
        let key = written[index].0.as_str();
        if let Some(other) = partition_of.insert(key, record.partition)
            && other != record.partition
        {
            bail!(
                "change #{index} ({key}) on partitions {other} and {}",
                record.partition
            );
        }
        held.entry(record.partition)
            .or_default()
            .push((record.offset, index));
    }
    let mut duplicates = 0;
    for (partition, mut got) in held {
        got.sort_unstable();
        let got: Vec<usize> = got.into_iter().map(|(_, index)| index).collect();
        // Its share of `written`, in the order written.
        let share: Vec<usize> = (0..written.len())
            .filter(|i| partition_of.get(written[*i].0.as_str()) == Some(&partition))
            .collect();
        let context = || {
            format!(
                "partition {partition} holds changes {got:?} (in offset order), written to it in \
                 order {share:?}"
            )
        };
        // Position in `share` of the next change new on this partition.
        let mut next = 0;
        // Position in `share` the current (re-)run has reached.
        let mut at: Option<usize> = None;
        for index in &got {
            let position = share
                .iter()
                .position(|i| i == index)
                .with_context(context)?;
            let follows = position == at.map_or(0, |at| at + 1);
            let restarts = at.is_some_and(|at| position <= at);
            if !(follows || restarts) {
                bail!(
                    "change #{index} out of order (expected #{}): {}",
                    share[at.map_or(0, |at| at + 1)],
                    context()
                );
            }
            if position < next {
                duplicates += 1;
            } else {
                next = position + 1;
            }
            at = Some(position);
        }
        if next != share.len() {
            bail!("changes missing at the end: {}", context());
        }
    }
    let missing: Vec<usize> = (0..written.len())
        .filter(|i| !partition_of.contains_key(written[*i].0.as_str()))
        .collect();
    if !missing.is_empty() {
        bail!("changes {missing:?} never published");
    }
    Ok(duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(changes: &[(&str, i64)]) -> Vec<(String, i64)> {
        changes.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    /// Records of `(partition, key, version)`, offsets counted per partition.
    fn records(held: &[(i32, &str, i64)]) -> Vec<Record> {
        let mut offsets: HashMap<i32, i64> = HashMap::new();
        held.iter()
            .map(|(partition, key, version)| {
                let offset = offsets.entry(*partition).or_insert(0);
                *offset += 1;
                Record {
                    key: Some((*key).to_owned()),
                    payload: serde_json::json!({ "aggregate_version": version }),
                    raw: Vec::new(),
                    headers: Vec::new(),
                    partition: *partition,
                    offset: *offset,
                }
            })
            .collect()
    }

    const WRITTEN: &[(&str, i64)] = &[("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2)];

    #[test]
    fn in_order_per_partition_passes_and_counts_re_sent_runs() {
        let written = written(WRITTEN);
        let plain = records(&[
            (0, "a", 1),
            (1, "b", 1),
            (0, "a", 2),
            (0, "c", 1),
            (1, "b", 2),
        ]);
        assert_eq!(check_order_per_partition(&plain, &written).unwrap(), 0);
        // Partition 0 re-sent from a v2 on after a failed publish.
        let resent = records(&[
            (0, "a", 1),
            (0, "a", 2),
            (0, "a", 2),
            (0, "c", 1),
            (1, "b", 1),
            (1, "b", 2),
        ]);
        assert_eq!(check_order_per_partition(&resent, &written).unwrap(), 1);
    }

    #[test]
    fn reordered_missing_unknown_or_split_changes_fail() {
        let written = written(WRITTEN);
        let cases: [&[(i32, &str, i64)]; 5] = [
            // a v2 before a v1
            &[
                (0, "a", 2),
                (0, "a", 1),
                (0, "c", 1),
                (1, "b", 1),
                (1, "b", 2),
            ],
            // c before a v2 (another key, same partition)
            &[
                (0, "a", 1),
                (0, "c", 1),
                (0, "a", 2),
                (1, "b", 1),
                (1, "b", 2),
            ],
            // b v2 missing
            &[(0, "a", 1), (0, "a", 2), (0, "c", 1), (1, "b", 1)],
            // something never written
            &[
                (0, "a", 1),
                (0, "a", 2),
                (0, "c", 1),
                (1, "b", 1),
                (1, "b", 2),
                (1, "d", 1),
            ],
            // one key on two partitions
            &[
                (0, "a", 1),
                (1, "a", 2),
                (0, "c", 1),
                (1, "b", 1),
                (1, "b", 2),
            ],
        ];
        for (n, held) in cases.iter().enumerate() {
            assert!(
                check_order_per_partition(&records(held), &written).is_err(),
                "case {n} passed"
            );
        }
    }
}
