//! `google.rpc.ErrorInfo` reasons the services put on a FAILED_PRECONDITION, which the bridge
//! (and any other client) acts on: part of the contract between them, so defined once here.

/// The request names a customer the service does not know (yet).
pub const UNKNOWN_CUSTOMER: &str = "UNKNOWN_CUSTOMER";
/// The request names skus the service does not know (yet), or (CRM) not active.
pub const UNKNOWN_SKU: &str = "UNKNOWN_SKU";
/// The request names a warehouse the ERP does not know.
pub const UNKNOWN_WAREHOUSE: &str = "UNKNOWN_WAREHOUSE";
/// A state transition the order's current status does not allow.
pub const ILLEGAL_TRANSITION: &str = "ILLEGAL_TRANSITION";
/// Not enough stock for the movement.
pub const INSUFFICIENT_STOCK: &str = "INSUFFICIENT_STOCK";
/// A count below what is reserved in that warehouse.
pub const COUNT_BELOW_RESERVED: &str = "COUNT_BELOW_RESERVED";
/// The customer is ARCHIVED and cannot order.
pub const CUSTOMER_ARCHIVED: &str = "CUSTOMER_ARCHIVED";

/// Whether `reason` says that something the request refers to is missing (it may appear
/// later: the bridge heals or retries before giving up).
pub fn names_missing_dependency(reason: &str) -> bool {
    matches!(reason, UNKNOWN_CUSTOMER | UNKNOWN_SKU | UNKNOWN_WAREHOUSE)
}
