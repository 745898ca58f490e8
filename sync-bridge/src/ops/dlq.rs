//! `tandemctl dlq list`, `replay`, `resolve` and `purge`: dead letters with a lifecycle.
//!
//! The dead letters are read from the dead-letter topic, their states from the compacted state
//! topic ([`super::dlq_state`]); a dead letter without a state record is open. Every command
//! says how far it read both topics, and whether it stopped on a limit or the time limit.
//!
//! A replay publishes the original key, payload and headers back to the source topic, to the
//! partition the event came from (where the entity's other events are), with `tandem.replays`
//! counting the replays of that event and `tandem.replay_id` naming this replay. The bridge
//! keeps those headers when it dead-letters the event again, so the replay refuses, past
//! `--max-replays`, an event that keeps failing: the loop guard.
//!
//! A replay is recorded in two steps around the publish: `replaying` (with the replay id and
//! the source partition's end offset) before, `replayed` (with where it landed) after. A run
//! that stops between the two leaves `replaying`; the next replay looks for the replay id in
//! the source partition from that offset, and records the replay it finds instead of
//! publishing again (counted as recovered), or publishes it if the first run never did. So a
//! dead letter is published once per replay the operator asked for, and the counts say what
//! this run published.

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};
use rdkafka::{
    Message,
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
    producer::FutureRecord,
};
use tandem_common::{
    kafka::{KafkaError, KafkaSettings},
    producer::AckProducer,
};

use super::{
    ReadLimits, TopicRead,
    dlq_state::{self, Position, Replay, State, StateRecord, States, WriteError, Writer},
    header,
};
use crate::dead_letter::headers as dlq;

/// Header counting replays of one event.
pub const REPLAYS: &str = "tandem.replays";
/// Header naming one replay (a UUID): how an interrupted replay is found again.
pub const REPLAY_ID: &str = "tandem.replay_id";
/// Longest note kept on a resolved or purged dead letter.
pub const NOTE_MAX: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("{context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    State(Box<WriteError>),
    #[error(
        "the state topic was not read to its end ({0}); nothing was changed: run again with a \
         larger --timeout-s"
    )]
    StatesIncomplete(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<WriteError> for DlqError {
    fn from(error: WriteError) -> Self {
        Self::State(Box::new(error))
    }
}

fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> DlqError {
    let context = context.into();
    move |source| DlqError::Kafka { context, source }
}

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
    /// The Kafka key (the aggregate id).
    pub key: Option<String>,
    /// Dead-letter ids as listed (`topic/partition/offset` of the source record); any of them.
    pub ids: Vec<String>,
    /// States; empty: the command's default.
    pub states: Vec<State>,
}

impl Filter {
    /// Whether the filter names some dead letters (by anything but their state).
    pub fn selects(&self) -> bool {
        self.event_type.is_some()
            || self.reason.is_some()
            || self.since.is_some()
            || self.until.is_some()
            || self.key.is_some()
            || !self.ids.is_empty()
    }
}

/// One dead letter, as read.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message: OwnedMessage,
    pub event_type: String,
    /// The envelope's `id`, when the payload has one.
    pub event_id: Option<String>,
    pub reason: String,
    pub code: String,
    pub detail: String,
    pub source_topic: String,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub failed_at: Option<DateTime<Utc>>,
    pub replays: u32,
}

impl DeadLetter {
    pub fn from_message(message: OwnedMessage) -> Self {
        let text = |name: &str| header(&message, name).unwrap_or_default().to_owned();
        let payload = message
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok());
        let field = |name: &str| {
            payload
                .as_ref()
                .and_then(|v| v.get(name)?.as_str().map(str::to_owned))
        };
        Self {
            event_type: field("type").unwrap_or_else(|| "unknown".to_owned()),
            event_id: field("id"),
            reason: text(dlq::REASON),
            code: text(dlq::ERROR_CODE),
            detail: text(dlq::DETAIL),
            source_topic: text(dlq::SOURCE_TOPIC),
            source_partition: header(&message, dlq::SOURCE_PARTITION).and_then(|p| p.parse().ok()),
            source_offset: header(&message, dlq::SOURCE_OFFSET).and_then(|o| o.parse().ok()),
            failed_at: header(&message, dlq::FAILED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            replays: header(&message, REPLAYS)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            message,
        }
    }

