//! `tandem.crm.v1.CrmService`: maps requests to the domain and results back to messages.

use prost_types::FieldMask;
use tandem_common::grpc::{FieldViolation, timestamp};
use tandem_proto::{
    crm::v1::{
        self as pb, CreateCustomerRequest, GetCustomerRequest, UpdateCustomerRequest,
        crm_service_server::CrmService,
    },
    events::CustomerStatus,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    customers::{Customer, Customers, Profile, ProfilePatch},
    error::Error,
};

pub struct CrmApi {
    customers: Customers,
}

impl CrmApi {
    pub fn new(customers: Customers) -> Self {
        Self { customers }
    }
}

#[tonic::async_trait]
impl CrmService for CrmApi {
    async fn create_customer(
        &self,
        request: Request<CreateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let customer = request
            .into_inner()
            .customer
            .ok_or_else(|| Error::invalid("customer", "required"))?;
        let status = match customer.status() {
            pb::CustomerStatus::Unspecified | pb::CustomerStatus::Active => CustomerStatus::Active,
            pb::CustomerStatus::Archived => {
                return Err(Error::invalid("customer.status", "a new customer is ACTIVE").into());
            }
        };
        let profile = Profile {
            display_name: customer.display_name,
            email: customer.email,
            phone: Some(customer.phone),
            tax_id: Some(customer.tax_id),
            status,
            external_ref: Some(customer.external_ref),
        };
        let created = self
            .customers
            .create(profile)
            .await
            .map_err(|e| prefixed(e, "customer."))?;
        Ok(Response::new(to_proto(&created)))
    }

    async fn get_customer(
        &self,
        request: Request<GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        Ok(Response::new(to_proto(&self.customers.get(id).await?)))
    }

    async fn update_customer(
        &self,
        request: Request<UpdateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let UpdateCustomerRequest {
            customer,
            update_mask,
        } = request.into_inner();
        let customer = customer.ok_or_else(|| Error::invalid("customer", "required"))?;
        let id = parse_id("customer.id", &customer.id)?;
        let expected_version = (customer.version != 0).then_some(customer.version);
        let patch = patch_from(&customer, update_mask.as_ref())?;
        let updated = self
            .customers
            .update(id, patch, expected_version)
            .await
            .map_err(|e| prefixed(e, "customer."))?;
        Ok(Response::new(to_proto(&updated)))
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
];

fn patch_from(customer: &pb::Customer, mask: Option<&FieldMask>) -> Result<ProfilePatch, Error> {
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
            "status" => match customer.status() {
                pb::CustomerStatus::Active => patch.status = Some(CustomerStatus::Active),
                pb::CustomerStatus::Archived => patch.status = Some(CustomerStatus::Archived),
                pb::CustomerStatus::Unspecified => {
                    violations.push(FieldViolation::new("customer.status", "ACTIVE or ARCHIVED"))
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

fn parse_id(field: &str, id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// Domain field names are relative; requests nest them under `customer`.
fn prefixed(error: Error, prefix: &str) -> Error {
    match error {
        Error::Invalid(violations) => Error::Invalid(
            violations
                .into_iter()
                .map(|v| FieldViolation::new(format!("{prefix}{}", v.field), v.description))
                .collect(),
        ),
        other => other,
    }
}

fn to_proto(customer: &Customer) -> pb::Customer {
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
}
