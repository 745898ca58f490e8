//! The transactional outbox.
//!
//! A service writes its change and an outbox row in one database transaction
//! ([`OutboxTx::enqueue`]), or in one statement ([`EventRow`]); the [`Relay`] publishes unpublished rows to Kafka in id order and marks them
//! published. The relay is woken in-process by the commit itself ([`OutboxTx::commit`]) and also
//! polls, for rows committed by other replicas. Only one replica relays at a time: the one
//! holding a PostgreSQL advisory lock on its own connection, which every relay query also
//! uses, so losing the connection means losing the lock and stopping.
//!
//! Rows are selected as "not yet published", never "id greater than the last one seen":
//! transactions commit out of id order and a cursor would skip rows.
//!
//! The relay does not wait for a batch's acks before it sends the next: up to
//! `outbox.max_batches_in_flight` batches are with the producer at once, so a commit that
//! lands while a batch awaits its acks goes out at once. Batches are marked published in the
//! order they were sent, each up to its first failure; after a failure nothing later is
//! marked, so the failed row and everything sent after it are sent again, in id order.
//!
//! The table each service's migrations create:
//!
//! ```sql
//! CREATE TABLE outbox (
//!     id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
//!     event_id     UUID NOT NULL UNIQUE,
//!     topic        TEXT NOT NULL,
//!     kafka_key    TEXT NOT NULL,
//!     payload      JSON NOT NULL,  -- the envelope as written (0005_outbox_json.sql)
//!     traceparent  TEXT,
//!     created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
//!     published_at TIMESTAMPTZ
//! );
//! CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
//! ```

use std::{collections::VecDeque, future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use rdkafka::{error::KafkaError, producer::FutureRecord};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tandem_proto::events::{Envelope, Event};
use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::{Backoff, BackoffSettings},
    host::{GrpcSurface, Host, HostError},
    kafka::{self, KafkaSettings},
    metrics_names as m,
    pool::{Db, Tx},
    producer::AckProducer,
    shutdown::{Deadline, sleep_or_cancel},
    telemetry::{self, TRACEPARENT},
};

/// How the relay batches, polls and prunes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct OutboxSettings {
    /// Fallback poll interval, for rows committed by other replicas, in milliseconds.
    pub poll_interval_ms: u64,
    /// Most rows published per round trip.
    pub batch_size: i64,
    /// Most batches sent and not yet wholly acknowledged. 1: each batch's acks are awaited
    /// before the next batch is read.
    pub max_batches_in_flight: usize,
    /// Published rows are deleted after this many hours.
    pub retention_hours: i32,
    /// How often published rows are pruned, in seconds.
    pub prune_interval_s: u64,
    /// Retry delays after a database or broker failure.
    pub backoff: BackoffSettings,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 500,
            batch_size: 500,
            max_batches_in_flight: 4,
            retention_hours: 72,
            prune_interval_s: 600,
            backoff: BackoffSettings::default(),
        }
    }
}

/// Writes the outbox row for `envelope` on `conn`. The Kafka key is the aggregate id; the
/// current span's trace context is stored with the row.
async fn insert(
    conn: &mut PgConnection,
    topic: &str,
    envelope: &Envelope,
) -> Result<(), sqlx::Error> {
    let payload =
        serde_json::to_string(envelope).map_err(|error| sqlx::Error::Encode(error.into()))?;
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, kafka_key, payload, traceparent) \
         VALUES ($1, $2, $3, $4::json, $5)",
    )
    .bind(envelope.id)
    .bind(topic)
    .bind(&envelope.aggregate_id)
    .bind(payload)
    .bind(telemetry::current_traceparent())
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the outbox rows for `events` (each with its topic) in one statement: a republish
/// of a batch is one round trip instead of one per row.
async fn insert_all(
    conn: &mut PgConnection,
    events: &[(&'static str, Envelope)],
) -> Result<(), sqlx::Error> {
    let mut ids = Vec::with_capacity(events.len());
    let mut topics = Vec::with_capacity(events.len());
    let mut keys = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    for (topic, envelope) in events {
        ids.push(envelope.id);
        topics.push(*topic);
        keys.push(envelope.aggregate_id.as_str());
        payloads.push(serde_json::to_string(envelope).map_err(|e| sqlx::Error::Encode(e.into()))?);
    }
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, kafka_key, payload, traceparent) \
         SELECT id, topic, key, payload::json, $5 \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) \
              WITH ORDINALITY AS e(id, topic, key, payload, position) \
         ORDER BY position",
    )
    .bind(ids)
    .bind(topics)
    .bind(keys)
    .bind(payloads)
    .bind(telemetry::current_traceparent())
    .execute(conn)
    .await?;
    Ok(())
}

