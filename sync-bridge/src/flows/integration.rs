//! Integrator ingress: events on `integration.*` topics, validated against their JSON Schema,
//! applied once per event (version-gated customers, orders once per reference, counts once
//! per event id).

use tandem_proto::events::Envelope;
use tandem_proto::{
    crm::v1 as crm,
    erp::v1 as erp,
    events::integration::{CustomerUpsertedV1, OrderPlacedV1, StockCountedV1},
};

use super::{FlowError, Flows, Outcome, Reason, classify, payload, permanent};

/// Checks the whole event against the envelope schema and its type's schema.
pub fn validate(envelope: &Envelope) -> Result<(), FlowError> {
    let json = serde_json::to_value(envelope)
        .map_err(|e| permanent(Reason::Unparseable, "json", e.to_string()))?;
    tandem_proto::events::validate(&json).map_err(|error| {
        let reason = match error {
            tandem_proto::events::SchemaError::UnknownType { .. } => Reason::UnknownType,
            _ => Reason::SchemaInvalid,
        };
        permanent(reason, "schema", error.to_string())
    })
}

/// `integration.customer.upserted` v1 -> `CrmSync.UpsertCustomerByExternalRef`.
pub fn customer_request(
    envelope: &Envelope,
) -> Result<crm::UpsertCustomerByExternalRefRequest, FlowError> {
    let customer: CustomerUpsertedV1 = payload(envelope)?;
    Ok(crm::UpsertCustomerByExternalRefRequest {
        customer: Some(crm::Customer {
            display_name: customer.display_name,
            email: customer.email,
            phone: customer.phone.unwrap_or_default(),
            tax_id: customer.tax_id.unwrap_or_default(),
            external_ref: customer.external_ref,
            addresses: customer.addresses.into_iter().map(Into::into).collect(),
            ..crm::Customer::default()
        }),
        source: envelope.source.clone(),
        source_version: envelope.aggregate_version,
        event_id: envelope.id.to_string(),
    })
}

/// `integration.order.placed` v1 -> `CrmSync.PlaceExternalOrder`.
pub fn order_request(envelope: &Envelope) -> Result<crm::PlaceExternalOrderRequest, FlowError> {
    let order: OrderPlacedV1 = payload(envelope)?;
    Ok(crm::PlaceExternalOrderRequest {
        external_ref: order.order_ref,
        customer_external_ref: order.customer_external_ref,
        currency_code: order.currency,
        lines: order
            .lines
            .into_iter()
            .map(|line| crm::ExternalOrderLine {
                sku: line.sku,
                quantity: line.quantity,
            })
            .collect(),
        source: envelope.source.clone(),
        event_id: envelope.id.to_string(),
    })
}

/// `integration.stock.counted` v1 -> `ErpSync.CountStock`.
pub fn count_request(envelope: &Envelope) -> Result<erp::CountStockRequest, FlowError> {
    let count: StockCountedV1 = payload(envelope)?;
    Ok(erp::CountStockRequest {
        sku: count.sku,
        warehouse: count.warehouse,
        counted_quantity: count.counted_quantity,
        event_id: envelope.id.to_string(),
        source: envelope.source.clone(),
    })
}

pub(super) async fn upsert_customer(
    flows: &Flows,
    envelope: &Envelope,
) -> Result<Outcome, FlowError> {
    validate(envelope)?;
    let request = customer_request(envelope)?;
    let response = flows
        .crm_sync
        .clone()
        .upsert_customer_by_external_ref(flows.request(request))
        .await
        .map_err(classify)?;
    Ok(Outcome::changed(response.get_ref().applied))
}

pub(super) async fn place_order(flows: &Flows, envelope: &Envelope) -> Result<Outcome, FlowError> {
    validate(envelope)?;
    let request = order_request(envelope)?;
    let response = flows
        .crm_sync
        .clone()
        .place_external_order(flows.request(request))
        .await
        .map_err(classify)?;
    Ok(Outcome::changed(response.get_ref().applied))
}

pub(super) async fn count_stock(flows: &Flows, envelope: &Envelope) -> Result<Outcome, FlowError> {
    validate(envelope)?;
    let request = count_request(envelope)?;
    let response = flows
        .erp
        .clone()
        .count_stock(flows.request(request))
        .await
        .map_err(classify)?;
    Ok(Outcome::changed(response.get_ref().applied))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tandem_proto::events::types;

    use super::*;

    fn event(event_type: &str, id: &str, version: i64, data: serde_json::Value) -> Envelope {
        Envelope::new(event_type, 1, "webshop", "x", id, version, &data).unwrap()
    }

    #[test]
    fn integrator_events_translate_and_keep_their_identity() {
        let customer = event(
            types::INTEGRATION_CUSTOMER_UPSERTED,
            "shop:7",
            3,
            json!({"external_ref": "shop:7", "display_name": "Lin", "email": "lin@example.com",
                   "addresses": [{"kind": "BILLING", "line1": "1 Road", "city": "Oslo",
                                  "country_code": "NO"}]}),
        );
        assert_eq!(validate(&customer), Ok(()));
        let request = customer_request(&customer).unwrap();
        assert_eq!(
            (request.source.as_str(), request.source_version),
            ("webshop", 3)
        );
        let profile = request.customer.unwrap();
        assert_eq!(profile.external_ref, "shop:7");
        assert_eq!(profile.addresses[0].kind(), crm::AddressKind::Billing);

        let order = event(
            types::INTEGRATION_ORDER_PLACED,
            "web-1001",
            1,
            json!({"order_ref": "web-1001", "customer_external_ref": "shop:7", "currency": "EUR",
                   "lines": [{"sku": "A", "quantity": 2}]}),
        );
        assert_eq!(validate(&order), Ok(()));
        let request = order_request(&order).unwrap();
        assert_eq!(request.external_ref, "web-1001");
        assert_eq!(request.lines[0].quantity, 2);

        let count = event(
            types::INTEGRATION_STOCK_COUNTED,
            "A",
            1,
            json!({"sku": "A", "warehouse": "MAIN", "counted_quantity": 40}),
        );
        let request = count_request(&count).unwrap();
        assert_eq!(request.event_id, count.id.to_string());
        assert_eq!(request.counted_quantity, 40);
    }

    #[test]
    fn schema_violations_are_caught_before_any_call() {
        let negative = event(
            types::INTEGRATION_STOCK_COUNTED,
            "A",
            1,
            json!({"sku": "A", "warehouse": "MAIN", "counted_quantity": -4}),
        );
        assert!(matches!(
            validate(&negative),
            Err(FlowError::Permanent {
                reason: Reason::SchemaInvalid,
                ..
            })
        ));
        let sql = event(
            types::INTEGRATION_ORDER_PLACED,
            "x",
            1,
            json!({"order_ref": "1'; DROP TABLE orders;--", "customer_external_ref": "c",
                   "currency": "EUR", "lines": [{"sku": "A", "quantity": 1}]}),
        );
        assert!(matches!(
            validate(&sql),
            Err(FlowError::Permanent {
                reason: Reason::SchemaInvalid,
                ..
            })
        ));
    }
}
