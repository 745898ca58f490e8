//! `tandem.erp.v1.ErpSync`: the internal API the bridge (and `tandemctl`) call.

use std::time::{Duration, Instant};

use tandem_common::{
    paging,
    validation::{self, FieldViolation},
};
use tandem_proto::erp::v1::{self as pb, erp_sync_server::ErpSync};
use tonic::{Request, Response, Status};

use crate::{
    error::Error,
    products::ProductFields,
    restore::{Kind, MirroredProduct},
    stock::Count,
};

/// How long one `Republish` call works before it answers a token to go on with: well inside
/// the server's own deadline (`grpc.limits.request_timeout_ms`, 30 s by default).
const REPUBLISH_BUDGET: Duration = Duration::from_secs(10);
/// What a `Republish` token is bound to.
const REPUBLISH: &str = "erp.republish";

use super::{
    ACCEPT_ORDERS_MAX, APPLY_CUSTOMERS_MAX, ErpApi, RESYNC_BATCH, Reply, convert, floor_violations,
    lifted,
};

#[tonic::async_trait]
impl ErpSync for ErpApi {
    async fn apply_customer(
        &self,
        request: Request<pb::ApplyCustomerRequest>,
    ) -> Reply<pb::ApplyCustomerResponse> {
        let request = request.into_inner();
        tracing::debug!(event_id = %request.event_id, repair = request.repair, "applying customer");
        let profile = convert::profile(request.customer.as_ref())?;
        let applied = self
            .customers
            .apply(&profile, request.source_version, request.repair)
            .await?;
        Ok(Response::new(pb::ApplyCustomerResponse {
            applied: applied.changed,
            current_version: applied.current_version,
        }))
    }

    async fn apply_customers(
        &self,
        request: Request<pb::ApplyCustomersRequest>,
    ) -> Reply<pb::ApplyCustomersResponse> {
        let customers = request.into_inner().customers;
        if customers.is_empty() || customers.len() > APPLY_CUSTOMERS_MAX {
            return Err(Error::invalid(
                "customers",
                format!("1..={APPLY_CUSTOMERS_MAX} customers"),
            )
            .into());
        }
        // Every bad customer of the batch in one answer: its profile and its version.
        let mut batch = Vec::with_capacity(customers.len());
        let mut violations = Vec::new();
        for (i, customer) in customers.iter().enumerate() {
            match convert::profile(customer.customer.as_ref()) {
                Ok(profile) => batch.push((profile, customer.source_version, customer.repair)),
                Err(Error::Invalid(found)) => {
                    violations.extend(validation::under(&format!("customers[{i}]."), found));
                }
                Err(other) => return Err(other.into()),
            }
            if customer.source_version <= 0 {
                violations.push(FieldViolation::new(
                    format!("customers[{i}].source_version"),
                    "must be positive",
                ));
            }
        }
        if !violations.is_empty() {
            return Err(Error::Invalid(violations).into());
        }
        tracing::debug!(customers = batch.len(), "applying customers");
        let outcomes = self.customers.apply_many(&batch).await?;
        Ok(Response::new(pb::ApplyCustomersResponse {
            results: outcomes
                .into_iter()
                .map(|applied| pb::ApplyCustomerResponse {
                    applied: applied.changed,
                    current_version: applied.current_version,
                })
                .collect(),
        }))
    }

    async fn accept_order(
        &self,
        request: Request<pb::AcceptOrderRequest>,
    ) -> Reply<pb::AcceptOrderResponse> {
        let request = request.into_inner();
        tracing::debug!(event_id = %request.event_id, crm_order_id = %request.crm_order_id, "accepting order");
        let order = convert::new_order(&request)?;
        let accepted = self.orders.accept(order).await?;
        Ok(Response::new(pb::AcceptOrderResponse {
            order: Some(convert::order(&accepted.order)),
            created: accepted.created,
        }))
    }

