//! `tandem.erp.v1.ErpService` (public) and `tandem.erp.v1.ErpSync` (for the bridge): map
//! requests to the domain and results back to messages.

mod access;
mod convert;
mod status;

pub use access::ACCESS;

use prost::Message;
use tandem_common::{
    auth,
    idempotency::{Answer, Once, RequestKey},
    validation::FieldViolation,
};
use tandem_proto::erp::v1::{self as pb, erp_service_server::ErpService, erp_sync_server::ErpSync};
use tonic::{Request, Response, Status};

use convert::{known, parse_id};

use crate::{
    customers::Customers,
    error::Error,
    finance::Finances,
    inventory::{MovementOutcome, Stock, StockRequest},
    orders::{OrderFilter, Orders},
    products::{ProductFields, ProductFilter, Products},
    republish::Republisher,
    restore::{self, Kind, MirroredProduct, Restore},
    stock::{AdjustmentReason, Count},
    text,
    warehouses::Warehouses,
};

/// Every domain service the gRPC surfaces use.
#[derive(Clone)]
pub struct ErpApi {
    pub customers: Customers,
    pub products: Products,
    pub warehouses: Warehouses,
    pub stock: Stock,
    pub finances: Finances,
    pub orders: Orders,
    pub republisher: Republisher,
    pub restore: Restore,
}

/// Most entities in one `LiftVersions` or `RecoverProducts` call.
const RESYNC_BATCH: usize = 500;

fn lifted(key: String, lifted: restore::Lifted) -> pb::LiftedVersion {
    let outcome = match lifted.outcome {
        restore::Outcome::Current => pb::LiftOutcome::Current,
        restore::Outcome::Lifted => pb::LiftOutcome::Lifted,
        restore::Outcome::Recovered => pb::LiftOutcome::Recovered,
        restore::Outcome::Missing => pb::LiftOutcome::Missing,
    };
    pb::LiftedVersion {
        key,
        outcome: outcome as i32,
        previous_version: lifted.previous_version,
        version: lifted.version,
    }
}

/// Every bad floor of a `LiftVersions` request, by field.
fn floor_violations(field: &str, floors: &[pb::VersionFloor]) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    for (i, floor) in floors.iter().enumerate() {
        if floor.key.trim().is_empty() {
            violations.push(FieldViolation::new(format!("{field}[{i}].key"), "required"));
        }
        if floor.mirror_version <= 0 {
            violations.push(FieldViolation::new(
                format!("{field}[{i}].mirror_version"),
                "must be positive",
            ));
        }
    }
    violations
}

type Reply<T> = Result<Response<T>, Status>;

/// Most customers in one `ApplyCustomers` call.
const APPLY_CUSTOMERS_MAX: usize = 1_000;

