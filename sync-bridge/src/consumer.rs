//! The consume loop.
//!
//! One task per assigned partition applies that partition's events one at a time, in order;
//! different partitions (and so different keys) proceed in parallel. The main loop only
//! receives and dispatches, so it keeps polling (heartbeats, rebalances) even while a worker
//! waits for a target to come back; a partition whose worker falls behind is paused, and
//! resumed once its queue drains.
//!
//! Partitions come from the consumer group (`consumer.assignment = group`) or, for a single
//! replica, from the bridge itself (`all`: every partition of the source topics, from the
//! group's committed offsets).
//!
//! Offsets are stored (`enable.auto.offset.store=false`) only after an event's effect is
//! applied or the event is dead-lettered; librdkafka commits stored offsets every
//! `commit_interval_ms`, on rebalance and at shutdown. A crash therefore re-delivers at most
//! the events applied since the last commit, and the version-gated sync RPCs ignore them.
//!
//! After a quiet spell the bridge rests: it pauses its partitions and watches their end
//! offsets instead of fetching (see [`crate::rest`]).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientContext, Message, Offset, Statistics, TopicPartitionList,
    client::DefaultClientContext,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaResult,
    message::OwnedMessage,
    types::RDKafkaErrorCode,
};
use tandem_common::{
    CancellationToken,
    admin_http::Dependency,
    backoff::Backoff,
    kafka::{KafkaError, KafkaSettings},
    metrics_names as m,
    shutdown::{Deadline, sleep_or_cancel},
};
use tokio::sync::mpsc;

use crate::{
    apply::{Applier, Handled},
    flows, offset_reset,
    rest::{Check, Decision, Offsets, Partition, Rest},
    settings::{Assignment, ConsumerSettings},
};

/// A partition's worker may hold this many received events before the partition is paused.
const PAUSE_AT: usize = 2_000;
/// A paused partition resumes once its worker holds fewer than this.
const RESUME_BELOW: usize = 500;
/// Longest wait for topic metadata when self-assigning partitions.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the partitions' end offsets while resting.
const ENDS_TIMEOUT: Duration = Duration::from_secs(5);

/// Logs rebalances and failed commits; exports consumer lag from librdkafka's statistics.
pub struct BridgeContext;

impl ClientContext for BridgeContext {
    // The consume loop reports errors (rate-limited); librdkafka's own callback would repeat
    // them on every poll while the broker is down.
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "librdkafka error");
    }

    /// librdkafka's log lines, as `rdkafka` forwards them, except an offset reset caused by
    /// the broker's retention: that one is an error with its remedy (see [`offset_reset`]).
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match offset_reset::recognise(level, facility, message) {
            Some(reset) => offset_reset::report(&reset, message),
            None => DefaultClientContext.log(level, facility, message),
        }
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(m::BRIDGE_CONSUMER_LAG,
                        "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for BridgeContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(%error, offsets = %describe(offsets), "offset commit failed");
        }
    }
}