/// The outbox row of one event, written by the same statement as the change it announces:
/// [`EventRow::cte`] is a data-modifying `WITH` item to put before the change's statement, and
/// [`EventRow::bind`] binds its parameters after the change's own. PostgreSQL runs a single
/// statement as a transaction of its own, so a change that is one statement commits with its
/// event in one round trip, with no BEGIN and no COMMIT ([`OutboxWaker::written`] then wakes
/// the relay); inside an [`OutboxTx`], take the row from [`OutboxTx::event_row`].
#[derive(Debug)]
pub struct EventRow {
    id: uuid::Uuid,
    topic: &'static str,
    key: String,
    payload: String,
    traceparent: Option<String>,
}

impl EventRow {
    /// How many parameters [`EventRow::cte`] takes.
    pub const PARAMETERS: usize = 5;

    /// The row of `payload`'s event at `version`, published by `source`, made by the caller
    /// whose request is being served and carrying the current span's trace context.
    pub fn new(source: &str, version: i64, payload: &impl Event) -> Result<Self, OutboxError> {
        let envelope = stamped(Envelope::of(source, version, payload)?);
        let json = serde_json::to_string(&envelope)?;
        Ok(Self {
            id: envelope.id,
            topic: payload.kind().topic(),
            key: envelope.aggregate_id,
            payload: json,
            traceparent: telemetry::current_traceparent(),
        })
    }

    /// `outbox_row AS (INSERT INTO outbox …)` with parameters `$first` to `$first + 4`.
    pub fn cte(first: usize) -> String {
        let [id, topic, key, payload, traceparent] = std::array::from_fn(|i| first + i);
        format!(
            "outbox_row AS (INSERT INTO outbox (event_id, topic, kafka_key, payload, traceparent) \
             VALUES (${id}, ${topic}, ${key}, ${payload}::json, ${traceparent}))"
        )
    }

    /// Binds the row's parameters to `query`, in [`EventRow::cte`]'s order.
    pub fn bind<'q, O>(
        self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        query
            .bind(self.id)
            .bind(self.topic)
            .bind(self.key)
            .bind(self.payload)
            .bind(self.traceparent)
    }
}

/// Wakes the relay right after a commit that wrote outbox rows; begins the transactions that
/// may write them ([`OutboxWaker::begin`]).
#[derive(Clone, Default)]
pub struct OutboxWaker(Arc<Notify>);

impl OutboxWaker {
    fn wake(&self) {
        self.0.notify_one();
    }

    /// Wakes the relay after a statement that wrote an [`EventRow`] outside any transaction
    /// returned (it committed as it returned).
    pub fn written(&self) {
        self.wake();
    }

    /// Begins a transaction on `pool` that may write outbox rows ([`OutboxTx::enqueue`]);
    /// committing it ([`OutboxTx::commit`]) wakes the relay when it wrote any.
    pub async fn begin(&self, db: &Db) -> Result<OutboxTx, sqlx::Error> {
        Ok(OutboxTx {
            tx: db.begin().await?,
            waker: self.clone(),
            wrote: false,
        })
    }
}

/// A database transaction that may write outbox rows: the change and its events commit
/// together, and the commit wakes the relay by itself (no caller can forget to). Dereferences
/// to the connection, for the change's own queries; dropped without [`OutboxTx::commit`], it
/// rolls back.
pub struct OutboxTx {
    tx: Tx,
    waker: OutboxWaker,
    wrote: bool,
}

impl OutboxTx {
    /// Writes the outbox row for `envelope`, to be published on `topic` once committed.
    async fn enqueue(&mut self, topic: &str, envelope: &Envelope) -> Result<(), sqlx::Error> {
        insert(&mut self.tx, topic, envelope).await?;
        self.wrote = true;
        Ok(())
    }

    /// Rolls back: neither the change nor its events happened.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// Enqueues the event `payload` makes, published by `source` at `version`: its type,
    /// aggregate and topic come from the payload ([`Envelope::of`]), its subject from the
    /// call being served.
    pub async fn publish(
        &mut self,
        source: &str,
        version: i64,
        payload: &impl Event,
    ) -> Result<(), OutboxError> {
        let event = stamped(Envelope::of(source, version, payload)?);
        self.enqueue(payload.kind().topic(), &event).await?;
        Ok(())
    }