    async fn accept_orders(
        &self,
        request: Request<pb::AcceptOrdersRequest>,
    ) -> Reply<pb::AcceptOrdersResponse> {
        let orders = request.into_inner().orders;
        if orders.is_empty() || orders.len() > ACCEPT_ORDERS_MAX {
            return Err(Error::invalid("orders", format!("1..={ACCEPT_ORDERS_MAX} orders")).into());
        }
        let mut batch = Vec::with_capacity(orders.len());
        let mut violations = Vec::new();
        for (i, order) in orders.iter().enumerate() {
            match convert::new_order(order) {
                Ok(order) => batch.push(order),
                Err(Error::Invalid(found)) => {
                    violations.extend(validation::under(&format!("orders[{i}]."), found));
                }
                Err(other) => return Err(other.into()),
            }
        }
        if !violations.is_empty() {
            return Err(Error::Invalid(violations).into());
        }
        tracing::debug!(orders = batch.len(), "accepting orders");
        let accepted = self.orders.accept_many(batch).await?;
        Ok(Response::new(pb::AcceptOrdersResponse {
            results: accepted
                .iter()
                .map(|accepted| pb::AcceptOrderResponse {
                    order: Some(convert::order(&accepted.order)),
                    created: accepted.created,
                })
                .collect(),
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Reply<pb::SalesOrder> {
        let request = request.into_inner();
        tracing::debug!(event_id = %request.event_id, crm_order_id = %request.crm_order_id, "cancelling order");
        let reason = (!request.reason.is_empty()).then_some(request.reason);
        let order = self.orders.cancel(&request.crm_order_id, reason).await?;
        Ok(Response::new(convert::order(&order)))
    }

    async fn count_stock(
        &self,
        request: Request<pb::CountStockRequest>,
    ) -> Reply<pb::CountStockResponse> {
        let request = request.into_inner();
        let counted = self
            .stock
            .count(&Count {
                sku: request.sku,
                warehouse: request.warehouse,
                counted_quantity: request.counted_quantity,
                event_id: request.event_id,
                source: request.source,
            })
            .await?;
        Ok(Response::new(pb::CountStockResponse {
            applied: counted.applied,
            level: Some(convert::level(&counted.level)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn lift_versions(
        &self,
        request: Request<pb::LiftVersionsRequest>,
    ) -> Reply<pb::LiftVersionsResponse> {
        let request = request.into_inner();
        let groups = [
            ("products", Kind::Product, &request.products),
            ("stock", Kind::Stock, &request.stock),
            ("orders", Kind::Order, &request.orders),
            ("finance", Kind::Finance, &request.finance),
        ];
        let total: usize = groups.iter().map(|(_, _, floors)| floors.len()).sum();
        if request.invoice_number_floor < 0 {
            return Err(Error::invalid("invoice_number_floor", "must not be negative").into());
        }
        if (total == 0 && request.invoice_number_floor == 0) || total > RESYNC_BATCH {
            return Err(Error::invalid(
                "products",
                format!("1..={RESYNC_BATCH} floors in all (products, stock, orders, finance), not {total}"),
            )
            .into());
        }
        let violations: Vec<FieldViolation> = groups
            .iter()
            .flat_map(|(field, _, floors)| floor_violations(field, floors))
            .collect();
        if !violations.is_empty() {
            return Err(Error::Invalid(violations).into());
        }
        let mut results: [Vec<pb::LiftedVersion>; 4] = Default::default();
        for ((_, kind, floors), results) in groups.iter().zip(results.iter_mut()) {
            for floor in floors.iter() {
                let key = floor.key.trim();
                let outcome = self.restore.lift(*kind, key, floor.mirror_version).await?;
                results.push(lifted(key.to_owned(), outcome));
            }
        }
        let invoice_numbers_advanced = request.invoice_number_floor > 0
            && self
                .restore
                .advance_invoice_numbers(request.invoice_number_floor)
                .await?;
        let [products, stock, orders, finance] = results;
        Ok(Response::new(pb::LiftVersionsResponse {
            products,
            stock,
            orders,
            finance,
            invoice_numbers_advanced,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn recover_products(
        &self,
        request: Request<pb::RecoverProductsRequest>,
    ) -> Reply<pb::RecoverProductsResponse> {
        let request = request.into_inner();
        if request.products.is_empty() || request.products.len() > RESYNC_BATCH {
            return Err(Error::invalid("products", format!("1..={RESYNC_BATCH} products")).into());
        }
        let mut violations = Vec::new();
        let mut products = Vec::with_capacity(request.products.len());
        for (i, product) in request.products.into_iter().enumerate() {
            let price = product.unit_price.unwrap_or_default();
            let fields = ProductFields {
                display_name: product.display_name.trim().to_owned(),
                description: String::new(),
                unit_price_minor: price.amount_minor,
                currency: price.currency_code,
                active: product.active,
            };
            let mut found: Vec<_> = crate::products::model::sku_violation("sku", &product.sku)
                .into_iter()
                .collect();
            found.extend(fields.violations());
            if product.mirror_version <= 0 {
                found.push(FieldViolation::new("mirror_version", "must be positive"));
            }
            violations.extend(validation::under(&format!("products[{i}]."), found));
            products.push(MirroredProduct {
                sku: product.sku,
                display_name: fields.display_name,
                unit_price_minor: fields.unit_price_minor,
                currency: fields.currency,
                active: fields.active,
                mirror_version: product.mirror_version,
            });
        }
        if !violations.is_empty() {
            return Err(Error::Invalid(violations).into());
        }
        let mut results = Vec::with_capacity(products.len());
        for product in &products {
            let outcome = self.restore.recover_product(product).await?;
            results.push(lifted(product.sku.clone(), outcome));
        }
        Ok(Response::new(pb::RecoverProductsResponse { results }))
    }

    async fn republish(
        &self,
        request: Request<pb::RepublishRequest>,
    ) -> Reply<pb::RepublishResponse> {
        let from = paging::resume_from(REPUBLISH, &request.get_ref().page_token)
            .map_err(Error::from)?
            .unwrap_or_default();
        let (done, next) = self
            .republisher
            .run(from, Instant::now() + REPUBLISH_BUDGET)
            .await?;
        let next_page_token = match &next {
            Some(resume) => paging::resume_token(REPUBLISH, resume)
                .map_err(|e| Status::internal(format!("encoding the republish token: {e}")))?,
            None => String::new(),
        };
        Ok(Response::new(pb::RepublishResponse {
            products: done.products,
            stock_levels: done.stock_levels,
            orders: done.orders,
            customers: done.customers,
            next_page_token,
        }))
    }
}