    /// The dead letter's own position in the dead-letter topic.
    pub fn position(&self) -> Position {
        Position {
            topic: self.message.topic().to_owned(),
            partition: self.message.partition(),
            offset: self.message.offset(),
        }
    }

    /// Where the event was when the bridge read it (`None` without the `dlq.source_*`
    /// headers: then it cannot be replayed).
    pub fn source(&self) -> Option<Position> {
        Some(Position {
            topic: Some(self.source_topic.clone()).filter(|t| !t.is_empty())?,
            partition: self.source_partition?,
            offset: self.source_offset?,
        })
    }

    /// The id commands name it by and its state's key: the source position, else (without
    /// source headers) its own.
    pub fn id(&self) -> String {
        self.source().unwrap_or_else(|| self.position()).to_string()
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
            && filter
                .key
                .as_ref()
                .is_none_or(|k| self.message.key() == Some(k.as_bytes()))
            && (filter.ids.is_empty() || filter.ids.contains(&self.id()))
    }
}

/// A dead letter with its state.
#[derive(Debug, Clone)]
pub struct Listed {
    pub letter: DeadLetter,
    /// `None`: its state record cannot be read; no command acts on it.
    pub state: Option<State>,
    /// The state record it has (none when open).
    pub record: Option<StateRecord>,
    pub problem: Option<String>,
    /// An earlier dead letter of the same source record was read (the bridge dead-letters at
    /// least once); they share one state and are replayed once.
    pub duplicate: bool,
}

impl Listed {
    /// The state's name, `unknown` when unreadable.
    pub fn state_name(&self) -> &'static str {
        self.state.map_or("unknown", State::as_str)
    }

    /// One line for `dlq list`.
    pub fn describe(&self) -> String {
        let letter = &self.letter;
        let mut line = format!(
            "{id}  {state:<9} {at}  {reason:<14} {event_type:<30} replays={replays}  key={key}  {code}: {detail}",
            id = letter.id(),
            state = self.state_name(),
            at = letter
                .failed_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "?".to_owned()),
            reason = letter.reason,
            event_type = letter.event_type,
            replays = letter.replays,
            key = letter
                .message
                .key()
                .map(String::from_utf8_lossy)
                .unwrap_or_default(),
            code = letter.code,
            detail = letter.detail,
        );
        if let Some(record) = &self.record {
            line.push_str(&format!(
                "  [{} at {} by {}",
                record.state,
                record.at.to_rfc3339(),
                record.by
            ));
            if record.replays > 0 {
                line.push_str(&format!(", replayed {}x", record.replays));
            }
            if let Some(published) = record.replay.as_ref().and_then(|r| r.published.as_ref()) {
                line.push_str(&format!(", last replay at {published}"));
            }
            if let Some(note) = &record.note {
                line.push_str(&format!(": {note}"));
            }
            line.push(']');
        }
        if let Some(problem) = &self.problem {
            line.push_str(&format!("  [{problem}]"));
        }
        if self.duplicate {
            line.push_str("  (another copy of the same source record)");
        }
        line
    }
}

/// The dead letters and their states, as read, with how far each topic was read.
#[derive(Debug)]
pub struct Listing {
    /// Oldest first.
    pub entries: Vec<Listed>,
    pub letters_read: TopicRead,
    pub states_read: TopicRead,
    pub states: States,
}

impl Listing {
    /// Whether both topics were read to their end offsets.
    pub fn complete(&self) -> bool {
        self.letters_read.complete() && self.states_read.complete()
    }

    /// How far both topics were read, one line each.
    pub fn progress(&self) -> String {
        format!(
            "{}\n{}",
            self.letters_read.describe(),
            self.states_read.describe()
        )
    }

    /// The entries that `filter` names (its states aside), the duplicates left out.
    pub fn selected<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = &'a Listed> + 'a {
        self.entries
            .iter()
            .filter(move |e| !e.duplicate && e.letter.matches(filter))
    }

    /// `open 2, replaying 0, replayed 1, ...`: every dead letter read, by state.
    pub fn counts(&self) -> String {
        let mut parts: Vec<String> = State::ALL
            .iter()
            .map(|state| {
                let n = self
                    .entries
                    .iter()
                    .filter(|e| e.state == Some(*state))
                    .count();
                format!("{state} {n}")
            })
            .collect();
        let unknown = self.entries.iter().filter(|e| e.state.is_none()).count();
        if unknown > 0 {
            parts.push(format!("unknown {unknown}"));
        }
        let duplicates = self.entries.iter().filter(|e| e.duplicate).count();
        if duplicates > 0 {
            parts.push(format!("of which copies of one source record {duplicates}"));
        }
        parts.join(", ")
    }
}