    /// Enqueues one event per `(version, payload)`, in order, published by `source`: what
    /// [`OutboxTx::publish`] does for each, in one statement (republishing a batch).
    pub async fn publish_all<E: Event>(
        &mut self,
        source: &str,
        events: impl IntoIterator<Item = (i64, E)>,
    ) -> Result<(), OutboxError> {
        let events = events
            .into_iter()
            .map(|(version, payload)| {
                let event = stamped(Envelope::of(source, version, &payload)?);
                Ok((payload.kind().topic(), event))
            })
            .collect::<Result<Vec<_>, OutboxError>>()?;
        if events.is_empty() {
            return Ok(());
        }
        insert_all(&mut self.tx, &events).await?;
        self.wrote = true;
        Ok(())
    }

    /// The outbox row of `payload`'s event, for a statement of this transaction to write
    /// with its change ([`EventRow`]); the commit then wakes the relay.
    pub fn event_row(
        &mut self,
        source: &str,
        version: i64,
        payload: &impl Event,
    ) -> Result<EventRow, OutboxError> {
        self.wrote = true;
        EventRow::new(source, version, payload)
    }

    /// Commits, then wakes the relay if an outbox row was written.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        if self.wrote {
            self.waker.wake();
        }
        Ok(())
    }
}

impl std::ops::Deref for OutboxTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for OutboxTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// `event` made by the caller whose request is being served ([`crate::auth::current_subject`]).
fn stamped(event: Envelope) -> Envelope {
    event.with_subject(crate::auth::current_subject())
}

/// Why an event could not be written to the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("outbox write failed: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database access failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{failed} of {attempted} outbox rows were not acknowledged by Kafka, first: {first}")]
    Publish {
        failed: usize,
        attempted: usize,
        first: KafkaError,
    },
}

/// Publishes outbox rows to Kafka. Build with [`Relay::new`], run with [`Relay::run`].
pub struct Relay {
    pool: PgPool,
    producer: AckProducer,
    kafka: KafkaSettings,
    settings: OutboxSettings,
    topics: Vec<String>,
    lock_key: i64,
    waker: OutboxWaker,
}

struct Row {
    id: i64,
    topic: String,
    key: String,
    payload: String,
    traceparent: Option<String>,
    created_at: DateTime<Utc>,
}

/// Each row's delivery outcome, in row order.
type Acks = Pin<Box<dyn Future<Output = Vec<Result<(), KafkaError>>> + Send>>;

/// A batch handed to the producer, its acks still to come.
struct InFlight {
    rows: Vec<Row>,
    acks: Acks,
}

