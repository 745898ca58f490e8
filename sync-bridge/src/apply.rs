//! Handling one message: decode, apply through its flow (retrying transient failures with
//! capped backoff and jitter, forever, until shutdown), or dead-letter it when it can never
//! apply. Nothing here touches offsets: the caller stores one once this says `Done`.

use rdkafka::Message;
use tandem_common::{
    CancellationToken,
    backoff::{Backoff, BackoffSettings},
    kafka, metrics_names as m,
    shutdown::sleep_or_cancel,
    telemetry::{self, TRACEPARENT},
};
use tandem_proto::events::Envelope;
use tracing::Instrument;

use crate::{
    dead_letter::DeadLetter,
    flows::{self, FlowError, Flows, Outcome, Reason},
};

fn record_applied(envelope: &Envelope, outcome: Outcome) {
    metrics::counter!(m::BRIDGE_EVENTS_APPLIED,
        "type" => flows::type_label(&envelope.event_type), "outcome" => outcome.as_str())
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
}

/// The span of one event: its position, continuing the producer's trace (the message's
/// `traceparent` header). Type and aggregate are recorded once decoded.
fn event_span<M: Message>(message: &M) -> tracing::Span {
    let span = tracing::info_span!(
        "bridge.event",
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        event_type = tracing::field::Empty,
        aggregate_id = tracing::field::Empty,
    );
    telemetry::set_parent(&span, kafka::header(message.headers(), TRACEPARENT));
    span
}

fn record_envelope(span: &tracing::Span, envelope: &Envelope) {
    span.record("event_type", envelope.event_type.as_str());
    span.record("aggregate_id", envelope.aggregate_id.as_str());
}

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
    dependency_attempts: u32,
}

impl Applier {
    /// `dependency_attempts`: how often an event whose dependency is missing is tried (with
    /// backoff) before the last try, which asks the target to record the failure (or
    /// dead-letters the event when it cannot).
    pub fn new(
        flows: Flows,
        dead_letter: DeadLetter,
        retry: BackoffSettings,
        dependency_attempts: u32,
    ) -> Self {
        Self {
            flows,
            dead_letter,
            retry,
            dependency_attempts: dependency_attempts.max(1),
        }
    }

    pub fn dead_letter_topic(&self) -> &str {
        self.dead_letter.topic()
    }

    /// Handles one message, in its own span continuing the producer's trace.
    pub async fn handle<M: Message>(&self, message: &M, shutdown: &CancellationToken) -> Handled {
        let span = event_span(message);
        async {
            let envelope = match flows::decode(message.payload()) {
                Ok(envelope) => envelope,
                Err(error) => return self.dead_letter(message, "unknown", &error, shutdown).await,
            };
            if let Err(error) = flows::check_topic(message.topic(), &envelope) {
                return self
                    .dead_letter(message, &envelope.event_type, &error, shutdown)
                    .await;
            }
            record_envelope(&tracing::Span::current(), &envelope);
            self.apply(message, &envelope, shutdown).await
        }
        .instrument(span)
        .await
    }

    /// Handles consecutive messages of a batching topic with as few calls as possible:
    /// undecodable ones are dead-lettered one by one; each run of consecutive events that join
    /// the same batch is applied in one call, the other events one by one (a cancellation
    /// between submitted orders, say). If a call fails for good, each event of its run is
    /// applied alone, so only the bad one is dead-lettered.
    ///
    /// Traces: each event keeps its own `bridge.event` span, a child of its producer's span;
    /// the call that applies a run together runs in a `bridge.batch` span linked to every
    /// event's span (OpenTelemetry span links), and the target continues the batch's trace.
    pub async fn handle_batch<M: Message>(
        &self,
        messages: &[M],
        shutdown: &CancellationToken,
    ) -> Handled {
        let mut envelopes = Vec::with_capacity(messages.len());
        let mut events = Vec::with_capacity(messages.len());
        for message in messages {
            let span = event_span(message);
            match flows::decode(message.payload()).and_then(|envelope| {
                flows::check_topic(message.topic(), &envelope).map(|()| envelope)
            }) {
                Ok(envelope) => {
                    record_envelope(&span, &envelope);
                    envelopes.push(envelope);
                    events.push((message, span));
                }
                Err(error) => {
                    let handled = self
                        .dead_letter(message, "unknown", &error, shutdown)
                        .instrument(span)
                        .await;
                    if handled == Handled::Interrupted {
                        return Handled::Interrupted;
                    }
                }
            }
        }
        for (together, run) in flows::batch_runs(&envelopes) {
            let (events, envelopes) = (&events[run.clone()], &envelopes[run]);
            let handled = if together {
                self.apply_together(events, envelopes, shutdown).await
            } else {
                self.apply_each(events, envelopes, shutdown).await
            };
            if handled == Handled::Interrupted {
                return Handled::Interrupted;
            }
        }
        Handled::Done
    }