fn describe(list: &TopicPartitionList) -> String {
    list.elements()
        .iter()
        .map(|e| format!("{}[{}]@{:?}", e.topic(), e.partition(), e.offset()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds the consumer with manual offset storage.
pub fn consumer(
    kafka: &KafkaSettings,
    settings: &ConsumerSettings,
) -> Result<StreamConsumer<BridgeContext>, KafkaError> {
    let mut config = kafka.client_config()?;
    config
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.commit.interval.ms",
            settings.commit_interval_ms.to_string(),
        )
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", settings.fetch_wait_max_ms.to_string())
        .set(
            "session.timeout.ms",
            settings.session_timeout_ms.to_string(),
        )
        .set("statistics.interval.ms", "5000");
    if !settings.instance_id.is_empty() {
        config.set("group.instance.id", &settings.instance_id);
    }
    config.create_with_context(BridgeContext)
}

type Consumer_ = Arc<StreamConsumer<BridgeContext>>;

/// One partition's worker, as the main loop sees it.
struct Worker {
    queue: mpsc::UnboundedSender<OwnedMessage>,
    /// Events received and not yet finished.
    depth: Arc<AtomicUsize>,
    /// Kafka timestamp (ms) of the event being applied, 0 when idle.
    head_timestamp_ms: Arc<AtomicI64>,
    /// The offset after the last event received.
    received: i64,
    paused: bool,
    task: tokio::task::JoinHandle<()>,
}

/// The bridge's consume loop.
pub struct Bridge {
    consumer: Consumer_,
    applier: Applier,
    batch_max: usize,
    assignment: Assignment,
    /// Up while the bridge holds partitions (readiness requires it).
    assigned: Dependency,
    /// In group mode, how long without partitions before leaving and joining again.
    rejoin_after: Option<Duration>,
    /// When to rest; None: never.
    resting: Option<Resting>,
}

/// How the bridge rests (see [`crate::rest`]).
#[derive(Debug, Clone, Copy)]
pub struct Resting {
    /// A quiet spell this long, every partition drained, and the bridge rests.
    pub after: Duration,
    /// How often a resting bridge reads the partitions' ends.
    pub check: Duration,
}

impl Resting {
    /// From `consumer.rest_after_ms` and `consumer.rest_check_ms`; either 0: never rest.
    pub fn from_settings(settings: &ConsumerSettings) -> Option<Self> {
        (settings.rest_after_ms > 0 && settings.rest_check_ms > 0).then(|| Self {
            after: Duration::from_millis(settings.rest_after_ms),
            check: Duration::from_millis(settings.rest_check_ms),
        })
    }
}

/// The consume loop's view of quiet: since when nothing happened, and what is paused for
/// a rest.
struct Quiet {
    since: Instant,
    rest: Rest,
    paused: Option<TopicPartitionList>,
}

/// In group mode: since when the bridge has held no partition.
#[derive(Default)]
struct Watchdog {
    empty_since: Option<Instant>,
}

impl Bridge {
    pub fn new(
        consumer: StreamConsumer<BridgeContext>,
        applier: Applier,
        batch_max: usize,
        assignment: Assignment,
        rejoin_after: Duration,
        resting: Option<Resting>,
    ) -> (Self, Dependency) {
        let assigned = Dependency::new("no partitions assigned");
        let bridge = Self {
            consumer: Arc::new(consumer),
            applier,
            batch_max: batch_max.max(1),
            assignment,
            assigned: assigned.clone(),
            rejoin_after: (!rejoin_after.is_zero()).then_some(rejoin_after),
            resting,
        };
        (bridge, assigned)
    }

    /// Subscribes and applies events until `shutdown`, then commits what was applied.
    pub async fn run(
        self,
        kafka: &KafkaSettings,
        retry: tandem_common::backoff::BackoffSettings,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> KafkaResult<()> {
        let mut backoff = Backoff::new(retry);
        let mut topics: Vec<&str> = flows::SOURCE_TOPICS.to_vec();
        topics.push(self.applier.dead_letter_topic());
        while let Err(error) = kafka.ensure_topics(&topics).await {
            let delay = backoff.next_delay();
            tracing::warn!(%error, ?delay, "cannot ensure the bridge's topics, retrying");
            if sleep_or_cancel(delay, &shutdown).await {
                return Ok(());
            }
        }
        match self.assignment {
            Assignment::Group => self.consumer.subscribe(flows::SOURCE_TOPICS)?,
            Assignment::All => {
                if !self.assign_all(&mut backoff, &shutdown).await {
                    return Ok(());
                }
            }
        }
        tracing::info!(topics = ?flows::SOURCE_TOPICS, assignment = ?self.assignment, "bridge consuming");

        let mut workers: HashMap<Partition, Worker> = HashMap::new();
        let mut watchdog = Watchdog::default();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut quiet = Quiet {
            since: Instant::now(),
            rest: Rest::default(),
            paused: None,
        };
        let mut check = tokio::time::interval(
            self.resting
                .map_or(Duration::from_secs(3_600), |resting| resting.check),
        );
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        metrics::gauge!(m::BRIDGE_RESTING).set(0.0);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => self.housekeeping(&mut workers, &mut watchdog),
                _ = check.tick(), if self.resting.is_some() => {
                    // Reading the ends can take up to ENDS_TIMEOUT with the broker away.
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = self.rest_or_check(&workers, &mut quiet) => {}
                    }
                }
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        self.wake(&mut quiet);
                        self.dispatch(message.detach(), &mut workers, &shutdown);
                    }
                    Err(error) => {
                        self.wake(&mut quiet);
                        // librdkafka reconnects by itself; this is informational.
                        tracing::warn!(%error, "consumer error");
                        if sleep_or_cancel(Duration::from_secs(1), &shutdown).await {
                            break;
                        }
                    }
                },
            }
        }

        // Workers stop at the next event boundary (an event in the middle of a retry is
        // abandoned and will be delivered again); then the applied offsets are committed.
        // Both share one budget of `grace`.
        let deadline = Deadline::after(grace);
        let drain = futures::future::join_all(workers.into_values().map(|w| {
            drop(w.queue);
            w.task
        }));
        if tokio::time::timeout(deadline.left(), drain).await.is_err() {
            tracing::warn!(?grace, "partition workers did not stop in time");
        }
        // librdkafka's calls block (for long while the broker is unreachable): keep them off
        // the async threads, and bounded.
        let consumer = self.consumer;
        let committing = consumer.clone();
        let commit =
            tokio::task::spawn_blocking(move || committing.commit_consumer_state(CommitMode::Sync));
        let left = deadline.left_for_last_phase();
        match tokio::time::timeout(left, commit).await {
            Ok(Ok(Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "final offset commit failed"),
            Ok(Err(error)) => tracing::warn!(%error, "final offset commit panicked"),
            Err(_) => tracing::warn!(
                ?left,
                "final offset commit timed out; uncommitted events will be delivered again"
            ),
        }
        tokio::task::spawn_blocking(move || drop(consumer));
        tracing::info!("bridge stopped");
        Ok(())
    }

    fn dispatch(
        &self,
        message: OwnedMessage,
        workers: &mut HashMap<Partition, Worker>,
        shutdown: &CancellationToken,
    ) {
        let key = (message.topic().to_owned(), message.partition());
        let worker = workers.entry(key.clone()).or_insert_with(|| {
            let batch_max = if flows::batches(&key.0) {
                self.batch_max
            } else {
                1
            };
            spawn_worker(
                self.consumer.clone(),
                self.applier.clone(),
                batch_max,
                shutdown.clone(),
            )
        });
        let depth = worker.depth.fetch_add(1, Ordering::SeqCst) + 1;
        worker.received = message.offset() + 1;
        if worker.queue.send(message).is_err() {
            // The worker ended (shutdown); the event is delivered again after restart.
            worker.depth.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if depth >= PAUSE_AT && !worker.paused {
            let mut list = TopicPartitionList::new();
            list.add_partition(&key.0, key.1);
            match self.consumer.pause(&list) {
                Ok(()) => {
                    worker.paused = true;
                    tracing::info!(topic = %key.0, partition = key.1, depth, "partition paused");
                }
                Err(error) => tracing::warn!(%error, "cannot pause partition"),
            }
        }
    }

    /// Takes every partition of the source topics (`consumer.assignment = all`), starting
    /// from the group's committed offsets. Returns false if shutdown came first.
    async fn assign_all(&self, backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
        loop {
            let consumer = self.consumer.clone();
            let listed = tokio::task::spawn_blocking(move || all_partitions(&consumer)).await;
            let error = match listed {
                Ok(Ok(list)) => match self.consumer.assign(&list) {
                    Ok(()) => {
                        tracing::info!(partitions = %describe(&list), "partitions self-assigned");
                        return true;
                    }
                    Err(error) => error.to_string(),
                },
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            };
            let delay = backoff.next_delay();
            tracing::warn!(%error, ?delay, "cannot assign the source partitions, retrying");
            if sleep_or_cancel(delay, shutdown).await {
                return false;
            }
        }
    }

    /// Resumes drained partitions, forgets revoked ones, exports the oldest unapplied age,
    /// and watches that the bridge holds partitions.
    fn housekeeping(&self, workers: &mut HashMap<Partition, Worker>, watchdog: &mut Watchdog) {
        let assigned: Option<Vec<(String, i32)>> = self.consumer.assignment().ok().map(|list| {
            list.elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect()
        });
        if let Some(assigned) = &assigned {
            self.watch_assignment(assigned.is_empty(), watchdog);
        }
        if let Some(assigned) = assigned {
            // A revoked partition's worker finishes what it holds (its stores then fail and
            // the new owner re-applies, harmlessly); a later assignment gets a fresh worker.
            workers.retain(|key, worker| {
                assigned.contains(key) || worker.depth.load(Ordering::SeqCst) > 0
            });
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        for ((topic, partition), worker) in workers.iter_mut() {
            let head = worker.head_timestamp_ms.load(Ordering::SeqCst);
            let oldest_ms = if head > 0 { (now_ms - head).max(0) } else { 0 };
            metrics::gauge!(m::BRIDGE_OLDEST_UNAPPLIED_SECONDS,
                "topic" => topic.clone(), "partition" => partition.to_string())
            .set(oldest_ms as f64 / 1_000.0);
            if worker.paused && worker.depth.load(Ordering::SeqCst) < RESUME_BELOW {
                let mut list = TopicPartitionList::new();
                list.add_partition(topic, *partition);
                if self.consumer.resume(&list).is_ok() {
                    worker.paused = false;
                    tracing::info!(%topic, partition, "partition resumed");
                }
            }
        }
    }

    /// While fetching: after a quiet spell with every partition drained, looks at the ends
    /// and rests if the bridge has caught up. While resting: checks whether an end moved.
    async fn rest_or_check(&self, workers: &HashMap<Partition, Worker>, quiet: &mut Quiet) {
        let Some(resting) = self.resting else {
            return;
        };
        if quiet.paused.is_some() && !quiet.rest.is_resting() {
            // A wake whose resume failed: try again.
            self.wake(quiet);
            return;
        }
        if quiet.rest.is_resting() {
            let ends = self.ends().await;
            match quiet.rest.check(ends) {
                Check::Rest => {}
                Check::Wake => self.wake(quiet),
                Check::Peek => {
                    tracing::debug!(
                        "fetching once more to see what an end past the last event holds"
                    );
                    self.wake(quiet);
                }
            }
            return;
        }
        let busy = workers
            .values()
            .any(|worker| worker.paused || worker.depth.load(Ordering::SeqCst) > 0);
        if busy || quiet.since.elapsed() < resting.after {
            return;
        }
        let Some(ends) = self.ends().await.filter(|ends| !ends.is_empty()) else {
            quiet.since = Instant::now();
            return;
        };
        let received: Offsets = workers
            .iter()
            .filter(|(_, worker)| worker.received > 0)
            .map(|(partition, worker)| (partition.clone(), worker.received))
            .collect();
        let mut list = TopicPartitionList::new();
        for (topic, partition) in ends.keys() {
            list.add_partition(topic, *partition);
        }
        if quiet.rest.look(ends, &received) == Decision::Fetch {
            return;
        }
        match self.consumer.pause(&list) {
            Ok(()) => {
                tracing::debug!(check = ?resting.check, "quiet: resting, watching the partitions' ends");
                metrics::gauge!(m::BRIDGE_RESTING).set(1.0);
                quiet.paused = Some(list);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot pause the partitions to rest");
                quiet.rest.activity();
                quiet.since = Instant::now();
            }
        }
    }

    /// Something happened: fetch again if resting, and start a new quiet spell.
    fn wake(&self, quiet: &mut Quiet) {
        quiet.since = Instant::now();
        quiet.rest.activity();
        let Some(list) = quiet.paused.take() else {
            return;
        };
        match self.consumer.resume(&list) {
            Ok(()) => {
                tracing::debug!("awake: fetching");
                metrics::gauge!(m::BRIDGE_RESTING).set(0.0);
                self.kick(list);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot resume the partitions after a rest; retrying");
                quiet.paused = Some(list);
            }
        }
    }

    /// Makes librdkafka fetch the resumed partitions now. A resume only flags them; each
    /// broker's thread notices at its next wake-up, which without traffic is up to a second
    /// later (measured: a lone event took 1.4 s instead of a check's wait). A request to the
    /// partitions' leaders wakes those threads, and its answer wakes them again after the
    /// resume has surely been handled: one more read of the ends does both.
    fn kick(&self, resumed: TopicPartitionList) {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || read_ends(&consumer, resumed));
    }

    /// The end offset of every assigned partition, or None if the broker did not say.
    async fn ends(&self) -> Option<Offsets> {
        let consumer = self.consumer.clone();
        let listed =
            tokio::task::spawn_blocking(move || read_ends(&consumer, consumer.assignment()?)).await;
        let list = match listed {
            Ok(Ok(list)) => list,
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot read the partitions' ends");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, "reading the partitions' ends panicked");
                return None;
            }
        };
        list.elements()
            .iter()
            .map(|element| match (element.error(), element.offset()) {
                (Ok(()), Offset::Offset(end)) => {
                    Some(((element.topic().to_owned(), element.partition()), end))
                }
                _ => None,
            })
            .collect()
    }

    /// Reports whether the bridge holds partitions and, in group mode, leaves and joins the
    /// group again after `rejoin_after` without any: a member the broker never expired (the
    /// bridge's previous life, killed with SIGKILL) may hold them all.
    fn watch_assignment(&self, empty: bool, watchdog: &mut Watchdog) {
        if self.assigned.report(!empty) {
            if empty {
                tracing::warn!("no partitions assigned: the bridge is not ready");
            } else {
                tracing::info!("holding partitions: ready as far as the consumer goes");
            }
        }
        if !empty || self.assignment != Assignment::Group {
            watchdog.empty_since = None;
            return;
        }
        let since = *watchdog.empty_since.get_or_insert_with(Instant::now);
        let Some(rejoin_after) = self.rejoin_after else {
            return;
        };
        if since.elapsed() < rejoin_after {
            return;
        }
        tracing::warn!(
            ?rejoin_after,
            "no partitions for too long: leaving the group and joining again as a new member"
        );
        metrics::counter!(m::BRIDGE_REJOINS).increment(1);
        self.consumer.unsubscribe();
        if let Err(error) = self.consumer.subscribe(flows::SOURCE_TOPICS) {
            tracing::warn!(%error, "cannot subscribe again; retrying at the next check");
        }
        watchdog.empty_since = Some(Instant::now());
    }
}

