//! Domain values to protobuf messages and back.

use prost_types::FieldMask;
use tandem_common::{grpc::timestamp, validation::FieldViolation};
use tandem_proto::{erp::v1 as pb, events::CustomerStatus};
use uuid::Uuid;

use crate::{
    customers::{Address, AddressKind, Customer, MAX_ADDRESSES, Profile},
    error::Error,
    finance::{FinanceView, TermsPatch},
    orders::{NewLine, NewOrder, Order, OrderStatus, ReservationState},
    products::{Product, ProductFields, ProductPatch, is_sku},
    stock::{AdjustmentReason, Level, Movement, MovementReason},
    text,
    warehouses::Warehouse,
};

pub(super) fn parse_id(field: &str, id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// A product is named by its id or its sku; anything else names none (a bad request, not an
/// unknown product).
pub(super) fn product_key(field: &str, key: &str) -> Result<(), Error> {
    if Uuid::parse_str(key).is_ok() || is_sku(key) {
        Ok(())
    } else {
        Err(Error::invalid(field, "an id or a sku"))
    }
}

/// An enum field's value, refused when unknown: proto3 enums are open, and prost's getters
/// would silently read an unknown value as the default (e.g. "any status").
pub(super) fn known<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, Error> {
    E::try_from(value).map_err(|_| Error::invalid(field, format!("unknown value {value}")))
}

fn money(currency: &str, amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: currency.to_owned(),
        amount_minor,
    })
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The mask's paths, or `all` when it is missing or empty; unknown paths are violations.
fn mask_paths<'a>(mask: Option<&'a FieldMask>, all: &[&'a str]) -> Result<Vec<&'a str>, Error> {
    let paths: Vec<&str> = match mask {
        Some(mask) if !mask.paths.is_empty() => mask.paths.iter().map(String::as_str).collect(),
        _ => return Ok(all.to_vec()),
    };
    let unknown: Vec<FieldViolation> = paths
        .iter()
        .filter(|p| !all.contains(p))
        .map(|p| FieldViolation::new("update_mask", format!("{p} cannot be updated")))
        .collect();
    if unknown.is_empty() {
        Ok(paths)
    } else {
        Err(Error::Invalid(unknown))
    }
}

pub(super) fn product(product: &Product) -> pb::Product {
    pb::Product {
        id: product.id.to_string(),
        sku: product.sku.clone(),
        display_name: product.fields.display_name.clone(),
        description: product.fields.description.clone(),
        unit_price: money(&product.fields.currency, product.fields.unit_price_minor),
        active: product.fields.active,
        version: product.version,
        create_time: Some(timestamp(product.create_time)),
        update_time: Some(timestamp(product.update_time)),
    }
}

pub(super) fn product_fields(product: &pb::Product, active: bool) -> Result<ProductFields, Error> {
    let price = product
        .unit_price
        .as_ref()
        .ok_or_else(|| Error::invalid("product.unit_price", "required"))?;
    Ok(ProductFields {
        display_name: product.display_name.clone(),
        description: product.description.clone(),
        unit_price_minor: price.amount_minor,
        currency: price.currency_code.clone(),
        active,
    })
}

pub(super) fn product_patch(
    product: &pb::Product,
    mask: Option<&FieldMask>,
) -> Result<ProductPatch, Error> {
    let mut patch = ProductPatch::default();
    for path in mask_paths(
        mask,
        &["display_name", "description", "unit_price", "active"],
    )? {
        match path {
            "display_name" => patch.display_name = Some(product.display_name.clone()),
            "description" => patch.description = Some(product.description.clone()),
            "unit_price" => {
                let price = product
                    .unit_price
                    .as_ref()
                    .ok_or_else(|| Error::invalid("product.unit_price", "required by the mask"))?;
                patch.unit_price = Some((price.amount_minor, price.currency_code.clone()));
            }
            _ => patch.active = Some(product.active),
        }
    }
    Ok(patch)
}

pub(super) fn warehouse(warehouse: &Warehouse) -> pb::Warehouse {
    pb::Warehouse {
        code: warehouse.code.clone(),
        display_name: warehouse.display_name.clone(),
        create_time: Some(timestamp(warehouse.create_time)),
    }
}

pub(super) fn level(level: &Level) -> pb::StockLevel {
    pb::StockLevel {
        sku: level.sku.clone(),
        warehouse: level.warehouse.clone(),
        on_hand: level.on_hand,
        reserved: level.reserved,
        available: level.available(),
        update_time: Some(timestamp(level.update_time)),
    }
}

pub(super) fn adjustment_reason(reason: pb::AdjustmentReason) -> Option<AdjustmentReason> {
    use pb::AdjustmentReason as P;
    Some(match reason {
        P::Unspecified => return None,
        P::CountCorrection => AdjustmentReason::CountCorrection,
        P::Damaged => AdjustmentReason::Damaged,
        P::Lost => AdjustmentReason::Lost,
        P::Found => AdjustmentReason::Found,
        P::Expired => AdjustmentReason::Expired,
        P::Other => AdjustmentReason::Other,
        P::Count => AdjustmentReason::Count,
    })
}

fn adjustment_reason_pb(reason: AdjustmentReason) -> pb::AdjustmentReason {
    use pb::AdjustmentReason as P;
    match reason {
        AdjustmentReason::CountCorrection => P::CountCorrection,
        AdjustmentReason::Damaged => P::Damaged,
        AdjustmentReason::Lost => P::Lost,
        AdjustmentReason::Found => P::Found,
        AdjustmentReason::Expired => P::Expired,
        AdjustmentReason::Other => P::Other,
        AdjustmentReason::Count => P::Count,
    }
}

pub(super) fn movement(movement: &Movement) -> pb::StockMovement {
    use pb::MovementReason as P;
    let reason = match movement.reason {
        MovementReason::Receipt => P::Receipt,
        MovementReason::Adjustment(_) => P::Adjustment,
        MovementReason::TransferOut => P::TransferOut,
        MovementReason::TransferIn => P::TransferIn,
        MovementReason::Reservation => P::Reservation,
        MovementReason::Release => P::Release,
        MovementReason::Shipment => P::Shipment,
    };
    pb::StockMovement {
        id: movement.id,
        sku: movement.sku.clone(),
        warehouse: movement.warehouse.clone(),
        on_hand_delta: movement.on_hand_delta,
        reserved_delta: movement.reserved_delta,
        reason: reason as i32,
        adjustment_reason: movement
            .reason
            .adjustment()
            .map_or(pb::AdjustmentReason::Unspecified, adjustment_reason_pb)
            as i32,
        reference: movement.reference.clone().unwrap_or_default(),
        order_id: movement
            .order_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        create_time: Some(timestamp(movement.create_time)),
    }
}

pub(super) fn finance(view: &FinanceView) -> pb::CustomerFinance {
    let finance = &view.finance;
    pb::CustomerFinance {
        customer_id: finance.customer_id.to_string(),
        credit_limit: money(&finance.currency, finance.credit_limit_minor),
        payment_terms_days: finance.payment_terms_days,
        open_balance: money(&finance.currency, finance.open_balance_minor),
        credit_hold: finance.credit_hold,
        uninvoiced_orders: money(&finance.currency, view.uninvoiced_minor),
        version: finance.version,
        update_time: Some(timestamp(finance.update_time)),
    }
}

pub(super) fn terms_patch(request: &pb::SetCreditTermsRequest) -> Result<TermsPatch, Error> {
    let mut patch = TermsPatch::default();
    let all = ["credit_limit", "payment_terms_days", "credit_hold"];
    for path in mask_paths(request.update_mask.as_ref(), &all)? {
        match path {
            "credit_limit" => {
                let limit = request
                    .credit_limit
                    .as_ref()
                    .ok_or_else(|| Error::invalid("credit_limit", "required by the mask"))?;
                patch.credit_limit = Some((limit.amount_minor, limit.currency_code.clone()));
            }
            "payment_terms_days" => patch.payment_terms_days = Some(request.payment_terms_days),
            _ => patch.credit_hold = Some(request.credit_hold),
        }
    }
    Ok(patch)
}

pub(super) fn customer(customer: &Customer, finance_view: Option<&FinanceView>) -> pb::Customer {
    let profile = &customer.profile;
    pb::Customer {
        profile: Some(pb::CustomerProfile {
            id: profile.id.to_string(),
            display_name: profile.display_name.clone(),
            email: profile.email.clone(),
            phone: profile.phone.clone().unwrap_or_default(),
            tax_id: profile.tax_id.clone().unwrap_or_default(),
            status: match profile.status {
                CustomerStatus::Active => pb::CustomerStatus::Active,
                CustomerStatus::Archived => pb::CustomerStatus::Archived,
            } as i32,
            external_ref: profile.external_ref.clone().unwrap_or_default(),
            addresses: profile.addresses.iter().map(address).collect(),
        }),
        profile_version: customer.profile_version,
        profile_update_time: Some(timestamp(customer.profile_update_time)),
        finance: finance_view.map(finance),
    }
}

fn address(address: &Address) -> pb::Address {
    pb::Address {
        kind: match address.kind {
            AddressKind::Billing => pb::AddressKind::Billing,
            AddressKind::Shipping => pb::AddressKind::Shipping,
        } as i32,
        line1: address.line1.clone(),
        line2: address.line2.clone(),
        city: address.city.clone(),
        postal_code: address.postal_code.clone(),
        region: address.region.clone(),
        country_code: address.country_code.clone(),
    }
}

/// The mirrored addresses: stored as the CRM sent them (it validated them), but each needs a
/// kind, and there are at most [`MAX_ADDRESSES`].
fn addresses(addresses: &[pb::Address], violations: &mut Vec<FieldViolation>) -> Vec<Address> {
    if addresses.len() > MAX_ADDRESSES {
        violations.push(FieldViolation::new(
            "customer.addresses",
            format!("at most {MAX_ADDRESSES}"),
        ));
        return Vec::new();
    }
    addresses
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let kind = match a.kind() {
                pb::AddressKind::Billing => AddressKind::Billing,
                pb::AddressKind::Shipping => AddressKind::Shipping,
                pb::AddressKind::Unspecified => {
                    violations.push(FieldViolation::new(
                        format!("customer.addresses[{i}].kind"),
                        "BILLING or SHIPPING",
                    ));
                    return None;
                }
            };
            for (name, value) in [
                ("line1", &a.line1),
                ("line2", &a.line2),
                ("city", &a.city),
                ("postal_code", &a.postal_code),
                ("region", &a.region),
                ("country_code", &a.country_code),
            ] {
                violations.extend(text::nul_violation(
                    format!("customer.addresses[{i}].{name}"),
                    value,
                ));
            }
            Some(Address {
                kind,
                line1: a.line1.clone(),
                line2: a.line2.clone(),
                city: a.city.clone(),
                postal_code: a.postal_code.clone(),
                region: a.region.clone(),
                country_code: a.country_code.clone(),
            })
        })
        .collect()
}

