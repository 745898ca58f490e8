//! Events the CRM publishes.
//!
//! | type | topic | aggregate | payload |
//! |---|---|---|---|
//! | `crm.customer.upserted` v1 | `crm.customers` | `customer` | [`CustomerUpsertedV1`] |
//! | `crm.customer.archived` v1 | `crm.customers` | `customer` | [`CustomerArchivedV1`] |
//! | `crm.order.submitted` v1 | `crm.orders` | `order` | [`OrderSubmittedV1`] |
//! | `crm.order.cancel_requested` v1 | `crm.orders` | `order` | [`OrderCancelRequestedV1`] |
//!
//! Every payload is state transfer: the full current owned fields of its entity.

use serde::{Deserialize, Serialize};

use super::CustomerStatus;

pub mod topics {
    /// CRM customer profiles (`crm.customer.*`), key = customer id.
    pub const CRM_CUSTOMERS: &str = "crm.customers";
    /// CRM sales orders (`crm.order.*`), key = order id.
    pub const CRM_ORDERS: &str = "crm.orders";
}

pub mod types {
    pub const CRM_CUSTOMER_UPSERTED: &str = "crm.customer.upserted";
    pub const CRM_CUSTOMER_ARCHIVED: &str = "crm.customer.archived";
    pub const CRM_ORDER_SUBMITTED: &str = "crm.order.submitted";
    pub const CRM_ORDER_CANCEL_REQUESTED: &str = "crm.order.cancel_requested";
}

/// Aggregate type names of CRM events beyond the shared ones in [`super::aggregates`].
pub mod aggregates {
    pub const ORDER: &str = "order";
}

const CUSTOMER_UPSERTED_V1: &str = include_str!("../../schemas/crm.customer.upserted.v1.json");
const CUSTOMER_ARCHIVED_V1: &str = include_str!("../../schemas/crm.customer.archived.v1.json");
const ORDER_SUBMITTED_V1: &str = include_str!("../../schemas/crm.order.submitted.v1.json");
const ORDER_CANCEL_REQUESTED_V1: &str =
    include_str!("../../schemas/crm.order.cancel_requested.v1.json");

/// Every CRM event type and schema version, for tests that cover all of them.
pub const EVENT_TYPES: &[(&str, u32)] = &[
    (types::CRM_CUSTOMER_UPSERTED, 1),
    (types::CRM_CUSTOMER_ARCHIVED, 1),
    (types::CRM_ORDER_SUBMITTED, 1),
    (types::CRM_ORDER_CANCEL_REQUESTED, 1),
];

/// The payload schema of a CRM event type, if it is one.
pub fn schema_for(event_type: &str, schema_version: u32) -> Option<&'static str> {
    match (event_type, schema_version) {
        (types::CRM_CUSTOMER_UPSERTED, 1) => Some(CUSTOMER_UPSERTED_V1),
        (types::CRM_CUSTOMER_ARCHIVED, 1) => Some(CUSTOMER_ARCHIVED_V1),
        (types::CRM_ORDER_SUBMITTED, 1) => Some(ORDER_SUBMITTED_V1),
        (types::CRM_ORDER_CANCEL_REQUESTED, 1) => Some(ORDER_CANCEL_REQUESTED_V1),
        _ => None,
    }
}

/// `crm.customer.upserted` v1: every profile field the CRM owns.
///
/// `contacts` and `addresses` were added before v1 was released; they default to empty so
/// that payloads written without them still decode.
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
    #[serde(default)]
    pub contacts: Vec<ContactV1>,
    #[serde(default)]
    pub addresses: Vec<AddressV1>,
}

/// `crm.customer.archived` v1: emitted by `ArchiveCustomer`. It carries the same full state as
/// `crm.customer.upserted` (with status `ARCHIVED`), so a mirror applies both alike.
pub type CustomerArchivedV1 = CustomerUpsertedV1;

/// A contact person of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactV1 {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub role: Option<String>,
}

/// What an address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AddressKind {
    Billing,
    Shipping,
}

impl AddressKind {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Billing => "BILLING",
            Self::Shipping => "SHIPPING",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "BILLING" => Some(Self::Billing),
            "SHIPPING" => Some(Self::Shipping),
            _ => None,
        }
    }
}

/// A postal address of a customer; `country_code` is ISO 3166-1 alpha-2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressV1 {
    pub kind: AddressKind,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: Option<String>,
    pub region: Option<String>,
    pub country_code: String,
}

impl From<AddressV1> for crate::common::v1::Address {
    /// The event's address as the APIs' shared `tandem.common.v1.Address` (absent optional
    /// parts become empty strings, as proto3 spells them).
    fn from(address: AddressV1) -> Self {
        use crate::common::v1::AddressKind as Kind;
        Self {
            kind: match address.kind {
                AddressKind::Billing => Kind::Billing,
                AddressKind::Shipping => Kind::Shipping,
            } as i32,
            line1: address.line1,
            line2: address.line2.unwrap_or_default(),
            city: address.city,
            postal_code: address.postal_code.unwrap_or_default(),
            region: address.region.unwrap_or_default(),
            country_code: address.country_code,
        }
    }
}

/// Lifecycle status of a sales order in the CRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Draft,
    Submitted,
    CancelRequested,
    Cancelled,
}

impl OrderStatus {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Submitted => "SUBMITTED",
            Self::CancelRequested => "CANCEL_REQUESTED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "DRAFT" => Some(Self::Draft),
            "SUBMITTED" => Some(Self::Submitted),
            "CANCEL_REQUESTED" => Some(Self::CancelRequested),
            "CANCELLED" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// The state of a sales order as the CRM owns it: customer, lines and quoted prices.
/// Published as `crm.order.submitted` (status `SUBMITTED`) and `crm.order.cancel_requested`
/// (status `CANCEL_REQUESTED`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderV1 {
    pub order_id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    /// ISO 4217 code shared by every amount of the order.
    pub currency: String,
    pub lines: Vec<OrderLineV1>,
    /// Sum of the line totals, in minor units.
    pub total_minor: i64,
    /// When the order was submitted (RFC 3339).
    pub submitted_at: String,
    pub cancellation_reason: Option<String>,
}

/// `crm.order.submitted` v1.
pub type OrderSubmittedV1 = OrderV1;
/// `crm.order.cancel_requested` v1.
pub type OrderCancelRequestedV1 = OrderV1;

/// One line of a sales order, with its quoted price in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLineV1 {
    pub line_number: u32,
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_payload_without_contacts_and_addresses_still_decodes() {
        let data = serde_json::json!({
            "customer_id": "c", "display_name": "Ada", "email": "a@b.co", "phone": null,
            "tax_id": null, "status": "ACTIVE", "external_ref": null
        });
        let decoded: CustomerUpsertedV1 = serde_json::from_value(data).unwrap();
        assert!(decoded.contacts.is_empty() && decoded.addresses.is_empty());
    }

    #[test]
    fn order_statuses_round_trip() {
        for status in [
            OrderStatus::Draft,
            OrderStatus::Submitted,
            OrderStatus::CancelRequested,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(AddressKind::parse("BILLING"), Some(AddressKind::Billing));
        assert_eq!(AddressKind::parse("billing"), None);
    }

    #[test]
    fn every_event_type_has_a_schema() {
        for (event_type, version) in EVENT_TYPES {
            let schema = schema_for(event_type, *version).unwrap();
            let json: serde_json::Value = serde_json::from_str(schema).unwrap();
            assert_eq!(json["additionalProperties"], false, "{event_type}");
        }
    }
}
