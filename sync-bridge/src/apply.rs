//! Handling one message: decode, apply through its flow (retrying transient failures with
//! capped backoff and jitter, forever, until shutdown), or dead-letter it when it can never
//! apply. Nothing here touches offsets: the caller stores one once this says `Done`.

use rdkafka::Message;
use tandem_common::{
    CancellationToken,
    backoff::{Backoff, BackoffSettings},
    event::Envelope,
    kafka, metrics_names as m,
    shutdown::sleep_or_cancel,
    telemetry::{self, TRACEPARENT},
};
use tracing::Instrument;

use crate::{
    dead_letter::DeadLetter,
    flows::{self, FlowError, Flows},
};

/// Whether the message in hand was finished (applied or dead-lettered) or abandoned because of
/// shutdown (its offset is then not stored, so it is delivered again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Done,
    Interrupted,
}

/// Applies messages; cheap to clone, shared by the partition workers.
#[derive(Clone)]
pub struct Applier {
    flows: Flows,
    dead_letter: DeadLetter,
    retry: BackoffSettings,
}

impl Applier {
    pub fn new(flows: Flows, dead_letter: DeadLetter, retry: BackoffSettings) -> Self {
        Self {
            flows,
            dead_letter,
            retry,
        }
    }

    pub fn dead_letter_topic(&self) -> &str {
        self.dead_letter.topic()
    }

    /// Handles one message, in its own span continuing the producer's trace.
    pub async fn handle<M: Message>(&self, message: &M, shutdown: &CancellationToken) -> Handled {
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

    async fn apply<M: Message>(
        &self,
        message: &M,
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
                    tracing::warn!(
                        %detail,
                        ?delay,
                        attempt = backoff.attempts(),
                        "transient failure, retrying"
                    );
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
    async fn dead_letter<M: Message>(
        &self,
        message: &M,
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