fn reference(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The idempotency of a call to `method` (its full gRPC path): `None` without a request id
/// (read through `request_id`), else the id under the caller's subject, and how the result is
/// encoded for a retry. A malformed id is INVALID_ARGUMENT naming `request_id`.
fn once<M: Message + Clone, T>(
    method: &'static str,
    request: &M,
    request_id: impl FnOnce(&mut M) -> &mut String,
    encode: fn(&T) -> Vec<u8>,
) -> Result<Option<Once<T>>, Error> {
    Ok(
        RequestKey::of(method, auth::current_subject(), request, request_id)?
            .map(|key| Once::new(key, encode)),
    )
}

/// The response of a fresh result or of a replayed one.
fn reply<T, M: Message + Default>(answer: Answer<T>, to_proto: impl FnOnce(&T) -> M) -> Reply<M> {
    Ok(Response::new(answer.reply(to_proto).map_err(Error::from)?))
}

fn movement_result(outcome: &MovementOutcome) -> pb::StockMovementResult {
    pb::StockMovementResult {
        levels: outcome.levels.iter().map(convert::level).collect(),
        movements: outcome.movements.iter().map(convert::movement).collect(),
        reserved_orders: outcome.reserved_orders.clone(),
    }
}

#[tonic::async_trait]
impl ErpService for ErpApi {
    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Reply<pb::Product> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/CreateProduct",
            &request,
            |r| &mut r.request_id,
            |p| convert::product(p).encode_to_vec(),
        )?;
        let product = request
            .product
            .ok_or_else(|| Error::invalid("product", "required"))?;
        let fields = convert::product_fields(&product, !request.inactive)?;
        let created = self
            .products
            .create(&product.sku, fields, once.as_ref())
            .await?;
        reply(created, convert::product)
    }

    async fn get_product(&self, request: Request<pb::GetProductRequest>) -> Reply<pb::Product> {
        let id = &request.get_ref().id;
        convert::product_key("id", id)?;
        Ok(Response::new(convert::product(
            &self.products.get(id).await?,
        )))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Reply<pb::ListProductsResponse> {
        let request = request.into_inner();
        text::check_no_nul(&[("sku_prefix", &request.sku_prefix)])?;
        let filter = ProductFilter {
            active: request.active,
            sku_prefix: request.sku_prefix,
        };
        let (products, next_page_token) = self
            .products
            .list(&filter, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListProductsResponse {
            products: products.iter().map(convert::product).collect(),
            next_page_token,
        }))
    }

    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Reply<pb::Product> {
        let request = request.into_inner();
        let product = request
            .product
            .ok_or_else(|| Error::invalid("product", "required"))?;
        let (field, key) = if product.id.is_empty() {
            ("product.sku", product.sku.clone())
        } else {
            ("product.id", product.id.clone())
        };
        if key.is_empty() {
            return Err(Error::invalid("product.id", "an id or a sku").into());
        }
        convert::product_key(field, &key)?;
        let patch = convert::product_patch(&product, request.update_mask.as_ref())?;
        let expected = (product.version != 0).then_some(product.version);
        let updated = self.products.update(&key, patch, expected).await?;
        Ok(Response::new(convert::product(&updated)))
    }

    async fn create_warehouse(
        &self,
        request: Request<pb::CreateWarehouseRequest>,
    ) -> Reply<pb::Warehouse> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/CreateWarehouse",
            &request,
            |r| &mut r.request_id,
            |w| convert::warehouse(w).encode_to_vec(),
        )?;
        let warehouse = request
            .warehouse
            .ok_or_else(|| Error::invalid("warehouse", "required"))?;
        let created = self
            .warehouses
            .create(&warehouse.code, &warehouse.display_name, once.as_ref())
            .await?;
        reply(created, convert::warehouse)
    }

    async fn list_warehouses(
        &self,
        request: Request<pb::ListWarehousesRequest>,
    ) -> Reply<pb::ListWarehousesResponse> {
        let request = request.into_inner();
        let (warehouses, next_page_token) = self
            .warehouses
            .list(request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListWarehousesResponse {
            warehouses: warehouses.iter().map(convert::warehouse).collect(),
            next_page_token,
        }))
    }

    async fn receive_stock(
        &self,
        request: Request<pb::ReceiveStockRequest>,
    ) -> Reply<pb::StockMovementResult> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/ReceiveStock",
            &request,
            |r| &mut r.request_id,
            |o| movement_result(o).encode_to_vec(),
        )?;
        let movement = StockRequest::Receive {
            warehouse: request.warehouse,
            quantity: request.quantity,
        };
        let outcome = self
            .stock
            .movement(
                &request.sku,
                movement,
                reference(&request.reference),
                once.as_ref(),
            )
            .await?;
        reply(outcome, movement_result)
    }

    async fn adjust_stock(
        &self,
        request: Request<pb::AdjustStockRequest>,
    ) -> Reply<pb::StockMovementResult> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/AdjustStock",
            &request,
            |r| &mut r.request_id,
            |o| movement_result(o).encode_to_vec(),
        )?;
        let reason = convert::adjustment_reason(request.reason())
            .ok_or_else(|| Error::invalid("reason", "required"))?;
        if reason == AdjustmentReason::Count {
            return Err(Error::invalid(
                "reason",
                "COUNT is written by ErpSync.CountStock; use COUNT_CORRECTION",
            )
            .into());
        }
        let movement = StockRequest::Adjust {
            warehouse: request.warehouse,
            delta: request.quantity_delta,
            reason,
        };
        let outcome = self
            .stock
            .movement(
                &request.sku,
                movement,
                reference(&request.reference),
                once.as_ref(),
            )
            .await?;
        reply(outcome, movement_result)
    }

    async fn transfer_stock(
        &self,
        request: Request<pb::TransferStockRequest>,
    ) -> Reply<pb::StockMovementResult> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/TransferStock",
            &request,
            |r| &mut r.request_id,
            |o| movement_result(o).encode_to_vec(),
        )?;
        let movement = StockRequest::Transfer {
            from: request.from_warehouse,
            to: request.to_warehouse,
            quantity: request.quantity,
        };
        let outcome = self
            .stock
            .movement(
                &request.sku,
                movement,
                reference(&request.reference),
                once.as_ref(),
            )
            .await?;
        reply(outcome, movement_result)
    }

    async fn get_stock_level(
        &self,
        request: Request<pb::GetStockLevelRequest>,
    ) -> Reply<pb::StockLevel> {
        let request = request.get_ref();
        let level = self.stock.level(&request.sku, &request.warehouse).await?;
        Ok(Response::new(convert::level(&level)))
    }

    async fn list_stock_levels(
        &self,
        request: Request<pb::ListStockLevelsRequest>,
    ) -> Reply<pb::ListStockLevelsResponse> {
        let request = request.into_inner();
        text::check_no_nul(&[("sku", &request.sku), ("warehouse", &request.warehouse)])?;
        let (levels, next_page_token) = self
            .stock
            .levels(
                &request.sku,
                &request.warehouse,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListStockLevelsResponse {
            levels: levels.iter().map(convert::level).collect(),
            next_page_token,
        }))
    }

    async fn list_stock_movements(
        &self,
        request: Request<pb::ListStockMovementsRequest>,
    ) -> Reply<pb::ListStockMovementsResponse> {
        let request = request.into_inner();
        text::check_no_nul(&[("sku", &request.sku), ("warehouse", &request.warehouse)])?;
        let order_id = match request.order_id.as_str() {
            "" => None,
            id => Some(parse_id("order_id", id)?),
        };
        let (movements, next_page_token) = self
            .stock
            .movements(
                &request.sku,
                &request.warehouse,
                order_id,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListStockMovementsResponse {
            movements: movements.iter().map(convert::movement).collect(),
            next_page_token,
        }))
    }

    async fn get_customer(&self, request: Request<pb::GetCustomerRequest>) -> Reply<pb::Customer> {
        let id = parse_id("id", &request.get_ref().id)?;
        let customer = self.customers.get(id).await?;
        let finance = self.finances.view(id).await?;
        Ok(Response::new(convert::customer(&customer, Some(&finance))))
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Reply<pb::ListCustomersResponse> {
        let request = request.into_inner();
        let (customers, next_page_token) = self
            .customers
            .list(request.page_size, &request.page_token)
            .await?;
        let ids: Vec<_> = customers.iter().map(|c| c.profile.id).collect();
        let finances = self.finances.views(&ids).await?;
        Ok(Response::new(pb::ListCustomersResponse {
            customers: customers
                .iter()
                .map(|c| convert::customer(c, finances.get(&c.profile.id)))
                .collect(),
            next_page_token,
        }))
    }

    async fn set_credit_terms(
        &self,
        request: Request<pb::SetCreditTermsRequest>,
    ) -> Reply<pb::CustomerFinance> {
        let request = request.into_inner();
        let id = parse_id("customer_id", &request.customer_id)?;
        let patch = convert::terms_patch(&request)?;
        if request.version.is_some_and(|version| version < 0) {
            return Err(Error::invalid("version", "must not be negative").into());
        }
        let view = self.finances.set_terms(id, patch, request.version).await?;
        Ok(Response::new(convert::finance(&view)))
    }

    async fn record_payment(
        &self,
        request: Request<pb::RecordPaymentRequest>,
    ) -> Reply<pb::CustomerFinance> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/RecordPayment",
            &request,
            |r| &mut r.request_id,
            |view| convert::finance(view).encode_to_vec(),
        )?;
        let id = parse_id("customer_id", &request.customer_id)?;
        let amount = request
            .amount
            .ok_or_else(|| Error::invalid("amount", "required"))?;
        let view = self
            .finances
            .record_payment(
                id,
                amount.amount_minor,
                &amount.currency_code,
                &request.reference,
                once.as_ref(),
            )
            .await?;
        reply(view, convert::finance)
    }

    async fn get_sales_order(
        &self,
        request: Request<pb::GetSalesOrderRequest>,
    ) -> Reply<pb::SalesOrder> {
        let id = parse_id("id", &request.get_ref().id)?;
        Ok(Response::new(convert::order(&self.orders.get(id).await?)))
    }

    async fn list_sales_orders(
        &self,
        request: Request<pb::ListSalesOrdersRequest>,
    ) -> Reply<pb::ListSalesOrdersResponse> {
        let request = request.into_inner();
        text::check_no_nul(&[("crm_order_id", &request.crm_order_id)])?;
        let filter = OrderFilter {
            status: convert::status_filter(known("status", request.status)?),
            customer_id: match request.customer_id.as_str() {
                "" => None,
                id => Some(parse_id("customer_id", id)?),
            },
            crm_order_id: (!request.crm_order_id.is_empty()).then_some(request.crm_order_id),
        };
        let (orders, next_page_token) = self
            .orders
            .list(&filter, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListSalesOrdersResponse {
            orders: orders.iter().map(convert::order).collect(),
            next_page_token,
        }))
    }

    async fn release_credit_hold(
        &self,
        request: Request<pb::ReleaseCreditHoldRequest>,
    ) -> Reply<pb::SalesOrder> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/ReleaseCreditHold",
            &request,
            |r| &mut r.request_id,
            |order| convert::order(order).encode_to_vec(),
        )?;
        let id = parse_id("id", &request.id)?;
        let released = self.orders.release_credit_hold(id, once.as_ref()).await?;
        reply(released, convert::order)
    }

    async fn ship_order(&self, request: Request<pb::ShipOrderRequest>) -> Reply<pb::SalesOrder> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/ShipOrder",
            &request,
            |r| &mut r.request_id,
            |order| convert::order(order).encode_to_vec(),
        )?;
        let id = parse_id("id", &request.id)?;
        reply(self.orders.ship(id, once.as_ref()).await?, convert::order)
    }

    async fn invoice_order(
        &self,
        request: Request<pb::InvoiceOrderRequest>,
    ) -> Reply<pb::SalesOrder> {
        let request = request.into_inner();
        let once = once(
            "/tandem.erp.v1.ErpService/InvoiceOrder",
            &request,
            |r| &mut r.request_id,
            |order| convert::order(order).encode_to_vec(),
        )?;
        let id = parse_id("id", &request.id)?;
        reply(
            self.orders.invoice(id, once.as_ref()).await?,
            convert::order,
        )
    }
}

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
                    violations.extend(found.into_iter().map(|mut violation| {
                        violation.field = format!("customers[{i}].{}", violation.field);
                        violation
                    }));
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
            let prefix = format!("products[{i}].");
            violations.extend(crate::products::model::sku_violation(
                &format!("{prefix}sku"),
                &product.sku,
            ));
            violations.extend(fields.violations(&prefix));
            if product.mirror_version <= 0 {
                violations.push(FieldViolation::new(
                    format!("{prefix}mirror_version"),
                    "must be positive",
                ));
            }
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
        _request: Request<pb::RepublishRequest>,
    ) -> Reply<pb::RepublishResponse> {
        let done = self.republisher.run().await?;
        Ok(Response::new(pb::RepublishResponse {
            products: done.products,
            stock_levels: done.stock_levels,
            orders: done.orders,
            customers: done.customers,
        }))
    }
}
