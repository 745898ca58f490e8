//! Validation of whole events (envelope and payload) against the JSON Schemas.

use std::{collections::HashMap, sync::OnceLock};

use serde_json::Value;

use super::schemas;

/// Why an event does not match its schemas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("no schema for event type {event_type:?} version {schema_version}")]
    UnknownType {
        event_type: String,
        schema_version: u64,
    },
    #[error("envelope invalid: {0}")]
    Envelope(String),
    #[error("data invalid for {event_type} v{schema_version}: {detail}")]
    Data {
        event_type: String,
        schema_version: u64,
        detail: String,
    },
}

fn compile(schema: &'static str) -> jsonschema::Validator {
    // The schemas are part of this crate and covered by its tests; a broken one is a
    // programming error caught there.
    #[allow(clippy::expect_used)]
    let schema: Value = serde_json::from_str(schema).expect("bundled schema is JSON");
    #[allow(clippy::expect_used)]
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("bundled schema compiles")
}

fn envelope_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| compile(schemas::ENVELOPE))
}

fn data_validator(event_type: &str, version: u32) -> Option<&'static jsonschema::Validator> {
    static VALIDATORS: OnceLock<
        std::sync::Mutex<HashMap<(String, u32), &'static jsonschema::Validator>>,
    > = OnceLock::new();
    let schema = schemas::for_event(event_type, version)?;
    let cache = VALIDATORS.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Some(
        cache
            .entry((event_type.to_owned(), version))
            .or_insert_with(|| Box::leak(Box::new(compile(schema)))),
    )
}

fn first_errors(validator: &jsonschema::Validator, value: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// Checks `event` (a whole envelope) against the envelope schema and its type's payload schema.
pub fn validate(event: &Value) -> Result<(), SchemaError> {
    if let Some(detail) = first_errors(envelope_validator(), event) {
        return Err(SchemaError::Envelope(detail));
    }
    let event_type = event["type"].as_str().unwrap_or_default();
    let schema_version = event["schema_version"].as_u64().unwrap_or_default();
    let validator = u32::try_from(schema_version)
        .ok()
        .and_then(|v| data_validator(event_type, v))
        .ok_or_else(|| SchemaError::UnknownType {
            event_type: event_type.to_owned(),
            schema_version,
        })?;
    match first_errors(validator, &event["data"]) {
        None => Ok(()),
        Some(detail) => Err(SchemaError::Data {
            event_type: event_type.to_owned(),
            schema_version,
            detail,
        }),
    }
}

/// Checks a record of the dead-letter state topic against its schema.
pub fn validate_dead_letter_state(record: &Value) -> Result<(), String> {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    match first_errors(
        VALIDATOR.get_or_init(|| compile(schemas::DEAD_LETTER_STATE)),
        record,
    ) {
        None => Ok(()),
        Some(detail) => Err(detail),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn customer_event() -> Value {
        json!({
            "id": "01939a4e-0000-7000-8000-000000000001",
            "type": "crm.customer.upserted",
            "schema_version": 1,
            "source": "crm",
            "aggregate_type": "customer",
            "aggregate_id": "01939a4e-0000-7000-8000-0000000000aa",
            "aggregate_version": 1,
            "occurred_at": "2026-11-26T10:00:00.000000Z",
            "data": {
                "customer_id": "01939a4e-0000-7000-8000-0000000000aa",
                "display_name": "Ada",
                "email": "ada@example.com",
                "phone": null,
                "tax_id": null,
                "status": "ACTIVE",
                "external_ref": null
            }
        })
    }

    #[test]
    fn every_bundled_schema_compiles() {
        compile(schemas::ENVELOPE);
        compile(schemas::DEAD_LETTER_STATE);
        let all = super::super::crm::EVENT_TYPES
            .iter()
            .chain(super::super::erp::EVENT_TYPES)
            .chain(super::super::integration::EVENT_TYPES);
        for (event_type, version) in all {
            let schema = schemas::for_event(event_type, *version);
            compile(schema.unwrap_or_else(|| panic!("no schema for {event_type} v{version}")));
        }
    }

    #[test]
    fn a_valid_event_passes_and_each_kind_of_fault_is_named() {
        assert_eq!(validate(&customer_event()), Ok(()));

        let mut no_id = customer_event();
        no_id.as_object_mut().unwrap().remove("id");
        assert!(matches!(validate(&no_id), Err(SchemaError::Envelope(_))));

        let mut unknown = customer_event();
        unknown["type"] = json!("crm.customer.teleported");
        assert!(matches!(
            validate(&unknown),
            Err(SchemaError::UnknownType { .. })
        ));

        let mut bad_data = customer_event();
        bad_data["data"]["status"] = json!("SLEEPING");
        assert!(matches!(validate(&bad_data), Err(SchemaError::Data { .. })));

        let mut bad_email = customer_event();
        bad_email["data"]["email"] = json!("not an email");
        assert!(matches!(
            validate(&bad_email),
            Err(SchemaError::Data { .. })
        ));
    }

    /// The kind a payload picks for itself is the one whose schema it matches: an archived
    /// profile is `crm.customer.archived`, an order whose cancellation was asked for is
    /// `crm.order.cancel_requested` (each schema pins the status).
    #[test]
    fn each_payload_is_published_as_the_kind_its_schema_accepts() {
        use crate::events::{CustomerStatus, Envelope, crm};

        let profile: crm::CustomerUpsertedV1 =
            serde_json::from_value(customer_event()["data"].clone()).unwrap();
        let order = crm::OrderV1 {
            order_id: "01939a4e-0000-7000-8000-0000000000bb".into(),
            customer_id: profile.customer_id.clone(),
            status: crm::OrderStatus::Submitted,
            currency: "EUR".into(),
            lines: vec![crm::OrderLineV1 {
                line_number: 1,
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price_minor: 150,
                line_total_minor: 300,
            }],
            total_minor: 300,
            submitted_at: "2026-11-26T10:00:00.000000Z".into(),
            cancellation_reason: None,
        };
        let mut events = Vec::new();
        for status in [CustomerStatus::Active, CustomerStatus::Archived] {
            let payload = crm::CustomerUpsertedV1 {
                status,
                ..profile.clone()
            };
            events.push(Envelope::of("crm", 2, &payload).unwrap());
        }
        for status in [
            crm::OrderStatus::Submitted,
            crm::OrderStatus::CancelRequested,
        ] {
            let payload = crm::OrderV1 {
                status,
                ..order.clone()
            };
            events.push(Envelope::of("crm", 2, &payload).unwrap());
        }
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "crm.customer.upserted",
                "crm.customer.archived",
                "crm.order.submitted",
                "crm.order.cancel_requested"
            ]
        );
        for event in &events {
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(validate(&json), Ok(()), "{}", event.event_type);
        }
    }
}