/// Reads the dead letters of `topic` and their states from `state_topic`.
pub fn load(
    kafka: &KafkaSettings,
    topic: &str,
    state_topic: &str,
    limits: &ReadLimits,
) -> Result<Listing, DlqError> {
    let (states, states_read) = dlq_state::read(kafka, state_topic, limits)
        .map_err(self::kafka(format!("cannot read {state_topic}")))?;
    let letters_read = super::read_topic(kafka, topic, limits)
        .map_err(self::kafka(format!("cannot read {topic}")))?;
    let mut letters: Vec<DeadLetter> = letters_read
        .records
        .iter()
        .cloned()
        .map(DeadLetter::from_message)
        .collect();
    letters.sort_by_key(|l| {
        (
            l.message.timestamp().to_millis().unwrap_or_default(),
            l.message.partition(),
            l.message.offset(),
        )
    });
    let mut seen = HashSet::new();
    let entries = letters
        .into_iter()
        .map(|letter| {
            let id = letter.id();
            let duplicate = !seen.insert(id.clone());
            let (state, record, problem) = match states.get(&id) {
                None => (Some(State::Open), None, None),
                Some(Err(problem)) => (None, None, Some(problem.clone())),
                Some(Ok(record))
                    if record.event_id.is_some()
                        && letter.event_id.is_some()
                        && record.event_id != letter.event_id =>
                {
                    // A state of another event at the same position (the source topic was
                    // created again): not this dead letter's.
                    (
                        Some(State::Open),
                        None,
                        Some(format!(
                            "a state record of another event ({}) at this position is ignored",
                            record.event_id.as_deref().unwrap_or_default()
                        )),
                    )
                }
                Some(Ok(record)) => (Some(record.state), Some(record.clone()), None),
            };
            Listed {
                letter,
                state,
                record,
                problem,
                duplicate,
            }
        })
        .collect();
    Ok(Listing {
        entries,
        letters_read,
        states_read,
        states,
    })
}

/// The entries `dlq list` shows: the filter's states, by default the open ones, interrupted
/// replays and those whose state cannot be read.
pub fn listed<'a>(listing: &'a Listing, filter: &'a Filter) -> Vec<&'a Listed> {
    listing
        .entries
        .iter()
        .filter(|e| e.letter.matches(filter))
        .filter(|e| match e.state {
            None => filter.states.is_empty() || filter.states.len() == State::ALL.len(),
            Some(state) if filter.states.is_empty() => {
                matches!(state, State::Open | State::Replaying)
            }
            Some(state) => filter.states.contains(&state),
        })
        .collect()
}

/// Who runs a command and how.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Recorded in the state records (`by`).
    pub by: String,
    /// Count only; write and publish nothing.
    pub dry_run: bool,
}

/// The state record `entry` gets next: its current record carried forward.
fn next_record(entry: &Listed, state: State, operator: &Operator) -> StateRecord {
    let letter = &entry.letter;
    let previous = entry.record.as_ref();
    StateRecord {
        schema_version: 1,
        state,
        source: letter.source().unwrap_or_else(|| letter.position()),
        dead_letter: previous.map_or_else(|| letter.position(), |r| r.dead_letter.clone()),
        event_id: letter.event_id.clone(),
        event_type: letter.event_type.clone(),
        at: Utc::now(),
        by: operator.by.clone(),
        note: None,
        replays: previous.map_or(0, |r| r.replays),
        replay: previous.and_then(|r| r.replay.clone()),
    }
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Published by this run (with a dry run: would be).
    pub replayed: usize,
    /// Refused by the loop guard, or without a source to go back to.
    pub refused: usize,
    /// Interrupted replays found published by an earlier run: recorded now, not published
    /// again.
    pub recovered: usize,
    /// Replayed before; left alone without `--again`.
    pub already_replayed: usize,
    /// Resolved or purged; never replayed.
    pub closed: usize,
    /// Interrupted replays not settled: the source partition could not be read to its end
    /// (or a dry run).
    pub unsettled: usize,
    /// State unreadable; left alone.
    pub unknown: usize,
}

