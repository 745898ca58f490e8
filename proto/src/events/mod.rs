//! Payloads (`data`) of the events Tandem publishes, with their topics, type names and JSON
//! Schemas. The schemas in `proto/schemas/` are the contract for integrators; these types are
//! how Rust code writes and reads them.
//!
//! Every event travels in an [`Envelope`]; its payload is an [`Event`].
//!
//! Each source owns a module ([`crm`], [`erp`], [`integration`]); [`topics`], [`types`] and [`aggregates`]
//! gather their names in one place, and [`EventKind`] ties each type to its schema version,
//! topic, aggregate and schema.

use serde::{Deserialize, Serialize};

pub mod crm;
mod envelope;
pub mod erp;
mod event;
pub mod integration;
mod kind;

pub use envelope::{DecodeError, Envelope};
pub use event::Event;
pub use kind::EventKind;
#[cfg(feature = "schema-validation")]
mod validate;

#[cfg(feature = "schema-validation")]
pub use validate::{SchemaError, validate, validate_dead_letter_state};

/// Kafka topics, one per source and entity.
pub mod topics {
    pub use super::crm::topics::*;
    pub use super::erp::topics::*;
    pub use super::integration::topics::*;

    /// Events the bridge could never apply, with the reason in headers.
    pub const DEAD_LETTER: &str = "tandem.dead-letter";

    /// The state of each dead letter (replayed, resolved, purged), written by `tandemctl`;
    /// compacted, keyed by the dead-lettered event's source position.
    pub const DEAD_LETTER_STATE: &str = "tandem.dead-letter.state";

    /// Every topic of change events: the services' and the integrators'. The bridge consumes
    /// them all.
    pub const CHANGE_EVENTS: &[&str] = &[
        CRM_CUSTOMERS,
        CRM_ORDERS,
        ERP_PRODUCTS,
        ERP_STOCK,
        ERP_ORDERS,
        ERP_CUSTOMERS,
        INTEGRATION_CUSTOMERS,
        INTEGRATION_ORDERS,
        INTEGRATION_STOCK,
    ];
}

/// Event type names (`type` in the envelope).
pub mod types {
    pub use super::crm::types::*;
    pub use super::erp::types::*;
    pub use super::integration::types::*;
}

/// Aggregate type names (`aggregate_type` in the envelope).
pub mod aggregates {
    pub const CUSTOMER: &str = "customer";
}

/// JSON Schemas: the envelope and each event type's payload.
pub mod schemas {
    pub const ENVELOPE: &str = include_str!("../../schemas/envelope.v1.json");

    /// A record of the dead-letter state topic (not an event: no envelope).
    pub const DEAD_LETTER_STATE: &str = include_str!("../../schemas/dead_letter.state.v1.json");

    /// The payload schema of `event_type` at `schema_version`, if Tandem knows it.
    pub fn for_event(event_type: &str, schema_version: u32) -> Option<&'static str> {
        super::crm::schema_for(event_type, schema_version)
            .or_else(|| super::erp::schema_for(event_type, schema_version))
            .or_else(|| super::integration::schema_for(event_type, schema_version))
    }
}

/// Lifecycle status of a customer, as it appears in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CustomerStatus {
    Active,
    Archived,
}

impl CustomerStatus {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Archived => "ARCHIVED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ACTIVE" => Some(Self::Active),
            "ARCHIVED" => Some(Self::Archived),
            _ => None,
        }
    }
}
