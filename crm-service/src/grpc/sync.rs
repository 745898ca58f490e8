//! `tandem.crm.v1.CrmSync`: the bridge applies ERP-owned state to the CRM's mirrors. Every
//! call is idempotent and version-gated, and none writes an outbox row (no echo).

use tandem_proto::crm::v1::{
    ApplyCustomerFinanceRequest, ApplyCustomerFinanceResponse, ApplyOrderStatusRequest,
    ApplyOrderStatusResponse, ApplyProductRequest, ApplyProductResponse, ApplyStockLevelsRequest,
    ApplyStockLevelsResponse, StockLevelResult, crm_sync_server::CrmSync,
};
use tonic::{Request, Response, Status};

use super::{optional, orders as orders_pb, parse_id, source_version};
use crate::{
    catalogue::{Catalogue, ProductData, StockLevel, model::stock_violations},
    error::{Error, check},
    finance::{FinanceData, FinanceMirror},
    orders::{FulfilmentUpdate, Orders},
};

pub struct SyncApi {
    catalogue: Catalogue,
    orders: Orders,
    finance: FinanceMirror,
}

impl SyncApi {
    pub fn new(catalogue: Catalogue, orders: Orders, finance: FinanceMirror) -> Self {
        Self {
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
        let applied = self.catalogue.apply_product(&data, version).await?;
        Ok(Response::new(ApplyProductResponse {
            applied: applied.changed,
            current_version: applied.current_version,
        }))
    }

    async fn apply_stock_levels(
        &self,
        request: Request<ApplyStockLevelsRequest>,
    ) -> Reply<ApplyStockLevelsResponse> {
        let levels: Vec<StockLevel> = request
            .into_inner()
            .levels
            .into_iter()
            .map(|level| StockLevel {
                sku: level.sku.trim().to_owned(),
                available: level.available,
                source_version: level.source_version,
            })
            .collect();
        check(stock_violations(&levels))?;
        let outcomes = self.catalogue.apply_stock_levels(&levels).await?;
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
        let applied = self.orders.apply_status(id, &update, version).await?;
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
            .apply(customer_id, data, request.source_version)
            .await?;
        Ok(Response::new(ApplyCustomerFinanceResponse {
            applied: applied.changed,
            current_version: applied.current_version,
        }))
    }
}