impl ReplayReport {
    pub fn describe(&self, dry_run: bool, max_replays: u32) -> String {
        format!(
            "{replayed} {verb}, {refused} refused by the loop guard (replayed {max_replays} times already) \
             or without a source, {recovered} recovered (published by an interrupted run, recorded now, \
             not published again), {already} already replayed (--again replays them again), \
             {closed} resolved or purged, {unsettled} interrupted replays not settled, {unknown} with \
             an unreadable state",
            replayed = self.replayed,
            verb = if dry_run {
                "would be replayed"
            } else {
                "replayed"
            },
            refused = self.refused,
            recovered = self.recovered,
            already = self.already_replayed,
            closed = self.closed,
            unsettled = self.unsettled,
            unknown = self.unknown,
        )
    }
}

/// Options of a replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Refuse an event replayed this many times already (the loop guard).
    pub max_replays: u32,
    /// Replay dead letters replayed before, once more.
    pub again: bool,
}

/// Re-publishes each selected dead letter to its source topic, recording each replay in the
/// state topic (see the module's documentation), never twice unless `again`.
pub async fn replay(
    kafka: &KafkaSettings,
    listing: &Listing,
    filter: &Filter,
    state_topic: &str,
    options: &ReplayOptions,
    operator: &Operator,
    limits: &ReadLimits,
) -> Result<ReplayReport, DlqError> {
    if !listing.states_read.complete() {
        return Err(DlqError::StatesIncomplete(listing.states_read.describe()));
    }
    let mut report = ReplayReport::default();
    let mut work = None;
    for entry in listing.selected(filter) {
        let state = match entry.state {
            None => {
                report.unknown += 1;
                continue;
            }
            Some(state) => state,
        };
        match state {
            State::Resolved | State::Purged => {
                report.closed += 1;
                continue;
            }
            State::Replayed if !options.again => {
                report.already_replayed += 1;
                continue;
            }
            _ => {}
        }
        let Some(source) = entry.letter.source() else {
            report.refused += 1;
            continue;
        };
        let interrupted = entry
            .record
            .as_ref()
            .and_then(|r| r.replay.clone())
            .filter(|_| state == State::Replaying);
        if interrupted.is_none() {
            let previous = entry.record.as_ref().map_or(0, |r| r.replays);
            if entry.letter.replays.saturating_add(previous) >= options.max_replays {
                report.refused += 1;
                continue;
            }
        }
        if operator.dry_run {
            if interrupted.is_some() {
                report.unsettled += 1;
            } else {
                report.replayed += 1;
            }
            continue;
        }
        if work.is_none() {
            let producer = kafka
                .producer_config()
                .and_then(|c| AckProducer::new(&c))
                .map_err(self::kafka("cannot create a producer"))?;
            work = Some((producer, Writer::new(kafka, state_topic).await?));
        }
        let Some((producer, writer)) = work.as_ref() else {
            continue;
        };
        let id = entry.letter.id();
        let replay = match interrupted {
            Some(replay) => {
                // An earlier run recorded the intent and stopped: was the replay published?
                let scan = super::read_partition_from(
                    kafka,
                    &source.topic,
                    source.partition,
                    replay.scan_from,
                    limits,
                )
                .map_err(self::kafka(format!(
                    "cannot read {}[{}] for the interrupted replay of {id}",
                    source.topic, source.partition
                )))?;
                let replay_id = replay.id.to_string();
                if let Some(found) = scan
                    .records
                    .iter()
                    .find(|m| header(m, REPLAY_ID) == Some(replay_id.as_str()))
                {
                    let mut record = next_record(entry, State::Replayed, operator);
                    record.replays = record.replays.saturating_add(1);
                    record.replay = Some(Replay {
                        published: Some(Position {
                            topic: source.topic.clone(),
                            partition: found.partition(),
                            offset: found.offset(),
                        }),
                        ..replay
                    });
                    writer.put(&id, &record).await?;
                    report.recovered += 1;
                    continue;
                }
                if !scan.complete() {
                    eprintln!(
                        "warning: interrupted replay of {id} not settled: {}",
                        scan.describe()
                    );
                    report.unsettled += 1;
                    continue;
                }
                replay
            }
            None => {
                let scan_from = super::end_offset(kafka, &source.topic, source.partition).map_err(
                    self::kafka(format!(
                        "cannot read the end offset of {}[{}]",
                        source.topic, source.partition
                    )),
                )?;
                let replay = Replay {
                    id: uuid::Uuid::now_v7(),
                    scan_from,
                    published: None,
                };
                let mut intent = next_record(entry, State::Replaying, operator);
                intent.replay = Some(replay.clone());
                writer.put(&id, &intent).await?;
                tandem_common::failpoint::crash_point(
                    "tandemctl-replay-after-intent",
                    &source.topic,
                );
                replay
            }
        };
        let previous = entry.record.as_ref().map_or(0, |r| r.replays);
        let count = entry
            .letter
            .replays
            .saturating_add(previous)
            .saturating_add(1);
        let (partition, offset) =
            publish(producer, &entry.letter, &source, count, &replay.id).await?;
        tandem_common::failpoint::crash_point("tandemctl-replay-after-publish", &source.topic);
        let mut record = next_record(entry, State::Replayed, operator);
        record.replays = previous.saturating_add(1);
        record.replay = Some(Replay {
            published: Some(Position {
                topic: source.topic.clone(),
                partition,
                offset,
            }),
            ..replay
        });
        writer.put(&id, &record).await?;
        report.replayed += 1;
    }
    Ok(report)
}