/// A worker applies its partition's events in order; with `batch_max > 1` it takes every
/// event already waiting (up to that many) and applies them in one call.
fn spawn_worker(
    consumer: Consumer_,
    applier: Applier,
    batch_max: usize,
    shutdown: CancellationToken,
) -> Worker {
    let (queue, mut inbox) = mpsc::unbounded_channel::<OwnedMessage>();
    let depth = Arc::new(AtomicUsize::new(0));
    let head_timestamp_ms = Arc::new(AtomicI64::new(0));
    let task = tokio::spawn({
        let depth = depth.clone();
        let head = head_timestamp_ms.clone();
        async move {
            while let Some(first) = inbox.recv().await {
                if shutdown.is_cancelled() {
                    break;
                }
                head.store(
                    first
                        .timestamp()
                        .to_millis()
                        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
                    Ordering::SeqCst,
                );
                let mut batch = vec![first];
                while batch.len() < batch_max {
                    match inbox.try_recv() {
                        Ok(message) => batch.push(message),
                        Err(_) => break,
                    }
                }
                let handled = if batch.len() == 1 {
                    applier.handle(&batch[0], &shutdown).await
                } else {
                    applier.handle_batch(&batch, &shutdown).await
                };
                head.store(0, Ordering::SeqCst);
                depth.fetch_sub(batch.len(), Ordering::SeqCst);
                match (handled, batch.last()) {
                    (Handled::Done, Some(last)) => {
                        tandem_common::failpoint::crash_point(
                            "bridge-after-apply-before-offset",
                            last.topic(),
                        );
                        store(&consumer, last);
                    }
                    (Handled::Done, None) => {}
                    (Handled::Interrupted, _) => break,
                }
            }
        }
    });
    Worker {
        queue,
        depth,
        head_timestamp_ms,
        received: 0,
        paused: false,
        task,
    }
}

/// Every partition of the source topics, each to start from the group's committed offset
/// (`auto.offset.reset` applies where there is none).
fn all_partitions(consumer: &Consumer_) -> KafkaResult<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for topic in flows::SOURCE_TOPICS {
        let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
        for found in metadata.topics() {
            if let Some(error) = found.error() {
                return Err(KafkaError::MetadataFetch(error.into()));
            }
            for partition in found.partitions() {
                list.add_partition_offset(found.name(), partition.id(), Offset::Stored)?;
            }
        }
    }
    Ok(list)
}

/// The end offsets of `partitions`, from their leaders (one ListOffsets request each).
fn read_ends(
    consumer: &Consumer_,
    mut partitions: TopicPartitionList,
) -> KafkaResult<TopicPartitionList> {
    partitions.set_all_offsets(Offset::End)?;
    consumer.offsets_for_times(partitions, ENDS_TIMEOUT)
}

fn store(consumer: &Consumer_, message: &OwnedMessage) {
    if let Err(error) =
        consumer.store_offset(message.topic(), message.partition(), message.offset())
    {
        tracing::warn!(
            %error,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            "cannot store offset (partition revoked?); the event will be delivered again"
        );
    }
}
