//! The flows: which event goes where, how its payload translates, and how the target's answer
//! is classified.
//!
//! | source topic | event types | target RPC |
//! |---|---|---|
//! | `crm.customers` | `crm.customer.upserted`, `crm.customer.archived` | `ErpSync.ApplyCustomers` (batched) |
//! | `crm.orders` | `crm.order.submitted` | `ErpSync.AcceptOrders` (batched; `AcceptOrder` one by one after a refused batch, healing a missing customer) |
//! | `crm.orders` | `crm.order.cancel_requested` | `ErpSync.CancelOrder` |
//! | `erp.products` | `erp.product.upserted` | `CrmSync.ApplyProduct` |
//! | `erp.stock` | `erp.stock.changed` | `CrmSync.ApplyStockLevels` (batched) |
//! | `erp.orders` | `erp.order.status_changed` | `CrmSync.ApplyOrderStatuses` (batched; `ApplyOrderStatus` one by one after a refused batch) |
//! | `erp.customers` | `erp.customer.finance_changed` | `CrmSync.ApplyCustomerFinance` |
//! | `integration.customers` | `integration.customer.upserted` | `CrmSync.UpsertCustomerByExternalRef` |
//! | `integration.orders` | `integration.order.placed` | `CrmSync.PlaceExternalOrder` |
//! | `integration.stock` | `integration.stock.counted` | `ErpSync.CountStock` |
//!
//! Integrator events are validated against their JSON Schema before anything is called.
//!
//! Translation is pure (unit-tested in [`to_erp`] and [`to_crm`]); [`Flows::apply`] makes the
//! call and classifies the result: applied, unchanged (duplicate or stale), transient (retry),
//! missing dependency (heal or retry, then give up), or permanent (dead-letter).

pub mod integration;
pub mod to_crm;
pub mod to_erp;

use std::{ops::Range, time::Duration};

use tandem_common::{grpc::is_transient, telemetry};
use tandem_proto::events::{Envelope, Event};
use tandem_proto::{
    crm::v1::{crm_service_client::CrmServiceClient, crm_sync_client::CrmSyncClient},
    erp::v1::erp_sync_client::ErpSyncClient,
    events::{EventKind, topics},
    reasons,
};
use tonic::{Code, Request, transport::Channel};
use tonic_types::StatusExt;

/// Topics the bridge consumes.
pub const SOURCE_TOPICS: &[&str] = topics::CHANGE_EVENTS;

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target changed.
    Applied,
    /// The target already had this version or a newer one.
    Unchanged,
}

impl Outcome {
    /// `Applied` when the target says it changed, else `Unchanged`.
    pub fn changed(changed: bool) -> Self {
        if changed {
            Self::Applied
        } else {
            Self::Unchanged
        }
    }

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
    /// Something the event refers to is not there (yet): retried a few times, then the
    /// event is applied as a final attempt or dead-lettered.
    #[error("missing dependency: {0}")]
    MissingDependency(String),
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
    /// What it refers to never appeared, even after healing and retries.
    MissingDependency,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unparseable => "unparseable",
            Self::SchemaInvalid => "schema_invalid",
            Self::UnknownType => "unknown_type",
            Self::Rejected => "rejected",
            Self::MissingDependency => "missing_dependency",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) fn permanent(reason: Reason, code: &str, detail: impl Into<String>) -> FlowError {
    FlowError::Permanent {
        reason,
        code: code.to_owned(),
        detail: detail.into(),
    }
}

/// The payload of `envelope`, which must be an `E`, or a schema_invalid error.
pub(crate) fn payload<E: Event>(envelope: &Envelope) -> Result<E, FlowError> {
    envelope
        .payload()
        .map_err(|e| permanent(Reason::SchemaInvalid, "data", e.to_string()))
}

/// Parses a message payload into an envelope.
pub fn decode(payload: Option<&[u8]>) -> Result<Envelope, FlowError> {
    let payload = payload.ok_or_else(|| permanent(Reason::Unparseable, "empty", "no payload"))?;
    Envelope::decode(payload).map_err(|e| permanent(Reason::Unparseable, "json", e.to_string()))
}

/// The route of each kind of event: its flow (the metrics label) and, for the kinds whose
/// target takes many at once, the batch it joins. One exhaustive match: a new [`EventKind`]
/// without a route does not compile.
fn route(kind: EventKind) -> (&'static str, Option<Batch>) {
    use EventKind as K;
    match kind {
        K::CrmCustomerUpserted | K::CrmCustomerArchived => {
            ("crm_customer_to_erp", Some(Batch::Customers))
        }
        K::CrmOrderSubmitted => ("crm_order_to_erp", Some(Batch::Orders)),
        K::CrmOrderCancelRequested => ("crm_order_to_erp", None),
        K::ErpProductUpserted => ("erp_product_to_crm", None),
        K::ErpStockChanged => ("erp_stock_to_crm", Some(Batch::StockLevels)),
        K::ErpOrderStatusChanged => ("erp_order_status_to_crm", Some(Batch::OrderStatuses)),
        K::ErpCustomerFinanceChanged => ("erp_finance_to_crm", None),
        K::IntegrationCustomerUpserted => ("integration_customer_to_crm", None),
        K::IntegrationOrderPlaced => ("integration_order_to_crm", None),
        K::IntegrationStockCounted => ("integration_stock_to_erp", None),
    }
}

