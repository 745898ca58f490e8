//! `tandem.erp.v1.ErpService` (public) and `tandem.erp.v1.ErpSync` (for the bridge).

use tandem_common::grpc::{FieldViolation, timestamp};
use tandem_proto::{
    erp::v1::{
        self as pb, ApplyCustomerRequest, ApplyCustomerResponse, GetCustomerRequest,
        erp_service_server::ErpService, erp_sync_server::ErpSync,
    },
    events::CustomerStatus,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    customers::{Customer, Customers, Profile},
    error::Error,
};

#[derive(Clone)]
pub struct ErpApi {
    customers: Customers,
}

impl ErpApi {
    pub fn new(customers: Customers) -> Self {
        Self { customers }
    }
}

#[tonic::async_trait]
impl ErpService for ErpApi {
    async fn get_customer(
        &self,
        request: Request<GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        Ok(Response::new(to_proto(&self.customers.get(id).await?)))
    }
}

#[tonic::async_trait]
impl ErpSync for ErpApi {
    async fn apply_customer(
        &self,
        request: Request<ApplyCustomerRequest>,
    ) -> Result<Response<ApplyCustomerResponse>, Status> {
        let request = request.into_inner();
        tracing::debug!(event_id = %request.event_id, "applying customer");
        let profile = profile_from(request.customer.as_ref())?;
        let applied = self
            .customers
            .apply(&profile, request.source_version)
            .await?;
        Ok(Response::new(ApplyCustomerResponse {
            applied: applied.changed,
            current_version: applied.current_version,
        }))
    }
}

fn profile_from(customer: Option<&pb::CustomerProfile>) -> Result<Profile, Error> {
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
    match (id, status) {
        (Some(id), Some(status)) if violations.is_empty() => Ok(Profile {
            id,
            display_name: customer.display_name.clone(),
            email: customer.email.clone(),
            phone: non_empty(&customer.phone),
            tax_id: non_empty(&customer.tax_id),
            status,
            external_ref: non_empty(&customer.external_ref),
        }),
        _ => Err(Error::Invalid(violations)),
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn parse_id(field: &str, id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::invalid(field, "must be a UUID"))
}

fn to_proto(customer: &Customer) -> pb::Customer {
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
        }),
        profile_version: customer.profile_version,
        profile_update_time: Some(timestamp(customer.profile_update_time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_field_is_named() {
        let Err(Error::Invalid(violations)) = profile_from(Some(&pb::CustomerProfile::default()))
        else {
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
}
