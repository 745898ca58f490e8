//! Events integrators publish (web shop, WMS, lead sources), which the bridge validates
//! against their JSON Schemas and applies once per event.
//!
//! | type | topic | aggregate_id | applied as |
//! |---|---|---|---|
//! | `integration.customer.upserted` v1 | `integration.customers` | the customer's external reference | `CrmSync.UpsertCustomerByExternalRef`, version-gated on `aggregate_version` |
//! | `integration.order.placed` v1 | `integration.orders` | the order's external reference | `CrmSync.PlaceExternalOrder`, once per order reference |
//! | `integration.stock.counted` v1 | `integration.stock` | the sku | `ErpSync.CountStock`, once per event id |

use serde::{Deserialize, Serialize};

use super::crm::AddressV1;

pub mod topics {
    /// Customers from lead sources and shops, keyed by external reference.
    pub const INTEGRATION_CUSTOMERS: &str = "integration.customers";
    /// Orders placed in a web shop, keyed by the shop's order reference.
    pub const INTEGRATION_ORDERS: &str = "integration.orders";
    /// Warehouse counts from a WMS, keyed by sku.
    pub const INTEGRATION_STOCK: &str = "integration.stock";
}

pub mod types {
    pub const INTEGRATION_CUSTOMER_UPSERTED: &str = "integration.customer.upserted";
    pub const INTEGRATION_ORDER_PLACED: &str = "integration.order.placed";
    pub const INTEGRATION_STOCK_COUNTED: &str = "integration.stock.counted";
}

/// Every integration topic.
pub const TOPICS: &[&str] = &[
    topics::INTEGRATION_CUSTOMERS,
    topics::INTEGRATION_ORDERS,
    topics::INTEGRATION_STOCK,
];

const CUSTOMER_UPSERTED_V1: &str =
    include_str!("../../schemas/integration.customer.upserted.v1.json");
const ORDER_PLACED_V1: &str = include_str!("../../schemas/integration.order.placed.v1.json");
const STOCK_COUNTED_V1: &str = include_str!("../../schemas/integration.stock.counted.v1.json");

/// Every integration event type and schema version.
pub const EVENT_TYPES: &[(&str, u32)] = &[
    (types::INTEGRATION_CUSTOMER_UPSERTED, 1),
    (types::INTEGRATION_ORDER_PLACED, 1),
    (types::INTEGRATION_STOCK_COUNTED, 1),
];

/// The payload schema of an integration event type, if it is one.
pub fn schema_for(event_type: &str, schema_version: u32) -> Option<&'static str> {
    match (event_type, schema_version) {
        (types::INTEGRATION_CUSTOMER_UPSERTED, 1) => Some(CUSTOMER_UPSERTED_V1),
        (types::INTEGRATION_ORDER_PLACED, 1) => Some(ORDER_PLACED_V1),
        (types::INTEGRATION_STOCK_COUNTED, 1) => Some(STOCK_COUNTED_V1),
        _ => None,
    }
}

/// `integration.customer.upserted` v1: a customer as the integrator knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerUpsertedV1 {
    pub external_ref: String,
    pub display_name: String,
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub tax_id: Option<String>,
    #[serde(default)]
    pub addresses: Vec<AddressV1>,
}

/// `integration.order.placed` v1: a web-shop order for a customer known by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPlacedV1 {
    pub order_ref: String,
    pub customer_external_ref: String,
    pub currency: String,
    pub lines: Vec<OrderLineV1>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLineV1 {
    pub sku: String,
    pub quantity: i64,
}

/// `integration.stock.counted` v1: what a warehouse count found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockCountedV1 {
    pub sku: String,
    pub warehouse: String,
    pub counted_quantity: i64,
}