/// The calls that apply many events at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// `ErpSync.ApplyCustomers`.
    Customers,
    /// `ErpSync.AcceptOrders`.
    Orders,
    /// `CrmSync.ApplyStockLevels`.
    StockLevels,
    /// `CrmSync.ApplyOrderStatuses`.
    OrderStatuses,
}

/// The metrics label of the flow an event type belongs to (`unknown` for a type Tandem does
/// not know).
pub fn flow_name(event_type: &str) -> &'static str {
    EventKind::named(event_type).map_or("unknown", |kind| route(kind).0)
}

/// `event_type` as a metric label: one of Tandem's types, else `unknown`. The type comes from
/// outside (integrators publish events), and label values must come from a fixed set.
pub fn type_label(event_type: &str) -> String {
    EventKind::named(event_type).map_or_else(|| "unknown".to_owned(), |k| k.type_name().to_owned())
}

/// Refuses an event whose type belongs on another topic than the one it came from (an
/// integrator publishing a CRM event, say).
pub fn check_topic(topic: &str, envelope: &Envelope) -> Result<(), FlowError> {
    match EventKind::named(&envelope.event_type).map(EventKind::topic) {
        Some(expected) if expected != topic => Err(permanent(
            Reason::UnknownType,
            "topic",
            format!("{} belongs on {expected}, not {topic}", envelope.event_type),
        )),
        _ => Ok(()),
    }
}

/// The batch `envelope` joins, if its kind has one.
pub fn batch_of(envelope: &Envelope) -> Option<Batch> {
    envelope.kind().and_then(|kind| route(kind).1)
}

/// `envelopes` cut into runs of consecutive events: `true` for a run of two or more that
/// joins one batch (one call applies it), `false` for events applied one by one.
pub fn batch_runs(envelopes: &[Envelope]) -> Vec<(bool, Range<usize>)> {
    let mut runs = Vec::new();
    let mut start = 0;
    while let Some(first) = envelopes.get(start) {
        let batch = batch_of(first);
        let length = envelopes[start..]
            .iter()
            .take_while(|envelope| batch_of(envelope) == batch)
            .count();
        let run = start..start + length;
        match batch {
            Some(_) if length > 1 => runs.push((true, run)),
            _ => match runs.last_mut() {
                Some((false, previous)) if previous.end == start => previous.end = run.end,
                _ => runs.push((false, run)),
            },
        }
        start += length;
    }
    runs
}

/// Whether events of `topic` are applied in batches (the target RPC takes many at once).
pub fn batches(topic: &str) -> bool {
    EventKind::ALL
        .into_iter()
        .any(|kind| kind.topic() == topic && route(kind).1.is_some())
}

/// The bridge's clients of the services it applies to.
#[derive(Clone)]
pub struct Flows {
    pub(crate) erp: ErpSyncClient<Channel>,
    pub(crate) crm_sync: CrmSyncClient<Channel>,
    pub(crate) crm: CrmServiceClient<Channel>,
    timeout: Duration,
}

impl Flows {
    pub fn new(erp: Channel, crm: Channel, timeout: Duration) -> Self {
        Self {
            erp: ErpSyncClient::new(erp),
            crm_sync: CrmSyncClient::new(crm.clone()),
            crm: CrmServiceClient::new(crm),
            timeout,
        }
    }

    /// Applies one event to its target. `final_attempt` is set once a missing dependency
    /// was retried enough: targets that can record a failure (the ERP rejects the order)
    /// do so instead of failing again.
    pub async fn apply(
        &self,
        envelope: &Envelope,
        final_attempt: bool,
    ) -> Result<Outcome, FlowError> {
        use EventKind as K;
        let Some(kind) = envelope.kind() else {
            return Err(permanent(
                Reason::UnknownType,
                "type",
                format!(
                    "no flow for {} v{}",
                    envelope.event_type, envelope.schema_version
                ),
            ));
        };
        match kind {
            K::CrmCustomerUpserted | K::CrmCustomerArchived => {
                to_erp::apply_customer(self, envelope).await
            }
            K::CrmOrderSubmitted => to_erp::accept_order(self, envelope, final_attempt).await,
            K::CrmOrderCancelRequested => to_erp::cancel_order(self, envelope).await,
            K::ErpProductUpserted => to_crm::apply_product(self, envelope).await,
            K::ErpStockChanged => {
                let outcomes = to_crm::apply_stock(self, std::slice::from_ref(envelope)).await?;
                Ok(outcomes.first().copied().unwrap_or(Outcome::Unchanged))
            }
            K::ErpOrderStatusChanged => to_crm::apply_order_status(self, envelope).await,
            K::ErpCustomerFinanceChanged => to_crm::apply_finance(self, envelope).await,
            K::IntegrationCustomerUpserted => integration::upsert_customer(self, envelope).await,
            K::IntegrationOrderPlaced => integration::place_order(self, envelope).await,
            K::IntegrationStockCounted => integration::count_stock(self, envelope).await,
        }
    }

