//! Events the ERP publishes.

use serde::{Deserialize, Serialize};

pub mod topics {
    /// ERP products (`erp.product.*`), keyed by sku.
    pub const ERP_PRODUCTS: &str = "erp.products";
    /// ERP stock per sku (`erp.stock.*`), keyed by sku.
    pub const ERP_STOCK: &str = "erp.stock";
    /// ERP sales order fulfilment (`erp.order.*`), keyed by CRM order id.
    pub const ERP_ORDERS: &str = "erp.orders";
    /// ERP customer finance (`erp.customer.*`), keyed by customer id.
    pub const ERP_CUSTOMERS: &str = "erp.customers";
}

/// Every topic the ERP publishes to.
pub const TOPICS: &[&str] = &[
    topics::ERP_PRODUCTS,
    topics::ERP_STOCK,
    topics::ERP_ORDERS,
    topics::ERP_CUSTOMERS,
];

pub mod types {
    pub const ERP_PRODUCT_UPSERTED: &str = "erp.product.upserted";
    pub const ERP_STOCK_CHANGED: &str = "erp.stock.changed";
    pub const ERP_ORDER_STATUS_CHANGED: &str = "erp.order.status_changed";
    pub const ERP_CUSTOMER_FINANCE_CHANGED: &str = "erp.customer.finance_changed";
}

/// Aggregate type names of ERP events (`aggregate_type` in the envelope).
pub mod aggregates {
    pub const PRODUCT: &str = "product";
    /// The stock of one sku over all warehouses.
    pub const STOCK: &str = "stock";
    pub const SALES_ORDER: &str = "sales_order";
    pub const CUSTOMER_FINANCE: &str = "customer_finance";
}

const PRODUCT_UPSERTED_V1: &str = include_str!("../../schemas/erp.product.upserted.v1.json");
const STOCK_CHANGED_V1: &str = include_str!("../../schemas/erp.stock.changed.v1.json");
const ORDER_STATUS_CHANGED_V1: &str =
    include_str!("../../schemas/erp.order.status_changed.v1.json");
const CUSTOMER_FINANCE_CHANGED_V1: &str =
    include_str!("../../schemas/erp.customer.finance_changed.v1.json");

/// Every ERP event type and schema version, for tests that cover all of them.
pub const EVENT_TYPES: &[(&str, u32)] = &[
    (types::ERP_PRODUCT_UPSERTED, 1),
    (types::ERP_STOCK_CHANGED, 1),
    (types::ERP_ORDER_STATUS_CHANGED, 1),
    (types::ERP_CUSTOMER_FINANCE_CHANGED, 1),
];

/// The payload schema of an ERP event type, if it is one.
pub fn schema_for(event_type: &str, schema_version: u32) -> Option<&'static str> {
    match (event_type, schema_version) {
        (types::ERP_PRODUCT_UPSERTED, 1) => Some(PRODUCT_UPSERTED_V1),
        (types::ERP_STOCK_CHANGED, 1) => Some(STOCK_CHANGED_V1),
        (types::ERP_ORDER_STATUS_CHANGED, 1) => Some(ORDER_STATUS_CHANGED_V1),
        (types::ERP_CUSTOMER_FINANCE_CHANGED, 1) => Some(CUSTOMER_FINANCE_CHANGED_V1),
        _ => None,
    }
}

/// `erp.product.upserted` v1: every product field the ERP owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductUpsertedV1 {
    pub product_id: String,
    pub sku: String,
    pub display_name: String,
    pub description: String,
    pub unit_price_minor: i64,
    pub currency: String,
    pub active: bool,
}

/// `erp.stock.changed` v1: the current levels of one sku, in total and per warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockChangedV1 {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub warehouses: Vec<WarehouseStockV1>,
}

/// The level of a sku in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseStockV1 {
    pub warehouse: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

/// Fulfilment status of a sales order, as the ERP decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Reserved,
    Backordered,
    CreditHold,
    Rejected,
    Shipped,
    Invoiced,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [Self; 7] = [
        Self::Reserved,
        Self::Backordered,
        Self::CreditHold,
        Self::Rejected,
        Self::Shipped,
        Self::Invoiced,
        Self::Cancelled,
    ];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "RESERVED",
            Self::Backordered => "BACKORDERED",
            Self::CreditHold => "CREDIT_HOLD",
            Self::Rejected => "REJECTED",
            Self::Shipped => "SHIPPED",
            Self::Invoiced => "INVOICED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// `erp.order.status_changed` v1: the fulfilment state of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderStatusChangedV1 {
    pub order_id: String,
    pub crm_order_id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    pub reason: Option<String>,
    pub currency: String,
    pub total_minor: i64,
    pub invoice: Option<InvoiceV1>,
}

/// The invoice of an invoiced order. Dates are ISO 8601 (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceV1 {
    pub invoice_number: String,
    pub amount_minor: i64,
    pub issue_date: String,
    pub due_date: String,
}

/// `erp.customer.finance_changed` v1: every finance field the ERP owns for a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerFinanceChangedV1 {
    pub customer_id: String,
    pub credit_limit_minor: i64,
    pub currency: String,
    pub payment_terms_days: i32,
    pub open_balance_minor: i64,
    pub credit_hold: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_status_round_trips() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_value(status).unwrap_or_default();
            assert_eq!(json, status.as_str());
        }
        assert_eq!(OrderStatus::parse("SUBMITTED"), None);
    }
}
