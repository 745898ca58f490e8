//! Events the ERP publishes.

pub mod topics {}

pub mod types {}

/// Every ERP event type and schema version, for tests that cover all of them.
pub const EVENT_TYPES: &[(&str, u32)] = &[];

/// The payload schema of an ERP event type, if it is one.
pub fn schema_for(event_type: &str, schema_version: u32) -> Option<&'static str> {
    let _ = (event_type, schema_version);
    None
}