/// Publishes `letter`'s key, payload and headers (without the `dlq.*` ones) to its source
/// partition, as replay `replay_id`, the `count`th replay of the event.
async fn publish(
    producer: &AckProducer,
    letter: &DeadLetter,
    source: &Position,
    count: u32,
    replay_id: &uuid::Uuid,
) -> Result<(i32, i64), DlqError> {
    let count = count.to_string();
    let replay_id = replay_id.to_string();
    let mut headers = OwnedHeaders::new();
    if let Some(original) = letter.message.headers() {
        for h in original
            .iter()
            .filter(|h| !h.key.starts_with("dlq.") && h.key != REPLAYS && h.key != REPLAY_ID)
        {
            headers = headers.insert(h);
        }
    }
    for (key, value) in [(REPLAYS, count.as_str()), (REPLAY_ID, replay_id.as_str())] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&source.topic)
        .partition(source.partition)
        .headers(headers);
    if let Some(key) = letter.message.key() {
        record = record.key(key);
    }
    if let Some(payload) = letter.message.payload() {
        record = record.payload(payload);
    }
    let delivery = producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|source_error| DlqError::Kafka {
            context: format!(
                "cannot replay {} to {}[{}]",
                letter.id(),
                source.topic,
                source.partition
            ),
            source: source_error,
        })?;
    Ok(delivery)
}

/// What `dlq resolve` or `dlq purge` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MarkReport {
    /// Marked now (with a dry run: would be).
    pub marked: usize,
    /// In that state already: nothing written.
    pub already: usize,
    /// Purged (for resolve): left alone.
    pub closed: usize,
    /// Interrupted replays: left alone until `dlq replay` settles them.
    pub replaying: usize,
    /// State unreadable: left alone.
    pub unknown: usize,
    /// Purge only: state records forgotten (tombstoned) because the dead-letter topic no
    /// longer holds their dead letters (past its retention).
    pub forgotten: usize,
}

impl MarkReport {
    pub fn describe(&self, verb: &str, dry_run: bool) -> String {
        let mut text = format!(
            "{marked} {would}{verb}, {already} {verb} already, {replaying} interrupted replays left \
             alone (run dlq replay to settle them), {unknown} with an unreadable state",
            marked = self.marked,
            would = if dry_run { "would be " } else { "" },
            already = self.already,
            replaying = self.replaying,
            unknown = self.unknown,
        );
        if self.closed > 0 {
            text.push_str(&format!(", {} purged (left alone)", self.closed));
        }
        if self.forgotten > 0 {
            text.push_str(&format!(
                ", {} state records of expired dead letters forgotten",
                self.forgotten
            ));
        }
        text
    }
}

/// Checks a note: not blank, at most [`NOTE_MAX`] characters.
pub fn check_note(note: &str) -> Result<String, DlqError> {
    let note = note.trim();
    if note.is_empty() {
        return Err(DlqError::Invalid("--note: required, not blank".to_owned()));
    }
    if note.chars().count() > NOTE_MAX {
        return Err(DlqError::Invalid(format!(
            "--note: at most {NOTE_MAX} characters"
        )));
    }
    Ok(note.to_owned())
}