pub(super) fn profile(customer: Option<&pb::CustomerProfile>) -> Result<Profile, Error> {
    let customer = customer.ok_or_else(|| Error::invalid("customer", "required"))?;
    let mut violations = Vec::new();
    let id = Uuid::parse_str(&customer.id).ok();
    if id.is_none() {
        violations.push(FieldViolation::new("customer.id", "must be a UUID"));
    }
    if customer.display_name.trim().is_empty() {
        violations.push(FieldViolation::new("customer.display_name", "required"));
    }
    if customer.email.trim().is_empty() {
        violations.push(FieldViolation::new("customer.email", "required"));
    }
    let status = match customer.status() {
        pb::CustomerStatus::Active => Some(CustomerStatus::Active),
        pb::CustomerStatus::Archived => Some(CustomerStatus::Archived),
        pb::CustomerStatus::Unspecified => {
            violations.push(FieldViolation::new("customer.status", "ACTIVE or ARCHIVED"));
            None
        }
    };
    violations.extend(text::nul_violations(&[
        ("customer.display_name", &customer.display_name),
        ("customer.email", &customer.email),
        ("customer.phone", &customer.phone),
        ("customer.tax_id", &customer.tax_id),
        ("customer.external_ref", &customer.external_ref),
    ]));
    let addresses = addresses(&customer.addresses, &mut violations);
    match (id, status) {
        (Some(id), Some(status)) if violations.is_empty() => Ok(Profile {
            id,
            display_name: customer.display_name.clone(),
            email: customer.email.clone(),
            phone: non_empty(&customer.phone),
            tax_id: non_empty(&customer.tax_id),
            status,
            external_ref: non_empty(&customer.external_ref),
            addresses,
        }),
        _ => Err(Error::Invalid(violations)),
    }
}

