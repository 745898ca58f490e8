//! `tandem.crm.v1.CrmService`: the sales desk's API.

use tandem_common::validation::FieldViolation;
use tandem_proto::crm::v1::{
    self as pb, ArchiveCustomerRequest, CreateCustomerRequest, CreateOrderRequest,
    GetAvailabilityRequest, GetAvailabilityResponse, GetCustomerRequest, GetOrderRequest,
    ListCustomersRequest, ListCustomersResponse, ListOrdersRequest, ListOrdersResponse,
    ListProductsRequest, ListProductsResponse, RequestOrderCancellationRequest, SubmitOrderRequest,
    UpdateCustomerRequest, UpdateOrderRequest, crm_service_server::CrmService,
};
use tonic::{Request, Response, Status};

use prost::Message;

use super::{
    catalogue as catalogue_pb, customers as customers_pb, expected_version, known, once, optional,
    orders as orders_pb, parse_id, parse_optional_id, reply,
};
use crate::{
    catalogue::{Catalogue, model::AVAILABILITY_SKUS_MAX},
    customers::Customers,
    error::{Error, check},
    orders::{OrderFilter, Orders, model::REASON_MAX},
    validation::{optional_text, sku_problem},
};

pub struct CrmApi {
    customers: Customers,
    orders: Orders,
    catalogue: Catalogue,
}

