//! CRM -> ERP: customer profiles, submitted orders, cancellation requests.

use std::collections::BTreeMap;

use tandem_proto::events::Envelope;
use tandem_proto::{
    crm::v1 as crm,
    erp::v1 as erp,
    events::{
        CustomerStatus,
        crm::{CustomerUpsertedV1, OrderV1},
    },
    reasons,
};
use tonic::Code;

use super::{FlowError, Flows, Outcome, Reason, classify, payload, permanent, refusal};

/// `crm.customer.upserted` / `crm.customer.archived` v1 -> `ErpSync.ApplyCustomer`.
pub fn customer_request(envelope: &Envelope) -> Result<erp::ApplyCustomerRequest, FlowError> {
    let data: CustomerUpsertedV1 = payload(envelope)?;
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
            status: status(data.status) as i32,
            external_ref: data.external_ref.unwrap_or_default(),
            addresses: data.addresses.into_iter().map(Into::into).collect(),
        }),
        source_version: envelope.aggregate_version,
        event_id: envelope.id.to_string(),
        repair: false,
    })
}

/// Several `crm.customer.*` v1 -> one `ErpSync.ApplyCustomers`: one apply per customer, the
/// newest version of each.
pub fn customers_request(envelopes: &[Envelope]) -> Result<erp::ApplyCustomersRequest, FlowError> {
    let mut newest: BTreeMap<String, erp::ApplyCustomerRequest> = BTreeMap::new();
    for envelope in envelopes {
        let request = customer_request(envelope)?;
        match newest.get(&envelope.aggregate_id) {
            Some(kept) if kept.source_version >= request.source_version => {}
            _ => {
                newest.insert(envelope.aggregate_id.clone(), request);
            }
        }
    }
    Ok(erp::ApplyCustomersRequest {
        customers: newest.into_values().collect(),
    })
}

fn status(status: CustomerStatus) -> erp::CustomerStatus {
    match status {
        CustomerStatus::Active => erp::CustomerStatus::Active,
        CustomerStatus::Archived => erp::CustomerStatus::Archived,
    }
}

/// The CRM's current customer (from `CrmService.GetCustomer`) as an apply for the ERP: how a
/// missing customer is healed, and how reconcile repairs one.
pub fn customer_from_crm(customer: crm::Customer, repair: bool) -> erp::ApplyCustomerRequest {
    let status = match customer.status() {
        crm::CustomerStatus::Archived => erp::CustomerStatus::Archived,
        _ => erp::CustomerStatus::Active,
    };
    // One shared type (tandem.common.v1.Address): the CRM's addresses are the ERP's.
    let addresses = customer.addresses.clone();
    erp::ApplyCustomerRequest {
        customer: Some(erp::CustomerProfile {
            id: customer.id,
            display_name: customer.display_name,
            email: customer.email,
            phone: customer.phone,
            tax_id: customer.tax_id,
            status: status as i32,
            external_ref: customer.external_ref,
            addresses,
        }),
        source_version: customer.version,
        event_id: String::new(),
        repair,
    }
}

/// `crm.order.submitted` v1 -> `ErpSync.AcceptOrder`.
pub fn order_request(
    envelope: &Envelope,
    final_attempt: bool,
) -> Result<erp::AcceptOrderRequest, FlowError> {
    let order: OrderV1 = payload(envelope)?;
    Ok(erp::AcceptOrderRequest {
        crm_order_id: order.order_id,
        customer_id: order.customer_id,
        currency_code: order.currency,
        lines: order
            .lines
            .into_iter()
            .map(|line| erp::AcceptOrderLine {
                sku: line.sku,
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor,
            })
            .collect(),
        final_attempt,
        event_id: envelope.id.to_string(),
    })
}

/// `crm.order.cancel_requested` v1 -> `ErpSync.CancelOrder`.
pub fn cancel_request(envelope: &Envelope) -> Result<erp::CancelOrderRequest, FlowError> {
    let order: OrderV1 = payload(envelope)?;
    Ok(erp::CancelOrderRequest {
        crm_order_id: order.order_id,
        reason: order.cancellation_reason.unwrap_or_default(),
        event_id: envelope.id.to_string(),
    })
}

