//! Payloads (`data`) of the events Tandem publishes, with their topics, type names and JSON
//! Schemas. The schemas in `proto/schemas/` are the contract for integrators; these types are
//! how Rust code writes and reads them.

use serde::{Deserialize, Serialize};

/// Kafka topics, one per source and entity.
pub mod topics {
    /// CRM customer profiles (`crm.customer.*`).
    pub const CRM_CUSTOMERS: &str = "crm.customers";
    /// Events the bridge could never apply, with the reason in headers.
    pub const DEAD_LETTER: &str = "tandem.dead-letter";
}

/// Event type names (`type` in the envelope).
pub mod types {
    pub const CRM_CUSTOMER_UPSERTED: &str = "crm.customer.upserted";
}

/// Aggregate type names (`aggregate_type` in the envelope).
pub mod aggregates {
    pub const CUSTOMER: &str = "customer";
}

/// JSON Schemas, by event type: the envelope and each payload.
pub mod schemas {
    pub const ENVELOPE: &str = include_str!("../schemas/envelope.v1.json");
    pub const CRM_CUSTOMER_UPSERTED: &str =
        include_str!("../schemas/crm.customer.upserted.v1.json");

    /// The payload schema of `event_type` at `schema_version`, if Tandem knows it.
    pub fn for_event(event_type: &str, schema_version: u32) -> Option<&'static str> {
        match (event_type, schema_version) {
            (super::types::CRM_CUSTOMER_UPSERTED, 1) => Some(CRM_CUSTOMER_UPSERTED),
            _ => None,
        }
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

/// `crm.customer.upserted` v1: every profile field the CRM owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerUpsertedV1 {
    pub customer_id: String,
    pub display_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub tax_id: Option<String>,
    pub status: CustomerStatus,
    pub external_ref: Option<String>,
}