impl CrmApi {
    pub fn new(customers: Customers, orders: Orders, catalogue: Catalogue) -> Self {
        Self {
            customers,
            orders,
            catalogue,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CrmService for CrmApi {
    async fn create_customer(
        &self,
        request: Request<CreateCustomerRequest>,
    ) -> Reply<pb::Customer> {
        let request = request.into_inner();
        let once = once(
            "/tandem.crm.v1.CrmService/CreateCustomer",
            &request,
            |r| &mut r.request_id,
            |c| customers_pb::to_proto(c).encode_to_vec(),
        )?;
        let customer = request
            .customer
            .ok_or_else(|| Error::invalid("customer", "required"))?;
        let created = async {
            self.customers
                .create(customers_pb::new_profile(customer)?, once.as_ref())
                .await
        }
        .await
        .map_err(|e| e.prefixed("customer."))?;
        reply(created, customers_pb::to_proto)
    }

    async fn get_customer(&self, request: Request<GetCustomerRequest>) -> Reply<pb::Customer> {
        let id = parse_id("id", &request.get_ref().id)?;
        Ok(Response::new(customers_pb::to_proto(
            &self.customers.get(id).await?,
        )))
    }

    async fn list_customers(
        &self,
        request: Request<ListCustomersRequest>,
    ) -> Reply<ListCustomersResponse> {
        let request = request.into_inner();
        known::<pb::CustomerStatus>("status", request.status)?;
        // No stored text has control characters; a NUL would not even reach the database.
        check(
            [
                ("display_name_contains", &request.display_name_contains),
                ("email", &request.email),
                ("external_ref", &request.external_ref),
            ]
            .into_iter()
            .filter(|(_, value)| value.chars().any(char::is_control))
            .map(|(field, _)| FieldViolation::new(field, "must not contain control characters"))
            .collect(),
        )?;
        let filter = customers_pb::filter_from(&request);
        let (customers, next_page_token) = self
            .customers
            .list(&filter, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(ListCustomersResponse {
            customers: customers.iter().map(customers_pb::to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_customer(
        &self,
        request: Request<UpdateCustomerRequest>,
    ) -> Reply<pb::Customer> {
        let UpdateCustomerRequest {
            customer,
            update_mask,
        } = request.into_inner();
        let customer = customer.ok_or_else(|| Error::invalid("customer", "required"))?;
        let id = parse_id("customer.id", &customer.id)?;
        let updated = async {
            let patch = customers_pb::patch_from(&customer, update_mask.as_ref())?;
            self.customers
                .update(id, patch, expected_version(customer.version))
                .await
        }
        .await
        .map_err(|e| match e {
            // Mask problems are about the request, not the customer.
            Error::Invalid(v) if v.iter().all(|v| v.field == "update_mask") => Error::Invalid(v),
            other => other.prefixed("customer."),
        })?;
        Ok(Response::new(customers_pb::to_proto(&updated)))
    }

    async fn archive_customer(
        &self,
        request: Request<ArchiveCustomerRequest>,
    ) -> Reply<pb::Customer> {
        let request = request.into_inner();
        let id = parse_id("id", &request.id)?;
        let archived = self
            .customers
            .archive(id, expected_version(request.version))
            .await?;
        Ok(Response::new(customers_pb::to_proto(&archived)))
    }

    async fn create_order(&self, request: Request<CreateOrderRequest>) -> Reply<pb::Order> {
        let request = request.into_inner();
        let once = once(
            "/tandem.crm.v1.CrmService/CreateOrder",
            &request,
            |r| &mut r.request_id,
            |o| orders_pb::to_proto(o).encode_to_vec(),
        )?;
        let order = request
            .order
            .ok_or_else(|| Error::invalid("order", "required"))?;
        let customer_id = parse_id("order.customer_id", &order.customer_id)?;
        let created = self
            .orders
            .create(
                customer_id,
                &orders_pb::line_requests(&order.lines),
                once.as_ref(),
            )
            .await
            .map_err(|e| e.prefixed("order."))?;
        reply(created, orders_pb::to_proto)
    }

    async fn get_order(&self, request: Request<GetOrderRequest>) -> Reply<pb::Order> {
        let id = parse_id("id", &request.get_ref().id)?;
        Ok(Response::new(orders_pb::to_proto(
            &self.orders.get(id).await?,
        )))
    }

    async fn list_orders(&self, request: Request<ListOrdersRequest>) -> Reply<ListOrdersResponse> {
        let request = request.into_inner();
        let filter = OrderFilter {
            customer_id: parse_optional_id("customer_id", &request.customer_id)?,
            status: orders_pb::status_from(known("status", request.status)?),
        };
        let (orders, next_page_token) = self
            .orders
            .list(&filter, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(ListOrdersResponse {
            orders: orders.iter().map(orders_pb::to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_order(&self, request: Request<UpdateOrderRequest>) -> Reply<pb::Order> {
        let UpdateOrderRequest { order, update_mask } = request.into_inner();
        let order = order.ok_or_else(|| Error::invalid("order", "required"))?;
        let id = parse_id("order.id", &order.id)?;
        if let Some(mask) = &update_mask
            && mask.paths.iter().any(|path| path != "lines")
        {
            return Err(Error::invalid("update_mask", "only `lines` can be updated").into());
        }
        let updated = self
            .orders
            .update_lines(
                id,
                &orders_pb::line_requests(&order.lines),
                expected_version(order.version),
            )
            .await
            .map_err(|e| e.prefixed("order."))?;
        Ok(Response::new(orders_pb::to_proto(&updated)))
    }

    async fn submit_order(&self, request: Request<SubmitOrderRequest>) -> Reply<pb::Order> {
        let request = request.into_inner();
        let once = once(
            "/tandem.crm.v1.CrmService/SubmitOrder",
            &request,
            |r| &mut r.request_id,
            |o| orders_pb::to_proto(o).encode_to_vec(),
        )?;
        let id = parse_id("id", &request.id)?;
        let submitted = self
            .orders
            .submit(id, expected_version(request.version), once.as_ref())
            .await?;
        reply(submitted, orders_pb::to_proto)
    }

    async fn request_order_cancellation(
        &self,
        request: Request<RequestOrderCancellationRequest>,
    ) -> Reply<pb::Order> {
        let request = request.into_inner();
        let id = parse_id("id", &request.id)?;
        let reason = optional(&request.reason);
        if let Some(problem) = reason.as_deref().and_then(|r| optional_text(r, REASON_MAX)) {
            return Err(Error::invalid("reason", problem).into());
        }
        let order = self
            .orders
            .request_cancellation(id, reason, expected_version(request.version))
            .await?;
        Ok(Response::new(orders_pb::to_proto(&order)))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Reply<ListProductsResponse> {
        let request = request.into_inner();
        let (products, next_page_token) = self
            .catalogue
            .list(
                request.include_inactive,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(ListProductsResponse {
            products: products.iter().map(catalogue_pb::to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_availability(
        &self,
        request: Request<GetAvailabilityRequest>,
    ) -> Reply<GetAvailabilityResponse> {
        let skus = request.into_inner().skus;
        if skus.is_empty() || skus.len() > AVAILABILITY_SKUS_MAX {
            return Err(Error::invalid(
                "skus",
                format!("between 1 and {AVAILABILITY_SKUS_MAX} skus"),
            )
            .into());
        }
        // A malformed sku is a bad request, not an unknown product.
        check(
            skus.iter()
                .enumerate()
                .filter_map(|(i, sku)| {
                    sku_problem(sku)
                        .map(|problem| FieldViolation::new(format!("skus[{i}]"), problem))
                })
                .collect(),
        )?;
        let products = self.catalogue.availability(&skus).await?;
        Ok(Response::new(GetAvailabilityResponse {
            availability: products.iter().map(catalogue_pb::availability).collect(),
        }))
    }
}