pub(super) async fn apply_customer(
    flows: &Flows,
    envelope: &Envelope,
) -> Result<Outcome, FlowError> {
    let request = customer_request(envelope)?;
    let response = flows
        .erp
        .clone()
        .apply_customer(flows.request(request))
        .await
        .map_err(classify)?;
    Ok(Outcome::changed(response.get_ref().applied))
}

/// One call for all of `envelopes`; an outcome per envelope, `Applied` for the one whose
/// version was written.
pub(super) async fn apply_customers(
    flows: &Flows,
    envelopes: &[Envelope],
) -> Result<Vec<Outcome>, FlowError> {
    let request = customers_request(envelopes)?;
    let sent: Vec<(String, i64)> = request
        .customers
        .iter()
        .map(|c| {
            let id = c
                .customer
                .as_ref()
                .map(|p| p.id.clone())
                .unwrap_or_default();
            (id, c.source_version)
        })
        .collect();
    let response = flows
        .erp
        .clone()
        .apply_customers(flows.request(request))
        .await
        .map_err(classify)?
        .into_inner();
    let written: BTreeMap<&str, (i64, bool)> = sent
        .iter()
        .zip(response.results)
        .map(|((id, version), result)| (id.as_str(), (*version, result.applied)))
        .collect();
    Ok(batch_outcomes(envelopes, &written))
}

/// The outcome of each envelope of a batch, given what the ERP wrote per customer (the version
/// sent and whether it applied). One envelope per written version counts as applied: a
/// duplicate of it in the same batch (a re-sent outbox row) changed nothing.
fn batch_outcomes(envelopes: &[Envelope], written: &BTreeMap<&str, (i64, bool)>) -> Vec<Outcome> {
    let mut counted = std::collections::BTreeSet::new();
    envelopes
        .iter()
        .map(|envelope| {
            let id = envelope.aggregate_id.as_str();
            let applied = written.get(id).is_some_and(|(version, applied)| {
                *applied && *version == envelope.aggregate_version
            }) && counted.insert(id);
            Outcome::changed(applied)
        })
        .collect()
}

/// Accepts the order; when the ERP does not know its customer yet, fetches the customer from
/// the CRM (its owner), applies it, and tries once more.
pub(super) async fn accept_order(
    flows: &Flows,
    envelope: &Envelope,
    final_attempt: bool,
) -> Result<Outcome, FlowError> {
    let request = order_request(envelope, final_attempt)?;
    match flows
        .erp
        .clone()
        .accept_order(flows.request(request.clone()))
        .await
    {
        Ok(response) => return Ok(Outcome::changed(response.get_ref().created)),
        Err(status) if refusal(&status) == Some(reasons::Reason::UnknownCustomer) => {
            tracing::info!(customer_id = %request.customer_id, "healing: the ERP lacks the order's customer");
        }
        Err(status) => return Err(classify(status)),
    }
    heal_customer(flows, &request.customer_id).await?;
    let response = flows
        .erp
        .clone()
        .accept_order(flows.request(request))
        .await
        .map_err(classify)?;
    Ok(Outcome::changed(response.get_ref().created))
}

/// Several `crm.order.submitted` -> one `ErpSync.AcceptOrders`; an outcome per envelope,
/// `Applied` for each order the call created. Any refusal (an unknown customer or sku among
/// the new orders, say) fails the batch, and the caller accepts its orders one by one, healing
/// as [`accept_order`] does; the orders the call accepted before the refusal then answer
/// "already accepted".
pub(super) async fn accept_orders(
    flows: &Flows,
    envelopes: &[Envelope],
) -> Result<Vec<Outcome>, FlowError> {
    let request = erp::AcceptOrdersRequest {
        orders: envelopes
            .iter()
            .map(|envelope| order_request(envelope, false))
            .collect::<Result<_, _>>()?,
    };
    let response = flows
        .erp
        .clone()
        .accept_orders(flows.request(request))
        .await
        .map_err(classify)?
        .into_inner();
    if response.results.len() != envelopes.len() {
        // Accepted one by one instead, each with its own answer.
        return Err(permanent(
            Reason::Rejected,
            "results",
            format!(
                "AcceptOrders answered {} results for {} orders",
                response.results.len(),
                envelopes.len()
            ),
        ));
    }
    Ok(response
        .results
        .iter()
        .map(|result| Outcome::changed(result.created))
        .collect())
}