    /// Applies `envelopes`, which join one batch, in one call (retrying transient failures);
    /// one by one if the call fails for good.
    async fn apply_together<M: Message>(
        &self,
        events: &[(&M, tracing::Span)],
        envelopes: &[Envelope],
        shutdown: &CancellationToken,
    ) -> Handled {
        let first = events.first().map(|(message, _)| *message);
        let batch = tracing::info_span!(
            "bridge.batch",
            topic = first.map(Message::topic).unwrap_or_default(),
            partition = first.map(Message::partition).unwrap_or_default(),
            size = envelopes.len(),
        );
        for (_, span) in events {
            telemetry::add_link(&batch, span);
        }
        let mut backoff = Backoff::new(self.retry);
        loop {
            match self
                .flows
                .apply_batch(envelopes)
                .instrument(batch.clone())
                .await
            {
                Ok(outcomes) => {
                    for (((_, span), envelope), outcome) in
                        events.iter().zip(envelopes).zip(outcomes)
                    {
                        span.in_scope(|| record_applied(envelope, outcome));
                    }
                    return Handled::Done;
                }
                Err(FlowError::Transient(detail)) => {
                    metrics::counter!(m::BRIDGE_EVENTS_RETRIED, "type" => "batch").increment(1);
                    let delay = backoff.next_delay();
                    batch.in_scope(|| {
                        tracing::warn!(%detail, ?delay, size = envelopes.len(), "transient failure of a batch, retrying");
                    });
                    if sleep_or_cancel(delay, shutdown).await {
                        return Handled::Interrupted;
                    }
                }
                Err(FlowError::MissingDependency(detail)) => {
                    // An order before its customer, say: healed one event at a time.
                    batch.in_scope(|| {
                        tracing::info!(%detail, size = envelopes.len(), "a dependency of the batch is missing; applying its events one by one");
                    });
                    return self.apply_each(events, envelopes, shutdown).await;
                }
                Err(error) => {
                    batch.in_scope(|| {
                        tracing::warn!(%error, size = envelopes.len(), "batch refused; applying its events one by one");
                    });
                    return self.apply_each(events, envelopes, shutdown).await;
                }
            }
        }
    }

    /// Applies `envelopes` one at a time, each in its own event's span.
    async fn apply_each<M: Message>(
        &self,
        events: &[(&M, tracing::Span)],
        envelopes: &[Envelope],
        shutdown: &CancellationToken,
    ) -> Handled {
        for ((message, span), envelope) in events.iter().zip(envelopes) {
            let handled = self
                .apply(*message, envelope, shutdown)
                .instrument(span.clone())
                .await;
            if handled == Handled::Interrupted {
                return Handled::Interrupted;
            }
        }
        Handled::Done
    }

    async fn apply<M: Message>(
        &self,
        message: &M,
        envelope: &Envelope,
        shutdown: &CancellationToken,
    ) -> Handled {
        let mut backoff = Backoff::new(self.retry);
        let mut missing = 0;
        loop {
            let final_attempt = missing + 1 >= self.dependency_attempts;
            match self.flows.apply(envelope, final_attempt).await {
                Ok(outcome) => {
                    record_applied(envelope, outcome);
                    return Handled::Done;
                }
                Err(FlowError::MissingDependency(detail)) if !final_attempt => {
                    missing += 1;
                    metrics::counter!(m::BRIDGE_EVENTS_RETRIED, "type" => flows::type_label(&envelope.event_type))
                        .increment(1);
                    let delay = backoff.next_delay();
                    tracing::info!(%detail, ?delay, attempt = missing, "dependency missing, retrying");
                    if sleep_or_cancel(delay, shutdown).await {
                        return Handled::Interrupted;
                    }
                }
                Err(FlowError::MissingDependency(detail)) => {
                    let error = flows::permanent(Reason::MissingDependency, "missing", detail);
                    return self
                        .dead_letter(message, &envelope.event_type, &error, shutdown)
                        .await;
                }
                Err(FlowError::Transient(detail)) => {
                    metrics::counter!(m::BRIDGE_EVENTS_RETRIED, "type" => flows::type_label(&envelope.event_type))
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
            FlowError::MissingDependency(detail) => (
                Reason::MissingDependency.as_str(),
                "missing",
                detail.as_str(),
            ),
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
                        "type" => flows::type_label(event_type), "reason" => reason.to_owned())
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