    /// Applies consecutive events of a batching topic in one call; one outcome per event.
    /// A batch that no single call applies (another type or schema version among them) is
    /// refused as permanent, so the caller applies its events one by one.
    pub async fn apply_batch(&self, envelopes: &[Envelope]) -> Result<Vec<Outcome>, FlowError> {
        let first = envelopes.first().and_then(batch_of);
        if envelopes.iter().any(|e| batch_of(e) != first) {
            return Err(permanent(
                Reason::UnknownType,
                "type",
                "the batch holds events no single call applies",
            ));
        }
        match first {
            Some(Batch::StockLevels) => to_crm::apply_stock(self, envelopes).await,
            Some(Batch::OrderStatuses) => to_crm::apply_order_statuses(self, envelopes).await,
            Some(Batch::Customers) => to_erp::apply_customers(self, envelopes).await,
            Some(Batch::Orders) => to_erp::accept_orders(self, envelopes).await,
            None => Err(permanent(
                Reason::UnknownType,
                "type",
                "the batch holds events no single call applies",
            )),
        }
    }

    /// A request with the call deadline and the current trace context.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        telemetry::inject_grpc_trace(&mut request);
        request
    }
}

/// The `google.rpc.ErrorInfo` reason of a status, if it has one.
pub(crate) fn error_reason(status: &tonic::Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}

/// The `ErrorInfo` reason of a status, if it is one of the contract's.
pub(crate) fn refusal(status: &tonic::Status) -> Option<reasons::Reason> {
    error_reason(status)
        .as_deref()
        .and_then(reasons::Reason::parse)
}

/// Classifies a target's failure.
pub(crate) fn classify(status: tonic::Status) -> FlowError {
    let reason = error_reason(&status);
    if is_transient(&status) {
        FlowError::Transient(format!("{:?}: {}", status.code(), status.message()))
    } else if status.code() == Code::NotFound
        || (status.code() == Code::FailedPrecondition
            && refusal(&status).is_some_and(reasons::Reason::is_missing_dependency))
    {
        FlowError::MissingDependency(format!(
            "{}: {}",
            reason.unwrap_or_else(|| format!("{:?}", status.code())),
            status.message()
        ))
    } else {
        permanent(
            Reason::Rejected,
            &reason.unwrap_or_else(|| format!("{:?}", status.code())),
            status.message().to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use tandem_proto::events::types;
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn metric_labels_never_carry_an_outsiders_type() {
        assert_eq!(
            type_label(types::CRM_CUSTOMER_UPSERTED),
            types::CRM_CUSTOMER_UPSERTED
        );
        assert_eq!(type_label("webshop.anything.at.all"), "unknown");
    }

    #[test]
    fn garbage_is_unparseable() {
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
    fn consecutive_events_of_one_batch_run_together_and_the_rest_one_by_one() {
        let event = |event_type: &str| {
            Envelope::new(
                event_type,
                1,
                "crm",
                "order",
                "o-1",
                1,
                &serde_json::json!({}),
            )
            .unwrap()
        };
        let (submitted, cancel) = (
            types::CRM_ORDER_SUBMITTED,
            types::CRM_ORDER_CANCEL_REQUESTED,
        );
        let kinds = [
            submitted, submitted, cancel, cancel, submitted, cancel, submitted, submitted,
            submitted,
        ];
        let envelopes: Vec<Envelope> = kinds.iter().map(|kind| event(kind)).collect();
        assert_eq!(
            batch_runs(&envelopes),
            [(true, 0..2), (false, 2..6), (true, 6..9)]
        );
        assert_eq!(batch_runs(&envelopes[..1]), [(false, 0..1)]);
        assert!(batch_runs(&[]).is_empty());
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify(tonic::Status::unavailable("down")),
            FlowError::Transient(_)
        ));
        assert!(matches!(
            classify(tonic::Status::not_found("no such order")),
            FlowError::MissingDependency(_)
        ));
        let unknown_customer = tonic::Status::with_error_details(
            Code::FailedPrecondition,
            "unknown customer",
            ErrorDetails::with_error_info(
                reasons::Reason::UnknownCustomer.as_str(),
                "tandem.erp",
                [],
            ),
        );
        assert!(matches!(
            classify(unknown_customer),
            FlowError::MissingDependency(detail) if detail.starts_with("UNKNOWN_CUSTOMER")
        ));
        let illegal = tonic::Status::with_error_details(
            Code::FailedPrecondition,
            "shipped",
            ErrorDetails::with_error_info(
                reasons::Reason::IllegalTransition.as_str(),
                "tandem.erp",
                [],
            ),
        );
        assert!(matches!(
            classify(illegal),
            FlowError::Permanent { reason: Reason::Rejected, code, .. } if code == "ILLEGAL_TRANSITION"
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
