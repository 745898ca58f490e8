//! `tandem.crm.v1.CrmSync`, for the bridge and the operator CLI.
//!
//! - `Apply*`: ERP-owned state into the CRM's mirrors. Idempotent and version-gated (`repair`
//!   lets an equal version apply); none writes an outbox row (no echo).
//! - `UpsertCustomerByExternalRef`, `PlaceExternalOrder`: integrators' customers and orders.
//!   The CRM owns these, so a change publishes its normal `crm.*` event.
//! - `Republish`: the current state of every customer and known order, through the outbox.

use tandem_proto::crm::v1::{
    ApplyCustomerFinanceRequest, ApplyCustomerFinanceResponse, ApplyOrderStatusRequest,
    ApplyOrderStatusResponse, ApplyProductRequest, ApplyProductResponse, ApplyStockLevelsRequest,
    ApplyStockLevelsResponse, PlaceExternalOrderRequest, PlaceExternalOrderResponse,
    RepublishRequest, RepublishResponse, StockLevelResult, UpsertCustomerByExternalRefRequest,
    UpsertCustomerByExternalRefResponse, crm_sync_server::CrmSync,
};
use tonic::{Request, Response, Status};

use super::{customers as customers_pb, optional, orders as orders_pb, parse_id, source_version};
use crate::{
    catalogue::{Catalogue, ProductData, StockLevel, model::stock_violations},
    customers::Customers,
    error::{Error, check},
    finance::{FinanceData, FinanceMirror},
    orders::{ExternalOrder, FulfilmentUpdate, LineRequest, Orders},
};

pub struct SyncApi {
    customers: Customers,
    catalogue: Catalogue,
    orders: Orders,
    finance: FinanceMirror,
}

