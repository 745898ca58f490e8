//! Customer messages <-> the customer domain.

use prost_types::FieldMask;
use tandem_common::{grpc::timestamp, validation::FieldViolation};
use tandem_proto::{crm::v1 as pb, events::CustomerStatus, events::crm::AddressKind};

use super::{known, money, optional};
use crate::{
    customers::{
        Address, Contact, Customer, CustomerFilter, IntegrationUpsert, Profile, ProfilePatch,
    },
    error::Error,
};

/// The profile of a new customer (always ACTIVE).
pub(super) fn new_profile(customer: pb::Customer) -> Result<Profile, Error> {
    let status = match known("status", customer.status)? {
        pb::CustomerStatus::Unspecified | pb::CustomerStatus::Active => CustomerStatus::Active,
        pb::CustomerStatus::Archived => {
            return Err(Error::invalid("status", "a new customer is ACTIVE"));
        }
    };
    Ok(Profile {
        display_name: customer.display_name,
        email: customer.email,
        phone: Some(customer.phone),
        tax_id: Some(customer.tax_id),
        status,
        external_ref: Some(customer.external_ref),
        contacts: contacts(&customer.contacts),
        addresses: addresses(&customer.addresses)?,
    })
}

/// The profile fields the ERP mirrors, from a `MirroredCustomer` (no contacts: the ERP keeps
/// none), normalised and validated like any profile.
pub(super) fn mirrored_profile(customer: pb::Customer) -> Result<Profile, Error> {
    let status = match known("status", customer.status)? {
        pb::CustomerStatus::Unspecified | pb::CustomerStatus::Active => CustomerStatus::Active,
        pb::CustomerStatus::Archived => CustomerStatus::Archived,
    };
    let profile = Profile {
        display_name: customer.display_name,
        email: customer.email,
        phone: Some(customer.phone),
        tax_id: Some(customer.tax_id),
        status,
        external_ref: Some(customer.external_ref),
        contacts: Vec::new(),
        addresses: addresses(&customer.addresses)?,
    }
    .normalised();
    crate::error::check(profile.violations())?;
    Ok(profile)
}

fn contacts(contacts: &[pb::Contact]) -> Vec<Contact> {
    contacts
        .iter()
        .map(|c| Contact {
            name: c.name.clone(),
            email: optional(&c.email),
            phone: optional(&c.phone),
            role: optional(&c.role),
        })
        .collect()
}

fn addresses(addresses: &[pb::Address]) -> Result<Vec<Address>, Error> {
    let mut violations = Vec::new();
    let mut converted = Vec::with_capacity(addresses.len());
    for (i, a) in addresses.iter().enumerate() {
        let kind = match a.kind() {
            pb::AddressKind::Billing => AddressKind::Billing,
            pb::AddressKind::Shipping => AddressKind::Shipping,
            pb::AddressKind::Unspecified => {
                violations.push(FieldViolation::new(
                    format!("addresses[{i}].kind"),
                    "BILLING or SHIPPING",
                ));
                continue;
            }
        };
        converted.push(Address {
            kind,
            line1: a.line1.clone(),
            line2: optional(&a.line2),
            city: a.city.clone(),
            postal_code: optional(&a.postal_code),
            region: optional(&a.region),
            country_code: a.country_code.clone(),
        });
    }
    if violations.is_empty() {
        Ok(converted)
    } else {
        Err(Error::Invalid(violations))
    }
}

/// The fields `UpdateCustomer` can change, by their mask path.
const UPDATABLE: &[&str] = &[
    "display_name",
    "email",
    "phone",
    "tax_id",
    "status",
    "external_ref",
    "contacts",
    "addresses",
];

pub(super) fn patch_from(
    customer: &pb::Customer,
    mask: Option<&FieldMask>,
) -> Result<ProfilePatch, Error> {
    let paths: Vec<&str> = match mask {
        Some(mask) if !mask.paths.is_empty() => mask.paths.iter().map(String::as_str).collect(),
        _ => UPDATABLE.to_vec(),
    };
    let mut patch = ProfilePatch::default();
    let mut violations = Vec::new();
    for path in paths {
        match path {
            "display_name" => patch.display_name = Some(customer.display_name.clone()),
            "email" => patch.email = Some(customer.email.clone()),
            "phone" => patch.phone = Some(Some(customer.phone.clone())),
            "tax_id" => patch.tax_id = Some(Some(customer.tax_id.clone())),
            "external_ref" => patch.external_ref = Some(Some(customer.external_ref.clone())),
            "contacts" => patch.contacts = Some(contacts(&customer.contacts)),
            "addresses" => match addresses(&customer.addresses) {
                Ok(addresses) => patch.addresses = Some(addresses),
                Err(Error::Invalid(more)) => violations.extend(more),
                Err(other) => return Err(other),
            },
            "status" => match customer.status() {
                pb::CustomerStatus::Active => patch.status = Some(CustomerStatus::Active),
                pb::CustomerStatus::Archived => patch.status = Some(CustomerStatus::Archived),
                pb::CustomerStatus::Unspecified => {
                    violations.push(FieldViolation::new("status", "ACTIVE or ARCHIVED"))
                }
            },
            other => violations.push(FieldViolation::new(
                "update_mask",
                format!("unknown or read-only field {other:?}; updatable: {UPDATABLE:?}"),
            )),
        }
    }
    if violations.is_empty() {
        Ok(patch)
    } else {
        Err(Error::Invalid(violations))
    }
}

