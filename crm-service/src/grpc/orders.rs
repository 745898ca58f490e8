//! Order messages <-> the order domain.

use tandem_common::grpc::timestamp;
use tandem_proto::{crm::v1 as pb, events::crm::OrderStatus};

use super::money;
use crate::orders::{FulfilmentStatus, LineRequest, Order};

pub(super) fn line_requests(lines: &[pb::OrderLine]) -> Vec<LineRequest> {
    lines
        .iter()
        .map(|line| LineRequest {
            sku: line.sku.trim().to_owned(),
            quantity: line.quantity,
        })
        .collect()
}

pub(super) fn status_from(status: pb::OrderStatus) -> Option<OrderStatus> {
    match status {
        pb::OrderStatus::Unspecified => None,
        pb::OrderStatus::Draft => Some(OrderStatus::Draft),
        pb::OrderStatus::Submitted => Some(OrderStatus::Submitted),
        pb::OrderStatus::CancelRequested => Some(OrderStatus::CancelRequested),
        pb::OrderStatus::Cancelled => Some(OrderStatus::Cancelled),
    }
}

fn status_to(status: OrderStatus) -> pb::OrderStatus {
    match status {
        OrderStatus::Draft => pb::OrderStatus::Draft,
        OrderStatus::Submitted => pb::OrderStatus::Submitted,
        OrderStatus::CancelRequested => pb::OrderStatus::CancelRequested,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
    }
}

pub(super) fn fulfilment_from(status: pb::FulfilmentStatus) -> Option<FulfilmentStatus> {
    Some(match status {
        pb::FulfilmentStatus::Unspecified => return None,
        pb::FulfilmentStatus::Reserved => FulfilmentStatus::Reserved,
        pb::FulfilmentStatus::Backordered => FulfilmentStatus::Backordered,
        pb::FulfilmentStatus::CreditHold => FulfilmentStatus::CreditHold,
        pb::FulfilmentStatus::Rejected => FulfilmentStatus::Rejected,
        pb::FulfilmentStatus::Shipped => FulfilmentStatus::Shipped,
        pb::FulfilmentStatus::Invoiced => FulfilmentStatus::Invoiced,
        pb::FulfilmentStatus::Cancelled => FulfilmentStatus::Cancelled,
    })
}

fn fulfilment_to(status: FulfilmentStatus) -> pb::FulfilmentStatus {
    match status {
        FulfilmentStatus::Reserved => pb::FulfilmentStatus::Reserved,
        FulfilmentStatus::Backordered => pb::FulfilmentStatus::Backordered,
        FulfilmentStatus::CreditHold => pb::FulfilmentStatus::CreditHold,
        FulfilmentStatus::Rejected => pb::FulfilmentStatus::Rejected,
        FulfilmentStatus::Shipped => pb::FulfilmentStatus::Shipped,
        FulfilmentStatus::Invoiced => pb::FulfilmentStatus::Invoiced,
        FulfilmentStatus::Cancelled => pb::FulfilmentStatus::Cancelled,
    }
}

pub(super) fn to_proto(order: &Order) -> pb::Order {
    let currency = order.currency.clone().unwrap_or_default();
    pb::Order {
        id: order.id.to_string(),
        customer_id: order.customer_id.to_string(),
        status: status_to(order.status) as i32,
        lines: order
            .lines
            .iter()
            .map(|line| pb::OrderLine {
                line_number: line.line_number,
                sku: line.sku.clone(),
                quantity: line.quantity,
                product_name: line.product_name.clone(),
                unit_price: Some(money(&currency, line.unit_price_minor)),
                line_total: Some(money(&currency, line.total_minor().unwrap_or(i64::MAX))),
            })
            .collect(),
        total: Some(money(&currency, order.total_minor())),
        currency_code: currency,
        fulfilment: order.fulfilment.as_ref().map(|f| pb::Fulfilment {
            status: fulfilment_to(f.update.status) as i32,
            rejection_reason: f.update.rejection_reason.clone().unwrap_or_default(),
            invoice_number: f.update.invoice_number.clone().unwrap_or_default(),
            invoice_amount: f
                .update
                .invoice_amount
                .as_ref()
                .map(|(currency, amount)| money(currency, *amount)),
            source_version: f.source_version,
            update_time: Some(timestamp(f.update_time)),
        }),
        version: order.version,
        create_time: Some(timestamp(order.create_time)),
        update_time: Some(timestamp(order.update_time)),
        submit_time: order.submit_time.map(timestamp),
        cancellation_reason: order.cancellation_reason.clone().unwrap_or_default(),
        external_ref: order.external_ref.clone().unwrap_or_default(),
    }
}
