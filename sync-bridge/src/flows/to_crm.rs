//! ERP -> CRM: the catalogue (products, stock), order fulfilment status, customer finance.

use std::collections::BTreeMap;

use tandem_proto::events::Envelope;
use tandem_proto::{
    crm::v1 as crm,
    events::erp::{
        CustomerFinanceChangedV1, OrderStatus, OrderStatusChangedV1, ProductUpsertedV1,
        StockChangedV1,
    },
};

use super::{FlowError, Flows, Outcome, Reason, classify, payload, permanent};

/// Most stock levels per `ApplyStockLevels` call (the RPC's limit).
pub const STOCK_BATCH_MAX: usize = 1_000;

fn money(currency: &str, amount_minor: i64) -> Option<crm::Money> {
    Some(crm::Money {
        currency_code: currency.to_owned(),
        amount_minor,
    })
}

/// `erp.product.upserted` v1 -> `CrmSync.ApplyProduct`.
pub fn product_request(envelope: &Envelope) -> Result<crm::ApplyProductRequest, FlowError> {
    let product: ProductUpsertedV1 = payload(envelope)?;
    Ok(crm::ApplyProductRequest {
        product: Some(crm::ProductData {
            sku: product.sku,
            name: product.display_name,
            unit_price: money(&product.currency, product.unit_price_minor),
            active: product.active,
        }),
        source_version: envelope.aggregate_version,
        event_id: envelope.id.to_string(),
        repair: false,
    })
}

/// Several `erp.stock.changed` v1 -> one `CrmSync.ApplyStockLevels`: one level per sku, the
/// newest version of each.
pub fn stock_request(envelopes: &[Envelope]) -> Result<crm::ApplyStockLevelsRequest, FlowError> {
    let mut newest: BTreeMap<String, crm::StockLevel> = BTreeMap::new();
    for envelope in envelopes {
        let stock: StockChangedV1 = payload(envelope)?;
        let level = crm::StockLevel {
            sku: stock.sku.clone(),
            available: stock.available,
            source_version: envelope.aggregate_version,
        };
        match newest.get(&stock.sku) {
            Some(kept) if kept.source_version >= level.source_version => {}
            _ => {
                newest.insert(stock.sku, level);
            }
        }
    }
    Ok(crm::ApplyStockLevelsRequest {
        levels: newest.into_values().collect(),
        event_id: envelopes
            .last()
            .map(|e| e.id.to_string())
            .unwrap_or_default(),
        repair: false,
    })
}

/// `erp.order.status_changed` v1 -> `CrmSync.ApplyOrderStatus`.
pub fn order_status_request(
    envelope: &Envelope,
) -> Result<crm::ApplyOrderStatusRequest, FlowError> {
    let order: OrderStatusChangedV1 = payload(envelope)?;
    let status = match order.status {
        OrderStatus::Reserved => crm::FulfilmentStatus::Reserved,
        OrderStatus::Backordered => crm::FulfilmentStatus::Backordered,
        OrderStatus::CreditHold => crm::FulfilmentStatus::CreditHold,
        OrderStatus::Rejected => crm::FulfilmentStatus::Rejected,
        OrderStatus::Shipped => crm::FulfilmentStatus::Shipped,
        OrderStatus::Invoiced => crm::FulfilmentStatus::Invoiced,
        OrderStatus::Cancelled => crm::FulfilmentStatus::Cancelled,
    };
    let rejection_reason = match (order.status, order.reason) {
        (OrderStatus::Rejected, None) => "rejected by the ERP".to_owned(),
        (OrderStatus::Rejected, Some(reason)) => reason,
        _ => String::new(),
    };
    let (invoice_number, invoice_amount) = match (order.status, order.invoice) {
        (OrderStatus::Invoiced, Some(invoice)) => (
            invoice.invoice_number,
            money(&order.currency, invoice.amount_minor),
        ),
        (OrderStatus::Invoiced, None) => {
            return Err(permanent(
                Reason::SchemaInvalid,
                "invoice",
                "INVOICED without invoice data",
            ));
        }
        _ => (String::new(), None),
    };
    Ok(crm::ApplyOrderStatusRequest {
        order_id: order.crm_order_id,
        status: status as i32,
        rejection_reason,
        invoice_number,
        invoice_amount,
        source_version: envelope.aggregate_version,
        event_id: envelope.id.to_string(),
        repair: false,
    })
}