pub(super) fn filter_from(request: &pb::ListCustomersRequest) -> CustomerFilter {
    CustomerFilter {
        display_name_contains: optional(&request.display_name_contains),
        email: optional(&request.email),
        status: match request.status() {
            pb::CustomerStatus::Unspecified => None,
            pb::CustomerStatus::Active => Some(CustomerStatus::Active),
            pb::CustomerStatus::Archived => Some(CustomerStatus::Archived),
        },
        external_ref: optional(&request.external_ref),
    }
}

/// An integrator's customer (`UpsertCustomerByExternalRef`): `id` and `version` are ignored
/// (output only), an UNSPECIFIED status keeps the current one (ACTIVE for a new customer).
pub(super) fn integration_upsert(
    customer: pb::Customer,
    source: &str,
    source_version: i64,
) -> Result<IntegrationUpsert, Error> {
    let status = match known("status", customer.status)? {
        pb::CustomerStatus::Unspecified => None,
        pb::CustomerStatus::Active => Some(CustomerStatus::Active),
        pb::CustomerStatus::Archived => Some(CustomerStatus::Archived),
    };
    Ok(IntegrationUpsert {
        profile: Profile {
            display_name: customer.display_name,
            email: customer.email,
            phone: Some(customer.phone),
            tax_id: Some(customer.tax_id),
            status: status.unwrap_or(CustomerStatus::Active),
            external_ref: Some(customer.external_ref),
            contacts: contacts(&customer.contacts),
            addresses: addresses(&customer.addresses)?,
        },
        status,
        source: optional(source),
        source_version,
    })
}

pub(super) fn to_proto(customer: &Customer) -> pb::Customer {
    let profile = &customer.profile;
    pb::Customer {
        id: customer.id.to_string(),
        display_name: profile.display_name.clone(),
        email: profile.email.clone(),
        phone: profile.phone.clone().unwrap_or_default(),
        tax_id: profile.tax_id.clone().unwrap_or_default(),
        status: match profile.status {
            CustomerStatus::Active => pb::CustomerStatus::Active,
            CustomerStatus::Archived => pb::CustomerStatus::Archived,
        } as i32,
        external_ref: profile.external_ref.clone().unwrap_or_default(),
        version: customer.version,
        create_time: Some(timestamp(customer.create_time)),
        update_time: Some(timestamp(customer.update_time)),
        contacts: profile
            .contacts
            .iter()
            .map(|c| pb::Contact {
                name: c.name.clone(),
                email: c.email.clone().unwrap_or_default(),
                phone: c.phone.clone().unwrap_or_default(),
                role: c.role.clone().unwrap_or_default(),
            })
            .collect(),
        addresses: profile
            .addresses
            .iter()
            .map(|a| pb::Address {
                kind: match a.kind {
                    AddressKind::Billing => pb::AddressKind::Billing,
                    AddressKind::Shipping => pb::AddressKind::Shipping,
                } as i32,
                line1: a.line1.clone(),
                line2: a.line2.clone().unwrap_or_default(),
                city: a.city.clone(),
                postal_code: a.postal_code.clone().unwrap_or_default(),
                region: a.region.clone().unwrap_or_default(),
                country_code: a.country_code.clone(),
            })
            .collect(),
        finance: customer.finance.as_ref().map(|f| pb::CustomerFinance {
            credit_limit: Some(money(&f.data.currency, f.data.credit_limit_minor)),
            payment_terms: f.data.payment_terms.clone().unwrap_or_default(),
            open_balance: Some(money(&f.data.currency, f.data.open_balance_minor)),
            credit_hold: f.data.credit_hold,
            source_version: f.source_version,
            update_time: Some(timestamp(f.update_time)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_mask_updates_every_field_and_unknown_paths_are_rejected() {
        let customer = pb::Customer {
            display_name: "New".into(),
            status: pb::CustomerStatus::Archived as i32,
            ..pb::Customer::default()
        };
        let patch = patch_from(&customer, None).unwrap();
        assert_eq!(patch.display_name.as_deref(), Some("New"));
        assert_eq!(patch.status, Some(CustomerStatus::Archived));
        assert_eq!(patch.phone, Some(Some(String::new())));
        assert_eq!(patch.contacts, Some(Vec::new()));

        let mask = FieldMask {
            paths: vec!["email".into(), "version".into()],
        };
        let Err(Error::Invalid(violations)) = patch_from(&customer, Some(&mask)) else {
            panic!("read-only path accepted");
        };
        assert_eq!(violations[0].field, "update_mask");
    }

    #[test]
    fn only_masked_fields_are_patched() {
        let customer = pb::Customer {
            display_name: "Ignored".into(),
            email: "x@y.zz".into(),
            ..pb::Customer::default()
        };
        let mask = FieldMask {
            paths: vec!["email".into()],
        };
        let patch = patch_from(&customer, Some(&mask)).unwrap();
        assert_eq!(
            patch,
            ProfilePatch {
                email: Some("x@y.zz".into()),
                ..ProfilePatch::default()
            }
        );
    }

    #[test]
    fn addresses_need_a_kind() {
        let customer = pb::Customer {
            addresses: vec![pb::Address::default()],
            ..pb::Customer::default()
        };
        let mask = FieldMask {
            paths: vec!["addresses".into()],
        };
        let Err(Error::Invalid(violations)) = patch_from(&customer, Some(&mask)) else {
            panic!("address without kind accepted");
        };
        assert_eq!(violations[0].field, "addresses[0].kind");
    }
}
