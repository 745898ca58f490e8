//! The flows: which event type goes to which RPC, and how its payload translates.
//!
//! Translation is pure (unit-tested here); [`Flows::apply`] makes the call and classifies
//! the result as applied, unchanged (duplicate or stale), transient (retry) or permanent
//! (dead-letter).

use std::time::Duration;

use tandem_common::{event::Envelope, grpc::is_transient, telemetry};
use tandem_proto::{
    erp::v1::{self as erp, erp_sync_client::ErpSyncClient},
    events::{CustomerStatus, crm::CustomerUpsertedV1, topics, types},
};
use tonic::{Request, transport::Channel};

/// Topics the bridge consumes.
pub const SOURCE_TOPICS: &[&str] = &[topics::CRM_CUSTOMERS];

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target changed.
    Applied,
    /// The target already had this version or a newer one.
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
        }
    }
}

/// Why an event did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// Worth retrying: the target or the network is temporarily unable.
    #[error("transient: {0}")]
    Transient(String),
    /// Can never apply as it is: goes to the dead-letter topic.
    #[error("{reason}: {detail}")]
    Permanent {
        reason: Reason,
        /// A gRPC code name, or the decoding stage that failed.
        code: String,
        detail: String,
    },
}

/// Dead-letter reasons, as written in the `dlq.reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not a JSON envelope.
    Unparseable,
    /// A known type whose `data` does not match its schema.
    SchemaInvalid,
    /// A type (or schema version) the bridge does not know.
    UnknownType,
    /// The target refused it for good (e.g. INVALID_ARGUMENT).
    Rejected,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unparseable => "unparseable",
            Self::SchemaInvalid => "schema_invalid",
            Self::UnknownType => "unknown_type",
            Self::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn permanent(reason: Reason, code: &str, detail: impl Into<String>) -> FlowError {
    FlowError::Permanent {
        reason,
        code: code.to_owned(),
        detail: detail.into(),
    }
}

/// Parses a message payload into an envelope.
pub fn decode(payload: Option<&[u8]>) -> Result<Envelope, FlowError> {
    let payload = payload.ok_or_else(|| permanent(Reason::Unparseable, "empty", "no payload"))?;
    Envelope::decode(payload).map_err(|e| permanent(Reason::Unparseable, "json", e.to_string()))
}

/// The metrics label of the flow an event type belongs to.
pub fn flow_name(event_type: &str) -> &'static str {
    match event_type {
        types::CRM_CUSTOMER_UPSERTED => "crm_customer_to_erp",
        _ => "unknown",
    }
}

/// `crm.customer.upserted` v1 -> `ErpSync.ApplyCustomer`.
pub fn customer_to_erp(envelope: &Envelope) -> Result<erp::ApplyCustomerRequest, FlowError> {
    let data: CustomerUpsertedV1 = envelope
        .data_as()
        .map_err(|e| permanent(Reason::SchemaInvalid, "data", e.to_string()))?;
    if data.customer_id != envelope.aggregate_id {
        return Err(permanent(
            Reason::SchemaInvalid,
            "aggregate_id",
            format!(
                "data.customer_id {} differs from aggregate_id {}",
                data.customer_id, envelope.aggregate_id
            ),
        ));
    }
    Ok(erp::ApplyCustomerRequest {
        customer: Some(erp::CustomerProfile {
            id: data.customer_id,
            display_name: data.display_name,
            email: data.email,
            phone: data.phone.unwrap_or_default(),
            tax_id: data.tax_id.unwrap_or_default(),
            status: match data.status {
                CustomerStatus::Active => erp::CustomerStatus::Active,
                CustomerStatus::Archived => erp::CustomerStatus::Archived,
            } as i32,
            external_ref: data.external_ref.unwrap_or_default(),
        }),
        source_version: envelope.aggregate_version,
        event_id: envelope.id.to_string(),
    })
}

/// The bridge's clients of the services it applies to.
#[derive(Clone)]
pub struct Flows {
    erp: ErpSyncClient<Channel>,
    timeout: Duration,
}

impl Flows {
    pub fn new(erp: Channel, timeout: Duration) -> Self {
        Self {
            erp: ErpSyncClient::new(erp),
            timeout,
        }
    }

    /// Applies one event to its target.
    pub async fn apply(&self, envelope: &Envelope) -> Result<Outcome, FlowError> {
        match (envelope.event_type.as_str(), envelope.schema_version) {
            (types::CRM_CUSTOMER_UPSERTED, 1) => {
                let request = customer_to_erp(envelope)?;
                let response = self
                    .erp
                    .clone()
                    .apply_customer(self.request(request))
                    .await
                    .map_err(classify)?;
                Ok(if response.get_ref().applied {
                    Outcome::Applied
                } else {
                    Outcome::Unchanged
                })
            }
            (other, version) => Err(permanent(
                Reason::UnknownType,
                "type",
                format!("no flow for {other} v{version}"),
            )),
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        telemetry::inject_grpc_trace(&mut request);
        request
    }
}

fn classify(status: tonic::Status) -> FlowError {
    if is_transient(&status) {
        FlowError::Transient(format!("{:?}: {}", status.code(), status.message()))
    } else {
        permanent(
            Reason::Rejected,
            &format!("{:?}", status.code()),
            status.message().to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer_event(data: serde_json::Value) -> Envelope {
        Envelope::new(
            types::CRM_CUSTOMER_UPSERTED,
            1,
            "crm",
            "customer",
            "0190c5f0-0000-7000-8000-000000000001",
            4,
            &data,
        )
        .unwrap()
    }

    fn valid_data() -> serde_json::Value {
        serde_json::json!({
            "customer_id": "0190c5f0-0000-7000-8000-000000000001",
            "display_name": "Ada",
            "email": "ada@example.com",
            "phone": null,
            "tax_id": "GB1",
            "status": "ARCHIVED",
            "external_ref": null
        })
    }

    #[test]
    fn a_customer_event_becomes_an_apply_with_its_version() {
        let event = customer_event(valid_data());
        let request = customer_to_erp(&event).unwrap();
        assert_eq!(request.source_version, 4);
        assert_eq!(request.event_id, event.id.to_string());
        let customer = request.customer.unwrap();
        assert_eq!(customer.display_name, "Ada");
        assert_eq!(customer.tax_id, "GB1");
        assert_eq!(customer.phone, "");
        assert_eq!(customer.status(), erp::CustomerStatus::Archived);
    }

    #[test]
    fn bad_data_is_schema_invalid_and_garbage_is_unparseable() {
        let mut data = valid_data();
        data["status"] = serde_json::json!("SLEEPING");
        let Err(FlowError::Permanent { reason, .. }) = customer_to_erp(&customer_event(data))
        else {
            panic!("bad status accepted");
        };
        assert_eq!(reason, Reason::SchemaInvalid);

        let mut data = valid_data();
        data["customer_id"] = serde_json::json!("someone-else");
        assert!(matches!(
            customer_to_erp(&customer_event(data)),
            Err(FlowError::Permanent {
                reason: Reason::SchemaInvalid,
                ..
            })
        ));

        for payload in [None, Some(&b"not json"[..]), Some(&b"{\"type\":1}"[..])] {
            assert!(matches!(
                decode(payload),
                Err(FlowError::Permanent {
                    reason: Reason::Unparseable,
                    ..
                })
            ));
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify(tonic::Status::unavailable("down")),
            FlowError::Transient(_)
        ));
        assert!(matches!(
            classify(tonic::Status::invalid_argument("bad")),
            FlowError::Permanent {
                reason: Reason::Rejected,
                ..
            }
        ));
    }
}