/// `erp.customer.finance_changed` v1 -> `CrmSync.ApplyCustomerFinance`.
pub fn finance_request(envelope: &Envelope) -> Result<crm::ApplyCustomerFinanceRequest, FlowError> {
    let finance: CustomerFinanceChangedV1 = payload(envelope)?;
    Ok(crm::ApplyCustomerFinanceRequest {
        customer_id: finance.customer_id,
        credit_limit: money(&finance.currency, finance.credit_limit_minor),
        payment_terms: format!("NET{}", finance.payment_terms_days),
        open_balance: money(&finance.currency, finance.open_balance_minor),
        credit_hold: finance.credit_hold,
        source_version: envelope.aggregate_version,
        event_id: envelope.id.to_string(),
        repair: false,
    })
}

pub(super) async fn apply_product(
    flows: &Flows,
    envelope: &Envelope,
) -> Result<Outcome, FlowError> {
    let request = product_request(envelope)?;
    let response = flows
        .crm_sync
        .clone()
        .apply_product(flows.request(request))
        .await
        .map_err(classify)?;
    Ok(Outcome::changed(response.get_ref().applied))
}

/// One call for all of `envelopes`; an outcome per envelope, `Applied` for the one whose
/// version was written.
pub(super) async fn apply_stock(
    flows: &Flows,
    envelopes: &[Envelope],
) -> Result<Vec<Outcome>, FlowError> {
    let request = stock_request(envelopes)?;
    let sent: BTreeMap<String, i64> = request
        .levels
        .iter()
        .map(|l| (l.sku.clone(), l.source_version))
        .collect();
    let response = flows
        .crm_sync
        .clone()
        .apply_stock_levels(flows.request(request))
        .await
        .map_err(classify)?
        .into_inner();
    let written: BTreeMap<String, bool> = response
        .results
        .into_iter()
        .map(|r| (r.sku, r.applied))
        .collect();
    Ok(envelopes
        .iter()
        .map(|envelope| {
            let sku = envelope
                .data
                .get("sku")
                .and_then(|s| s.as_str())
                .unwrap_or_default();
            let this_one = sent.get(sku) == Some(&envelope.aggregate_version);
            Outcome::changed(this_one && written.get(sku).copied().unwrap_or(false))
        })
        .collect())
}

pub(super) async fn apply_order_status(
    flows: &Flows,
    envelope: &Envelope,
) -> Result<Outcome, FlowError> {
    let request = order_status_request(envelope)?;
    let response = flows
        .crm_sync
        .clone()
        .apply_order_status(flows.request(request))
        .await
        .map_err(classify)?;
    Ok(Outcome::changed(response.get_ref().applied))
}

/// One call for all of `envelopes` (`CrmSync.ApplyOrderStatuses`, applied in order); an
/// outcome per envelope.
pub(super) async fn apply_order_statuses(
    flows: &Flows,
    envelopes: &[Envelope],
) -> Result<Vec<Outcome>, FlowError> {
    let request = crm::ApplyOrderStatusesRequest {
        statuses: envelopes
            .iter()
            .map(order_status_request)
            .collect::<Result<_, _>>()?,
    };
    let response = flows
        .crm_sync
        .clone()
        .apply_order_statuses(flows.request(request))
        .await
        .map_err(classify)?
        .into_inner();
    if response.results.len() != envelopes.len() {
        // Applied one by one instead, each with its own answer.
        return Err(permanent(
            Reason::Rejected,
            "results",
            format!(
                "ApplyOrderStatuses answered {} results for {} statuses",
                response.results.len(),
                envelopes.len()
            ),
        ));
    }
    Ok(response
        .results
        .iter()
        .map(|result| Outcome::changed(result.applied))
        .collect())
}

