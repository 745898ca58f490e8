//! The states of dead letters, kept in a compacted topic (`tandem.dead-letter.state`).
//!
//! The dead-letter topic is append-only: a record there cannot say that it was replayed or
//! dealt with. Each change of a dead letter's state is therefore one record in the state
//! topic, keyed by the position the dead letter's event had in its source topic
//! (`topic/partition/offset`), carrying the whole current state (as events carry the whole
//! entity), so that compaction may keep only the last record per key. No record: the dead
//! letter is open.
//!
//! Why the source position and not the dead letter's own: the bridge dead-letters at least
//! once, so a crash between publishing a dead letter and committing its offset leaves two dead
//! letters of one source record. Keyed by the source position they share one state, and a
//! replay publishes that event once, not once per copy. The event id (when the payload has
//! one) is kept too: a state whose event id differs from the dead letter's (a source topic
//! deleted and created again, its offsets reused) does not apply to it.
//!
//! The JSON Schema of a record is `proto/schemas/dead_letter.state.v1.json`.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use rdkafka::{Message, producer::FutureRecord};
use serde::{Deserialize, Serialize};
use tandem_common::{
    kafka::{KafkaError, KafkaSettings},
    producer::AckProducer,
};

use super::{ReadLimits, TopicRead};

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Nothing done yet (no state record).
    Open,
    /// A replay began and was not seen to finish: it may or may not have been published. The
    /// next `dlq replay` settles it (looks for the replay in the source partition) before
    /// anything else.
    Replaying,
    /// Published back to its source topic.
    Replayed,
    /// Dealt with otherwise; the note says how.
    Resolved,
    /// Hidden from listings and never replayed; the record itself stays in the dead-letter
    /// topic until its retention ends.
    Purged,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Open,
        State::Replaying,
        State::Replayed,
        State::Resolved,
        State::Purged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Replaying => "replaying",
            State::Replayed => "replayed",
            State::Resolved => "resolved",
            State::Purged => "purged",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for State {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| {
                format!("unknown state {text:?}: open, replaying, replayed, resolved or purged")
            })
    }
}

/// A record's place in a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// The last replay of a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    /// Sent as the `tandem.replay_id` header of the republished record: how an interrupted
    /// replay is found again.
    pub id: uuid::Uuid,
    /// The source partition's end offset before the replay was published: the replay, if it
    /// was published, is at or after it.
    pub scan_from: i64,
    /// Where the replay was published, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Position>,
}

/// One record of the state topic: the whole current state of one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    pub schema_version: u32,
    pub state: State,
    /// The event's position in its source topic (also the record's key).
    pub source: Position,
    /// The dead letter's own position (the first one, when the bridge dead-lettered the
    /// source record more than once).
    pub dead_letter: Position,
    /// The envelope's `id`, when the payload had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub event_type: String,
    /// When the state was entered, and by whom (`tandemctl --by`, default the user name).
    pub at: DateTime<Utc>,
    pub by: String,
    /// Why it was resolved or purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Replays tandemctl published of this dead letter (confirmed ones).
    pub replays: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
}

/// What the state topic says, by key. A record that cannot be read stays as its error: the
/// dead letter's state is then unknown, and no command acts on it.
#[derive(Debug, Default)]
pub struct States {
    pub records: HashMap<String, Result<StateRecord, String>>,
}

impl States {
    /// The last record per key of a complete read of the state topic (a record without a
    /// payload, a tombstone, forgets its key).
    pub fn fold(read: &TopicRead) -> Self {
        let mut records: Vec<_> = read.records.iter().collect();
        records.sort_by_key(|m| (m.partition(), m.offset()));
        let mut states = Self::default();
        for message in records {
            let Some(key) = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
            else {
                continue;
            };
            match message.payload() {
                None => {
                    states.records.remove(&key);
                }
                Some(payload) => {
                    let record = serde_json::from_slice::<StateRecord>(payload).map_err(|error| {
                        format!(
                            "unreadable state record {}[{}]@{}: {error}",
                            read.topic,
                            message.partition(),
                            message.offset()
                        )
                    });
                    states.records.insert(key, record);
                }
            }
        }
        states
    }

