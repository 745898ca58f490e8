//! Sales orders: domain values to messages and back.

use tandem_common::grpc::timestamp;
use tandem_proto::erp::v1 as pb;

use crate::{
    error::Error,
    orders::{NewLine, NewOrder, Order, OrderStatus, ReservationState},
};

use super::{money, parse_id};

pub(in crate::grpc) fn status(status: OrderStatus) -> pb::SalesOrderStatus {
    use pb::SalesOrderStatus as P;
    match status {
        OrderStatus::Reserved => P::Reserved,
        OrderStatus::Backordered => P::Backordered,
        OrderStatus::CreditHold => P::CreditHold,
        OrderStatus::Rejected => P::Rejected,
        OrderStatus::Shipped => P::Shipped,
        OrderStatus::Invoiced => P::Invoiced,
        OrderStatus::Cancelled => P::Cancelled,
    }
}

pub(in crate::grpc) fn status_filter(status: pb::SalesOrderStatus) -> Option<OrderStatus> {
    OrderStatus::ALL
        .into_iter()
        .find(|s| self::status(*s) == status)
}

pub(in crate::grpc) fn order(order: &Order) -> pb::SalesOrder {
    pb::SalesOrder {
        id: order.id.to_string(),
        crm_order_id: order.crm_order_id.clone(),
        customer_id: order.customer_id.to_string(),
        status: status(order.status) as i32,
        reason: order.reason.clone().unwrap_or_default(),
        lines: order
            .lines
            .iter()
            .map(|line| pb::SalesOrderLine {
                line_number: line.line_number,
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor,
                line_total_minor: line.quantity.saturating_mul(line.unit_price_minor),
                reservations: line
                    .reservations
                    .iter()
                    .filter(|r| r.state != ReservationState::Released)
                    .map(|r| pb::Reservation {
                        warehouse: r.warehouse.clone(),
                        quantity: r.quantity,
                    })
                    .collect(),
            })
            .collect(),
        total: money(&order.currency, order.total_minor),
        invoice: order.invoice.as_ref().map(|invoice| pb::Invoice {
            invoice_number: invoice.number.clone(),
            amount: money(&order.currency, invoice.amount_minor),
            issue_date: invoice.issue_date.to_string(),
            due_date: invoice.due_date.to_string(),
        }),
        version: order.version,
        create_time: Some(timestamp(order.create_time)),
        update_time: Some(timestamp(order.update_time)),
    }
}

pub(in crate::grpc) fn new_order(request: &pb::AcceptOrderRequest) -> Result<NewOrder, Error> {
    Ok(NewOrder {
        crm_order_id: request.crm_order_id.clone(),
        customer_id: parse_id("customer_id", &request.customer_id)?,
        currency: request.currency_code.clone(),
        lines: request
            .lines
            .iter()
            .map(|line| NewLine {
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor,
            })
            .collect(),
        final_attempt: request.final_attempt,
    })
}