impl Relay {
    /// `name` identifies the outbox (one leader per name); `topics` are created if missing.
    pub fn new(
        name: &str,
        pool: PgPool,
        kafka: &KafkaSettings,
        settings: &OutboxSettings,
        topics: &[&str],
    ) -> Result<(Self, OutboxWaker), KafkaError> {
        let producer = AckProducer::new(&kafka.producer_config()?)?;
        let waker = OutboxWaker::default();
        let relay = Self {
            pool,
            producer,
            kafka: kafka.clone(),
            settings: settings.clone(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            lock_key: lock_key(name),
            waker: waker.clone(),
        };
        Ok((relay, waker))
    }

    /// Relays until `shutdown` is cancelled, then publishes what is left once and flushes.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.settings.backoff);
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        while let Err(error) = self.kafka.ensure_topics(&topics).await {
            let delay = backoff.next_delay();
            tracing::warn!(%error, ?delay, "cannot ensure outbox topics, retrying");
            if sleep_or_cancel(delay, &shutdown).await {
                return;
            }
        }
        backoff.reset();
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let leader = match self.acquire_leadership().await {
                Ok(Some(conn)) => conn,
                Ok(None) => {
                    if sleep_or_cancel(poll, &shutdown).await {
                        break;
                    }
                    continue;
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, ?delay, "outbox relay cannot reach the database");
                    if sleep_or_cancel(delay, &shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            tracing::info!("outbox relay is the leader");
            metrics::gauge!(m::OUTBOX_LEADER).set(1.0);
            let mut conn = leader;
            let result = self.lead(&mut conn, &shutdown, &mut backoff).await;
            metrics::gauge!(m::OUTBOX_LEADER).set(0.0);
            metrics::gauge!(m::OUTBOX_OLDEST_UNPUBLISHED_SECONDS).set(0.0);
            // Closing the session releases the advisory lock.
            drop(conn);
            match result {
                Ok(()) => break,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, ?delay, "outbox relay lost its database session");
                    if sleep_or_cancel(delay, &shutdown).await {
                        break;
                    }
                }
            }
        }
        if let Err(error) = self.producer.flush(Duration::from_secs(5)) {
            tracing::warn!(%error, "outbox producer flush at shutdown");
        }
        tracing::info!("outbox relay stopped");
    }

    async fn acquire_leadership(&self) -> Result<Option<PgConnection>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?.detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.lock_key)
            .fetch_one(&mut conn)
            .await?;
        Ok(locked.then_some(conn))
    }

    /// Publishes while leader. Returns Ok after shutdown, Err when the session is lost.
    /// Broker failures are retried here with backoff, keeping the lock.
    async fn lead(
        &self,
        conn: &mut PgConnection,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), sqlx::Error> {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let prune_every = Duration::from_secs(self.settings.prune_interval_s.max(1));
        let most_in_flight = self.settings.max_batches_in_flight.max(1);
        let mut last_prune: Option<Instant> = None;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        // Whether to read the outbox again as soon as there is room in flight.
        let mut look = true;
        loop {
            if last_prune.is_none_or(|at| at.elapsed() >= prune_every) {
                self.prune(conn).await?;
                last_prune = Some(Instant::now());
            }
            if look && in_flight.len() < most_in_flight {
                let sending: Vec<i64> = in_flight
                    .iter()
                    .flat_map(|batch| batch.rows.iter().map(|row| row.id))
                    .collect();
                let rows = self.unpublished(conn, &sending).await?;
                look = rows.len() as i64 >= self.settings.batch_size;
                if !rows.is_empty() {
                    in_flight.push_back(self.send(rows));
                }
                continue;
            }
            let room = in_flight.len() < most_in_flight;
            let Some(oldest) = in_flight.front_mut() else {
                tokio::select! {
                    () = shutdown.cancelled() => {
                        self.drain_at_shutdown(conn).await;
                        return Ok(());
                    }
                    () = self.waker.0.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                }
                look = true;
                continue;
            };
            tokio::select! {
                outcomes = &mut oldest.acks => {
                    let Some(done) = in_flight.pop_front() else {
                        continue;
                    };
                    match self.mark(conn, &done.rows, outcomes).await {
                        Ok(_) => backoff.reset(),
                        Err(RelayError::Database(error)) => return Err(error),
                        Err(error @ RelayError::Publish { .. }) => {
                            // Nothing sent after the failed row is marked: it all goes again,
                            // in id order, once the later batches' acks are in.
                            for later in in_flight.drain(..) {
                                later.acks.await;
                            }
                            let delay = backoff.next_delay();
                            tracing::warn!(%error, ?delay, "outbox publish failed, retrying");
                            if sleep_or_cancel(delay, shutdown).await {
                                return Ok(());
                            }
                            look = true;
                        }
                    }
                }
                () = self.waker.0.notified(), if room => look = true,
                () = shutdown.cancelled() => {
                    // Finish what is in flight, in order, then what RPCs committed since.
                    while let Some(batch) = in_flight.pop_front() {
                        let outcomes = batch.acks.await;
                        if let Err(error) = self.mark(conn, &batch.rows, outcomes).await {
                            tracing::warn!(%error, "outbox batch in flight at shutdown failed; rows stay for the next start");
                            return Ok(());
                        }
                    }
                    self.drain_at_shutdown(conn).await;
                    return Ok(());
                }
            }
        }
    }

    /// Rows committed by RPCs that drained before the relay was told to stop.
    async fn drain_at_shutdown(&self, conn: &mut PgConnection) {
        if let Err(error) = self.publish_batch(conn).await {
            tracing::warn!(%error, "final outbox drain failed; rows stay for the next start");
        }
    }

    /// Publishes up to one batch of unpublished rows and waits for its acks; returns how many
    /// were acknowledged.
    async fn publish_batch(&self, conn: &mut PgConnection) -> Result<usize, RelayError> {
        let rows = self.unpublished(conn, &[]).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let batch = self.send(rows);
        let outcomes = batch.acks.await;
        self.mark(conn, &batch.rows, outcomes).await
    }

    /// Up to one batch of unpublished rows, in id order, leaving out `sending` (rows in
    /// flight).
    ///
    /// The relay's statements are planned at every execution (`persistent(false)`), not
    /// prepared once: a plan prepared while the outbox was nearly empty is a sequential scan,
    /// and the leader's session would keep it while the table grows (seen: every mark scanning
    /// all of a 40,000-row outbox, 3-7 ms each, half of PostgreSQL's CPU in a write load).
    /// Planning them costs microseconds, once per batch.
    async fn unpublished(
        &self,
        conn: &mut PgConnection,
        sending: &[i64],
    ) -> Result<Vec<Row>, sqlx::Error> {
        let rows: Vec<Row> =
            sqlx::query_as::<_, (i64, String, String, String, Option<String>, DateTime<Utc>)>(
                "SELECT id, topic, kafka_key, payload::text, traceparent, created_at \
             FROM outbox WHERE published_at IS NULL AND id <> ALL($2) ORDER BY id LIMIT $1",
            )
            .persistent(false)
            .bind(self.settings.batch_size)
            .bind(sending)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(id, topic, key, payload, traceparent, created_at)| Row {
                id,
                topic,
                key,
                payload,
                traceparent,
                created_at,
            })
            .collect();
        // Rows are read in id order, so the first is the oldest waiting (near enough: ids
        // are taken before commit); rows in flight are not waiting.
        if sending.is_empty() || !rows.is_empty() {
            let oldest = rows
                .first()
                .map(|row| (Utc::now() - row.created_at).to_std().unwrap_or_default());
            metrics::gauge!(m::OUTBOX_OLDEST_UNPUBLISHED_SECONDS)
                .set(oldest.unwrap_or_default().as_secs_f64());
        }
        Ok(rows)
    }

    /// Hands `rows` to the producer, in order.
    fn send(&self, rows: Vec<Row>) -> InFlight {
        let deliveries: Vec<_> = rows
            .iter()
            .map(|row| {
                let headers =
                    kafka::headers(row.traceparent.as_deref().map(|tp| (TRACEPARENT, tp)));
                let record = FutureRecord::to(&row.topic)
                    .key(&row.key)
                    .payload(&row.payload)
                    .headers(headers);
                let sent = self
                    .producer
                    .send_result(record)
                    .map_err(|(error, _)| error);
                #[cfg(feature = "failpoints")]
                let topic = row.topic.clone();
                async move {
                    let outcome = match sent?.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((error, _))) => Err(error),
                        Err(_cancelled) => Err(KafkaError::Canceled),
                    };
                    #[cfg(feature = "failpoints")]
                    let outcome = failpoints_on_ack(outcome, &topic).await;
                    outcome
                }
            })
            .collect();
        InFlight {
            rows,
            acks: Box::pin(futures::future::join_all(deliveries)),
        }
    }

    /// Marks `rows` published up to the first that was not acknowledged; returns how many
    /// were, or the failure. Rows after a failure are not marked even if acknowledged, so
    /// they go again after the failed one and a partition never ends on an older version.
    async fn mark(
        &self,
        conn: &mut PgConnection,
        rows: &[Row],
        outcomes: Vec<Result<(), KafkaError>>,
    ) -> Result<usize, RelayError> {
        let mut acked = Vec::with_capacity(rows.len());
        let mut first_failure: Option<KafkaError> = None;
        let mut failed = 0;
        for (row, outcome) in rows.iter().zip(outcomes) {
            match outcome {
                Ok(()) if first_failure.is_none() => acked.push(row),
                Ok(()) => {}
                Err(error) => {
                    failed += 1;
                    metrics::counter!(m::OUTBOX_PUBLISH_FAILED, "topic" => row.topic.clone())
                        .increment(1);
                    first_failure.get_or_insert(error);
                }
            }
        }

        if !acked.is_empty() {
            crate::failpoint::crash_point("relay-after-ack-before-mark", &acked[0].topic);
            let ids: Vec<i64> = acked.iter().map(|row| row.id).collect();
            sqlx::query(
                "UPDATE outbox SET published_at = clock_timestamp() \
                 WHERE id = ANY($1) AND published_at IS NULL",
            )
            .persistent(false)
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
            let now = Utc::now();
            for row in &acked {
                metrics::counter!(m::OUTBOX_PUBLISHED, "topic" => row.topic.clone()).increment(1);
                let lag = (now - row.created_at).to_std().unwrap_or_default();
                metrics::histogram!(m::OUTBOX_LAG_SECONDS).record(lag.as_secs_f64());
            }
        }
        match first_failure {
            None => Ok(acked.len()),
            Some(first) => Err(RelayError::Publish {
                failed,
                attempted: rows.len(),
                first,
            }),
        }
    }

    async fn prune(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let pruned = sqlx::query(
            "DELETE FROM outbox WHERE published_at IS NOT NULL \
             AND published_at < now() - make_interval(hours => $1)",
        )
        .persistent(false)
        .bind(self.settings.retention_hours)
        .execute(conn)
        .await?
        .rows_affected();
        if pruned > 0 {
            metrics::counter!(m::OUTBOX_PRUNED).increment(pruned);
            tracing::debug!(pruned, "pruned published outbox rows");
        }
        Ok(())
    }
}