    pub fn get(&self, key: &str) -> Option<&Result<StateRecord, String>> {
        self.records.get(key)
    }
}

/// Reads the whole state topic. A missing topic reads as empty (nothing recorded yet).
pub fn read(
    kafka: &KafkaSettings,
    topic: &str,
    limits: &ReadLimits,
) -> Result<(States, TopicRead), KafkaError> {
    let read = super::read_topic(
        kafka,
        topic,
        &ReadLimits {
            max_records: None,
            ..*limits
        },
    )?;
    Ok((States::fold(&read), read))
}

/// Writes state records and tombstones to the state topic, each acknowledged by the broker
/// (acks=all) before [`Writer::put`] returns.
pub struct Writer {
    producer: AckProducer,
    topic: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write the state of {key} to {topic}: {source}")]
    Kafka {
        topic: String,
        key: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot encode the state of {key}: {source}")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot create the state topic: {0}")]
    Setup(#[from] tandem_common::kafka::KafkaSetupError),
    #[error("cannot create a producer for the state topic {topic}: {source}")]
    Producer {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

impl Writer {
    /// A writer to `topic`, created first (compacted) when `kafka.create_topics` is on.
    pub async fn new(kafka: &KafkaSettings, topic: &str) -> Result<Self, WriteError> {
        kafka.ensure_compacted_topics(&[topic]).await?;
        let producer = kafka
            .producer_config()
            .and_then(|config| AckProducer::new(&config))
            .map_err(|source| WriteError::Producer {
                topic: topic.to_owned(),
                source,
            })?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Records `record` under `key`.
    pub async fn put(&self, key: &str, record: &StateRecord) -> Result<(), WriteError> {
        let payload = serde_json::to_vec(record).map_err(|source| WriteError::Encode {
            key: key.to_owned(),
            source,
        })?;
        self.send(key, Some(&payload)).await
    }

    /// Forgets `key` (a tombstone: compaction drops the key's records).
    pub async fn forget(&self, key: &str) -> Result<(), WriteError> {
        self.send(key, None).await
    }

    async fn send(&self, key: &str, payload: Option<&[u8]>) -> Result<(), WriteError> {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(key);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|source| WriteError::Kafka {
                topic: self.topic.clone(),
                key: key.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(state: State) -> StateRecord {
        StateRecord {
            schema_version: 1,
            state,
            source: Position {
                topic: "crm.customers".into(),
                partition: 2,
                offset: 41,
            },
            dead_letter: Position {
                topic: "tandem.dead-letter".into(),
                partition: 0,
                offset: 7,
            },
            event_id: Some("01939a4e-0000-7000-8000-000000000001".into()),
            event_type: "crm.customer.upserted".into(),
            at: DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            by: "alice".into(),
            note: (state == State::Resolved).then(|| "customer fixed upstream".into()),
            replays: 1,
            replay: Some(Replay {
                id: uuid::Uuid::now_v7(),
                scan_from: 120,
                published: (state != State::Replaying).then(|| Position {
                    topic: "crm.customers".into(),
                    partition: 2,
                    offset: 130,
                }),
            }),
        }
    }

    #[test]
    fn every_state_record_matches_its_json_schema() {
        for state in [
            State::Replaying,
            State::Replayed,
            State::Resolved,
            State::Purged,
        ] {
            let value = serde_json::to_value(record(state)).unwrap();
            tandem_proto::events::validate_dead_letter_state(&value)
                .unwrap_or_else(|error| panic!("{state}: {error}\n{value:#}"));
        }
        let mut open = serde_json::to_value(record(State::Replayed)).unwrap();
        open["state"] = "open".into();
        assert!(
            tandem_proto::events::validate_dead_letter_state(&open).is_err(),
            "open is the absence of a record, never written"
        );
    }

    #[test]
    fn states_parse_as_they_print() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>(), Ok(state));
        }
        assert!("done".parse::<State>().is_err());
    }
}
