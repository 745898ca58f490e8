//! Domain values to protobuf messages and back, one module per area; the helpers all of them
//! use are here.

mod customers;
mod orders;
mod products;
mod stock;

use prost_types::FieldMask;
use tandem_common::validation::FieldViolation;
use tandem_proto::erp::v1 as pb;
use uuid::Uuid;

use crate::{error::Error, products::is_sku};

pub(in crate::grpc) use customers::{customer, finance, profile, terms_patch};
pub(in crate::grpc) use orders::{new_order, order, status_filter};
pub(in crate::grpc) use products::{product, product_fields, product_patch, warehouse};
pub(in crate::grpc) use stock::{adjustment_reason, level, movement};

pub(in crate::grpc) fn parse_id(field: &str, id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// A product is named by its id or its sku; anything else names none (a bad request, not an
/// unknown product).
pub(in crate::grpc) fn product_key(field: &str, key: &str) -> Result<(), Error> {
    if Uuid::parse_str(key).is_ok() || is_sku(key) {
        Ok(())
    } else {
        Err(Error::invalid(field, "an id or a sku"))
    }
}

/// An enum field's value, refused when unknown: proto3 enums are open, and prost's getters
/// would silently read an unknown value as the default (e.g. "any status").
pub(in crate::grpc) fn known<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, Error> {
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