pub(super) fn status(status: OrderStatus) -> pb::SalesOrderStatus {
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

pub(super) fn status_filter(status: pb::SalesOrderStatus) -> Option<OrderStatus> {
    OrderStatus::ALL
        .into_iter()
        .find(|s| self::status(*s) == status)
}

pub(super) fn order(order: &Order) -> pb::SalesOrder {
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

pub(super) fn new_order(request: &pb::AcceptOrderRequest) -> Result<NewOrder, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_profile_field_is_named() {
        let Err(Error::Invalid(violations)) = profile(Some(&pb::CustomerProfile::default())) else {
            panic!("empty profile accepted");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "customer.id",
                "customer.display_name",
                "customer.email",
                "customer.status"
            ]
        );
    }

    #[test]
    fn masks_select_fields_and_refuse_unknown_paths() {
        let request = pb::Product {
            display_name: "New".into(),
            active: false,
            ..pb::Product::default()
        };
        let mask = FieldMask {
            paths: vec!["display_name".into(), "active".into()],
        };
        let patch = product_patch(&request, Some(&mask)).unwrap_or_default();
        assert_eq!(patch.display_name.as_deref(), Some("New"));
        assert_eq!(patch.active, Some(false));
        assert_eq!(patch.unit_price, None);
        let bad = FieldMask {
            paths: vec!["sku".into()],
        };
        assert!(matches!(
            product_patch(&request, Some(&bad)),
            Err(Error::Invalid(_))
        ));
        // An empty mask means every field, so the price is required.
        assert!(product_patch(&request, None).is_err());
    }
}