/// The relay's fault-injection points on a row's ack (see [`crate::failpoint`]).
#[cfg(feature = "failpoints")]
async fn failpoints_on_ack(outcome: Result<(), KafkaError>, topic: &str) -> Result<(), KafkaError> {
    use crate::failpoint::fail_point;
    if outcome.is_ok() && fail_point("relay-ack-delayed", topic) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if outcome.is_ok() && fail_point("relay-delivery-refused", topic) {
        return Err(KafkaError::MessageProduction(
            rdkafka::types::RDKafkaErrorCode::MessageTimedOut,
        ));
    }
    outcome
}

/// A stable 64-bit advisory lock key for an outbox name (FNV-1a).
fn lock_key(name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

impl Host {
    /// [`Host::serve`] for a service with an outbox: `relay` runs alongside with its own stop
    /// token and is stopped only after the gRPC server drained, so the events of the last
    /// committed calls still go out. Draining and flushing share one budget, `grace` from the
    /// signal ([`Deadline`]); then `pool` is closed.
    pub async fn serve_with_outbox(
        self,
        surface: GrpcSurface,
        sync: Option<GrpcSurface>,
        relay: Relay,
        db: Db,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Result<(), HostError> {
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(relay.run(relay_stop.clone()));
        tokio::spawn(crate::db::export_pool_metrics(
            db.clone(),
            relay_stop.clone(),
        ));
        // The budget starts at the signal, not when draining ends.
        let signalled = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                Deadline::after(grace)
            })
        };
        let served = self.serve(surface, sync, shutdown.clone(), grace).await;
        let deadline = if shutdown.is_cancelled() {
            signalled
                .await
                .unwrap_or_else(|_| Deadline::after(Duration::ZERO))
        } else {
            // The server failed on its own: no signal to count from.
            signalled.abort();
            Deadline::after(Duration::ZERO)
        };
        relay_stop.cancel();
        // The last phase: the relay flushes, then the pool closes. Closing waits for every
        // connection to come back, and a call that did not drain in time still holds one, so
        // the phase is bounded as a whole (the process exit drops what is left).
        let left = deadline.left_for_last_phase();
        let last_phase = async {
            if let Err(error) = relay.await {
                tracing::warn!(%error, "outbox relay task failed");
            }
            db.close().await;
        };
        if tokio::time::timeout(left, last_phase).await.is_err() {
            tracing::warn!(
                ?left,
                "the outbox relay or database connections did not stop in time"
            );
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("crm"), lock_key("crm"));
        assert_ne!(lock_key("crm"), lock_key("erp"));
        // FNV-1a of the empty string is the offset basis.
        assert_eq!(lock_key(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
    }

    #[tokio::test]
    async fn events_carry_the_subject_of_the_call_being_served() {
        let stock = tandem_proto::events::erp::StockChangedV1 {
            sku: "SKU-1".into(),
            on_hand: 1,
            reserved: 0,
            available: 1,
            warehouses: vec![],
        };
        let event = || stamped(Envelope::of("erp", 1, &stock).unwrap());
        assert_eq!(event().subject, None);
        let caller = crate::auth::Caller {
            subject: "ada@example.com".into(),
            roles: vec![crate::auth::Role::Sales],
        };
        let inside = crate::auth::with_caller(caller, async { event() }).await;
        assert_eq!(inside.subject.as_deref(), Some("ada@example.com"));
    }
}
