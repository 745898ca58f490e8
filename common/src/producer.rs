//! [`AckProducer`]: a Kafka producer whose sends are awaited, and which costs nothing at rest.
//!
//! rdkafka's `FutureProducer` serves delivery reports from a thread that polls librdkafka in
//! 100 ms steps. Each step's remaining time is handed to librdkafka truncated to whole
//! milliseconds, so for the last fraction of a millisecond of every step the thread polls with
//! a zero timeout in a loop: perf showed that spin (`clock_gettime`, the queue's mutex) as
//! nearly all of an idle service's CPU, about 1 % of a core per process. This producer polls
//! in 1 s steps, so the same spin happens ten times less often; a delivery report still wakes
//! the thread at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, ClientContext,
    error::{KafkaError, KafkaResult, RDKafkaErrorCode},
    message::{DeliveryResult, Message, OwnedMessage, ToBytes},
    metadata::Metadata,
    producer::{BaseProducer, BaseRecord, FutureRecord, Producer, ProducerContext},
};
use tokio::sync::oneshot;

/// How long one poll for delivery reports may wait.
const POLL_STEP: Duration = Duration::from_secs(1);

/// How often a send retries while the local queue is full.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(10);

/// The outcome of one message: where it landed (partition, offset), or why it failed, with
/// the message.
pub type Delivered = Result<(i32, i64), (KafkaError, OwnedMessage)>;

/// Resolves once the broker acknowledged the message or it failed for good; a closed channel
/// means the producer went away first.
pub type DeliveryFuture = oneshot::Receiver<Delivered>;

/// Hands each delivery report to the future of its send.
pub struct AckContext;

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<oneshot::Sender<Delivered>>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Self::DeliveryOpaque) {
        let delivered = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, message)) => Err((error.clone(), message.detach())),
        };
        // The sender may have stopped waiting; the report then has no one to tell.
        let _ = ack.send(delivered);
    }
}

/// A Kafka producer whose sends are awaited. Clones share one producer; its polling thread
/// stops within a second of the last clone's drop.
#[derive(Clone)]
pub struct AckProducer(Arc<Shared>);

struct Shared {
    producer: Arc<BaseProducer<AckContext>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl AckProducer {
    /// A producer built from `config`, with its thread serving delivery reports.
    pub fn new(config: &ClientConfig) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<AckContext>> =
            Arc::new(config.create_with_context(AckContext)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (polled, stopping) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafka acks".to_owned())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    polled.poll(POLL_STEP);
                }
            })
            .map_err(|error| KafkaError::ClientCreation(error.to_string()))?;
        Ok(Self(Arc::new(Shared { producer, stop })))
    }

    /// Enqueues `record` and returns the future of its delivery; when librdkafka refuses it
    /// at once (its queue full, say), the error and the record.
    #[allow(clippy::type_complexity, clippy::result_large_err)]
    pub fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (ack, delivery) = oneshot::channel();
        let base = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(ack),
        };
        match self.0.producer.send(base) {
            Ok(()) => Ok(delivery),
            Err((error, base)) => Err((
                error,
                FutureRecord {
                    topic: base.topic,
                    partition: base.partition,
                    payload: base.payload,
                    key: base.key,
                    timestamp: base.timestamp,
                    headers: base.headers,
                },
            )),
        }
    }

    /// Sends `record`, waiting up to `queue_timeout` for room in the local queue, and waits
    /// for the broker's acknowledgement: where it landed (partition, offset).
    pub async fn send<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> KafkaResult<(i32, i64)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let deadline = Instant::now() + queue_timeout;
        let delivery = loop {
            match self.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_RETRY).await;
                }
                Err((error, _)) => return Err(error),
            }
        };
        match delivery.await {
            Ok(Ok(landed)) => Ok(landed),
            Ok(Err((error, _))) => Err(error),
            Err(_closed) => Err(KafkaError::Canceled),
        }
    }

    /// Waits up to `timeout` for every queued message to be delivered or fail.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.0.producer.flush(timeout)
    }

    /// The cluster's metadata (of `topic` only, if given); blocks up to `timeout`.
    pub fn fetch_metadata(&self, topic: Option<&str>, timeout: Duration) -> KafkaResult<Metadata> {
        self.0.producer.client().fetch_metadata(topic, timeout)
    }
}