pub(super) async fn apply_finance(
    flows: &Flows,
    envelope: &Envelope,
) -> Result<Outcome, FlowError> {
    let request = finance_request(envelope)?;
    let response = flows
        .crm_sync
        .clone()
        .apply_customer_finance(flows.request(request))
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
        Envelope::new(event_type, 1, "erp", "x", id, version, &data).unwrap()
    }

    fn stock(sku: &str, version: i64, available: i64) -> Envelope {
        event(
            types::ERP_STOCK_CHANGED,
            sku,
            version,
            json!({"sku": sku, "on_hand": available, "reserved": 0, "available": available,
                   "warehouses": []}),
        )
    }

    #[test]
    fn a_stock_batch_keeps_the_newest_level_per_sku() {
        let batch = [
            stock("A", 1, 5),
            stock("B", 7, 1),
            stock("A", 3, 9),
            stock("A", 2, 6),
        ];
        let request = stock_request(&batch).unwrap();
        let levels: Vec<(&str, i64, i64)> = request
            .levels
            .iter()
            .map(|l| (l.sku.as_str(), l.available, l.source_version))
            .collect();
        assert_eq!(levels, [("A", 9, 3), ("B", 1, 7)]);
        assert_eq!(request.event_id, batch[3].id.to_string());
    }

    #[test]
    fn products_and_finance_translate_field_by_field() {
        let product = event(
            types::ERP_PRODUCT_UPSERTED,
            "p-1",
            2,
            json!({"product_id": "p-1", "sku": "A-1", "display_name": "Widget", "description": "",
                   "unit_price_minor": 1999, "currency": "EUR", "active": true}),
        );
        let request = product_request(&product).unwrap();
        assert_eq!(request.source_version, 2);
        let data = request.product.unwrap();
        assert_eq!(
            (data.sku.as_str(), data.name.as_str(), data.active),
            ("A-1", "Widget", true)
        );
        assert_eq!(data.unit_price.unwrap().amount_minor, 1999);

        let finance = event(
            types::ERP_CUSTOMER_FINANCE_CHANGED,
            "c-1",
            5,
            json!({"customer_id": "c-1", "credit_limit_minor": 100000, "currency": "EUR",
                   "payment_terms_days": 30, "open_balance_minor": 2500, "credit_hold": false}),
        );
        let request = finance_request(&finance).unwrap();
        assert_eq!(request.payment_terms, "NET30");
        assert_eq!(request.open_balance.unwrap().amount_minor, 2500);
        assert_eq!(request.credit_limit.unwrap().currency_code, "EUR");
        assert_eq!(request.source_version, 5);
    }

    #[test]
    fn order_statuses_carry_reasons_and_invoices() {
        let base = json!({"order_id": "e-1", "crm_order_id": "o-1", "customer_id": "c-1",
                          "status": "REJECTED", "reason": null, "currency": "EUR",
                          "total_minor": 300, "invoice": null});
        let request = order_status_request(&event(
            types::ERP_ORDER_STATUS_CHANGED,
            "o-1",
            2,
            base.clone(),
        ))
        .unwrap();
        assert_eq!(request.order_id, "o-1");
        assert_eq!(request.status(), crm::FulfilmentStatus::Rejected);
        assert!(!request.rejection_reason.is_empty());

        let mut invoiced = base.clone();
        invoiced["status"] = json!("INVOICED");
        invoiced["invoice"] = json!({"invoice_number": "INV-1", "amount_minor": 300,
                                     "issue_date": "2026-11-26", "due_date": "2026-12-26"});
        let request =
            order_status_request(&event(types::ERP_ORDER_STATUS_CHANGED, "o-1", 3, invoiced))
                .unwrap();
        assert_eq!(request.invoice_number, "INV-1");
        assert_eq!(request.invoice_amount.unwrap().amount_minor, 300);

        let mut broken = base;
        broken["status"] = json!("INVOICED");
        assert!(matches!(
            order_status_request(&event(types::ERP_ORDER_STATUS_CHANGED, "o-1", 3, broken)),
            Err(FlowError::Permanent {
                reason: Reason::SchemaInvalid,
                ..
            })
        ));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::json;
    use tandem_proto::events::types;

    use super::*;

    proptest! {
        /// A batch of stock events becomes one level per sku: the one with the newest version.
        #[test]
        fn stock_batches_keep_the_newest_level_of_each_sku(
            events in prop::collection::vec(("[A-C]", 1i64..50, 0i64..1_000), 1..40)
        ) {
            let envelopes: Vec<Envelope> = events
                .iter()
                .map(|(sku, version, available)| {
                    Envelope::new(types::ERP_STOCK_CHANGED, 1, "erp", "stock", sku.clone(), *version,
                        &json!({"sku": sku, "on_hand": available, "reserved": 0,
                                "available": available, "warehouses": []})).unwrap()
                })
                .collect();
            let request = stock_request(&envelopes).unwrap();
            let mut skus: Vec<&str> = events.iter().map(|(s, _, _)| s.as_str()).collect();
            skus.sort();
            skus.dedup();
            prop_assert_eq!(request.levels.len(), skus.len());
            for level in &request.levels {
                let newest = events.iter().filter(|(s, _, _)| *s == level.sku).map(|(_, v, _)| *v).max();
                prop_assert_eq!(Some(level.source_version), newest);
                prop_assert!(events.iter().any(|(s, v, a)| *s == level.sku && *v == level.source_version && *a == level.available));
            }
        }
    }
}
