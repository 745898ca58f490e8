//! Events the CRM publishes.

use serde::{Deserialize, Serialize};

use super::CustomerStatus;

pub mod topics {
    /// CRM customer profiles (`crm.customer.*`).
    pub const CRM_CUSTOMERS: &str = "crm.customers";
}

pub mod types {
    pub const CRM_CUSTOMER_UPSERTED: &str = "crm.customer.upserted";
}

const CUSTOMER_UPSERTED_V1: &str = include_str!("../../schemas/crm.customer.upserted.v1.json");

/// Every CRM event type and schema version, for tests that cover all of them.
pub const EVENT_TYPES: &[(&str, u32)] = &[(types::CRM_CUSTOMER_UPSERTED, 1)];

/// The payload schema of a CRM event type, if it is one.
pub fn schema_for(event_type: &str, schema_version: u32) -> Option<&'static str> {
    match (event_type, schema_version) {
        (types::CRM_CUSTOMER_UPSERTED, 1) => Some(CUSTOMER_UPSERTED_V1),
        _ => None,
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
