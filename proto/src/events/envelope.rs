//! The envelope every Tandem event carries on Kafka (the README's "Events"; `proto/schemas/envelope.v1.json`): identity, type,
//! aggregate and version around the payload (`data`).

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Event, EventKind};

/// One change of one entity, as published. `data` holds the entity's full current owned
/// fields (state transfer), so duplicates and replays are harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// UUID v7, unique per event.
    pub id: Uuid,
    /// e.g. `crm.customer.upserted`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    /// The publishing system: `crm`, `erp`, or an integrator's name.
    pub source: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// Strictly increasing per aggregate.
    pub aggregate_version: i64,
    #[serde(with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// Who made the change: the `sub` of the caller's token, or the identity in the calling
    /// service's client certificate (`sync-bridge`). Absent on changes no caller made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub data: serde_json::Value,
}

/// Why bytes are not a usable envelope or payload.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a JSON event envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("{event_type} v{schema_version} does not carry {payload}")]
    Kind {
        event_type: String,
        schema_version: u32,
        payload: &'static str,
    },
    #[error("`data` does not match {event_type} v{schema_version}: {source}")]
    Data {
        event_type: String,
        schema_version: u32,
        #[source]
        source: serde_json::Error,
    },
}

impl Envelope {
    /// A new event of any type, with a fresh UUID v7, `occurred_at = now` and no subject.
    /// Tandem's own events are built with [`Envelope::of`], which takes the type from the
    /// payload; this one is for events Tandem does not define (tests, integrators' tools).
    pub fn new(
        event_type: &str,
        schema_version: u32,
        source: &str,
        aggregate_type: &str,
        aggregate_id: impl Into<String>,
        aggregate_version: i64,
        data: &impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            schema_version,
            source: source.to_owned(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.into(),
            aggregate_version,
            // The wire format keeps microseconds; so does the value, so it round-trips.
            occurred_at: Utc::now().trunc_subsecs(6),
            subject: None,
            data: serde_json::to_value(data)?,
        })
    }

    /// The event `payload` makes, published by `source` at `aggregate_version`: its type,
    /// schema version, aggregate type and aggregate id all come from the payload, so no
    /// producer can pair them wrongly.
    pub fn of<E: Event>(
        source: &str,
        aggregate_version: i64,
        payload: &E,
    ) -> Result<Self, serde_json::Error> {
        let kind = payload.kind();
        Self::new(
            kind.type_name(),
            kind.schema_version(),
            source,
            kind.aggregate(),
            payload.aggregate_id(),
            aggregate_version,
            payload,
        )
    }

    /// The same event, made by `subject` (the caller whose request caused it).
    #[must_use]
    pub fn with_subject(mut self, subject: Option<String>) -> Self {
        self.subject = subject;
        self
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(DecodeError::Envelope)
    }

    /// The kind of this event, if Tandem defines its type at its schema version.
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::of(&self.event_type, self.schema_version)
    }

    /// `data` as the payload `E`, which must be the payload of this event's kind.
    pub fn payload<E: Event>(&self) -> Result<E, DecodeError> {
        if !self.kind().is_some_and(|kind| E::KINDS.contains(&kind)) {
            return Err(DecodeError::Kind {
                event_type: self.event_type.clone(),
                schema_version: self.schema_version,
                payload: std::any::type_name::<E>(),
            });
        }
        E::deserialize(&self.data).map_err(|source| DecodeError::Data {
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            source,
        })
    }
}

/// RFC 3339 with microseconds and `Z`, the one timestamp format on the wire.
mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Payload {
        name: String,
    }

    #[test]
    fn round_trips_and_uses_the_wire_names() {
        let event = Envelope::new(
            "crm.customer.upserted",
            1,
            "crm",
            "customer",
            "c-1",
            3,
            &Payload { name: "Ada".into() },
        )
        .unwrap();
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "crm.customer.upserted");
        assert_eq!(json["aggregate_version"], 3);
        assert!(json["occurred_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(event.id.get_version_num(), 7);
        let back = Envelope::decode(&serde_json::to_vec(&event).unwrap()).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.data["name"], "Ada");
    }

    #[test]
    fn tandem_events_take_type_and_aggregate_from_their_payload() {
        let stock = crate::events::erp::StockChangedV1 {
            sku: "SKU-1".into(),
            on_hand: 5,
            reserved: 1,
            available: 4,
            warehouses: vec![],
        };
        let event = Envelope::of("erp", 7, &stock)
            .unwrap()
            .with_subject(Some("ada@example.com".into()));
        assert_eq!(event.event_type, "erp.stock.changed");
        assert_eq!(event.aggregate_type, "stock");
        assert_eq!(event.aggregate_id, "SKU-1");
        assert_eq!(event.aggregate_version, 7);
        assert_eq!(event.kind(), Some(EventKind::ErpStockChanged));
        assert_eq!(
            event
                .payload::<crate::events::erp::StockChangedV1>()
                .unwrap(),
            stock
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["subject"], "ada@example.com");
        // Read as another kind's payload, it is refused by its kind, not by its shape.
        let wrong = event.payload::<crate::events::erp::ProductUpsertedV1>();
        assert!(matches!(wrong, Err(DecodeError::Kind { .. })), "{wrong:?}");
    }

    #[test]
    fn rejects_garbage_and_incomplete_envelopes() {
        assert!(Envelope::decode(b"\xff\x00").is_err());
        assert!(Envelope::decode(b"{}").is_err());
        let mut json = serde_json::to_value(
            Envelope::new("t", 1, "s", "a", "id", 1, &Payload { name: "x".into() }).unwrap(),
        )
        .unwrap();
        json["occurred_at"] = serde_json::json!("yesterday");
        assert!(Envelope::decode(json.to_string().as_bytes()).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            ".*".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
        })
    }

    proptest! {
        /// Whatever an envelope holds, what goes on the wire comes back equal.
        #[test]
        fn envelopes_round_trip(
            event_type in "[a-z]{1,8}(\\.[a-z_]{1,12}){1,3}",
            schema_version in 1u32..10,
            source in "\\PC{1,20}",
            aggregate_type in "[a-z_]{1,16}",
            aggregate_id in "\\PC{1,40}",
            aggregate_version in 1i64..i64::MAX,
            data in json_value(),
        ) {
            let event = Envelope::new(
                &event_type, schema_version, &source, &aggregate_type, aggregate_id,
                aggregate_version, &data,
            ).unwrap();
            let wire = serde_json::to_vec(&event).unwrap();
            let back = Envelope::decode(&wire).unwrap();
            prop_assert_eq!(&back, &event);
            prop_assert_eq!(back.data, data);
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn decoding_garbage_fails_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Envelope::decode(&bytes);
        }
    }
}
