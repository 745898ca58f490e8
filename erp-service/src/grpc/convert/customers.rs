//! The customer mirror and its finance: domain values to messages and back.

use tandem_common::{grpc::timestamp, validation::FieldViolation};
use tandem_proto::{erp::v1 as pb, events::CustomerStatus};
use uuid::Uuid;

use crate::{
    customers::{Address, AddressKind, Customer, MAX_ADDRESSES, Profile},
    error::Error,
    finance::{FinanceView, TermsPatch},
    text,
};

use super::{mask_paths, money, non_empty};

pub(in crate::grpc) fn finance(view: &FinanceView) -> pb::CustomerFinance {
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

pub(in crate::grpc) fn terms_patch(
    request: &pb::SetCreditTermsRequest,
) -> Result<TermsPatch, Error> {
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

pub(in crate::grpc) fn customer(
    customer: &Customer,
    finance_view: Option<&FinanceView>,
) -> pb::Customer {
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

pub(in crate::grpc) fn profile(customer: Option<&pb::CustomerProfile>) -> Result<Profile, Error> {
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