/// Applies the CRM's current state of customer `id` to the ERP.
pub async fn heal_customer(flows: &Flows, id: &str) -> Result<Outcome, FlowError> {
    let customer = flows
        .crm
        .clone()
        .get_customer(flows.request(crm::GetCustomerRequest { id: id.to_owned() }))
        .await
        .map_err(classify)?
        .into_inner();
    let response = flows
        .erp
        .clone()
        .apply_customer(flows.request(customer_from_crm(customer, false)))
        .await
        .map_err(classify)?;
    Ok(Outcome::changed(response.get_ref().applied))
}

/// Cancels in the ERP. Too late to cancel (already shipped) is an answer, not a failure: the
/// ERP's status event tells the CRM.
pub(super) async fn cancel_order(flows: &Flows, envelope: &Envelope) -> Result<Outcome, FlowError> {
    let request = cancel_request(envelope)?;
    match flows.erp.clone().cancel_order(flows.request(request)).await {
        Ok(_) => Ok(Outcome::Applied),
        Err(status)
            if status.code() == Code::FailedPrecondition
                && refusal(&status) == Some(reasons::Reason::IllegalTransition) =>
        {
            tracing::info!(
                detail = status.message(),
                "the ERP cannot cancel this order any more"
            );
            Ok(Outcome::Unchanged)
        }
        Err(status) => Err(classify(status)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tandem_proto::events::types;

    use super::*;

    const ID: &str = "0190c5f0-0000-7000-8000-000000000001";

    fn event(event_type: &str, data: serde_json::Value) -> Envelope {
        Envelope::new(event_type, 1, "crm", "customer", ID, 4, &data).unwrap()
    }

    fn customer() -> serde_json::Value {
        json!({
            "customer_id": ID,
            "display_name": "Ada",
            "email": "ada@example.com",
            "phone": null,
            "tax_id": "GB1",
            "status": "ARCHIVED",
            "external_ref": null,
            "contacts": [],
            "addresses": [{"kind": "SHIPPING", "line1": "1 Loop", "line2": null, "city": "London",
                           "postal_code": "N1", "region": null, "country_code": "GB"}]
        })
    }

    #[test]
    fn a_duplicate_in_a_batch_counts_as_unchanged() {
        let at = |version: i64| {
            Envelope::new(
                types::CRM_CUSTOMER_UPSERTED,
                1,
                "crm",
                "customer",
                ID,
                version,
                &customer(),
            )
            .unwrap()
        };
        let batch = [at(1), at(2), at(2), at(3), at(3)];
        let written = BTreeMap::from([(ID, (3, true))]);
        let outcomes: Vec<&str> = batch_outcomes(&batch, &written)
            .into_iter()
            .map(Outcome::as_str)
            .collect();
        assert_eq!(
            outcomes,
            [
                "unchanged",
                "unchanged",
                "unchanged",
                "applied",
                "unchanged"
            ]
        );
    }

    #[test]
    fn a_batch_of_customer_events_applies_the_newest_version_of_each_customer_once() {
        let other = "0190c5f0-0000-7000-8000-000000000002";
        let at = |id: &str, version: i64, name: &str| {
            let mut data = customer();
            data["customer_id"] = json!(id);
            data["display_name"] = json!(name);
            Envelope::new(
                types::CRM_CUSTOMER_UPSERTED,
                1,
                "crm",
                "customer",
                id,
                version,
                &data,
            )
            .unwrap()
        };
        let batch = [
            at(ID, 5, "Five"),
            at(other, 1, "Other"),
            at(ID, 7, "Seven"),
            at(ID, 6, "Six"),
        ];
        let request = customers_request(&batch).unwrap();
        let sent: Vec<(String, i64, String)> = request
            .customers
            .iter()
            .map(|c| {
                let p = c.customer.as_ref().unwrap();
                (p.id.clone(), c.source_version, p.display_name.clone())
            })
            .collect();
        assert_eq!(
            sent,
            [
                (ID.to_owned(), 7, "Seven".to_owned()),
                (other.to_owned(), 1, "Other".to_owned())
            ]
        );
    }

    #[test]
    fn a_customer_event_becomes_an_apply_with_its_version_and_addresses() {
        let envelope = event(types::CRM_CUSTOMER_UPSERTED, customer());
        let request = customer_request(&envelope).unwrap();
        assert_eq!(request.source_version, 4);
        assert_eq!(request.event_id, envelope.id.to_string());
        assert!(!request.repair);
        let profile = request.customer.unwrap();
        assert_eq!(profile.display_name, "Ada");
        assert_eq!(profile.tax_id, "GB1");
        assert_eq!(profile.phone, "");
        assert_eq!(profile.status(), erp::CustomerStatus::Archived);
        assert_eq!(profile.addresses.len(), 1);
        assert_eq!(profile.addresses[0].kind(), erp::AddressKind::Shipping);
        assert_eq!(profile.addresses[0].region, "");
    }

    #[test]
    fn bad_customer_data_is_schema_invalid() {
        let mut data = customer();
        data["status"] = json!("SLEEPING");
        assert!(matches!(
            customer_request(&event(types::CRM_CUSTOMER_UPSERTED, data)),
            Err(FlowError::Permanent {
                reason: Reason::SchemaInvalid,
                ..
            })
        ));
        let mut data = customer();
        data["customer_id"] = json!("someone-else");
        assert!(matches!(
            customer_request(&event(types::CRM_CUSTOMER_UPSERTED, data)),
            Err(FlowError::Permanent {
                reason: Reason::SchemaInvalid,
                ..
            })
        ));
    }

    #[test]
    fn an_order_becomes_an_accept_with_its_lines() {
        let data = json!({
            "order_id": "o-1", "customer_id": ID, "status": "SUBMITTED", "currency": "EUR",
            "lines": [{"line_number": 1, "sku": "A", "quantity": 2, "unit_price_minor": 150,
                       "line_total_minor": 300}],
            "total_minor": 300, "submitted_at": "2026-11-26T10:00:00Z", "cancellation_reason": null
        });
        let envelope = event(types::CRM_ORDER_SUBMITTED, data.clone());
        let request = order_request(&envelope, true).unwrap();
        assert_eq!(request.crm_order_id, "o-1");
        assert_eq!(request.currency_code, "EUR");
        assert!(request.final_attempt);
        assert_eq!(request.lines.len(), 1);
        assert_eq!(
            (request.lines[0].quantity, request.lines[0].unit_price_minor),
            (2, 150)
        );

        let mut cancel = data;
        cancel["status"] = json!("CANCEL_REQUESTED");
        cancel["cancellation_reason"] = json!("changed mind");
        let request = cancel_request(&event(types::CRM_ORDER_CANCEL_REQUESTED, cancel)).unwrap();
        assert_eq!(request.crm_order_id, "o-1");
        assert_eq!(request.reason, "changed mind");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use tandem_proto::events::{crm::CustomerUpsertedV1, types};

    use super::*;

    fn optional() -> impl Strategy<Value = Option<String>> {
        prop::option::of("\\PC{1,30}")
    }

    proptest! {
        /// Every owned profile field reaches the ERP request unchanged, at the event's version.
        #[test]
        fn customer_events_map_field_by_field(
            display_name in "\\PC{1,60}",
            email in "[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,4}",
            phone in optional(),
            tax_id in optional(),
            external_ref in optional(),
            archived in any::<bool>(),
            version in 1i64..1_000_000,
        ) {
            let id = "0190c5f0-0000-7000-8000-000000000001";
            let data = CustomerUpsertedV1 {
                customer_id: id.to_owned(),
                display_name: display_name.clone(),
                email: email.clone(),
                phone: phone.clone(),
                tax_id: tax_id.clone(),
                status: if archived { CustomerStatus::Archived } else { CustomerStatus::Active },
                external_ref: external_ref.clone(),
                contacts: vec![],
                addresses: vec![],
            };
            let envelope = Envelope::new(types::CRM_CUSTOMER_UPSERTED, 1, "crm", "customer", id, version, &data).unwrap();
            let request = customer_request(&envelope).unwrap();
            prop_assert_eq!(request.source_version, version);
            let profile = request.customer.unwrap();
            prop_assert_eq!(profile.status() == erp::CustomerStatus::Archived, archived);
            prop_assert_eq!(profile.display_name, display_name);
            prop_assert_eq!(profile.email, email);
            prop_assert_eq!(profile.phone, phone.unwrap_or_default());
            prop_assert_eq!(profile.tax_id, tax_id.unwrap_or_default());
            prop_assert_eq!(profile.external_ref, external_ref.unwrap_or_default());
        }
    }
}