impl SyncApi {
    pub fn new(
        customers: Customers,
        catalogue: Catalogue,
        orders: Orders,
        finance: FinanceMirror,
    ) -> Self {
        Self {
            customers,
            catalogue,
            orders,
            finance,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CrmSync for SyncApi {
    async fn apply_product(
        &self,
        request: Request<ApplyProductRequest>,
    ) -> Reply<ApplyProductResponse> {
        let request = request.into_inner();
        let product = request
            .product
            .ok_or_else(|| Error::invalid("product", "required"))?;
        let price = product.unit_price.unwrap_or_default();
        let data = ProductData {
            sku: product.sku.trim().to_owned(),
            name: product.name.trim().to_owned(),
            unit_price_minor: price.amount_minor,
            currency: price.currency_code,
            active: product.active,
        };
        check(data.violations()).map_err(|e| e.prefixed("product."))?;
        let version = source_version(request.source_version)?;
        let applied = self
            .catalogue
            .apply_product(&data, version, request.repair)
            .await?;
        Ok(Response::new(ApplyProductResponse {
            applied: applied.changed,
            current_version: applied.current_version,
        }))
    }

    async fn apply_stock_levels(
        &self,
        request: Request<ApplyStockLevelsRequest>,
    ) -> Reply<ApplyStockLevelsResponse> {
        let request = request.into_inner();
        let levels: Vec<StockLevel> = request
            .levels
            .into_iter()
            .map(|level| StockLevel {
                sku: level.sku.trim().to_owned(),
                available: level.available,
                source_version: level.source_version,
            })
            .collect();
        check(stock_violations(&levels))?;
        let outcomes = self
            .catalogue
            .apply_stock_levels(&levels, request.repair)
            .await?;
        Ok(Response::new(ApplyStockLevelsResponse {
            results: levels
                .iter()
                .zip(outcomes)
                .map(|(level, applied)| StockLevelResult {
                    sku: level.sku.clone(),
                    applied: applied.changed,
                    current_version: applied.current_version,
                })
                .collect(),
        }))
    }

    async fn apply_order_status(
        &self,
        request: Request<ApplyOrderStatusRequest>,
    ) -> Reply<ApplyOrderStatusResponse> {
        let request = request.into_inner();
        let id = parse_id("order_id", &request.order_id)?;
        let status = orders_pb::fulfilment_from(request.status())
            .ok_or_else(|| Error::invalid("status", "required"))?;
        let version = source_version(request.source_version)?;
        let update = FulfilmentUpdate {
            status,
            rejection_reason: optional(&request.rejection_reason),
            invoice_number: optional(&request.invoice_number),
            invoice_amount: request
                .invoice_amount
                .map(|m| (m.currency_code, m.amount_minor)),
        };
        let applied = self
            .orders
            .apply_status(id, &update, version, request.repair)
            .await?;
        Ok(Response::new(ApplyOrderStatusResponse {
            applied: applied.changed,
            current_version: applied.current_version,
        }))
    }

    async fn apply_customer_finance(
        &self,
        request: Request<ApplyCustomerFinanceRequest>,
    ) -> Reply<ApplyCustomerFinanceResponse> {
        let request = request.into_inner();
        let customer_id = parse_id("customer_id", &request.customer_id)?;
        let mut violations = Vec::new();
        let limit = request.credit_limit.unwrap_or_default();
        let balance = request.open_balance.unwrap_or_default();
        let data = FinanceData {
            currency: limit.currency_code,
            credit_limit_minor: limit.amount_minor,
            open_balance_minor: balance.amount_minor,
            payment_terms: optional(&request.payment_terms),
            credit_hold: request.credit_hold,
        };
        violations.extend(data.violations(&balance.currency_code));
        if request.source_version <= 0 {
            violations.push(tandem_common::grpc::FieldViolation::new(
                "source_version",
                "must be positive",
            ));
        }
        check(violations)?;
        let applied = self
            .finance
            .apply(customer_id, data, request.source_version, request.repair)
            .await?;
        Ok(Response::new(ApplyCustomerFinanceResponse {
            applied: applied.changed,
            current_version: applied.current_version,
        }))
    }

    #[tracing::instrument(skip_all, fields(event_id))]
    async fn upsert_customer_by_external_ref(
        &self,
        request: Request<UpsertCustomerByExternalRefRequest>,
    ) -> Reply<UpsertCustomerByExternalRefResponse> {
        let request = request.into_inner();
        tracing::Span::current().record("event_id", request.event_id.as_str());
        let customer = request
            .customer
            .ok_or_else(|| Error::invalid("customer", "required"))?;
        // Every bad field in one answer, and nothing written when there is one.
        let upsert =
            customers_pb::integration_upsert(customer, &request.source, request.source_version)
                .and_then(|upsert| {
                    let upsert = upsert.normalised();
                    check(upsert.violations())?;
                    Ok(upsert)
                })
                .map_err(|e| e.prefixed("customer."));
        let mut top_level = match source_version(request.source_version) {
            Err(Error::Invalid(violations)) => violations,
            _ => Vec::new(),
        };
        if request.source.chars().any(char::is_control) {
            top_level.push(tandem_common::grpc::FieldViolation::new(
                "source",
                "must not contain control characters",
            ));
        }
        let upsert = match (upsert, check(top_level)) {
            (Ok(upsert), Ok(_)) => upsert,
            (Err(Error::Invalid(mut violations)), Err(Error::Invalid(more))) => {
                violations.extend(more);
                return Err(Error::Invalid(violations).into());
            }
            (Err(error), _) | (_, Err(error)) => return Err(error.into()),
        };
        let (customer, applied) = self
            .customers
            .upsert_by_external_ref(upsert)
            .await
            .map_err(|e| e.prefixed("customer."))?;
        Ok(Response::new(UpsertCustomerByExternalRefResponse {
            customer: Some(customers_pb::to_proto(&customer)),
            applied,
        }))
    }

    #[tracing::instrument(skip_all, fields(source, event_id))]
    async fn place_external_order(
        &self,
        request: Request<PlaceExternalOrderRequest>,
    ) -> Reply<PlaceExternalOrderResponse> {
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("source", request.source.as_str());
        span.record("event_id", request.event_id.as_str());
        let order = ExternalOrder {
            external_ref: request.external_ref.trim().to_owned(),
            customer_external_ref: request.customer_external_ref.trim().to_owned(),
            currency: request.currency_code.trim().to_owned(),
            lines: request
                .lines
                .iter()
                .map(|line| LineRequest {
                    sku: line.sku.trim().to_owned(),
                    quantity: line.quantity,
                })
                .collect(),
        };
        let (order, applied) = self.orders.place_external(&order).await?;
        Ok(Response::new(PlaceExternalOrderResponse {
            order: Some(orders_pb::to_proto(&order)),
            applied,
        }))
    }

    async fn republish(&self, _request: Request<RepublishRequest>) -> Reply<RepublishResponse> {
        let customers = self.customers.republish().await?;
        let orders = self.orders.republish().await?;
        tracing::info!(customers, orders, "republished the current state");
        Ok(Response::new(RepublishResponse { customers, orders }))
    }
}