/// Marks the selected dead letters `state` (resolved or purged) with `note`. Idempotent: those
/// in that state already are left as they are.
pub async fn mark(
    kafka: &KafkaSettings,
    listing: &Listing,
    filter: &Filter,
    state_topic: &str,
    state: State,
    note: Option<String>,
    operator: &Operator,
) -> Result<MarkReport, DlqError> {
    if !matches!(state, State::Resolved | State::Purged) {
        return Err(DlqError::Invalid(format!(
            "dead letters are marked resolved or purged, not {state}"
        )));
    }
    if !listing.states_read.complete() {
        return Err(DlqError::StatesIncomplete(listing.states_read.describe()));
    }
    let mut report = MarkReport::default();
    let mut writer = None;
    for entry in listing.selected(filter) {
        let current = match entry.state {
            None => {
                report.unknown += 1;
                continue;
            }
            Some(current) => current,
        };
        if !filter.states.is_empty() && !filter.states.contains(&current) {
            continue;
        }
        if current == state {
            report.already += 1;
            continue;
        }
        match current {
            State::Purged => {
                report.closed += 1;
                continue;
            }
            State::Replaying => {
                report.replaying += 1;
                continue;
            }
            State::Open | State::Replayed | State::Resolved => {}
        }
        report.marked += 1;
        if operator.dry_run {
            continue;
        }
        if writer.is_none() {
            writer = Some(Writer::new(kafka, state_topic).await?);
        }
        let Some(writer) = writer.as_ref() else {
            continue;
        };
        let mut record = next_record(entry, state, operator);
        record.note = note.clone();
        writer.put(&entry.letter.id(), &record).await?;
    }
    if state == State::Purged && listing.letters_read.complete() && !operator.dry_run {
        report.forgotten = forget_expired(kafka, listing, state_topic).await?;
    }
    Ok(report)
}

/// Tombstones the state records of dead letters that the dead-letter topic no longer holds
/// (their offsets are below the partition's low watermark, retention removed them), so that
/// compaction lets the state topic shrink as the dead letters expire.
async fn forget_expired(
    kafka: &KafkaSettings,
    listing: &Listing,
    state_topic: &str,
) -> Result<usize, DlqError> {
    let topic = &listing.letters_read.topic;
    let present: HashSet<String> = listing.entries.iter().map(|e| e.letter.id()).collect();
    let low = super::start_offsets(kafka, topic).map_err(self::kafka(format!(
        "cannot read the start offsets of {topic}"
    )))?;
    let expired: Vec<&String> = listing
        .states
        .records
        .iter()
        .filter_map(|(key, record)| record.as_ref().ok().map(|r| (key, r)))
        .filter(|(key, record)| {
            record.dead_letter.topic == *topic
                && !present.contains(*key)
                && low
                    .get(&record.dead_letter.partition)
                    .is_some_and(|start| record.dead_letter.offset < *start)
        })
        .map(|(key, _)| key)
        .collect();
    if expired.is_empty() {
        return Ok(0);
    }
    let writer = Writer::new(kafka, state_topic).await?;
    for key in &expired {
        writer.forget(key).await?;
    }
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rdkafka::Timestamp;

    use super::*;

    fn letter(headers: &[(&str, &str)], payload: &str) -> DeadLetter {
        let headers = tandem_common::kafka::headers(headers.iter().copied());
        DeadLetter::from_message(OwnedMessage::new(
            Some(payload.as_bytes().to_vec()),
            Some(b"customer-1".to_vec()),
            "tandem.dead-letter".to_owned(),
            Timestamp::NotAvailable,
            1,
            9,
            Some(headers),
        ))
    }

    #[test]
    fn a_dead_letter_is_named_by_its_source_position_else_its_own() {
        let with_source = letter(
            &[
                (dlq::SOURCE_TOPIC, "crm.customers"),
                (dlq::SOURCE_PARTITION, "2"),
                (dlq::SOURCE_OFFSET, "41"),
            ],
            r#"{"id": "e1", "type": "crm.customer.upserted"}"#,
        );
        assert_eq!(with_source.id(), "crm.customers/2/41");
        assert_eq!(with_source.event_id.as_deref(), Some("e1"));
        let without = letter(&[(dlq::SOURCE_TOPIC, "crm.customers")], "not json");
        assert_eq!(without.id(), "tandem.dead-letter/1/9");
        assert_eq!(without.source(), None);
        assert_eq!(without.event_type, "unknown");
    }

    #[test]
    fn notes_are_required_and_bounded() {
        assert!(check_note("  ").is_err());
        assert!(check_note(&"x".repeat(NOTE_MAX + 1)).is_err());
        assert_eq!(check_note(" fixed upstream ").unwrap(), "fixed upstream");
    }
}
