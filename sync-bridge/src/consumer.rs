//! The consume loop: one event at a time per consumer, applied, then its offset stored.
//!
//! Offsets are stored (`enable.auto.offset.store=false`) only after the event's effect is
//! applied or the event is dead-lettered, and librdkafka commits stored offsets every
//! `commit_interval_ms`, on rebalance and at shutdown. A crash therefore re-delivers at most
//! the events applied since the last commit, and the version-gated sync RPCs ignore them.

use std::time::Duration;

use rdkafka::{
    ClientContext, Message, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaResult,
    message::BorrowedMessage,
};
use tandem_common::{
    CancellationToken,
    backoff::{Backoff, BackoffSettings},
    event::Envelope,
    kafka::{self, KafkaError, KafkaSettings},
    metrics_names as m,
    shutdown::sleep_or_cancel,
    telemetry::{self, TRACEPARENT},
};
use tracing::Instrument;

use crate::{
    dead_letter::DeadLetter,
    flows::{self, FlowError, Flows},
    settings::ConsumerSettings,
};

/// Logs rebalances and failed commits.
pub struct BridgeContext;

impl ClientContext for BridgeContext {}

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
    let mut config = kafka.client_config();
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
        );
    config.create_with_context(BridgeContext)
}

/// The bridge's consume loop.
pub struct Bridge {
    consumer: StreamConsumer<BridgeContext>,
    flows: Flows,
    dead_letter: DeadLetter,
    retry: BackoffSettings,
}

/// Whether the event in hand was finished (applied or dead-lettered) or abandoned because of
/// shutdown (its offset is then not stored, so it is delivered again).
enum Handled {
    Done,
    Interrupted,
}

impl Bridge {
    pub fn new(
        consumer: StreamConsumer<BridgeContext>,
        flows: Flows,
        dead_letter: DeadLetter,
        retry: BackoffSettings,
    ) -> Self {
        Self {
            consumer,
            flows,
            dead_letter,
            retry,
        }
    }

    /// Subscribes and applies events until `shutdown`, then commits what was applied.
    pub async fn run(self, kafka: &KafkaSettings, shutdown: CancellationToken) -> KafkaResult<()> {
        let mut backoff = Backoff::new(self.retry);
        let mut topics: Vec<&str> = flows::SOURCE_TOPICS.to_vec();
        topics.push(self.dead_letter.topic());
        while let Err(error) = kafka.ensure_topics(&topics).await {
            let delay = backoff.next_delay();
            tracing::warn!(%error, ?delay, "cannot ensure the bridge's topics, retrying");
            if sleep_or_cancel(delay, &shutdown).await {
                return Ok(());
            }
        }
        self.consumer.subscribe(flows::SOURCE_TOPICS)?;
        tracing::info!(topics = ?flows::SOURCE_TOPICS, "bridge consuming");
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            match message {
                Ok(message) => match self.handle(&message, &shutdown).await {
                    Handled::Done => {
                        if let Err(error) = self.consumer.store_offset_from_message(&message) {
                            tracing::warn!(
                                %error,
                                topic = message.topic(),
                                partition = message.partition(),
                                offset = message.offset(),
                                "cannot store offset (partition revoked?); the event will be delivered again"
                            );
                        }
                    }
                    Handled::Interrupted => break,
                },
                Err(error) => {
                    // librdkafka reconnects by itself; this is informational.
                    tracing::warn!(%error, "consumer error");
                    if sleep_or_cancel(Duration::from_millis(100), &shutdown).await {
                        break;
                    }
                }
            }
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "final offset commit failed"),
        }
        tracing::info!("bridge stopped");
        Ok(())
    }

    async fn handle(&self, message: &BorrowedMessage<'_>, shutdown: &CancellationToken) -> Handled {
        let span = tracing::info_span!(
            "bridge.event",
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            event_type = tracing::field::Empty,
            aggregate_id = tracing::field::Empty,
        );
        telemetry::set_parent(&span, kafka::header(message.headers(), TRACEPARENT));
        async {
            let envelope = match flows::decode(message.payload()) {
                Ok(envelope) => envelope,
                Err(error) => return self.dead_letter(message, "unknown", &error, shutdown).await,
            };
            let span = tracing::Span::current();
            span.record("event_type", envelope.event_type.as_str());
            span.record("aggregate_id", envelope.aggregate_id.as_str());
            self.apply(message, &envelope, shutdown).await
        }
        .instrument(span)
        .await
    }

    async fn apply(
        &self,
        message: &BorrowedMessage<'_>,
        envelope: &Envelope,
        shutdown: &CancellationToken,
    ) -> Handled {
        let mut backoff = Backoff::new(self.retry);
        loop {
            match self.flows.apply(envelope).await {
                Ok(outcome) => {
                    metrics::counter!(m::BRIDGE_EVENTS_APPLIED,
                        "type" => envelope.event_type.clone(), "outcome" => outcome.as_str())
                    .increment(1);
                    let age = (chrono::Utc::now() - envelope.occurred_at)
                        .to_std()
                        .unwrap_or_default();
                    metrics::histogram!(m::BRIDGE_COMMIT_TO_APPLY_SECONDS,
                        "flow" => flows::flow_name(&envelope.event_type))
                    .record(age.as_secs_f64());
                    tracing::debug!(
                        outcome = outcome.as_str(),
                        version = envelope.aggregate_version,
                        "event applied"
                    );
                    return Handled::Done;
                }
                Err(FlowError::Transient(detail)) => {
                    metrics::counter!(m::BRIDGE_EVENTS_RETRIED, "type" => envelope.event_type.clone())
                        .increment(1);
                    let delay = backoff.next_delay();
                    tracing::warn!(%detail, ?delay, attempt = backoff.attempts(), "transient failure, retrying");
                    if sleep_or_cancel(delay, shutdown).await {
                        return Handled::Interrupted;
                    }
                }
                Err(error) => {
                    return self
                        .dead_letter(message, &envelope.event_type, &error, shutdown)
                        .await;
                }
            }
        }
    }

    /// Dead-letters `message`, retrying the publish until it is acked or shutdown.
    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        event_type: &str,
        error: &FlowError,
        shutdown: &CancellationToken,
    ) -> Handled {
        let (reason, code, detail) = match error {
            FlowError::Permanent {
                reason,
                code,
                detail,
            } => (reason.as_str(), code.as_str(), detail.as_str()),
            FlowError::Transient(detail) => ("transient", "retry", detail.as_str()),
        };
        tracing::warn!(reason, code, detail, "dead-lettering event");
        let mut backoff = Backoff::new(self.retry);
        loop {
            match self
                .dead_letter
                .publish(message, reason, code, detail)
                .await
            {
                Ok(()) => {
                    metrics::counter!(m::BRIDGE_EVENTS_DEAD_LETTERED,
                        "type" => event_type.to_owned(), "reason" => reason.to_owned())
                    .increment(1);
                    return Handled::Done;
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, ?delay, "cannot publish to the dead-letter topic, retrying");
                    if sleep_or_cancel(delay, shutdown).await {
                        return Handled::Interrupted;
                    }
                }
            }
        }
    }
}
